# Filtered leaky ReLU of StyleGAN3 (alias-free activation): filtered_lrelu().
#
# y = downsample(clamp(lrelu(upsample(x + b)) * gain)): the non-linearity is applied at a
# higher sampling rate between an interpolation filter fu and an anti-aliasing filter fd
# (Karras et al. 2021, "Alias-Free Generative Adversarial Networks", sec. 3.2).
# See docs/ops.md and docs/stylegan3.md.

import math
import numbers

import torch

from torch_utils import custom_ops
from torch_utils.ops import upfirdn2d

#----------------------------------------------------------------------------
# CUDA kernel dispatch. The plugin (filtered_lrelu.cpp/.cu/.h: the activation with its
# gradient mask) is built by custom_ops at the first call on a CUDA tensor; the
# resampling runs on the upfirdn2d kernel. A failed build leaves the reason in _plugin_error.

_plugin = None                  # Compiled CUDA extension, None while not built.
_plugin_error = None            # custom_ops.PluginError of a failed build, None otherwise.
_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

#----------------------------------------------------------------------------
# Builds or loads the plugin (and the upfirdn2d one it relies on) once per process.

def _init():
    return custom_ops.init_op_plugin(__name__, 'filtered_lrelu') and upfirdn2d._init()

#----------------------------------------------------------------------------
# Whether the CUDA path can run on tensor x (builds the plugins on first use).

def _cuda_available(x):
    return x.device.type == 'cuda' and x.dtype in _KERNEL_DTYPES and _init()

#----------------------------------------------------------------------------
# The reason the CUDA path is unavailable (this plugin's or upfirdn2d's build failure).

def _error_text():
    return _plugin_error if _plugin_error is not None else upfirdn2d._plugin_error

#----------------------------------------------------------------------------
# Checks `impl` and decides the path (custom_ops.use_cuda_kernel): True = CUDA, False = reference.

def _check_impl(impl, x):
    return custom_ops.use_cuda_kernel('filtered_lrelu', impl, x, _KERNEL_DTYPES, _cuda_available, _error_text)

#----------------------------------------------------------------------------
# The fused op.

def filtered_lrelu(x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=math.sqrt(2), slope=0.2, clamp=None,
        flip_filter=False, impl='auto'):
    """Bias, up-sampling, leaky ReLU, clamp and down-sampling of a batch of 2-D images.

    Computes, in this order:
        1. x + b (b broadcast along the channels),
        2. upfirdn2d(x, fu, up=up, padding=padding, gain=up**2, flip_filter=flip_filter),
        3. leaky_relu(x, slope) * gain,
        4. clamp to [-clamp, clamp] (when clamp is not None),
        5. upfirdn2d(x, fd, down=down, flip_filter=flip_filter).

    Args:
        x:           Images [N, C, H, W].
        fu:          Up-sampling (interpolation) filter: [fh, fw], [taps] (separable) or None (identity).
        fd:          Down-sampling (anti-aliasing) filter, the same forms as fu.
        b:           Bias [C], or None. Cast to the dtype of x.
        up:          Up-sampling factor, an int >= 1.
        down:        Down-sampling factor, an int >= 1.
        padding:     Padding of the up-sampled image before fu: int, [x, y] or [x0, x1, y0, y1]
                     (in up-sampled pixels; negative crops).
        gain:        Factor applied after the leaky ReLU.
        slope:       Slope of the leaky ReLU for negative inputs.
        clamp:       Clamp the activations to [-clamp, clamp]; None = no clamping.
        flip_filter: False = true convolution with fu and fd, True = correlation.
        impl:        'auto' (CUDA kernels for CUDA tensors when they build, else the
                     reference path after one warning), 'cuda' (as 'auto', but an error
                     when a CUDA tensor cannot use them) or 'ref'. CPU tensors use 'ref'.

    Returns:
        Tensor [N, C, out_h, out_w] with the dtype of x, where per axis
        out = ((in * up + pad0 + pad1 - taps_u + 1) - taps_d) // down + 1.
    """
    filters_need_grad = any(isinstance(f, torch.Tensor) and f.requires_grad for f in (fu, fd))
    if _check_impl(impl, x) and not filters_need_grad:
        args = _parse_args(x, fu, fd, b, up, down, padding, gain, slope, clamp)
        b = b.to(x.dtype) if b is not None else None
        return _filtered_lrelu_cuda(*args, flip_filter=bool(flip_filter)).apply(x, fu, fd, b)
    return _filtered_lrelu_ref(x, fu=fu, fd=fd, b=b, up=up, down=down, padding=padding, gain=gain, slope=slope,
        clamp=clamp, flip_filter=flip_filter)

#----------------------------------------------------------------------------
# Reference implementation in plain PyTorch (the specification of filtered_lrelu).

def _filtered_lrelu_ref(x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=math.sqrt(2), slope=0.2, clamp=None,
        flip_filter=False):
    up, down, padding, gain, slope, clamp = _parse_args(x, fu, fd, b, up, down, padding, gain, slope, clamp)
    if b is not None:
        x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    x = upfirdn2d.upfirdn2d(x, fu, up=up, padding=padding, gain=up ** 2, flip_filter=flip_filter, impl='ref')
    x = torch.nn.functional.leaky_relu(x, slope)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d.upfirdn2d(x, fd, down=down, flip_filter=flip_filter, impl='ref')

#----------------------------------------------------------------------------
# Checks the arguments; returns (up, down, padding as 4 ints, gain, slope, clamp or None).

def _parse_args(x, fu, fd, b, up, down, padding, gain, slope, clamp):
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f'filtered_lrelu: x must be a 4-D tensor [N, C, H, W], got '
            f'{list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}')
    for name, f in [('fu', fu), ('fd', fd)]:
        if f is not None and not (isinstance(f, torch.Tensor) and f.ndim in (0, 1, 2)):
            raise ValueError(f'filtered_lrelu: {name} must be None or a 0-, 1- or 2-D tensor, got {f!r:.60}')
    if b is not None and not (isinstance(b, torch.Tensor) and b.ndim == 1 and b.shape[0] == x.shape[1]):
        raise ValueError(f'filtered_lrelu: b must be a 1-D tensor of length x.shape[1] = {x.shape[1]}, got '
            f'{list(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__}')
    for name, v in [('up', up), ('down', down)]:
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
            raise ValueError(f'filtered_lrelu: {name} must be an int >= 1, got {v!r}')
    padding = upfirdn2d._parse_padding(padding)
    if clamp is not None and not (float(clamp) >= 0):
        raise ValueError(f'filtered_lrelu: clamp must be None or >= 0, got {clamp!r}')
    if not all(math.isfinite(float(v)) for v in (gain, slope)):
        raise ValueError(f'filtered_lrelu: gain and slope must be finite, got gain={gain}, slope={slope}')
    clamp = float(clamp) if clamp is not None else None
    return int(up), int(down), padding, float(gain), float(slope), clamp

#----------------------------------------------------------------------------
# CUDA path. The forward runs upfirdn2d (kernel), the activation kernel, which also
# stores a one-byte code per up-sampled pixel (clamped / positive side / negative side),
# and upfirdn2d again. Because the leaky ReLU and the clamp are piecewise linear, the
# gradient is the linear map dy -> U^T M D^T dy (U, D the resampling, M the stored
# slopes): a Function whose backward is the forward-direction map D M U with the same
# codes, and vice versa, so derivatives of any order run on the kernels. The second
# derivative w.r.t. x is zero almost everywhere, as in the reference. No filter gradients.

_filtered_lrelu_cuda_cache = dict()

def _filtered_lrelu_cuda(up, down, padding, gain, slope, clamp, flip_filter):
    key = (up, down, tuple(padding), gain, slope, clamp, flip_filter)
    if key in _filtered_lrelu_cuda_cache:
        return _filtered_lrelu_cuda_cache[key]
    px0, px1, py0, py1 = padding
    clamp_arg = -1.0 if clamp is None else clamp

    # U: x -> up-sampled, padded, fu-filtered image; D: t -> fd-filtered, down-sampled.
    def resample_up(x, fu):
        return upfirdn2d._upfirdn2d_cuda(up=up, padding=padding, flip_filter=flip_filter, gain=up ** 2).apply(x, _filter(fu, x))
    def resample_down(t, fd):
        return upfirdn2d._upfirdn2d_cuda(down=down, flip_filter=flip_filter).apply(t, _filter(fd, t))

    # U^T and D^T: upfirdn2d with up/down swapped, the filter reversed, and the padding
    # that gives back the input's size (as upfirdn2d's own backward).
    def resample_up_t(dt, fu, x_shape):
        return _transpose(dt, _filter(fu, dt), x_shape, up, 1, px0, py0, up ** 2, flip_filter)
    def resample_down_t(dy, fd, t_shape):
        return _transpose(dy, _filter(fd, dy), t_shape, 1, down, 0, 0, 1, flip_filter)

    # y = D(act(U(x + b))); saves the codes of the activation.
    class FilteredLReluCuda(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, fu, fd, b):  # pylint: disable=arguments-differ
            if b is not None:
                x = x + b.reshape(1, -1, 1, 1)
            t = _dense(resample_up(x, fu))
            t, codes = _plugin.act_forward(t, gain, slope, clamp_arg)
            y = resample_down(t, fd)
            ctx.save_for_backward(fu, fd, codes)
            ctx.x_shape = x.shape
            return y

        @staticmethod
        def backward(ctx, dy):  # pylint: disable=arguments-differ
            fu, fd, codes = ctx.saved_tensors
            dx = MaskedTranspose.apply(dy, fu, fd, codes, ctx.x_shape)
            db = dx.sum([0, 2, 3]) if ctx.needs_input_grad[3] else None
            return (dx if ctx.needs_input_grad[0] else None), None, None, db

    # dx = U^T M D^T dy (the gradient of the forward; linear in dy).
    class MaskedTranspose(torch.autograd.Function):
        @staticmethod
        def forward(ctx, dy, fu, fd, codes, x_shape):  # pylint: disable=arguments-differ
            dt = _like(resample_down_t(dy, fd, codes.shape), codes)
            dt = _plugin.act_masked(dt, codes, gain, slope)
            ctx.save_for_backward(fu, fd, codes)
            return resample_up_t(dt, fu, x_shape)

        @staticmethod
        def backward(ctx, d_dx):  # pylint: disable=arguments-differ
            fu, fd, codes = ctx.saved_tensors
            return MaskedForward.apply(d_dx, fu, fd, codes), None, None, None, None

    # y = D M U x (the transpose of MaskedTranspose; no bias, no clamp offset).
    class MaskedForward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, fu, fd, codes):  # pylint: disable=arguments-differ
            t = _like(resample_up(x, fu), codes)
            t = _plugin.act_masked(t, codes, gain, slope)
            ctx.save_for_backward(fu, fd, codes)
            ctx.x_shape = x.shape
            return resample_down(t, fd)

        @staticmethod
        def backward(ctx, dy):  # pylint: disable=arguments-differ
            fu, fd, codes = ctx.saved_tensors
            return MaskedTranspose.apply(dy, fu, fd, codes, ctx.x_shape), None, None, None

    _filtered_lrelu_cuda_cache[key] = FilteredLReluCuda
    return FilteredLReluCuda

#----------------------------------------------------------------------------
# Adjoint of upfirdn2d(x, f, up, down, padding=[px0, ., py0, .], gain, flip_filter) applied
# to dy, giving a tensor of shape x_shape (the formula of upfirdn2d's CUDA backward).

def _transpose(dy, f, x_shape, up, down, px0, py0, gain, flip_filter):
    in_h, in_w = x_shape[2:]
    out_h, out_w = dy.shape[2:]
    fw, fh = upfirdn2d._get_filter_size(f)
    p = [fw - px0 - 1, in_w * up - out_w * down + px0 - up + 1, fh - py0 - 1, in_h * up - out_h * down + py0 - up + 1]
    dx = upfirdn2d._upfirdn2d_cuda(up=down, down=up, padding=p, flip_filter=not flip_filter, gain=gain).apply(dy, f)
    assert tuple(dx.shape) == tuple(x_shape)
    return dx

#----------------------------------------------------------------------------
# The filter as a tensor on the device of x (None = a 1x1 identity filter).

def _filter(f, x):
    if f is None:
        return torch.ones([1, 1], dtype=torch.float32, device=x.device)
    return f

#----------------------------------------------------------------------------
# x itself when it is dense (contiguous or channels_last), else a contiguous copy.

def _dense(x):
    if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.contiguous()

#----------------------------------------------------------------------------
# t with the strides of ref (the code tensor), so the elementwise kernel can walk both.

def _like(t, ref):
    if t.stride() == ref.stride():
        return t
    return torch.empty_like(ref, dtype=t.dtype).copy_(t)

#----------------------------------------------------------------------------
