# Up-sampling, FIR filtering and down-sampling of 2-D images: upfirdn2d and its wrappers
# setup_filter, filter2d, upsample2d, downsample2d.
#
# upfirdn2d(x, f, up, down, padding) does, per image channel and per axis:
#   1. up-sample by inserting up-1 zeros after each pixel,
#   2. pad with zeros (negative padding crops),
#   3. convolve with the FIR filter f ("valid" convolution, a true convolution unless
#      flip_filter=True, in which case it is a correlation),
#   4. keep every down-th pixel, starting at index 0.
# See docs/ops.md.

import numbers

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import custom_ops
from torch_utils.ops import conv2d_gradfix

#----------------------------------------------------------------------------
# CUDA kernel dispatch. The plugin (upfirdn2d.cpp/.cu/.h) is built by custom_ops at the
# first call on a CUDA tensor; a failed build leaves the reason in _plugin_error.

_plugin = None                  # Compiled CUDA extension, None while not built.
_plugin_error = None            # custom_ops.PluginError of a failed build, None otherwise.
_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_CPU_CHANNELS_LAST_MAX_C = 8    # Up to this many channels, CPU passes run in channels_last.

#----------------------------------------------------------------------------
# Builds or loads the plugin once per process; True when it is usable.

def _init():
    return custom_ops.init_op_plugin(__name__, 'upfirdn2d')

#----------------------------------------------------------------------------
# Whether the CUDA kernel can run on tensor x (builds the plugin on first use).

def _cuda_available(x):
    return x.device.type == 'cuda' and x.dtype in _KERNEL_DTYPES and _init()

#----------------------------------------------------------------------------
# Checks `impl` and decides the path (custom_ops.use_cuda_kernel): True = CUDA kernel, False = reference.

def _check_impl(impl, x):
    return custom_ops.use_cuda_kernel('upfirdn2d', impl, x, _KERNEL_DTYPES, _cuda_available, lambda: _plugin_error)

#----------------------------------------------------------------------------
# Whether v is an integer (Python or numpy, but not bool).

def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)

#----------------------------------------------------------------------------
# Parses an up/down factor: an int or [x, y] -> (sx, sy), each an int >= 1.

def _parse_scaling(scaling):
    if _is_int(scaling):
        scaling = [scaling, scaling]
    if not isinstance(scaling, (list, tuple)) or len(scaling) != 2 or not all(_is_int(s) for s in scaling):
        raise ValueError(f'up/down must be an int or a list [x, y] of two ints, got {scaling!r}')
    sx, sy = int(scaling[0]), int(scaling[1])
    if sx < 1 or sy < 1:
        raise ValueError(f'up/down factors must be >= 1, got {scaling!r}')
    return sx, sy

#----------------------------------------------------------------------------
# Parses padding: an int, [x, y] or [x0, x1, y0, y1] -> (px0, px1, py0, py1).

def _parse_padding(padding):
    if _is_int(padding):
        padding = [padding, padding]
    if not isinstance(padding, (list, tuple)) or len(padding) not in (2, 4) or not all(_is_int(p) for p in padding):
        raise ValueError(f'padding must be an int, [x, y] or [x0, x1, y0, y1] of ints, got {padding!r}')
    if len(padding) == 2:
        padding = [padding[0], padding[0], padding[1], padding[1]]
    return tuple(int(p) for p in padding)

#----------------------------------------------------------------------------
# Filter width and height (fw, fh); a 1-D filter has the same taps along both axes.

def _get_filter_size(f):
    if f is None:
        return 1, 1
    if not isinstance(f, torch.Tensor) or f.ndim not in (0, 1, 2):
        raise ValueError(f'filter must be None or a torch.Tensor with 0, 1 or 2 dims, got '
            f'{type(f).__name__}{" of shape " + str(list(f.shape)) if isinstance(f, torch.Tensor) else ""}')
    if f.ndim == 0:
        return 1, 1
    return int(f.shape[-1]), int(f.shape[0])

#----------------------------------------------------------------------------
# Builds a filter tensor for upfirdn2d() from a list, array or tensor of taps.

def setup_filter(f, device=torch.device('cpu'), normalize=True, flip_filter=False, gain=1, separable=None):
    """Converts filter taps to a float32 tensor ready for upfirdn2d().

    Args:
        f:           Taps: None (= [1]), a scalar, or a 1-D or 2-D list/array/tensor.
        device:      Device of the returned tensor.
        normalize:   Divide by the sum of the taps (the filter then has DC gain 1).
        flip_filter: Flip the taps along every axis.
        gain:        Overall gain; the taps are multiplied by gain ** (ndim / 2), so a
                     separable (1-D) filter applied along both axes gains `gain` in total.
        separable:   Keep a 1-D filter 1-D (applied along x then y). None means
                     "if it has at least 8 taps"; a 1-D filter that is not kept
                     separable becomes the 2-D outer product of itself.

    Returns:
        float32 tensor of shape [taps] (separable) or [fh, fw], on `device`.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2):
        raise ValueError(f'setup_filter: taps must be a scalar, 1-D or 2-D, got shape {list(f.shape)}')
    if f.numel() == 0:
        raise ValueError('setup_filter: filter has no taps')
    if f.ndim == 0:
        f = f[np.newaxis]

    # Separable or 2-D.
    if separable is None:
        separable = (f.ndim == 1 and f.numel() >= 8)
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError(f'setup_filter: a 2-D filter cannot be separable, got shape {list(f.shape)}')

    # Normalise, flip and scale.
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)

#----------------------------------------------------------------------------
# The general op.

def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl='auto'):
    """Up-samples, pads, FIR-filters and down-samples a batch of 2-D images.

    Per axis: insert up-1 zeros after each pixel, pad with zeros (negative padding
    crops), convolve ("valid") with the filter, keep every down-th pixel from index 0.
    The output size per axis is (in * up + pad0 + pad1 - taps) // down + 1.

    Args:
        x:           Images [N, C, H, W].
        f:           Filter: [fh, fw] (2-D), [taps] (separable: the same taps along x
                     then along y), a 0-d tensor (a 1x1 filter), or None (identity).
        up:          Up-sampling factor, int or [x, y].
        down:        Down-sampling factor, int or [x, y].
        padding:     Padding in up-sampled pixels: int, [x, y] or [x0, x1, y0, y1].
        flip_filter: False = true convolution, True = correlation (unflipped taps).
        gain:        Overall gain; the filter is scaled by gain ** (f.ndim / 2).
        impl:        'auto' (CUDA kernel for CUDA tensors when it builds, else the
                     reference path after one warning), 'cuda' (as 'auto', but an
                     error when a CUDA tensor cannot use the kernel) or 'ref'.

    Returns:
        Tensor [N, C, out_h, out_w] with the dtype and memory format of x.
    """
    if _check_impl(impl, x) and not (isinstance(f, torch.Tensor) and f.requires_grad):
        _check_args(x, f, up, down, padding)
        if f is None:
            f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
        return _upfirdn2d_cuda(up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain).apply(x, f)
    return _upfirdn2d_ref(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)

#----------------------------------------------------------------------------
# Reference implementation in plain PyTorch (the specification of upfirdn2d).

def _upfirdn2d_ref(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    upx, upy, downx, downy, px0, px1, py0, py1, out_h, out_w = _check_args(x, f, up, down, padding)

    # Filter in the dtype of x, scaled, as 2-D kernels for one or two passes.
    if f is None:
        f = torch.ones([1, 1], dtype=x.dtype, device=x.device)
    f = f.to(dtype=x.dtype, device=x.device)
    if f.ndim == 0:
        f = f.reshape(1, 1)
    f = f * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))  # True convolution = correlation with flipped taps.

    # On the CPU, depthwise convolutions of few channels are several times faster in
    # channels_last; the result is returned in the input's layout.
    via_channels_last = (x.device.type == 'cpu' and x.shape[1] <= _CPU_CHANNELS_LAST_MAX_C
        and _memory_format(x) == torch.contiguous_format)
    if via_channels_last:
        x = x.to(memory_format=torch.channels_last)

    # 2-D filter: one pass; 1-D filter: a pass along x, then one along y.
    if f.ndim == 2:
        y = _upfirdn_pass(x, f, upx, upy, downx, downy, px0, px1, py0, py1)
    else:
        y = _upfirdn_pass(x, f[np.newaxis, :], upx, 1, downx, 1, px0, px1, 0, 0)
        y = _upfirdn_pass(y, f[:, np.newaxis], 1, upy, 1, downy, 0, 0, py0, py1)
    assert y.shape[2:] == (out_h, out_w)
    return y.contiguous() if via_channels_last else y

#----------------------------------------------------------------------------
# Checks the arguments of upfirdn2d; returns the parsed factors, padding and output size.

def _check_args(x, f, up, down, padding):
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f'upfirdn2d: x must be a 4-D tensor [N, C, H, W], got '
            f'{list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}')
    fw, fh = _get_filter_size(f)
    upx, upy = _parse_scaling(up)
    downx, downy = _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)
    out_w = _output_size(x.shape[3], upx, px0, px1, fw, downx, 'width')
    out_h = _output_size(x.shape[2], upy, py0, py1, fh, downy, 'height')
    return upx, upy, downx, downy, px0, px1, py0, py1, out_h, out_w

#----------------------------------------------------------------------------
# Output length of one axis; a clear error when nothing would be left.

def _output_size(size, up, pad0, pad1, taps, down, name):
    padded = size * up + pad0 + pad1
    if padded < taps:
        raise ValueError(f'upfirdn2d: output {name} would be smaller than 1 pixel: input {size} '
            f'x up {up} + padding {pad0} + {pad1} = {padded} is less than the {taps} filter taps')
    return (padded - taps) // down + 1

#----------------------------------------------------------------------------
# Pads with zeros where a pad is positive and crops where it is negative.

def _pad_or_crop(x, px0, px1, py0, py1):
    if max(px0, px1, py0, py1) > 0:
        x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    if min(px0, px1, py0, py1) < 0:
        x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    return x

#----------------------------------------------------------------------------
# Memory format of x (channels_last when x is laid out that way, else contiguous).

def _memory_format(x):
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format

#----------------------------------------------------------------------------
# One depthwise up/pad/correlate/down pass with a 2-D kernel g [kh, kw] (already flipped).
# The convolutions go through conv2d_gradfix, whose backward passes are convolutions of the
# same kind: torch's own double backward of a grouped convolution loops over the groups.

def _upfirdn_pass(x, g, upx, upy, downx, downy, px0, px1, py0, py1):
    num_channels = x.shape[1]
    kh, kw = g.shape
    weight = g[np.newaxis, np.newaxis].expand(num_channels, 1, kh, kw)  # [C1hw], no copy.
    if upx == 1 and upy == 1:
        # Reduced precision with equal non-negative padding of both sides per axis: the convolution pads
        # (no padded copy, and a dense gradient without a cropped copy); float32 keeps the explicit padding.
        if px0 == px1 >= 0 and py0 == py1 >= 0 and x.dtype not in (torch.float32, torch.float64):
            return conv2d_gradfix.conv2d(x, weight, stride=(downy, downx), padding=(py0, px0), groups=num_channels)
        x = _pad_or_crop(x, px0, px1, py0, py1)
        return conv2d_gradfix.conv2d(x, weight, stride=(downy, downx), groups=num_channels)
    memory_format = _memory_format(x)
    y = _upsample_transposed(x, weight, upx, upy, px0, px1, py0, py1)
    y = y[:, :, ::downy, ::downx] if downx > 1 or downy > 1 else y
    return y.contiguous(memory_format=memory_format)  # Dense again after the crops, in x's layout.

#----------------------------------------------------------------------------
# Zero insertion + padding + correlation as a strided depthwise transposed convolution: only
# the taps that meet non-zero pixels are multiplied. Per axis with k taps, factor s and
# padding (p0, p1), the correlation of the zero-stuffed, padded input with g equals the
# transposed convolution (stride s) with the flipped taps, padded by p0 - (k - 1) on the left
# and p1 + s - k on the right (negative = cropped; an equal crop of both sides is done by the
# transposed convolution's own `padding`).

def _upsample_transposed(x, weight, upx, upy, px0, px1, py0, py1):
    kh, kw = weight.shape[2:]
    left, right = px0 - (kw - 1), px1 + upx - kw
    top, bottom = py0 - (kh - 1), py1 + upy - kh
    qx = max(0, min(-left, -right))
    qy = max(0, min(-top, -bottom))
    weight = weight.flip([2, 3])
    x = conv2d_gradfix.conv_transpose2d(x, weight, stride=(upy, upx), padding=(qy, qx), groups=x.shape[1])
    return _pad_or_crop(x, left + qx, right + qx, top + qy, bottom + qy)

#----------------------------------------------------------------------------
# Filters images with a FIR filter, keeping their size (plus the given padding).

def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl='auto'):
    """Filters a batch of 2-D images, output size = input size + padding.

    Args:
        x:           Images [N, C, H, W].
        f:           Filter as for upfirdn2d() (2-D, 1-D separable, or None).
        padding:     Extra padding: int, [x, y] or [x0, x1, y0, y1].
        flip_filter: False = convolution, True = correlation.
        gain:        Overall gain.
        impl:        'auto', 'cuda' or 'ref', as for upfirdn2d().

    Returns:
        Tensor [N, C, H + py0 + py1, W + px0 + px1].
    """
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)

#----------------------------------------------------------------------------
# Up-samples images with a FIR interpolation filter.

def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl='auto'):
    """Up-samples a batch of 2-D images by `up` with the interpolation filter f.

    The filter gain is multiplied by upx * upy, so a normalised filter keeps the mean
    brightness.

    Args:
        x:           Images [N, C, H, W].
        f:           Filter as for upfirdn2d().
        up:          Factor, int or [x, y].
        padding:     Extra padding: int, [x, y] or [x0, x1, y0, y1].
        flip_filter: False = convolution, True = correlation.
        gain:        Overall gain (before the upx * upy factor).
        impl:        'auto', 'cuda' or 'ref', as for upfirdn2d().

    Returns:
        Tensor [N, C, H * upy + py0 + py1, W * upx + px0 + px1].
    """
    upx, upy = _parse_scaling(up)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)

#----------------------------------------------------------------------------
# Down-samples images after a FIR anti-aliasing filter.

def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl='auto'):
    """Down-samples a batch of 2-D images by `down` after filtering with f.

    Args:
        x:           Images [N, C, H, W].
        f:           Filter as for upfirdn2d().
        down:        Factor, int or [x, y].
        padding:     Extra padding: int, [x, y] or [x0, x1, y0, y1].
        flip_filter: False = convolution, True = correlation.
        gain:        Overall gain.
        impl:        'auto', 'cuda' or 'ref', as for upfirdn2d().

    Returns:
        Tensor [N, C, (H + py0 + py1) // downy, (W + px0 + px1) // downx] (for even sizes).
    """
    downx, downy = _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)

#----------------------------------------------------------------------------
# CUDA path: an autograd.Function per argument tuple. Its gradient is upfirdn2d of the
# output gradient with up and down swapped, the filter reversed and the padding chosen
# so the result has the input's size; that is the same Function class family, so
# gradients of gradients run on the kernel too. The filter gets no gradient.

_upfirdn2d_cuda_cache = dict()

def _upfirdn2d_cuda(up=1, down=1, padding=0, flip_filter=False, gain=1):
    upx, upy = _parse_scaling(up)
    downx, downy = _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)
    key = (upx, upy, downx, downy, px0, px1, py0, py1, bool(flip_filter), float(gain))
    if key in _upfirdn2d_cuda_cache:
        return _upfirdn2d_cuda_cache[key]

    # y = upfirdn2d(x, f); a 1-D filter runs as an x pass and a y pass.
    class Upfirdn2dCuda(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, f):  # pylint: disable=arguments-differ
            g = _kernel_filter(f, flip_filter, gain, x.device)
            if g.ndim == 2:
                y = _plugin.upfirdn2d(x, g, upx, upy, downx, downy, px0, px1, py0, py1)
            else:
                y = _plugin.upfirdn2d(x, g[np.newaxis, :].contiguous(), upx, 1, downx, 1, px0, px1, 0, 0)
                y = _plugin.upfirdn2d(y, g[:, np.newaxis].contiguous(), 1, upy, 1, downy, 0, 0, py0, py1)
            ctx.save_for_backward(f)
            ctx.x_shape = x.shape
            return y

        @staticmethod
        def backward(ctx, dy):  # pylint: disable=arguments-differ
            f, = ctx.saved_tensors
            if not ctx.needs_input_grad[0]:
                return None, None
            in_h, in_w = ctx.x_shape[2:]
            out_h, out_w = dy.shape[2:]
            fw, fh = _get_filter_size(f)
            p = [fw - px0 - 1, in_w * upx - out_w * downx + px0 - upx + 1,
                 fh - py0 - 1, in_h * upy - out_h * downy + py0 - upy + 1]
            grad = _upfirdn2d_cuda(up=[downx, downy], down=[upx, upy], padding=p, flip_filter=not flip_filter, gain=gain)
            dx = grad.apply(dy, f)
            assert dx.shape == ctx.x_shape
            return dx, None

    _upfirdn2d_cuda_cache[key] = Upfirdn2dCuda
    return Upfirdn2dCuda

#----------------------------------------------------------------------------
# The filter as the kernel wants it: float32 on `device`, contiguous, scaled by
# gain ** (ndim / 2), flipped unless flip_filter (the kernel correlates); 0-d -> [1, 1].

def _kernel_filter(f, flip_filter, gain, device):
    g = f.to(device=device, dtype=torch.float32)
    if g.ndim == 0:
        g = g.reshape(1, 1)
    g = g * (gain ** (g.ndim / 2))
    if not flip_filter:
        g = g.flip(list(range(g.ndim)))
    return g.contiguous()

#----------------------------------------------------------------------------
