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
# Modulated convolution as StyleGAN3 runs it (paper, appendix F). Every weight w[o,i] of sample n
# is scaled by the style s[n,i], the input gain g[n,i] and (with demodulation) d[n,o], the inverse
# L2 norm of the modulated filter, d[n,o] = 1 / sqrt(sum_i s[n,i]^2 sum_kk w[o,i]^2). Weights and
# styles are first brought to unit RMS (demodulation cancels that scale; float16 stays in range).

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
    if demodulate:
        w = w * w.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()

    # Per-sample, per-input-channel factor and per-sample, per-output-channel factor.
    in_scale = s if input_gain is None else s * input_gain.expand(batch_size, in_channels) # [NI]
    w_per_sample = w.unsqueeze(0) * in_scale[:, None, :, None, None] # [NOIkk]
    if demodulate:
        filter_energy = s.square() @ w.square().sum(dim=[2, 3]).t() # [NO]
        w_per_sample = w_per_sample * (filter_energy + 1e-8).rsqrt()[:, :, None, None, None] # [NOIkk]

    # The batch becomes the groups of a single convolution.
    x = x.reshape(1, batch_size * in_channels, *x.shape[2:]) # [1,NI,H,W]
    w_per_sample = w_per_sample.reshape(batch_size * out_channels, in_channels, kh, kw) # [NO,I,k,k]
    y = conv2d_gradfix.conv2d(input=x, weight=w_per_sample.to(x.dtype), padding=padding, groups=batch_size)
    return y.reshape(batch_size, out_channels, *y.shape[2:]) # [NOHW]

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

    # y = act(x (g_w W)^T + g_b b): the stored parameters times their equalised-lr gains.
    def forward(self, x):
        weight = self.weight.to(x.dtype) * self.weight_gain # [OI]
        bias = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain # [O]
        if self.activation == 'linear':
            return torch.nn.functional.linear(x, weight, bias)
        return bias_act.bias_act(x.matmul(weight.t()), bias, act=self.activation)

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

        # The label is embedded to w_dim features and sits next to z; every layer outputs w_dim features.
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, w_dim)
        width = z_dim + (w_dim if c_dim > 0 else 0)
        for idx in range(num_layers):
            setattr(self, f'fc{idx}', FullyConnectedLayer(width, w_dim, activation='lrelu', lr_multiplier=lr_multiplier))
            width = w_dim
        self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        with torch.autograd.profiler.record_function('mapping'):
            # Unit-RMS latent and unit-RMS label embedding, side by side.
            parts = []
            if self.z_dim > 0:
                misc.assert_shape(z, [None, self.z_dim]) # [NZ]
                parts.append(normalize_2nd_moment(z.to(torch.float32)))
            if self.c_dim > 0:
                misc.assert_shape(c, [None, self.c_dim]) # [NC]
                parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
            x = torch.cat(parts, dim=1)
            for idx in range(self.num_layers):
                x = getattr(self, f'fc{idx}')(x)

            # w_avg follows the batch mean of w with decay w_avg_beta.
            if update_emas:
                self.w_avg.copy_(torch.lerp(x.detach().mean(dim=0), self.w_avg, self.w_avg_beta))

            # One copy of w per synthesis layer; truncation w_avg + psi (w - w_avg) on the first
            # truncation_cutoff copies (all by default).
            ws = x.unsqueeze(1).repeat(1, self.num_ws, 1) # [NWC]
            if truncation_psi != 1:
                cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
                ws[:, :cutoff] = torch.lerp(self.w_avg, ws[:, :cutoff], truncation_psi)
            return ws

    def extra_repr(self):
        return f'z_dim={self.z_dim:d}, c_dim={self.c_dim:d}, w_dim={self.w_dim:d}, num_ws={self.num_ws:d}'

#----------------------------------------------------------------------------
# The learned part of the input's transform (paper sec. 3.2). The affine output t = (r_c, r_s, t_x, t_y)
# is divided by |(r_c, r_s)|, so (r_c, r_s) = (cos a, sin a); the result maps output coordinates p to
# input coordinates R(a) (p - t), i.e. it undoes a rotation by a after a translation by t. [N33]

def _learned_input_transforms(t):
    t = t / t[:, :2].norm(dim=1, keepdim=True)
    cos_a, sin_a, tx, ty = t.unbind(dim=1)
    zero, one = torch.zeros_like(cos_a), torch.ones_like(cos_a)
    rows = [cos_a, -sin_a, sin_a * ty - cos_a * tx,
            sin_a,  cos_a, -sin_a * tx - cos_a * ty,
            zero,   zero,  one]
    return torch.stack(rows, dim=1).reshape(-1, 3, 3)

#----------------------------------------------------------------------------
# Pixel-centre coordinates of `size` samples at `sampling_rate` samples per unit length, centred on
# the origin: (i + 1/2 - size/2) / sampling_rate.

def _pixel_centres(size, sampling_rate, device):
    return (torch.arange(int(size), dtype=torch.float32, device=device) + (0.5 - size / 2)) / sampling_rate

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

        # Frequencies: a Gaussian vector of length r rescaled to length exp(-r^2 / 4) (so the points
        # spread over the unit disc), times the bandwidth; phases uniform in [-1/2, 1/2).
        freqs = torch.randn([channels, 2])
        radii = freqs.norm(dim=1, keepdim=True)
        freqs = freqs / (radii * torch.exp(radii.square() / 4)) * bandwidth
        phases = torch.rand([channels]) - 0.5

        self.weight = torch.nn.Parameter(torch.randn([channels, channels])) # Channel mixing [CC].
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0]) # Starts at the identity.
        self.register_buffer('transform', torch.eye(3, 3)) # User's output -> input coordinate map.
        self.register_buffer('freqs', freqs) # [C2]
        self.register_buffer('phases', phases) # [C]

    def forward(self, w):
        misc.assert_shape(w, [None, self.w_dim])
        m = _learned_input_transforms(self.affine(w)) @ self.transform.unsqueeze(0) # [N33]

        # A feature sin(2 pi (<f, q> + phase)) read at q = A p + b is one of frequency A^T f and
        # phase phase + <f, b>; its amplitude falls linearly from 1 at the bandwidth to 0 at Nyquist.
        freqs = torch.einsum('cj,nji->nci', self.freqs, m[:, :2, :2]) # [NC2]
        phases = self.phases.unsqueeze(0) + self.freqs.unsqueeze(0).matmul(m[:, :2, 2:]).squeeze(2) # [NC]
        overshoot = (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)
        amplitudes = (1 - overshoot).clamp(0, 1) # [NC]

        # Evaluate on the pixel centres: the argument is separable in x and y.
        xs = _pixel_centres(self.size[0], self.sampling_rate, w.device) # [W]
        ys = _pixel_centres(self.size[1], self.sampling_rate, w.device) # [H]
        arg = freqs[:, :, None, None, 0] * xs + freqs[:, :, None, None, 1] * ys[:, None] + phases[:, :, None, None] # [NCHW]
        features = torch.sin(arg * (2 * np.pi)) * amplitudes[:, :, None, None] # [NCHW]

        # Trainable channel mixing, equalised-lr scaled.
        x = torch.einsum('dc,nchw->ndhw', self.weight / np.sqrt(self.channels), features) # [NCHW]
        misc.assert_shape(x, [w.shape[0], self.channels, int(self.size[1]), int(self.size[0])])
        return x.contiguous()

    def extra_repr(self):
        return (f'w_dim={self.w_dim:d}, channels={self.channels:d}, size={list(self.size)}, '
            f'sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}')

#----------------------------------------------------------------------------
# Impulse response of the ideal 2-D low-pass whose pass band is the disc of radius `cutoff`, at
# radius r: the inverse Fourier transform of the disc, cutoff * J1(2 pi cutoff r) / r (the jinc),
# with its limit pi cutoff^2 at r = 0.

def _jinc_lowpass(r, cutoff):
    r_safe = np.where(r == 0, 1, r)
    return np.where(r == 0, np.pi * cutoff ** 2, cutoff * scipy.special.j1(2 * np.pi * cutoff * r_safe) / r_safe)

#----------------------------------------------------------------------------
# Kaiser window of `numtaps` taps for transition band `width` at sampling rate `fs` (the window
# scipy.signal.firwin uses: attenuation from the Kaiser formula, beta from the attenuation).

def _kaiser_window(numtaps, width, fs):
    attenuation = scipy.signal.kaiser_atten(numtaps, width / (fs / 2))
    return scipy.signal.windows.kaiser(numtaps, scipy.signal.kaiser_beta(attenuation))

#----------------------------------------------------------------------------
# Low-pass FIR filter of `numtaps` taps for `cutoff` with transition band `width` at sampling rate
# `fs` (paper appendix C). Separable filters are scipy's Kaiser-windowed sinc ([numtaps]); radial
# ones (config R's rotation-equivariant down-sampling) are the jinc times the outer product of the
# Kaiser window, normalised to unit DC gain ([numtaps, numtaps]). numtaps 1 = no filter (None).

def design_lowpass_filter(numtaps, cutoff, width, fs, radial=False):
    if numtaps < 1:
        raise ValueError(f'design_lowpass_filter: numtaps must be at least 1, got {numtaps}')
    if numtaps == 1:
        return None
    if not radial:
        return torch.as_tensor(scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs), dtype=torch.float32)
    taps = (np.arange(numtaps) - (numtaps - 1) / 2) / fs # Tap positions in units of length.
    r = np.sqrt(taps[:, None] ** 2 + taps[None, :] ** 2) # [numtaps, numtaps]
    window = _kaiser_window(numtaps, width, fs)
    f = _jinc_lowpass(r, cutoff) * window[:, None] * window[None, :]
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)

#----------------------------------------------------------------------------
# Integer ratio between two sampling rates; a ValueError names the rates when it is not one.

def _rate_ratio(high_rate, low_rate):
    ratio = int(np.rint(high_rate / low_rate))
    if low_rate * ratio != high_rate:
        raise ValueError(f'sampling rate {high_rate:g} is not an integer multiple of {low_rate:g}')
    return ratio

#----------------------------------------------------------------------------
# Padding [x0, x1, y0, y1] that filtered_lrelu applies to the up-sampled conv output so that its
# result has exactly out_size samples. Along one axis the conv ("full", padding k - 1) gives
# n = in_size + k - 1 samples, zero insertion n * up, the two FIR filters remove taps - 1 each and
# decimation by `down` needs (out_size - 1) * down + 1: the total padding is the difference. The low
# side gets half of it plus up / 2, which puts each input sample at the centre of its up-sampled cell.

def _alias_free_padding(in_size, out_size, conv_kernel, up, down, up_taps, down_taps):
    needed = (out_size - 1) * down + 1 + (up_taps - 1) + (down_taps - 1) # [x, y]
    total = needed - (in_size + conv_kernel - 1) * up # [x, y]
    low = (total + up) // 2
    high = total - low
    return [int(low[0]), int(high[0]), int(low[1]), int(high[1])]

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

        # Resampling around the nonlinearity: up by up_factor to the temporary rate, down by
        # down_factor to the output rate, each with a low-pass of filter_size taps per unit of factor
        # (none where the factor is 1, nor in ToRGB).
        self.up_factor = _rate_ratio(self.tmp_sampling_rate, in_sampling_rate)
        self.down_factor = _rate_ratio(self.tmp_sampling_rate, out_sampling_rate)
        self.up_taps = 1 if (is_torgb or self.up_factor == 1) else filter_size * self.up_factor
        self.down_taps = 1 if (is_torgb or self.down_factor == 1) else filter_size * self.down_factor
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer('up_filter', design_lowpass_filter(numtaps=self.up_taps, cutoff=in_cutoff,
            width=in_half_width * 2, fs=self.tmp_sampling_rate))
        self.register_buffer('down_filter', design_lowpass_filter(numtaps=self.down_taps, cutoff=out_cutoff,
            width=out_half_width * 2, fs=self.tmp_sampling_rate, radial=self.down_radial))
        self.padding = _alias_free_padding(self.in_size, self.out_size, self.conv_kernel,
            self.up_factor, self.down_factor, self.up_taps, self.down_taps)

    def forward(self, x, w, noise_mode='random', force_fp32=False, update_emas=False):
        if noise_mode not in ('random', 'const', 'none'): # Only checked: StyleGAN3 layers have no noise.
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        misc.assert_shape(x, [None, self.in_channels, int(self.in_size[1]), int(self.in_size[0])]) # [NCHW]
        misc.assert_shape(w, [x.shape[0], self.w_dim]) # [NW]

        # The input's mean square is tracked (magnitude_ema); its inverse root is the input gain.
        if update_emas:
            with torch.autograd.profiler.record_function('update_magnitude_ema'):
                mean_square = x.detach().to(torch.float32).square().mean()
                self.magnitude_ema.copy_(torch.lerp(mean_square, self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()

        # Styles; ToRGB is not demodulated, so its styles carry the equalised-lr factor 1 / sqrt(fan-in).
        styles = self.affine(w) # [NI]
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * self.conv_kernel ** 2))

        # Modulated conv ("full" padding), then bias, resampling, leaky ReLU and clamp in one op.
        use_fp16 = self.use_fp16 and not force_fp32 and x.device.type == 'cuda'
        dtype = torch.float16 if use_fp16 else torch.float32
        gain, slope = (1, 1) if self.is_torgb else (np.sqrt(2), 0.2)
        x = modulated_conv2d(x=x.to(dtype), w=self.weight, s=styles, demodulate=not self.is_torgb,
            padding=self.conv_kernel - 1, input_gain=input_gain)
        x = filtered_lrelu.filtered_lrelu(x=x, fu=self.up_filter, fd=self.down_filter, b=self.bias.to(dtype),
            up=self.up_factor, down=self.down_factor, padding=self.padding, gain=gain, slope=slope, clamp=self.conv_clamp)
        misc.assert_shape(x, [None, self.out_channels, int(self.out_size[1]), int(self.out_size[0])]) # [NCHW]
        assert x.dtype == dtype
        return x

    def extra_repr(self):
        return (f'w_dim={self.w_dim:d}, is_torgb={self.is_torgb}, is_critically_sampled={self.is_critically_sampled}, '
            f'use_fp16={self.use_fp16}, in_sampling_rate={self.in_sampling_rate:g}, out_sampling_rate={self.out_sampling_rate:g}, '
            f'in_cutoff={self.in_cutoff:g}, out_cutoff={self.out_cutoff:g}, in_half_width={self.in_half_width:g}, '
            f'out_half_width={self.out_half_width:g}, in_size={list(self.in_size)}, out_size={list(self.out_size)}, '
            f'in_channels={self.in_channels:d}, out_channels={self.out_channels:d}')

#----------------------------------------------------------------------------
# Geometric interpolation first * (last / first)^t between two positive values, t in [0, 1].

def _geometric_ramp(first, last, t):
    return first * (last / first) ** t

#----------------------------------------------------------------------------
# Per-layer filter parameters of the synthesis network (paper sec. 3.2 and fig. 4): entry i describes
# the output of layer L<i> (entry 0 also the Fourier-feature input). Returns cutoffs f_c, stopbands
# f_t, sampling rates s, transition half-widths f_h, sizes and channels, each [num_layers + 1].

def synthesis_layer_schedule(img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
        first_cutoff, first_stopband, last_stopband_rel, margin_size):
    # f_c and f_t rise geometrically from the first layer's values and stay at the last ones (f_c = Nyquist
    # of the image, f_t = f_c * last_stopband_rel) over the num_critical critically sampled layers.
    t = np.clip(np.arange(num_layers + 1) / (num_layers - num_critical), None, 1)
    cutoffs = _geometric_ramp(first_cutoff, img_resolution / 2, t)
    stopbands = _geometric_ramp(first_stopband, img_resolution / 2 * last_stopband_rel, t)

    # Sampling rate: the smallest power of two whose Nyquist reaches f_t, capped at the image resolution;
    # the transition band runs from f_c to f_t, or to Nyquist where the rate had to be rounded up.
    sampling_rates = 2.0 ** np.ceil(np.log2(np.minimum(2 * stopbands, img_resolution)))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs

    # Sizes: a margin on each side, except the last two entries, which are exactly the image. Channels
    # fall as 1 / f_c (capped at channel_max); the last entry is the image's channels.
    sizes = np.concatenate([sampling_rates[:-2] + 2 * margin_size, np.full(2, float(img_resolution))])
    channels = np.concatenate([np.rint(np.minimum((channel_base / 2) / cutoffs[:-1], channel_max)), [float(img_channels)]])
    return cutoffs, stopbands, sampling_rates, half_widths, sizes, channels

#----------------------------------------------------------------------------
# Entry k of the schedule as SynthesisLayer's in_* or out_* keywords (prefix 'in_' or 'out_').

def _schedule_entry(schedule, k, prefix):
    as_int = ('channels', 'size', 'sampling_rate')
    return {prefix + key: (int(values[k]) if key in as_int else values[k]) for key, values in schedule.items()}

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

        # The input produces schedule entry 0; layer idx turns entry max(idx - 1, 0) into entry idx.
        self.input = SynthesisInput(w_dim=w_dim, channels=int(channels[0]), size=int(sizes[0]),
            sampling_rate=sampling_rates[0], bandwidth=cutoffs[0])
        self.layer_names = []
        schedule = dict(channels=channels, size=sizes, sampling_rate=sampling_rates, cutoff=cutoffs, half_width=half_widths)
        for idx in range(num_layers + 1):
            layer = SynthesisLayer(w_dim=w_dim, is_torgb=(idx == num_layers),
                is_critically_sampled=(idx >= num_layers - num_critical),
                use_fp16=bool(sampling_rates[idx] * 2 ** num_fp16_res > img_resolution), # Only the top num_fp16_res rates.
                **_schedule_entry(schedule, max(idx - 1, 0), 'in_'), **_schedule_entry(schedule, idx, 'out_'), **layer_kwargs)
            name = f'L{idx}_{int(sizes[idx])}_{int(channels[idx])}'
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
