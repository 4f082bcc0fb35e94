# Tests for torch_utils.ops.conv2d_resample: every fast path against the definition
# (zero insertion, padding, FIR filter, convolution, filter, subsampling) written here
# with numpy/scipy in float64, plus derivatives and argument checks.

import itertools

import numpy as np
import pytest
import scipy.signal
import torch

from torch_utils.ops import conv2d_gradfix
from torch_utils.ops import conv2d_resample
from torch_utils.ops import upfirdn2d

#----------------------------------------------------------------------------
# Naive upfirdn on numpy arrays [N, C, H, W] with a 2-D filter [fh, fw].

def _naive_upfirdn(x, f, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0, flip_filter=False):
    n, c, h, w = x.shape
    z = np.zeros((n, c, h * up, w * up))
    z[:, :, ::up, ::up] = x
    px0, px1, py0, py1 = pad
    z = np.pad(z, [(0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))])
    z = z[:, :, max(-py0, 0) : z.shape[2] - max(-py1, 0), max(-px0, 0) : z.shape[3] - max(-px1, 0)]
    op = scipy.signal.correlate2d if flip_filter else scipy.signal.convolve2d
    y = np.stack([np.stack([op(z[i, j], f * gain, mode='valid') for j in range(c)]) for i in range(n)])
    return y[:, :, ::down, ::down]

#----------------------------------------------------------------------------
# Naive grouped convolution without padding; correlation when flip_weight is True.

def _naive_conv(x, w, groups, flip_weight):
    op = scipy.signal.correlate2d if flip_weight else scipy.signal.convolve2d
    c_out, c_in_g = w.shape[:2]
    out = []
    for i in range(x.shape[0]):
        planes = []
        for o in range(c_out):
            g = o // (c_out // groups)
            planes.append(sum(op(x[i, g * c_in_g + j], w[o, j], mode='valid') for j in range(c_in_g)))
        out.append(np.stack(planes))
    return np.stack(out)

#----------------------------------------------------------------------------
# The definition of conv2d_resample, independent of the library code.

def _naive_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    x = x.numpy()
    w = w.numpy()
    f2 = np.ones((1, 1)) if f is None else f.double().numpy()
    if f2.ndim == 1:
        f2 = np.outer(f2, f2)
    fh, fw = f2.shape
    if isinstance(padding, int):
        padding = [padding, padding]
    if len(padding) == 2:
        padding = [padding[0], padding[0], padding[1], padding[1]]
    px0, px1, py0, py1 = padding
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    x = _naive_upfirdn(x, f2 if up > 1 else np.ones((1, 1)), up=up, pad=(px0, px1, py0, py1), gain=up ** 2, flip_filter=flip_filter)
    x = _naive_conv(x, w, groups, flip_weight)
    if down > 1:
        x = _naive_upfirdn(x, f2, down=down, flip_filter=flip_filter)
    return torch.from_numpy(x)

#----------------------------------------------------------------------------
# Random float64 input and weight.

def _tensors(k, groups, c_in=4, c_out=4, h=7, w=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c_in, h, w, generator=gen, dtype=torch.float64)
    weight = torch.randn(c_out, c_in // groups, k, k, generator=gen, dtype=torch.float64)
    return x, weight

#----------------------------------------------------------------------------

# Every combination of up, down, kernel, groups, flip_weight and filter; the padding form
# cycles through int, [x, y] and [x0, x1, y0, y1] so that each path sees each form.
PADDINGS = [0, 1, [1, 2], [1, 0, 2, 1]]
GRID = [(up, down, k, groups, flip_weight, PADDINGS[(i + i // 16) % 4], taps)
    for i, (up, down, k, groups, flip_weight, taps) in enumerate(itertools.product([1, 2], [1, 2], [1, 3], [1, 2], [True, False], [[1, 3, 3, 1], None]))]

@pytest.mark.parametrize('up,down,k,groups,flip_weight,padding,taps', GRID)
def test_matches_naive_definition(up, down, k, groups, flip_weight, padding, taps):
    x, w = _tensors(k, groups)
    f = None if taps is None else upfirdn2d.setup_filter(taps)
    expected = _naive_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter=False)
    for fn in (conv2d_resample.conv2d_resample, conv2d_resample._conv2d_resample_ref):
        y = fn(x, w, f, up=up, down=down, padding=padding, groups=groups, flip_weight=flip_weight)
        assert y.shape == expected.shape
        torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)

#----------------------------------------------------------------------------
# Less common options: flip_filter, a non-square 2-D filter, a separable filter,
# negative padding, non-square kernels, both up and down.

@pytest.mark.parametrize('up,down', [(1, 1), (2, 1), (1, 2), (2, 2), (4, 1), (1, 4)])
@pytest.mark.parametrize('taps,separable,flip_filter', [
    ([1, 3, 3, 1], False, True),
    ([[1, 2, 1], [2, 5, 2]], None, False),
    ([1, 2, 5, 2, 1], True, True),
])
@pytest.mark.parametrize('padding,kshape', [(-1, (3, 3)), ([2, 0, 1, -1], (3, 2)), (1, (1, 3))])
def test_matches_naive_definition_other_options(up, down, taps, separable, flip_filter, padding, kshape):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 11, 10, generator=gen, dtype=torch.float64)
    w = torch.randn(3, 2, *kshape, generator=gen, dtype=torch.float64)
    f = upfirdn2d.setup_filter(taps, separable=separable)
    expected = _naive_conv2d_resample(x, w, f, up, down, padding, 1, True, flip_filter)
    y = conv2d_resample.conv2d_resample(x, w, f, up=up, down=down, padding=padding, flip_filter=flip_filter)
    assert y.shape == expected.shape
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('up,down,k,groups', [(2, 1, 3, 1), (1, 2, 3, 2), (2, 1, 1, 2), (1, 2, 1, 1), (1, 1, 3, 1), (2, 2, 3, 1)])
def test_fast_and_reference_derivatives_agree(up, down, k, groups):
    x, w = _tensors(k, groups, seed=2)
    x.requires_grad_(True)
    w.requires_grad_(True)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    results = []
    for fn in (conv2d_resample.conv2d_resample, conv2d_resample._conv2d_resample_ref):
        y = fn(x, w, f, up=up, down=down, padding=k // 2, groups=groups)
        gx, gw = torch.autograd.grad(y.sin().sum(), [x, w], create_graph=True)
        results.append((y, gx, gw) + torch.autograd.grad(gx.square().sum(), [x, w]))
    for a, r in zip(*results):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('up,down', [(2, 1), (1, 2)])
def test_gradcheck_gradgradcheck(up, down):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    fn = lambda x, w: conv2d_resample.conv2d_resample(x, w, f, up=up, down=down, padding=1, groups=2)
    assert torch.autograd.gradcheck(fn, (x, w), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x, w), fast_mode=True)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('up,down,k', [(2, 1, 3), (1, 2, 3), (1, 1, 3), (2, 1, 1)])
def test_float32_and_channels_last(up, down, k):
    x, w = _tensors(k, 1, seed=4)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    expected = conv2d_resample._conv2d_resample_ref(x, w, f, up=up, down=down, padding=k // 2)
    x32 = x.float().to(memory_format=torch.channels_last)
    y = conv2d_resample.conv2d_resample(x32, w.float(), f, up=up, down=down, padding=k // 2)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), expected, rtol=1e-4, atol=1e-5)

#----------------------------------------------------------------------------

def test_weight_gradients_skipped_inside_no_weight_gradients():
    x, w = _tensors(3, 1, seed=5)
    x.requires_grad_(True)
    w.requires_grad_(True)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    with conv2d_gradfix.no_weight_gradients():
        conv2d_resample.conv2d_resample(x, w, f, up=2, padding=1).sum().backward()
    assert w.grad is None and x.grad is not None

#----------------------------------------------------------------------------

def test_bad_arguments_raise_clear_errors():
    x, w = _tensors(3, 1)
    with pytest.raises(ValueError, match='w must be a 4-D'):
        conv2d_resample.conv2d_resample(x, w[0])
    with pytest.raises(ValueError, match='x must be a 4-D'):
        conv2d_resample.conv2d_resample(x[0], w)
    with pytest.raises(ValueError, match='channels'):
        conv2d_resample.conv2d_resample(x, w, groups=3)
    with pytest.raises(ValueError, match='channels'):
        conv2d_resample.conv2d_resample(x, w[:, :2], groups=1)
    with pytest.raises(ValueError, match='up must be an int'):
        conv2d_resample.conv2d_resample(x, w, up=0)
    with pytest.raises(ValueError, match='down must be an int'):
        conv2d_resample.conv2d_resample(x, w, down=1.5)
    with pytest.raises(ValueError, match='padding'):
        conv2d_resample.conv2d_resample(x, w, padding=[1, 2, 3])

#----------------------------------------------------------------------------
