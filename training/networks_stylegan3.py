# The StyleGAN3 generator (Karras et al., "Alias-Free Generative Adversarial Networks", NeurIPS 2021)
# in one self-contained module: mapping network, Fourier-feature input, alias-free synthesis layers,
# synthesis network and generator, with the constructor keywords, parameter and buffer names and
# numerics of the original StyleGAN3 networks, so that their pickles convert into these classes.
# StyleGAN3's discriminator is the StyleGAN2 one (training.networks_stylegan2.Discriminator).
# It imports only torch, numpy, scipy, torch_utils and dnnlib, so the source a pickle embeds is all
# the code its networks run. See docs/stylegan3.md.

import numpy as np
import scipy.signal
import scipy.special
import torch

from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import bias_act
from torch_utils.ops import conv2d_gradfix
from torch_utils.ops import filtered_lrelu

#----------------------------------------------------------------------------
# Divide each row by the root of its mean square (pixel norm along `dim`).

@misc.profiled_function
def normalize_2nd_moment(x, dim=1, eps=1e-8):
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()

#----------------------------------------------------------------------------
# Modulated convolution as StyleGAN3 runs it (paper, appendix F): weights and styles are first
# normalised (so float16 stays in range), then modulated, demodulated, scaled by the input gain
# (the inverse of the tracked input magnitude), and applied as one grouped convolution.

@misc.profiled_function
def modulated_conv2d(
    x,                  # Input activations: [batch_size, in_channels, in_height, in_width].
    w,                  # Base weights: [out_channels, in_channels, kernel_height, kernel_width].
    s,                  # Styles: [batch_size, in_channels].
    demodulate  = True, # Normalise each output filter to unit L2 norm?
    padding     = 0,    # Padding of the input (per side).
    input_gain  = None, # Scale of the input channels: scalar, [in_channels] or [batch_size, in_channels]; None = 1.
):
    with misc.suppress_tracer_warnings():
        batch_size = int(x.shape[0])
    out_channels, in_channels, kh, kw = w.shape
    misc.assert_shape(w, [out_channels, in_channels, kh, kw]) # [OIkk]
    misc.assert_shape(x, [batch_size, in_channels, None, None]) # [NIHW]
    misc.assert_shape(s, [batch_size, in_channels]) # [NI]

    # Pre-normalise the inputs (demodulation makes the result invariant to these scales).
    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()

    # Modulate, demodulate, apply the input gain.
    w = w.unsqueeze(0) * s.reshape(batch_size, 1, in_channels, 1, 1) # [NOIkk]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() # [NO]
        w = w * dcoefs.reshape(batch_size, out_channels, 1, 1, 1) # [NOIkk]
    if input_gain is not None:
        input_gain = input_gain.expand(batch_size, in_channels) # [NI]
        w = w * input_gain.reshape(batch_size, 1, in_channels, 1, 1) # [NOIkk]

    # One grouped convolution: the batch becomes the groups.
    x = x.reshape(1, -1, *x.shape[2:]) # [1,NI,H,W]
    w = w.reshape(-1, in_channels, kh, kw) # [NO,I,k,k]
    x = conv2d_gradfix.conv2d(input=x, weight=w.to(x.dtype), padding=padding, groups=batch_size)
    return x.reshape(batch_size, -1, *x.shape[2:]) # [NOHW]

#----------------------------------------------------------------------------
# Fully connected layer with equalised learning rate: weights stored as N(0,1) * weight_init /
# lr_multiplier and scaled at run time by lr_multiplier / sqrt(in_features).

@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    def __init__(self,
        in_features,                # Number of input features.
        out_features,               # Number of output features.
        activation      = 'linear', # Activation function name (see bias_act.activation_funcs).
        bias            = True,     # Apply an additive bias before the activation?
        lr_multiplier   = 1,        # Learning rate multiplier.
        weight_init     = 1,        # Initial standard deviation of the weights (0 = zeros).
        bias_init       = 0,        # Initial value of the bias: scalar or [out_features].
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        bias_init = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
        self.bias = torch.nn.Parameter(torch.from_numpy(bias_init / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == 'linear' and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self):
        return f'in_features={self.in_features:d}, out_features={self.out_features:d}, activation={self.activation:s}'

#----------------------------------------------------------------------------
# Mapping network z (+ embedded c) -> w, broadcast to num_ws copies, with the tracked average
# w_avg (decay w_avg_beta) used by the truncation trick.

@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    rank_local_buffers = ('w_avg',) # Each process tracks w_avg from its own samples (see misc.rank_local_buffer_names).

    def __init__(self,
        z_dim,                      # Input latent (Z) dimensionality, 0 = no latent.
        c_dim,                      # Conditioning label (C) dimensionality, 0 = no label.
        w_dim,                      # Intermediate latent (W) dimensionality.
        num_ws,                     # Number of intermediate latents to output.
        num_layers      = 2,        # Number of mapping layers.
        lr_multiplier   = 0.01,     # Learning rate multiplier of the mapping layers.
        w_avg_beta      = 0.998,    # Decay of the running average of w during training.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        # Label embedding, then num_layers layers of width w_dim.
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, w_dim)
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for idx in range(num_layers):
            setattr(self, f'fc{idx}', FullyConnectedLayer(features[idx], features[idx + 1], activation='lrelu', lr_multiplier=lr_multiplier))
        self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        with torch.autograd.profiler.record_function('mapping'):
            if truncation_cutoff is None:
                truncation_cutoff = self.num_ws

            # Normalise and concatenate the inputs.
            x = None
            if self.z_dim > 0:
                misc.assert_shape(z, [None, self.z_dim])
                x = normalize_2nd_moment(z.to(torch.float32))
            if self.c_dim > 0:
                misc.assert_shape(c, [None, self.c_dim])
                y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
                x = torch.cat([x, y], dim=1) if x is not None else y

            # Main layers, the tracked average, broadcast and truncation.
            for idx in range(self.num_layers):
                x = getattr(self, f'fc{idx}')(x)
            if update_emas:
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1]) # [NWC]
            if truncation_psi != 1:
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
            return x

    def extra_repr(self):
        return f'z_dim={self.z_dim:d}, c_dim={self.c_dim:d}, w_dim={self.w_dim:d}, num_ws={self.num_ws:d}'

#----------------------------------------------------------------------------
# Per-sample 3x3 matrices from the input's affine output t = (r_c, r_s, t_x, t_y) (paper sec. 3.2):
# t is divided by |(r_c, r_s)|, then the result is R(t') @ T(-t') -- an inverse rotation and an inverse
# translation of the output image, applied in the input's coordinates.

def _learned_input_transforms(t):
    t = t / t[:, :2].norm(dim=1, keepdim=True)
    rc, rs, tx, ty = t.unbind(dim=1)
    one, zero = torch.ones_like(rc), torch.zeros_like(rc)
    m_r = torch.stack([rc, -rs, zero, rs, rc, zero, zero, zero, one], dim=1).reshape(-1, 3, 3)
    m_t = torch.stack([one, zero, -tx, zero, one, -ty, zero, zero, one], dim=1).reshape(-1, 3, 3)
    return m_r @ m_t

#----------------------------------------------------------------------------
# Input of the synthesis network (paper sec. 3.2 and appendix F): `channels` Fourier features of
# random frequencies inside a disc of radius `bandwidth`, sampled on a `size` grid at
# `sampling_rate`, moved by a learned per-sample rotation/translation and the user's `transform`
# (a 3x3 matrix mapping output coordinates to input coordinates; identity by default), then mixed by
# a learned channel matrix. Frequencies pushed out of band by the transform fade out.

@persistence.persistent_class
class SynthesisInput(torch.nn.Module):
    def __init__(self,
        w_dim,          # Intermediate latent (W) dimensionality.
        channels,       # Number of output channels.
        size,           # Output spatial size: int or [width, height].
        sampling_rate,  # Output sampling rate (samples per unit length).
        bandwidth,      # Output bandwidth (cycles per unit length).
    ):
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = np.broadcast_to(np.asarray(size), [2])
        self.sampling_rate = sampling_rate
        self.bandwidth = bandwidth

        # Frequencies: directions uniform, radii shaped to fill the disc, scaled to the bandwidth.
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs /= radii * radii.square().exp().pow(0.25)
        freqs *= bandwidth
        phases = torch.rand([channels]) - 0.5

        # Trainable parts and buffers.
        self.weight = torch.nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer('transform', torch.eye(3, 3)) # User-specified inverse transform wrt. the output image.
        self.register_buffer('freqs', freqs)
        self.register_buffer('phases', phases)

    def forward(self, w):
        misc.assert_shape(w, [None, self.w_dim])
        transforms = _learned_input_transforms(self.affine(w)) @ self.transform.unsqueeze(0) # [N33]

        # Move the frequencies and phases; dampen what the transform pushed out of band.
        freqs = self.freqs.unsqueeze(0) @ transforms[:, :2, :2] # [NC2]
        phases = self.phases.unsqueeze(0) + (self.freqs.unsqueeze(0) @ transforms[:, :2, 2:]).squeeze(2) # [NC]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1) # [NC]

        # Sample sin(2 pi (<f, p> + phase)) at the pixel centres of the grid.
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * self.size[0] / self.sampling_rate
        theta[1, 1] = 0.5 * self.size[1] / self.sampling_rate
        grids = torch.nn.functional.affine_grid(theta.unsqueeze(0), [1, 1, self.size[1], self.size[0]], align_corners=False) # [1HW2]
        x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3) # [NHWC]
        x = x + phases.unsqueeze(1).unsqueeze(2)
        x = torch.sin(x * (np.pi * 2)) * amplitudes.unsqueeze(1).unsqueeze(2)

        # Trainable channel mixing.
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        x = x.permute(0, 3, 1, 2) # [NCHW]
        misc.assert_shape(x, [w.shape[0], self.channels, int(self.size[1]), int(self.size[0])])
        return x

    def extra_repr(self):
        return (f'w_dim={self.w_dim:d}, channels={self.channels:d}, size={list(self.size)}, '
            f'sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}')

#----------------------------------------------------------------------------
# Low-pass FIR filter of `numtaps` taps designed with a Kaiser window for `cutoff` and transition
# band `width` at sampling rate `fs` (paper appendix C); radial = a 2-D jinc-based filter (the R
# config's rotation-equivariant down-sampling). numtaps 1 = no filter (None).

def design_lowpass_filter(numtaps, cutoff, width, fs, radial=False):
    assert numtaps >= 1
    if numtaps == 1:
        return None
    if not radial:
        f = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        return torch.as_tensor(f, dtype=torch.float32)

    # Ideal radially symmetric low-pass (jinc), Kaiser-windowed along both axes, unit DC gain.
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    f *= np.outer(window, window)
    f /= np.sum(f)
    return torch.as_tensor(f, dtype=torch.float32)

#----------------------------------------------------------------------------
# One alias-free layer (paper sec. 3.2): modulated conv, then filtered_lrelu -- up-sample to a
# temporary sampling rate of lrelu_upsampling x the larger of the two rates, leaky ReLU, low-pass to
# out_cutoff and down-sample to out_sampling_rate. The input magnitude is tracked (magnitude_ema)
# and divided out. The last layer (ToRGB) is a 1x1 modulated conv without demodulation or filters.

@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    rank_local_buffers = ('magnitude_ema',) # Each process tracks its own inputs' magnitude (as w_avg; see misc.rank_local_buffer_names).

    def __init__(self,
        w_dim,                          # Intermediate latent (W) dimensionality.
        is_torgb,                       # Is this the final ToRGB layer?
        is_critically_sampled,          # Does this layer use critical sampling (no radial filter)?
        use_fp16,                       # Does this layer use float16 (on CUDA)?
        in_channels,                    # Number of input channels.
        out_channels,                   # Number of output channels.
        in_size,                        # Input spatial size: int or [width, height].
        out_size,                       # Output spatial size: int or [width, height].
        in_sampling_rate,               # Input sampling rate (s).
        out_sampling_rate,              # Output sampling rate (s).
        in_cutoff,                      # Input cutoff frequency (f_c).
        out_cutoff,                     # Output cutoff frequency (f_c).
        in_half_width,                  # Input transition band half-width (f_h).
        out_half_width,                 # Output transition band half-width (f_h).
        conv_kernel         = 3,        # Convolution kernel size; ignored (1) for ToRGB.
        filter_size         = 6,        # Low-pass filter taps per sampling rate multiple (of the temporary rate).
        lrelu_upsampling    = 2,        # Temporary up-sampling factor around the leaky ReLU; ignored (1) for ToRGB.
        use_radial_filters  = False,    # Radially symmetric down-sampling filter (config R)?
        conv_clamp          = 256,      # Clamp the activations to +-this value; None = no clamping.
        magnitude_ema_beta  = 0.999,    # Decay of the running average of the input magnitude.
    ):
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = np.broadcast_to(np.asarray(in_size), [2])
        self.out_size = np.broadcast_to(np.asarray(out_size), [2])
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        # Trainable parameters and the tracked input magnitude.
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer('magnitude_ema', torch.ones([]))

        # Filters and padding.
        self._design_filters(filter_size, use_radial_filters)
        self.padding = self._padding()

    # Up-sampling (in_cutoff) and down-sampling (out_cutoff) filters at the temporary rate.
    def _design_filters(self, filter_size, use_radial_filters):
        self.up_factor = int(np.rint(self.tmp_sampling_rate / self.in_sampling_rate))
        assert self.in_sampling_rate * self.up_factor == self.tmp_sampling_rate
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not self.is_torgb else 1
        self.register_buffer('up_filter', design_lowpass_filter(numtaps=self.up_taps, cutoff=self.in_cutoff,
            width=self.in_half_width * 2, fs=self.tmp_sampling_rate))

        self.down_factor = int(np.rint(self.tmp_sampling_rate / self.out_sampling_rate))
        assert self.out_sampling_rate * self.down_factor == self.tmp_sampling_rate
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not self.is_torgb else 1
        self.down_radial = use_radial_filters and not self.is_critically_sampled
        self.register_buffer('down_filter', design_lowpass_filter(numtaps=self.down_taps, cutoff=self.out_cutoff,
            width=self.out_half_width * 2, fs=self.tmp_sampling_rate, radial=self.down_radial))

    # Padding [x0, x1, y0, y1] of the up-sampled image so that the output has out_size pixels,
    # centred (the extra pixel of an odd total goes to the end).
    def _padding(self):
        pad_total = (self.out_size - 1) * self.down_factor + 1 # Size after down-sampling filter.
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor # Size after the full conv, up-sampled.
        pad_total += self.up_taps + self.down_taps - 2 # Size lost by the two filters.
        pad_lo = (pad_total + self.up_factor) // 2 # Shift by up_factor / 2 to centre the up-sampled samples.
        pad_hi = pad_total - pad_lo
        return [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def forward(self, x, w, noise_mode='random', force_fp32=False, update_emas=False):
        assert noise_mode in ['random', 'const', 'none'] # Accepted for API compatibility; StyleGAN3 has no noise.
        misc.assert_shape(x, [None, self.in_channels, int(self.in_size[1]), int(self.in_size[0])])
        misc.assert_shape(w, [x.shape[0], self.w_dim])

        # Track the input magnitude; divide it out.
        if update_emas:
            with torch.autograd.profiler.record_function('update_magnitude_ema'):
                magnitude_cur = x.detach().to(torch.float32).square().mean()
                self.magnitude_ema.copy_(magnitude_cur.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()

        # Styles; ToRGB uses the equalised-lr weight gain instead of demodulation.
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * (self.conv_kernel ** 2)))

        # Modulated conv, then bias, up-sampling, leaky ReLU, clamp, down-sampling.
        dtype = torch.float16 if (self.use_fp16 and not force_fp32 and x.device.type == 'cuda') else torch.float32
        x = modulated_conv2d(x=x.to(dtype), w=self.weight, s=styles, padding=self.conv_kernel - 1,
            demodulate=(not self.is_torgb), input_gain=input_gain)
        x = filtered_lrelu.filtered_lrelu(x=x, fu=self.up_filter, fd=self.down_filter, b=self.bias.to(x.dtype),
            up=self.up_factor, down=self.down_factor, padding=self.padding, gain=(1 if self.is_torgb else np.sqrt(2)),
            slope=(1 if self.is_torgb else 0.2), clamp=self.conv_clamp)

        misc.assert_shape(x, [None, self.out_channels, int(self.out_size[1]), int(self.out_size[0])])
        assert x.dtype == dtype
        return x

    def extra_repr(self):
        return (f'w_dim={self.w_dim:d}, is_torgb={self.is_torgb}, is_critically_sampled={self.is_critically_sampled}, '
            f'use_fp16={self.use_fp16}, in_sampling_rate={self.in_sampling_rate:g}, out_sampling_rate={self.out_sampling_rate:g}, '
            f'in_cutoff={self.in_cutoff:g}, out_cutoff={self.out_cutoff:g}, in_half_width={self.in_half_width:g}, '
            f'out_half_width={self.out_half_width:g}, in_size={list(self.in_size)}, out_size={list(self.out_size)}, '
            f'in_channels={self.in_channels:d}, out_channels={self.out_channels:d}')

#----------------------------------------------------------------------------
# Per-layer filter parameters of the synthesis network (paper sec. 3.2 and fig. 4): cutoff and
# stopband grow geometrically from the first layer to the last num_critical layers, which are
# critically sampled at img_resolution; sampling rates are the next powers of two above 2 x stopband.
# Returns cutoffs, stopbands, sampling_rates, half_widths, sizes, channels, each [num_layers + 1].

def synthesis_layer_schedule(img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
        first_cutoff, first_stopband, last_stopband_rel, margin_size):
    last_cutoff = img_resolution / 2 # f_{c,N}
    last_stopband = last_cutoff * last_stopband_rel # f_{t,N}
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents # f_c[i]
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents # f_t[i]
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution)))) # s[i]
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs # f_h[i]
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return cutoffs, stopbands, sampling_rates, half_widths, sizes, channels

#----------------------------------------------------------------------------
# Synthesis network: SynthesisInput, then num_layers SynthesisLayers and ToRGB (layer names
# L<idx>_<size>_<channels>), the output scaled by output_scale. num_ws = num_layers + 2.

@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    def __init__(self,
        w_dim,                          # Intermediate latent (W) dimensionality.
        img_resolution,                 # Output image resolution.
        img_channels,                   # Number of color channels.
        channel_base        = 32768,    # Overall multiplier for the number of channels.
        channel_max         = 512,      # Maximum number of channels in any layer.
        num_layers          = 14,       # Total number of layers, excluding Fourier features and ToRGB.
        num_critical        = 2,        # Number of critically sampled layers at the end.
        first_cutoff        = 2,        # Cutoff frequency of the first layer (f_{c,0}).
        first_stopband      = 2**2.1,   # Minimum stopband of the first layer (f_{t,0}).
        last_stopband_rel   = 2**0.3,   # Minimum stopband of the last layer, relative to its cutoff.
        margin_size         = 10,       # Number of additional pixels outside the image.
        output_scale        = 0.25,     # Scale factor for the output image.
        num_fp16_res        = 4,        # Use float16 for the highest this many resolutions.
        **layer_kwargs,                 # Arguments for SynthesisLayer.
    ):
        super().__init__()
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res
        if num_layers <= num_critical:
            raise ValueError(f'SynthesisNetwork: num_layers ({num_layers}) must exceed num_critical ({num_critical})')
        cutoffs, _stopbands, sampling_rates, half_widths, sizes, channels = synthesis_layer_schedule(
            img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
            first_cutoff, first_stopband, last_stopband_rel, margin_size)

        # Input and layers.
        self.input = SynthesisInput(w_dim=w_dim, channels=int(channels[0]), size=int(sizes[0]),
            sampling_rate=sampling_rates[0], bandwidth=cutoffs[0])
        self.layer_names = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(w_dim=w_dim, is_torgb=(idx == num_layers),
                is_critically_sampled=(idx >= num_layers - num_critical),
                use_fp16=bool(sampling_rates[idx] * (2 ** num_fp16_res) > img_resolution),
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(sampling_rates[prev]), out_sampling_rate=int(sampling_rates[idx]),
                in_cutoff=cutoffs[prev], out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev], out_half_width=half_widths[idx], **layer_kwargs)
            name = f'L{idx}_{layer.out_size[0]}_{layer.out_channels}'
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws, **layer_kwargs):
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32).unbind(dim=1)
        with torch.autograd.profiler.record_function('input'):
            x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            with torch.autograd.profiler.record_function(name):
                x = getattr(self, name)(x, w, **layer_kwargs)
        if self.output_scale != 1:
            x = x * self.output_scale
        misc.assert_shape(x, [None, self.img_channels, self.img_resolution, self.img_resolution])
        return x.to(torch.float32)

    def extra_repr(self):
        return (f'w_dim={self.w_dim:d}, num_ws={self.num_ws:d}, img_resolution={self.img_resolution:d}, '
            f'img_channels={self.img_channels:d}, num_layers={self.num_layers:d}, num_critical={self.num_critical:d}, '
            f'margin_size={self.margin_size:d}, num_fp16_res={self.num_fp16_res:d}')

#----------------------------------------------------------------------------
# Generator: mapping network + synthesis network. G(z, c) -> images in [-1, 1] (nominally).

@persistence.persistent_class
class Generator(torch.nn.Module):
    def __init__(self,
        z_dim,                      # Input latent (Z) dimensionality.
        c_dim,                      # Conditioning label (C) dimensionality, 0 = unconditional.
        w_dim,                      # Intermediate latent (W) dimensionality.
        img_resolution,             # Output resolution.
        img_channels,               # Number of output color channels.
        mapping_kwargs  = {},       # Arguments for MappingNetwork.
        **synthesis_kwargs,         # Arguments for SynthesisNetwork (and, through it, SynthesisLayer).
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)

#----------------------------------------------------------------------------
