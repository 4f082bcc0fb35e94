# Demodulation, noise and bias + activation of a modulated convolution's output in one step:
#
#     demod_bias_act(x, d, noise, b, ...) = bias_act(x * d[:, :, None, None] + noise, b, ...)
#
# and the modulation of its input, scale_channels(x, s) = x * s[:, :, None, None], whose backward
# (dx and ds) is one pass too.
#
# StyleGAN2's synthesis layers in their unfused reduced-precision form (training, and generation in
# bfloat16) end with exactly this. On dense float32 / bfloat16 CPU tensors it runs as one C kernel
# (cpu_kernels), forward and backward, instead of five to seven passes over the activations; float32
# values equal the PyTorch composition's (the gradients' sums may add in another order), bfloat16 ones
# are rounded once instead of after each step. Elsewhere it is that composition. See docs/ops.md.

import torch

from torch_utils.ops import bias_act
from torch_utils.ops import cpu_kernels
from torch_utils.ops import fma

#----------------------------------------------------------------------------

def demod_bias_act(x, d, noise, b, act='linear', alpha=None, gain=None, clamp=None):
    """Scales x per sample and channel, adds noise, then bias_act.

    Args:
        x:     [N, C, H, W] tensor.
        d:     [N, C] demodulation coefficients.
        noise: Tensor broadcastable to [N, 1, H, W] (e.g. [N, 1, H, W] or [H, W]), or None.
        b:     [C] bias.
        act, alpha, gain, clamp: as bias_act().
        d, noise and b are cast to x's dtype.

    Returns:
        Tensor like x.
    """
    _spec, alpha, gain, clamp = bias_act._parse_args(act, alpha, gain, clamp) # pylint: disable=protected-access
    batch_size, channels = x.shape[:2]
    if list(d.shape) != [batch_size, channels] or list(b.shape) != [channels]:
        raise ValueError(f'demod_bias_act: d must be [{batch_size}, {channels}] and b [{channels}] for x of shape '
            f'{list(x.shape)}, got {list(d.shape)} and {list(b.shape)}')
    d, b = d.to(x.dtype), b.to(x.dtype)
    noise = noise.to(x.dtype) if noise is not None else None
    if _kernel_applies(x, act) and _per_pixel(noise, x):
        return _DemodBiasAct.apply(x, d, noise, b, act, alpha, gain, clamp)
    return _demod_bias_act_ref(x, d, noise, b, act, alpha, gain, clamp)

# The composition the kernel replaces (the specification).
def _demod_bias_act_ref(x, d, noise, b, act, alpha, gain, clamp):
    d = d.reshape(*d.shape, 1, 1)
    x = fma.fma(x, d, noise) if noise is not None else x * d
    return bias_act.bias_act(x, b, act=act, alpha=alpha, gain=gain, clamp=clamp, inplace=True)

# Whether noise is None or one value per sample and pixel (broadcastable to [N, 1, H, W]), as the kernel takes it.
def _per_pixel(noise, x):
    if noise is None:
        return True
    shape = [1] * (4 - noise.ndim) + list(noise.shape)
    return noise.ndim <= 4 and shape[0] in (1, x.shape[0]) and shape[1] == 1 and shape[2:] == list(x.shape[2:])

def _kernel_applies(x, act):
    return cpu_kernels.dense_4d(x) and act in cpu_kernels.ACTS and cpu_kernels.usable(x)

#----------------------------------------------------------------------------

def scale_channels(x, s):
    """x * s[:, :, None, None] for x [N, C, H, W] and s [N, C] (cast to x's dtype); same values as that product."""
    if x.ndim != 4 or list(s.shape) != list(x.shape[:2]):
        raise ValueError(f'scale_channels: s must be [{", ".join(map(str, x.shape[:2]))}] for x of shape {list(x.shape)}, got {list(s.shape)}')
    s = s.to(x.dtype)
    if not _kernel_applies(x, 'linear'):
        return x * s.reshape(*s.shape, 1, 1)
    if torch.is_grad_enabled() and (x.requires_grad or s.requires_grad):
        return _ScaleChannels.apply(x, s)
    return cpu_kernels.scale_channels_forward(x, s.contiguous())

class _ScaleChannels(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, s):  # pylint: disable=arguments-differ
        ctx.save_for_backward(x, s)
        return cpu_kernels.scale_channels_forward(x, s.contiguous())

    @staticmethod
    def backward(ctx, dy):  # pylint: disable=arguments-differ
        x, s = ctx.saved_tensors
        if torch.is_grad_enabled(): # A graph of the gradient: torch ops.
            dx = dy * s.reshape(*s.shape, 1, 1) if ctx.needs_input_grad[0] else None
            ds = (dy * x).sum(dim=[2, 3]) if ctx.needs_input_grad[1] else None
            return dx, ds
        dx, ds = cpu_kernels.scale_channels_grad(bias_act._like(dy, x), x, s.contiguous()) # pylint: disable=protected-access
        return (dx if ctx.needs_input_grad[0] else None), (ds.to(s.dtype) if ctx.needs_input_grad[1] else None)

#----------------------------------------------------------------------------
# The kernel as a Function. Its backward runs the C kernel unless a graph of the gradient is being
# built (path-length regularisation): then it is the same derivative in differentiable torch ops.

class _DemodBiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, d, noise, b, act, alpha, gain, clamp):  # pylint: disable=arguments-differ
        n, c, h, w = x.shape
        flat_noise = noise.expand(n, 1, h, w).reshape(n, h * w).contiguous() if noise is not None else None
        y = cpu_kernels.demod_bias_act_forward(x, d.contiguous(), flat_noise, b.contiguous(), act, alpha, gain, clamp)
        ctx.save_for_backward(x, d, y)
        ctx.args = (act, alpha, gain, clamp)
        ctx.noise_shape = noise.shape if noise is not None else None
        return y

    @staticmethod
    def backward(ctx, dy):  # pylint: disable=arguments-differ
        x, d, y = ctx.saved_tensors
        need = ctx.needs_input_grad
        if torch.is_grad_enabled():
            g = bias_act._BiasActFusedGrad.apply(dy, y, *ctx.args) # pylint: disable=protected-access
            dx = g * d.reshape(*d.shape, 1, 1) if need[0] else None
            dd = (g * x).sum(dim=[2, 3]) if need[1] else None
            dnoise = g.sum(dim=1, keepdim=True).sum_to_size(ctx.noise_shape) if need[2] else None
            db = g.sum(dim=[0, 2, 3]) if need[3] else None
            return dx, dd, dnoise, db, None, None, None, None
        dx, dd, dnoise, db = cpu_kernels.demod_bias_act_grad(bias_act._like(dy, y), y, x, d.contiguous(), *ctx.args) # pylint: disable=protected-access
        if need[2]:
            dnoise = dnoise.reshape(x.shape[0], 1, *x.shape[2:]).sum_to_size(ctx.noise_shape).to(x.dtype)
        return (dx if need[0] else None, dd.to(x.dtype) if need[1] else None, dnoise if need[2] else None,
            db.to(x.dtype) if need[3] else None, None, None, None, None)

#----------------------------------------------------------------------------
