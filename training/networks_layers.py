# Building blocks shared by the StyleGAN2 generator (training/networks.py) and discriminator
# (training/networks_discriminator.py): equalised-learning-rate layers, modulated convolution and
# the mapping network, with the numerics of the StyleGAN2-ADA networks. See docs/networks.md.

import numpy as np
import torch

from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import bias_act
from torch_utils.ops import conv2d_resample
from torch_utils.ops import fma
from torch_utils.ops import upfirdn2d

#----------------------------------------------------------------------------
# Divide each row by the root of its mean square (pixel norm along `dim`).

@misc.profiled_function
def normalize_2nd_moment(x, dim=1, eps=1e-8):
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()

#----------------------------------------------------------------------------
# Float16 only for blocks flagged use_fp16, on CUDA (or anywhere when fp16_on_cpu is set).

def _block_dtype(use_fp16, force_fp32, fp16_on_cpu, device):
    if use_fp16 and not force_fp32 and (device.type == 'cuda' or fp16_on_cpu):
        return torch.float16
    return torch.float32

#----------------------------------------------------------------------------
# Modulated convolution (StyleGAN2 paper, Eqs. 1-3): weights scaled per sample by `styles`,
# optionally demodulated by the inverse L2 norm of each output filter. Fused: one grouped
# convolution with the batch folded into groups; not fused: scale the activations instead.

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

    # Per-sample weights and demodulation coefficients.
    w = None
    dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1) # [NOIkk]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() # [NO]
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1) # [NOIkk]

    # Not fused: scale activations, convolve with the shared weights, scale again.
    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample.conv2d_resample(x=x, w=weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight)
        if demodulate and noise is not None:
            x = fma.fma(x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1), noise.to(x.dtype))
        elif demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        elif noise is not None:
            x = x.add_(noise.to(x.dtype))
        return x

    # Fused: the batch becomes the groups of a single convolution.
    with misc.suppress_tracer_warnings():
        batch_size = int(batch_size)
    x = x.reshape(1, -1, *x.shape[2:]) # [1,NI,H,W]
    w = w.reshape(-1, in_channels, kh, kw) # [NO,I,k,k]
    x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding, groups=batch_size, flip_weight=flip_weight)
    x = x.reshape(batch_size, -1, *x.shape[2:]) # [NOHW]
    if noise is not None:
        x = x.add_(noise)
    return x

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
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        flip_weight = (self.up == 1) # The original's convention (faster); trained weights depend on it.
        x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=self.resample_filter, up=self.up, down=self.down, padding=self.padding, flip_weight=flip_weight)
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self):
        return f'in_channels={self.in_channels}, out_channels={self.out_channels}, activation={self.activation}, up={self.up}, down={self.down}'

#----------------------------------------------------------------------------
# Mapping network z (and class label c) -> w (StyleGAN paper, Sec. 2), with the tracked
# average w_avg used for the truncation trick.

@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
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
