# The StyleGAN2 networks (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN",
# CVPR 2020) in one self-contained module: layers, mapping, synthesis, generator and discriminator, with
# the constructor keywords, parameter and buffer names and numerics of the StyleGAN2-ADA networks, so that
# their pickles convert into these classes. It imports only torch, numpy, torch_utils and dnnlib, so the
# source a pickle embeds is all the code its networks run. See docs/networks.md.

import numpy as np
import torch

from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import bias_act
from torch_utils.ops import conv2d_resample
from torch_utils.ops import demod_bias_act
from torch_utils.ops import fma
from torch_utils.ops import upfirdn2d
from torch_utils.ops import weight_cast

#----------------------------------------------------------------------------
# Divide each row by the root of its mean square (pixel norm along `dim`).

@misc.profiled_function
def normalize_2nd_moment(x, dim=1, eps=1e-8):
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()

#----------------------------------------------------------------------------
# The dtype of a block flagged use_fp16 (mixed precision), float32 for the others:
# mixed_dtype 'float16' = float16 on CUDA (or anywhere when fp16_on_cpu is set), float32 elsewhere;
# 'bfloat16' = bfloat16 on every device (the CPU ones with bfloat16 instructions are fast at it).

MIXED_DTYPES = {'float16': torch.float16, 'bfloat16': torch.bfloat16}

def _block_dtype(use_fp16, force_fp32, fp16_on_cpu, device, mixed_dtype='float16'):
    if not use_fp16 or force_fp32:
        return torch.float32
    if mixed_dtype == 'bfloat16':
        return torch.bfloat16
    if device.type == 'cuda' or fp16_on_cpu:
        return torch.float16
    return torch.float32

#----------------------------------------------------------------------------
# Checks a mixed_dtype constructor argument.

def _check_mixed_dtype(mixed_dtype):
    if mixed_dtype not in MIXED_DTYPES:
        raise ValueError(f'mixed_dtype must be one of {", ".join(map(repr, MIXED_DTYPES))}, not {mixed_dtype!r}')
    return mixed_dtype

#----------------------------------------------------------------------------
# Modulated convolution (StyleGAN2 paper, Eqs. 1-3): weights scaled per sample by `styles`,
# optionally demodulated by the inverse L2 norm of each output filter. Fused: one grouped
# convolution with the batch folded into groups; not fused: scale the activations instead.
# In reduced precision (or with exact_fp32=False) a 1x1 kernel without resampling is one batched
# matrix product with the per-sample weights (tiny at 1x1), whatever fused_modconv says.

@misc.profiled_function
def modulated_conv2d(
    x,                  # Input activations: [batch_size, in_channels, in_height, in_width].
    weight,             # Base weights: [out_channels, in_channels, kernel_height, kernel_width].
    styles,             # Modulation coefficients: [batch_size, in_channels].
    noise=None,         # Added after demodulation: broadcastable to the output, or None.
    up=1,               # Integer upsampling factor.
    down=1,             # Integer downsampling factor.
    padding=0,          # Padding of the upsampled image.
    resample_filter=None, # Low-pass filter for resampling (from upfirdn2d.setup_filter()).
    demodulate=True,    # Apply weight demodulation?
    flip_weight=True,   # False = convolution, True = correlation (matches torch.nn.functional.conv2d).
    fused_modconv=True, # One grouped convolution instead of activation scaling?
    exact_fp32=True,    # Float32 x: the original's arithmetic, bit for bit; False = the reduced-precision forms.
    bias_act_args=None, # dict(b=, act=, gain=, clamp=): apply bias_act to the result (same values; one step with
                        # the demodulation and noise in the unfused reduced-precision form). None = return before it.
):
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    misc.assert_shape(weight, [out_channels, in_channels, kh, kw]) # [OIkk]
    misc.assert_shape(x, [batch_size, in_channels, None, None]) # [NIHW]
    misc.assert_shape(styles, [batch_size, in_channels]) # [NI]

    # Keep float16 in range: divide weights and styles by their largest magnitudes.
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / np.sqrt(in_channels * kh * kw) / weight.norm(float('inf'), dim=[1, 2, 3], keepdim=True)) # max_Ikk
        styles = styles / styles.norm(float('inf'), dim=1, keepdim=True) # max_I

    # 1x1 without resampling: one batched matrix product with the per-sample weights.
    reduced_forms = (x.dtype != torch.float32 or not exact_fp32)
    if reduced_forms and kh == kw == 1 and up == down == 1 and padding == 0:
        return _bias_act(_modulated_conv1x1(x, weight, styles, noise, demodulate), bias_act_args)

    # Per-sample weights and demodulation coefficients. Without fusion only the coefficients are needed:
    # sum_ik (W_oik s_i)^2 = sum_i s_i^2 sum_k W_oik^2, a small matrix product instead of the [NOIkk]
    # tensor (the reduced-precision form; float32 keeps the original's formula, bit for bit).
    w = None
    dcoefs = None
    weight_x = None # The shared weights in x's dtype.
    if demodulate and not fused_modconv and reduced_forms:
        weight_x, tap_sums = weight_cast.cast_with_tap_sums(weight, x.dtype) # One pass on the CPU.
        dcoefs = (styles.square() @ tap_sums.t() + 1e-8).rsqrt() # [NO]
    elif demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1) # [NOIkk]
        if demodulate:
            dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() # [NO]
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1) # [NOIkk]

    # Not fused: scale activations, convolve with the shared weights, scale again.
    if not fused_modconv:
        if reduced_forms: # x * styles, the backward in one pass (its sum in another order than torch's).
            x = demod_bias_act.scale_channels(x, styles)
        else:
            x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        weight_x = weight.to(x.dtype) if weight_x is None else weight_x
        x = conv2d_resample.conv2d_resample(x=x, w=weight_x, f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight)
        if demodulate and reduced_forms and bias_act_args is not None:
            return demod_bias_act.demod_bias_act(x, dcoefs, noise, **bias_act_args)
        if demodulate and noise is not None:
            x = fma.fma(x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1), noise.to(x.dtype))
        elif demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        elif noise is not None:
            x = x.add_(noise.to(x.dtype))
        return _bias_act(x, bias_act_args)

    # Fused: the batch becomes the groups of a single convolution.
    with misc.suppress_tracer_warnings():
        batch_size = int(batch_size)
    x = x.reshape(1, -1, *x.shape[2:]) # [1,NI,H,W]
    w = w.reshape(-1, in_channels, kh, kw) # [NO,I,k,k]
    x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding, groups=batch_size, flip_weight=flip_weight)
    x = x.reshape(batch_size, -1, *x.shape[2:]) # [NOHW]
    if noise is not None:
        x = x.add_(noise)
    return _bias_act(x, bias_act_args)

# bias_act on a modulated convolution's output (a temporary, so in place), or x as it is.
def _bias_act(x, bias_act_args):
    if bias_act_args is None:
        return x
    args = dict(bias_act_args)
    return bias_act.bias_act(x, args.pop('b').to(x.dtype), **args, inplace=True)

#----------------------------------------------------------------------------
# Modulated 1x1 convolution as a batched matrix product: y_n = (W * s_n [* d_n]) x_n per sample,
# computed in x's layout (channels_last: pixels x channels; otherwise channels x pixels).

def _modulated_conv1x1(x, weight, styles, noise, demodulate):
    batch_size, in_channels, height, width = x.shape
    w = weight.reshape(1, -1, in_channels) * styles.unsqueeze(1) # [NOI]
    if demodulate:
        w = w * (w.square().sum(dim=2, keepdim=True) + 1e-8).rsqrt() # [NOI]
    w = w.to(x.dtype)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        y = torch.bmm(x.permute(0, 2, 3, 1).reshape(batch_size, -1, in_channels), w.transpose(1, 2)) # [N,HW,O]
        y = y.reshape(batch_size, height, width, -1).permute(0, 3, 1, 2) # [NOHW], channels_last
    else:
        y = torch.bmm(w, x.reshape(batch_size, in_channels, -1)).reshape(batch_size, -1, height, width) # [NOHW]
    if noise is not None:
        y = y.add_(noise.to(x.dtype))
    return y

#----------------------------------------------------------------------------
# Fully connected layer with equalised learning rate: weights stored as N(0,1)/lr_multiplier
# and scaled at run time by lr_multiplier/sqrt(in_features).

@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    def __init__(self,
        in_features,            # Number of input features.
        out_features,           # Number of output features.
        bias            = True, # Apply an additive bias before the activation?
        activation      = 'linear', # Activation function name (see bias_act.activation_funcs).
        lr_multiplier   = 1,    # Learning rate multiplier.
        bias_init       = 0,    # Initial value of the bias.
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], np.float32(bias_init))) if bias else None
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
        x = x.matmul(w.t())
        return bias_act.bias_act(x, b, act=self.activation)

    def extra_repr(self):
        return f'in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}'

#----------------------------------------------------------------------------
# Convolution layer with equalised learning rate, optional resampling and output clamping.

@persistence.persistent_class
class Conv2dLayer(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Number of input channels.
        out_channels,                   # Number of output channels.
        kernel_size,                    # Width and height of the convolution kernel.
        bias            = True,         # Apply an additive bias before the activation?
        activation      = 'linear',     # Activation function name.
        up              = 1,            # Integer upsampling factor.
        down            = 1,            # Integer downsampling factor.
        resample_filter = [1,3,3,1],    # Low-pass filter for resampling.
        conv_clamp      = None,         # Clamp the output to +-X; None = no clamping.
        channels_last   = False,        # Store the weight in channels_last memory format?
        trainable       = True,         # False = weight and bias are buffers (frozen layer).
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias) if bias is not None else None
        else:
            self.register_buffer('weight', weight)
            if bias is not None:
                self.register_buffer('bias', bias)
            else:
                self.bias = None

    def forward(self, x, gain=1):
        w = weight_cast.scaled_cast(self.weight, self.weight_gain, x.dtype) # (weight * gain) in x's dtype, one pass on the CPU.
        b = self.bias.to(x.dtype) if self.bias is not None else None
        flip_weight = (self.up == 1) # The original's convention (faster); trained weights depend on it.
        x = conv2d_resample.conv2d_resample(x=x, w=w, f=self.resample_filter, up=self.up, down=self.down, padding=self.padding, flip_weight=flip_weight)
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp, inplace=True) # x: the convolution's new output.

    def extra_repr(self):
        return f'in_channels={self.in_channels}, out_channels={self.out_channels}, activation={self.activation}, up={self.up}, down={self.down}'

#----------------------------------------------------------------------------
# Mapping network z (and class label c) -> w (StyleGAN paper, Sec. 2), with the tracked
# average w_avg used for the truncation trick.

@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    rank_local_buffers = ('w_avg',) # Each process tracks w_avg from its own samples (see misc.rank_local_buffer_names).

    def __init__(self,
        z_dim,                      # Input latent (Z) dimensionality, 0 = no latent.
        c_dim,                      # Conditioning label (C) dimensionality, 0 = no label.
        w_dim,                      # Intermediate latent (W) dimensionality.
        num_ws,                     # Number of copies of w to output; None = return [N, w_dim].
        num_layers      = 8,        # Number of mapping layers.
        embed_features  = None,     # Label embedding dimensionality; None = w_dim.
        layer_features  = None,     # Hidden layer dimensionality; None = w_dim.
        activation      = 'lrelu',  # Activation function name.
        lr_multiplier   = 0.01,     # Learning rate multiplier of the mapping layers.
        w_avg_beta      = 0.995,    # Decay of the running average of w; None = do not track.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features_list = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features_list[idx], features_list[idx + 1], activation=activation, lr_multiplier=lr_multiplier)
            setattr(self, f'fc{idx}', layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    # update_emas: True/False = update w_avg or not; None = update when in training mode,
    # unless skip_w_avg_update (the StyleGAN2-ADA keyword) is set.
    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=None, skip_w_avg_update=False):
        with torch.autograd.profiler.record_function('mapping'):
            # Embed, normalise and concatenate the inputs.
            x = None
            if self.z_dim > 0:
                misc.assert_shape(z, [None, self.z_dim])
                x = normalize_2nd_moment(z.to(torch.float32))
            if self.c_dim > 0:
                misc.assert_shape(c, [None, self.c_dim])
                y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
                x = torch.cat([x, y], dim=1) if x is not None else y

            # Main layers.
            for idx in range(self.num_layers):
                x = getattr(self, f'fc{idx}')(x)

            # Track the average of w.
            if update_emas is None:
                update_emas = self.training and not skip_w_avg_update
            if update_emas and self.w_avg_beta is not None:
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

            # Broadcast, then apply truncation toward w_avg.
            if self.num_ws is not None:
                x = x.unsqueeze(1).repeat([1, self.num_ws, 1]) # [NWC]
            if truncation_psi != 1:
                if self.w_avg_beta is None:
                    raise ValueError('Truncation needs w_avg, which this mapping network does not track (w_avg_beta=None)')
                if self.num_ws is None or truncation_cutoff is None:
                    x = self.w_avg.lerp(x, truncation_psi)
                else:
                    x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
            return x

    def extra_repr(self):
        return f'z_dim={self.z_dim:d}, c_dim={self.c_dim:d}, w_dim={self.w_dim:d}, num_ws={self.num_ws}'

#----------------------------------------------------------------------------
# Block resolutions 4, 8, ..., img_resolution of the synthesis network and the discriminator.

def _block_resolutions(img_resolution):
    if not isinstance(img_resolution, int) or img_resolution < 4 or img_resolution & (img_resolution - 1) != 0:
        raise ValueError(f'img_resolution must be a power of two >= 4, not {img_resolution!r}')
    return [2 ** i for i in range(2, int(np.log2(img_resolution)) + 1)]

#----------------------------------------------------------------------------
# Modulated 3x3 convolution of the synthesis network, with per-pixel noise of learned
# strength (StyleGAN2 paper, Fig. 2d) and bias + activation.

@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Number of input channels.
        out_channels,                   # Number of output channels.
        w_dim,                          # Intermediate latent (W) dimensionality.
        resolution,                     # Resolution of this layer's output.
        kernel_size     = 3,            # Convolution kernel size.
        up              = 1,            # Integer upsampling factor.
        use_noise       = True,         # Enable noise input?
        activation      = 'lrelu',      # Activation function name.
        resample_filter = [1,3,3,1],    # Low-pass filter for upsampling.
        conv_clamp      = None,         # Clamp the output to +-X; None = no clamping.
        channels_last   = False,        # Store the weight in channels_last memory format?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode='random', fused_modconv=True, gain=1, exact_fp32=True):
        if noise_mode not in ('random', 'const', 'none'):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', not {noise_mode!r}")
        in_resolution = self.resolution // self.up
        misc.assert_shape(x, [None, self.weight.shape[1], in_resolution, in_resolution])
        styles = self.affine(w)

        noise = None
        if self.use_noise and noise_mode == 'random':
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == 'const':
            noise = self.noise_const * self.noise_strength

        flip_weight = (self.up == 1) # The original's convention (faster); trained weights depend on it.
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return modulated_conv2d(x=x, weight=self.weight, styles=styles, noise=noise, up=self.up, padding=self.padding,
            resample_filter=self.resample_filter, flip_weight=flip_weight, fused_modconv=fused_modconv, exact_fp32=exact_fp32,
            bias_act_args=dict(b=self.bias, act=self.activation, gain=act_gain, clamp=act_clamp))

    def extra_repr(self):
        return f'in_channels={self.in_channels}, out_channels={self.out_channels}, resolution={self.resolution}, up={self.up}'

#----------------------------------------------------------------------------
# Modulated 1x1 convolution to RGB, without demodulation.

@persistence.persistent_class
class ToRGBLayer(torch.nn.Module):
    def __init__(self,
        in_channels,                # Number of input channels.
        out_channels,               # Number of output (image) channels.
        w_dim,                      # Intermediate latent (W) dimensionality.
        kernel_size     = 1,        # Convolution kernel size.
        conv_clamp      = None,     # Clamp the output to +-X; None = no clamping.
        channels_last   = False,    # Store the weight in channels_last memory format?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))

    def forward(self, x, w, fused_modconv=True, exact_fp32=True):
        misc.assert_shape(x, [None, self.in_channels, None, None])
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, demodulate=False, fused_modconv=fused_modconv, exact_fp32=exact_fp32)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp, inplace=True)

    def extra_repr(self):
        return f'in_channels={self.in_channels}, out_channels={self.out_channels}'

#----------------------------------------------------------------------------
# One resolution of the synthesis network: (const input |) conv0 with 2x upsampling, conv1,
# and ToRGB, in the 'orig', 'skip' or 'resnet' architecture (StyleGAN2 paper, Fig. 7).

@persistence.persistent_class
class SynthesisBlock(torch.nn.Module):
    mixed_dtype = 'float16' # Instances pickled before mixed_dtype existed.

    def __init__(self,
        in_channels,                        # Number of input channels, 0 = first block (const input).
        out_channels,                       # Number of output channels.
        w_dim,                              # Intermediate latent (W) dimensionality.
        resolution,                         # Resolution of this block.
        img_channels,                       # Number of output color channels.
        is_last,                            # Is this the last block?
        architecture        = 'skip',       # Architecture: 'orig', 'skip', 'resnet'.
        resample_filter     = [1,3,3,1],    # Low-pass filter for upsampling.
        conv_clamp          = None,         # Clamp conv outputs to +-X; None = no clamping.
        use_fp16            = False,        # Use mixed precision in this block (see mixed_dtype)?
        fp16_channels_last  = False,        # Use channels_last memory format with mixed precision?
        mixed_dtype         = 'float16',    # Mixed-precision dtype: 'float16' (CUDA only) or 'bfloat16' (any device).
        fused_modconv_default = None,       # None = fused in eval mode for float32 or batch 1 (StyleGAN2-ADA); True, False or 'inference_only'.
        **layer_kwargs,                     # Arguments for SynthesisLayer.
    ):
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', not {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.mixed_dtype = _check_mixed_dtype(mixed_dtype)
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        common = dict(w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp, channels_last=self.channels_last)

        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        if in_channels != 0:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, resample_filter=resample_filter, **common, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **common, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == 'skip':
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp, channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == 'resnet':
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                resample_filter=resample_filter, channels_last=self.channels_last)

    def _fused_modconv(self, dtype, batch_size, exact_fp32=True):
        mode = self.fused_modconv_default
        if mode is None:
            return (not self.training) and ((dtype == torch.float32 and exact_fp32) or batch_size == 1)
        if mode == 'inference_only':
            return not self.training
        return bool(mode)

    # exact_fp32: True = a float32 block computes what the original's float32 networks compute, bit for
    # bit; False (set by SynthesisNetwork when other blocks run in reduced precision) = it takes the
    # reduced-precision blocks' faster forms (unfused in eval mode, factored demodulation).
    def forward(self, x, img, ws, force_fp32=False, fp16_on_cpu=False, fused_modconv=None, update_emas=False, exact_fp32=True, **layer_kwargs):
        _ = update_emas # Accepted for the StyleGAN3-era call convention; nothing to update here.
        misc.assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        w_iter = iter(ws.unbind(dim=1))
        dtype = _block_dtype(self.use_fp16, force_fp32, fp16_on_cpu, ws.device, self.mixed_dtype)
        memory_format = torch.channels_last if self.channels_last and dtype != torch.float32 else torch.contiguous_format
        if fused_modconv is None:
            with misc.suppress_tracer_warnings():
                fused_modconv = self._fused_modconv(dtype, int(ws.shape[0]), exact_fp32)
        layer_kwargs['exact_fp32'] = exact_fp32

        # Input: the learned constant, or the previous block's features.
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format)
            x = x.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1]) # [NCHW]
        else:
            misc.assert_shape(x, [None, self.in_channels, self.resolution // 2, self.resolution // 2])
            x = x.to(dtype=dtype, memory_format=memory_format)

        # Main layers.
        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        elif self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=np.sqrt(0.5), **layer_kwargs)
            x = y.add_(x)
        else:
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)

        # Image: upsample the previous one and add this block's ToRGB output.
        if img is not None:
            misc.assert_shape(img, [None, self.img_channels, self.resolution // 2, self.resolution // 2])
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == 'skip':
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv, exact_fp32=exact_fp32)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img.add_(y) if img is not None else y

        assert x.dtype == dtype
        assert img is None or img.dtype == torch.float32
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution:d}, architecture={self.architecture}'

#----------------------------------------------------------------------------
# Synthesis network: one block per resolution 4, 8, ..., img_resolution; channels
# min(channel_base / res, channel_max); float16 in the top num_fp16_res resolutions.

@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    def __init__(self,
        w_dim,                      # Intermediate latent (W) dimensionality.
        img_resolution,             # Output image resolution (a power of two).
        img_channels,               # Number of color channels.
        channel_base    = 32768,    # Overall multiplier for the number of channels.
        channel_max     = 512,      # Maximum number of channels in any layer.
        num_fp16_res    = 0,        # Use mixed precision (see mixed_dtype) for the N highest resolutions.
        **block_kwargs,             # Arguments for SynthesisBlock.
    ):
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.block_resolutions = _block_resolutions(img_resolution)
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res // 2] if res > 4 else 0
            is_last = (res == img_resolution)
            block = SynthesisBlock(in_channels, channels_dict[res], w_dim=w_dim, resolution=res,
                img_channels=img_channels, is_last=is_last, use_fp16=(res >= fp16_resolution), **block_kwargs)
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f'b{res}', block)

    def forward(self, ws, **block_kwargs):
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32)
        exact_fp32 = not self.runs_mixed(ws.device, block_kwargs.get('force_fp32', False), block_kwargs.get('fp16_on_cpu', False))

        # Each block takes its convs' ws plus the next one for ToRGB (shared with the next conv0).
        block_ws = []
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            block_ws.append(ws.narrow(1, w_idx, block.num_conv + block.num_torgb))
            w_idx += block.num_conv

        x = img = None
        for res, cur_ws in zip(self.block_resolutions, block_ws):
            with torch.autograd.profiler.record_function(f'synthesis.b{res}'):
                x, img = getattr(self, f'b{res}')(x, img, cur_ws, exact_fp32=exact_fp32, **block_kwargs)
        return img

    # Whether any block runs in reduced precision with these forward arguments on this device.
    def runs_mixed(self, device, force_fp32=False, fp16_on_cpu=False):
        return any(_block_dtype(block.use_fp16, force_fp32, fp16_on_cpu, device, block.mixed_dtype) != torch.float32
            for block in (getattr(self, f'b{res}') for res in self.block_resolutions))

    def extra_repr(self):
        return f'w_dim={self.w_dim:d}, num_ws={self.num_ws:d}, img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d}'

#----------------------------------------------------------------------------
# StyleGAN2 generator: mapping network followed by synthesis network.

@persistence.persistent_class
class Generator(torch.nn.Module):
    def __init__(self,
        z_dim,                      # Input latent (Z) dimensionality.
        c_dim,                      # Conditioning label (C) dimensionality, 0 = unconditional.
        w_dim,                      # Intermediate latent (W) dimensionality.
        img_resolution,             # Output resolution.
        img_channels,               # Number of output color channels.
        mapping_kwargs  = {},       # Arguments for MappingNetwork.
        synthesis_kwargs = {},      # Arguments for SynthesisNetwork.
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

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=None, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, **synthesis_kwargs)

#----------------------------------------------------------------------------
# One resolution of the discriminator: (fromRGB,) conv0 3x3, conv1 3x3 with 2x downsampling,
# and a 1x1 downsampling skip for 'resnet'. Layers before freeze_layers are frozen.

@persistence.persistent_class
class DiscriminatorBlock(torch.nn.Module):
    mixed_dtype = 'float16' # Instances pickled before mixed_dtype existed.

    def __init__(self,
        in_channels,                        # Number of input channels, 0 = first block.
        tmp_channels,                       # Number of intermediate channels.
        out_channels,                       # Number of output channels.
        resolution,                         # Resolution of this block.
        img_channels,                       # Number of input color channels.
        first_layer_idx,                    # Index of the first layer, counted over the whole discriminator.
        architecture        = 'resnet',     # Architecture: 'orig', 'skip', 'resnet'.
        activation          = 'lrelu',      # Activation function name.
        resample_filter     = [1,3,3,1],    # Low-pass filter for downsampling.
        conv_clamp          = None,         # Clamp conv outputs to +-X; None = no clamping.
        use_fp16            = False,        # Use mixed precision in this block (see mixed_dtype)?
        fp16_channels_last  = False,        # Use channels_last memory format with mixed precision?
        mixed_dtype         = 'float16',    # Mixed-precision dtype: 'float16' (CUDA only) or 'bfloat16' (any device).
        freeze_layers       = 0,            # Freeze the first N layers of the discriminator.
    ):
        if in_channels not in (0, tmp_channels):
            raise ValueError(f'in_channels must be 0 or tmp_channels ({tmp_channels}), not {in_channels}')
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', not {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.mixed_dtype = _check_mixed_dtype(mixed_dtype)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))

        # Layers are numbered as they are created; those before freeze_layers are not trainable.
        self.num_layers = 0
        def next_trainable():
            trainable = (first_layer_idx + self.num_layers >= freeze_layers)
            self.num_layers += 1
            return trainable
        common = dict(activation=activation, conv_clamp=conv_clamp, channels_last=self.channels_last)

        if in_channels == 0 or architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, trainable=next_trainable(), **common)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, trainable=next_trainable(), **common)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, down=2, trainable=next_trainable(), resample_filter=resample_filter, **common)
        if architecture == 'resnet':
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                trainable=next_trainable(), resample_filter=resample_filter, channels_last=self.channels_last)

    def forward(self, x, img, force_fp32=False, fp16_on_cpu=False, update_emas=False):
        _ = update_emas # Accepted for the StyleGAN3-era call convention.
        device = x.device if x is not None else img.device
        dtype = _block_dtype(self.use_fp16, force_fp32, fp16_on_cpu, device, self.mixed_dtype)
        memory_format = torch.channels_last if self.channels_last and dtype != torch.float32 else torch.contiguous_format

        # Input features from the previous block, plus fromRGB of the image.
        if x is not None:
            misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0 or self.architecture == 'skip':
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = upfirdn2d.downsample2d(img, self.resample_filter) if self.architecture == 'skip' else None

        # Main layers.
        if self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=np.sqrt(0.5))
            x = y.add_(x)
        else:
            x = self.conv0(x)
            x = self.conv1(x)

        assert x.dtype == dtype
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution:d}, architecture={self.architecture}'

#----------------------------------------------------------------------------
# Minibatch standard deviation (Progressive GAN paper, Sec. 3): split the batch into groups
# of min(group_size, N) samples (sample i in group i % (N/G)) and the channels into
# num_channels parts; append, for each part, the group's stddev averaged over channels and pixels.

@persistence.persistent_class
class MinibatchStdLayer(torch.nn.Module):
    def __init__(self,
        group_size,             # Samples per group; None = the whole minibatch.
        num_channels    = 1,    # Number of feature channels to append.
    ):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x):
        N, C, H, W = x.shape
        with misc.suppress_tracer_warnings():
            G = min(int(self.group_size), int(N)) if self.group_size is not None else int(N)
        F = self.num_channels
        c = C // F
        if N % G != 0 or C % F != 0:
            raise ValueError(f'Minibatch stddev needs the batch size ({N}) divisible by the group size ({G}) '
                f'and the channels ({C}) divisible by num_channels ({F})')

        y = x.reshape(G, -1, F, c, H, W)    # [GnFcHW] Split the batch into n groups of G, the channels into F parts.
        y = y - y.mean(dim=0)               # [GnFcHW] Subtract the group mean.
        y = y.square().mean(dim=0)          # [nFcHW]  Variance over the group.
        y = (y + 1e-8).sqrt()               # [nFcHW]  Stddev over the group.
        y = y.mean(dim=[2, 3, 4])           # [nF]     Average over channels and pixels.
        y = y.reshape(-1, F, 1, 1)          # [nF11]
        y = y.repeat(G, 1, H, W)            # [NFHW]   Replicate over the group and pixels.
        return torch.cat([x, y], dim=1)     # [NCHW]   Append as new channels.

    def extra_repr(self):
        return f'group_size={self.group_size}, num_channels={self.num_channels:d}'

#----------------------------------------------------------------------------
# Last discriminator block at 4x4: minibatch stddev, conv, fc, output, and the projection
# onto the label embedding `cmap` for conditional models (Miyato & Koyama 2018); optionally an
# auxiliary classifier on the fc features (AC-GAN, Odena et al. 2017).

@persistence.persistent_class
class DiscriminatorEpilogue(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Number of input channels.
        cmap_dim,                       # Dimensionality of the projected label, 0 = unconditional.
        resolution,                     # Resolution of this block.
        img_channels,                   # Number of input color channels.
        architecture        = 'resnet', # Architecture: 'orig', 'skip', 'resnet'.
        mbstd_group_size    = 4,        # Group size for minibatch stddev; None = the whole minibatch.
        mbstd_num_channels  = 1,        # Number of stddev features, 0 = no minibatch stddev.
        activation          = 'lrelu',  # Activation function name.
        conv_clamp          = None,     # Clamp conv outputs to +-X; None = no clamping.
        aux_dim             = 0,        # Class logits of the auxiliary classifier, 0 = none.
    ):
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', not {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.aux_dim = aux_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture

        if architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(group_size=mbstd_group_size, num_channels=mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * (resolution ** 2), in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)
        if aux_dim > 0:
            self.aux = FullyConnectedLayer(in_channels, aux_dim)

    # Logits [N, 1]; with return_aux also the auxiliary class logits [N, aux_dim].
    def forward(self, x, img, cmap, force_fp32=False, return_aux=False):
        _ = force_fp32 # The epilogue always runs in float32.
        misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == 'skip':
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            img = img.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            x = x + self.fromrgb(img)

        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = features = self.fc(x.flatten(1))
        x = self.out(x)

        # Projection discriminator: inner product with the label embedding.
        if self.cmap_dim > 0:
            misc.assert_shape(cmap, [None, self.cmap_dim])
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        assert x.dtype == torch.float32
        if return_aux:
            if self.aux_dim == 0:
                raise ValueError('return_aux needs a discriminator built with an auxiliary classifier (aux_classifier=True)')
            return x, self.aux(features)
        return x

    def extra_repr(self):
        return f'resolution={self.resolution:d}, architecture={self.architecture}'

#----------------------------------------------------------------------------
# StyleGAN2 discriminator: blocks from img_resolution down to 8, then the 4x4 epilogue;
# for c_dim > 0 a mapping network embeds the label into cmap.

@persistence.persistent_class
class Discriminator(torch.nn.Module):
    def __init__(self,
        c_dim,                          # Conditioning label (C) dimensionality, 0 = unconditional.
        img_resolution,                 # Input resolution.
        img_channels,                   # Number of input color channels.
        architecture        = 'resnet', # Architecture: 'orig', 'skip', 'resnet'.
        channel_base        = 32768,    # Overall multiplier for the number of channels.
        channel_max         = 512,      # Maximum number of channels in any layer.
        num_fp16_res        = 0,        # Use mixed precision (block_kwargs.mixed_dtype) for the N highest resolutions.
        conv_clamp          = None,     # Clamp conv outputs to +-X; None = no clamping.
        cmap_dim            = None,     # Dimensionality of the projected label; None = channels at 4x4.
        block_kwargs        = {},       # Arguments for DiscriminatorBlock.
        mapping_kwargs      = {},       # Arguments for MappingNetwork.
        epilogue_kwargs     = {},       # Arguments for DiscriminatorEpilogue.
        aux_classifier      = False,    # Also classify images into the c_dim classes (AC-GAN head; forward(..., return_aux=True)).
    ):
        if aux_classifier and c_dim == 0:
            raise ValueError('aux_classifier needs a conditional discriminator (c_dim > 0)')
        super().__init__()
        self.c_dim = c_dim
        self.aux_classifier = aux_classifier
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = _block_resolutions(img_resolution)[:0:-1]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        if cmap_dim is None:
            cmap_dim = channels_dict[4]
        if c_dim == 0:
            cmap_dim = 0
        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)

        cur_layer_idx = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res] if res < img_resolution else 0
            block = DiscriminatorBlock(in_channels, channels_dict[res], channels_dict[res // 2], resolution=res,
                first_layer_idx=cur_layer_idx, use_fp16=(res >= fp16_resolution), **block_kwargs, **common)
            setattr(self, f'b{res}', block)
            cur_layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels_dict[4], cmap_dim=cmap_dim, resolution=4,
            aux_dim=(c_dim if aux_classifier else 0), **epilogue_kwargs, **common)

    def forward(self, img, c, update_emas=False, return_aux=False, **block_kwargs):
        _ = update_emas # Accepted for the StyleGAN3-era call convention.
        misc.assert_shape(img, [None, self.img_channels, self.img_resolution, self.img_resolution])
        x = None
        for res in self.block_resolutions:
            with torch.autograd.profiler.record_function(f'discriminator.b{res}'):
                x, img = getattr(self, f'b{res}')(x, img, **block_kwargs)
        cmap = None
        if self.c_dim > 0:
            with torch.autograd.profiler.record_function('discriminator.mapping'):
                cmap = self.mapping(None, c)
        with torch.autograd.profiler.record_function('discriminator.epilogue'):
            return self.b4(x, img, cmap, return_aux=return_aux)

    def extra_repr(self):
        return f'c_dim={self.c_dim:d}, img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d}'

#----------------------------------------------------------------------------
