"""2D convolution fused with FIR up-sampling and down-sampling.

`conv2d_resample` computes, in this order: up-sampling by zero insertion, padding and FIR
filtering (`upfirdn2d`), a 2D convolution with no padding, then FIR filtering and
down-sampling. `_conv2d_resample_ref` spells that out and is the specification; the public
function picks a cheaper but equal formulation (filter before a strided convolution, a
strided transposed convolution instead of zero insertion, a 1x1 convolution moved to the
low-resolution side, or a single padded conv2d). The convolutions go through
`conv2d_gradfix`, so `conv2d_gradfix.no_weight_gradients()` applies to them.
"""

import numbers

import torch

from torch_utils.ops import conv2d_gradfix
from torch_utils.ops import upfirdn2d

#----------------------------------------------------------------------------
# Convolution with resampling: the public op.

def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False):
    """2D convolution with optional up-sampling before it and down-sampling after it.

    Args:
        x:           Input [N, C_in, H, W].
        w:           Weight [C_out, C_in / groups, kh, kw].
        f:           FIR filter from `upfirdn2d.setup_filter` (used for resampling), or None.
        up:          Integer up-sampling factor (>= 1), applied before the convolution.
        down:        Integer down-sampling factor (>= 1), applied after the convolution.
        padding:     Padding of the up-sampled image: int, [x, y] or [x0, x1, y0, y1].
        groups:      Number of channel groups of the convolution.
        flip_weight: True = correlation (like torch conv2d), False = true convolution.
        flip_filter: Passed to `upfirdn2d` (True = correlate with the filter taps).

    Returns:
        Tensor [N, C_out, H_out, W_out]. With an odd k x k kernel, padding = k // 2 and
        H, W divisible by `down`: H_out = H * up // down, W_out = W * up // down.
    """
    _check_args(x, w, up, down, groups)
    px0, px1, py0, py1 = _adjusted_padding(f, up, down, padding)
    kh, kw = w.shape[2:]

    # 1x1 convolution with down-sampling only: down-sample first.
    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = upfirdn2d.upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv2d(x, w, groups=groups, flip_weight=flip_weight)

    # 1x1 convolution with up-sampling only: convolve first.
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv2d(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d.upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter)

    # Down-sampling only: filter, then a strided convolution.
    if down > 1 and up == 1:
        x = upfirdn2d.upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv2d(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    # Up-sampling (and maybe down-sampling): a strided transposed convolution, then filters.
    if up > 1:
        x = _conv_transpose_then_filter(x, w, f, up, [px0, px1, py0, py1], groups, flip_weight, flip_filter)
        if down > 1:
            x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x

    # No resampling with symmetric non-negative padding: one conv2d.
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv2d(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    return _conv2d_resample_general(x, w, f, up, down, [px0, px1, py0, py1], groups, flip_weight, flip_filter)

#----------------------------------------------------------------------------
# Reference implementation (the specification): adjust the padding, then run the
# general path.

def _conv2d_resample_ref(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False):
    _check_args(x, w, up, down, groups)
    pad = _adjusted_padding(f, up, down, padding)
    return _conv2d_resample_general(x, w, f, up, down, pad, groups, flip_weight, flip_filter)

#----------------------------------------------------------------------------
# General path with already adjusted padding: up-sample, pad and filter (the filter only
# when up > 1), convolve with no padding, then filter and down-sample (when down > 1).

def _conv2d_resample_general(x, w, f, up, down, pad, groups, flip_weight, flip_filter):
    x = upfirdn2d.upfirdn2d(x, (f if up > 1 else None), up=up, padding=pad, gain=up ** 2, flip_filter=flip_filter)
    x = _conv2d(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x

#----------------------------------------------------------------------------
# Padding [x0, x1, y0, y1] extended so that the filter taps of the resampling are centred.

def _adjusted_padding(f, up, down, padding):
    fw, fh = upfirdn2d._get_filter_size(f)
    px0, px1, py0, py1 = upfirdn2d._parse_padding(padding)
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2
    return px0, px1, py0, py1

#----------------------------------------------------------------------------
# Check shapes and options; one clear error for each kind of mistake.

def _check_args(x, w, up, down, groups):
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f'conv2d_resample: x must be a 4-D tensor [N, C, H, W], got {_describe(x)}')
    if not isinstance(w, torch.Tensor) or w.ndim != 4:
        raise ValueError(f'conv2d_resample: w must be a 4-D tensor [C_out, C_in / groups, kh, kw], got {_describe(w)}')
    for name, value in (('up', up), ('down', down), ('groups', groups)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f'conv2d_resample: {name} must be an int >= 1, got {value!r}')
    if x.shape[1] != w.shape[1] * groups or w.shape[0] % groups != 0:
        raise ValueError(f'conv2d_resample: x has {x.shape[1]} channels, which does not fit weight shape '
            f'{list(w.shape)} with groups={groups} (needs C_in = w.shape[1] * groups and C_out divisible by groups)')

#----------------------------------------------------------------------------
# Shape (or type) of an argument, for error messages.

def _describe(value):
    return f'shape {list(value.shape)}' if isinstance(value, torch.Tensor) else type(value).__name__

#----------------------------------------------------------------------------
# conv2d with the weight flipped first when it is a true convolution.

def _conv2d(x, w, stride=1, padding=0, groups=1, flip_weight=True):
    if not flip_weight:
        w = w.flip([2, 3])
    return conv2d_gradfix.conv2d(x, w, stride=stride, padding=padding, groups=groups)

#----------------------------------------------------------------------------
# Zero insertion + padding + convolution as one strided transposed convolution, followed
# by the filter with the padding that aligns the two.
#
# Per axis with k taps, factor s and adjusted padding (p0, p1): correlating the
# zero-stuffed, padded input with w equals the full transposed convolution (stride s) of
# the input with the flipped w, padded by p0 - (k - 1) on the left and p1 + s - k on the
# right. Cropping both sides by the same amount q is done by the transposed convolution.

def _conv_transpose_then_filter(x, w, f, up, pad, groups, flip_weight, flip_filter):
    px0, px1, py0, py1 = pad
    c_out, c_in_per_group, kh, kw = w.shape
    left, right = px0 - (kw - 1), px1 + up - kw
    top, bottom = py0 - (kh - 1), py1 + up - kh
    qx = max(0, min(-left, -right))
    qy = max(0, min(-top, -bottom))

    # Weight [C_out, C_in/g, kh, kw] -> [C_in, C_out/g, kh, kw], one block per group.
    w = w.reshape(groups, c_out // groups, c_in_per_group, kh, kw)  # [GOIkk]
    w = w.transpose(1, 2).reshape(groups * c_in_per_group, c_out // groups, kh, kw)  # [IOkk]
    if flip_weight:
        w = w.flip([2, 3])
    x = conv2d_gradfix.conv_transpose2d(x, w, stride=up, padding=[qy, qx], groups=groups)
    pad = [left + qx, right + qx, top + qy, bottom + qy]
    return upfirdn2d.upfirdn2d(x, f, padding=pad, gain=up ** 2, flip_filter=flip_filter)

#----------------------------------------------------------------------------
