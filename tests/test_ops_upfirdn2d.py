# Tests of torch_utils.ops.upfirdn2d against a naive float64 numpy loop and scipy.

import itertools
import warnings

import numpy as np
import pytest
import scipy.signal
import torch

from torch_utils.ops import upfirdn2d

#----------------------------------------------------------------------------
# Naive float64 upfirdn2d: zero-stuff, pad, true convolution, decimate, written as loops.

def naive_upfirdn2d(x, f, up, down, padding, flip_filter=False, gain=1.0):
    (upx, upy), (downx, downy) = up, down
    px0, px1, py0, py1 = padding
    f = np.asarray(f, dtype=np.float64)
    f2 = np.outer(f, f) if f.ndim == 1 else f.copy()
    f2 = f2 * gain
    if flip_filter:
        f2 = f2[::-1, ::-1]
    n, c, h, w = x.shape

    # Zero-stuffed and padded image.
    hp, wp = h * upy + py0 + py1, w * upx + px0 + px1
    padded = np.zeros((n, c, hp, wp))
    for i in range(hp):
        for j in range(wp):
            si, sj = i - py0, j - px0
            if 0 <= si < h * upy and 0 <= sj < w * upx and si % upy == 0 and sj % upx == 0:
                padded[:, :, i, j] = x[:, :, si // upy, sj // upx]

    # Valid true convolution, then keep every down-th pixel.
    kh, kw = f2.shape
    out = np.zeros((n, c, hp - kh + 1, wp - kw + 1))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            for a in range(kh):
                for b in range(kw):
                    out[:, :, i, j] += padded[:, :, i + kh - 1 - a, j + kw - 1 - b] * f2[a, b]
    return out[:, :, ::downy, ::downx]

#----------------------------------------------------------------------------
# Padding in the four-value form.

def as_four(padding):
    if isinstance(padding, int):
        return [padding] * 4
    if len(padding) == 2:
        return [padding[0], padding[0], padding[1], padding[1]]
    return list(padding)

#----------------------------------------------------------------------------
# Shared random data: a non-square input and asymmetric filters.

RNG = np.random.default_rng(1234)
X = RNG.standard_normal((2, 3, 5, 6))
F1 = np.array([0.3, -1.2, 2.0, 0.7])                       # Separable, asymmetric.
F2 = RNG.standard_normal((3, 2))                           # 2-D, non-square, asymmetric.

GRID = list(itertools.product(
    [(1, 1), (2, 2), (3, 3), (2, 1), (1, 3)],              # up (x, y)
    [(1, 1), (2, 2), (1, 2)],                              # down (x, y)
    [0, [2, 1], [3, -1, -2, 2]],                           # padding
))

#----------------------------------------------------------------------------
# upfirdn2d against the naive loop over the up/down/padding/filter grid.

@pytest.mark.parametrize('f', [F1, F2], ids=['sep', '2d'])
@pytest.mark.parametrize('up,down,padding', GRID)
def test_upfirdn2d_matches_naive(f, up, down, padding):
    flip_filter = (sum(up) + sum(down)) % 2 == 1
    gain = 1.7
    expect = naive_upfirdn2d(X, f, up, down, as_four(padding), flip_filter, gain)
    up_arg = up[0] if up[0] == up[1] else list(up)
    down_arg = down[0] if down[0] == down[1] else list(down)
    y = upfirdn2d.upfirdn2d(torch.tensor(X), torch.tensor(f), up=up_arg, down=down_arg, padding=padding,
        flip_filter=flip_filter, gain=gain, impl='ref')
    assert y.shape == expect.shape
    np.testing.assert_allclose(y.numpy(), expect, rtol=1e-10, atol=1e-10)

#----------------------------------------------------------------------------
# Both CPU layouts (few channels run in channels_last internally, many do not) and both
# input memory formats give the naive result in the input's memory format.

@pytest.mark.parametrize('num_channels', [2, 10])
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('f,up,down', [(F1, 2, 1), (F2, [3, 2], [1, 2]), (F2, 1, 2)])
def test_layouts_match_naive(num_channels, channels_last, f, up, down):
    x = np.random.default_rng(5).standard_normal((2, num_channels, 4, 5))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    up2, down2 = upfirdn2d._parse_scaling(up), upfirdn2d._parse_scaling(down)
    expect = naive_upfirdn2d(x, f, up2, down2, [2, 1, -1, 3])
    y = upfirdn2d.upfirdn2d(torch.tensor(x).to(memory_format=memory_format), torch.tensor(f), up=up, down=down,
        padding=[2, 1, -1, 3])
    assert y.is_contiguous(memory_format=memory_format)
    np.testing.assert_allclose(y.numpy(), expect, rtol=1e-10, atol=1e-10)

#----------------------------------------------------------------------------
# flip_filter flips an asymmetric filter; float32 input works with a float64 reference.

@pytest.mark.parametrize('f', [F1, F2], ids=['sep', '2d'])
def test_flip_filter_and_float32(f):
    for flip_filter in [False, True]:
        expect = naive_upfirdn2d(X, f, (2, 2), (1, 1), [1, 2, 2, 1], flip_filter)
        y = upfirdn2d.upfirdn2d(torch.tensor(X, dtype=torch.float32), torch.tensor(f, dtype=torch.float32),
            up=2, padding=[1, 2, 2, 1], flip_filter=flip_filter)
        assert y.dtype == torch.float32
        np.testing.assert_allclose(y.numpy(), expect, rtol=1e-5, atol=1e-5)
    a = upfirdn2d.upfirdn2d(torch.tensor(X), torch.tensor(f), padding=1)
    b = upfirdn2d.upfirdn2d(torch.tensor(X), torch.tensor(f), padding=1, flip_filter=True)
    assert not torch.allclose(a, b)

#----------------------------------------------------------------------------
# The pure filter case against scipy.signal.convolve2d ('full' = padding taps-1).

def test_filter_matches_scipy():
    x = torch.tensor(X)
    expect = np.stack([[scipy.signal.convolve2d(X[n, c], F2, mode='full') for c in range(3)] for n in range(2)])
    y = upfirdn2d.upfirdn2d(x, torch.tensor(F2), padding=[1, 1, 2, 2])
    np.testing.assert_allclose(y.numpy(), expect, rtol=1e-12, atol=1e-12)
    expect = np.stack([[scipy.signal.convolve2d(X[n, c], F2, mode='valid') for c in range(3)] for n in range(2)])
    y = upfirdn2d.upfirdn2d(x, torch.tensor(F2))
    np.testing.assert_allclose(y.numpy(), expect, rtol=1e-12, atol=1e-12)
    for flip_filter in [False, True]:
        f = F2[::-1, ::-1] if flip_filter else F2
        expect = np.stack([[scipy.signal.convolve2d(X[n, c], f, mode='same') for c in range(3)] for n in range(2)])
        y = upfirdn2d.filter2d(x, torch.tensor(F2), flip_filter=flip_filter)
        assert y.shape == x.shape
        np.testing.assert_allclose(y.numpy(), expect, rtol=1e-12, atol=1e-12)

#----------------------------------------------------------------------------
# None and 0-d filters; an identity filter with only up/down.

def test_identity_filters():
    x = torch.tensor(X)
    assert torch.equal(upfirdn2d.upfirdn2d(x, None), x)
    torch.testing.assert_close(upfirdn2d.upfirdn2d(x, None, gain=3), x * 3)
    torch.testing.assert_close(upfirdn2d.upfirdn2d(x, torch.tensor(2.0, dtype=torch.float64)), x * 2)
    assert torch.equal(upfirdn2d.upfirdn2d(x, None, down=2), x[:, :, ::2, ::2])
    y = upfirdn2d.upfirdn2d(x, None, up=[2, 3])
    assert y.shape == (2, 3, 15, 12)
    assert torch.equal(y[:, :, ::3, ::2], x) and y.abs().sum() == x.abs().sum()

#----------------------------------------------------------------------------
# filter2d / upsample2d / downsample2d output sizes against the naive loop.

@pytest.mark.parametrize('f', [F1, F2, np.ones(3)], ids=['sep4', '2d', 'sep3'])
def test_wrappers_match_naive(f):
    x, ft = torch.tensor(X), torch.tensor(f)
    fw, fh = (len(f), len(f)) if f.ndim == 1 else (f.shape[1], f.shape[0])

    y = upfirdn2d.filter2d(x, ft, padding=[1, 0, 0, 2], gain=2)
    pad = [1 + fw // 2, (fw - 1) // 2, fh // 2, 2 + (fh - 1) // 2]
    assert y.shape == (2, 3, 5 + 2, 6 + 1)
    np.testing.assert_allclose(y.numpy(), naive_upfirdn2d(X, f, (1, 1), (1, 1), pad, False, 2), atol=1e-10)

    y = upfirdn2d.upsample2d(x, ft, up=[2, 3])
    pad = [(fw + 1) // 2, (fw - 2) // 2, (fh + 2) // 2, (fh - 3) // 2]
    assert y.shape == (2, 3, 15, 12)
    np.testing.assert_allclose(y.numpy(), naive_upfirdn2d(X, f, (2, 3), (1, 1), pad, False, 6), atol=1e-10)

    y = upfirdn2d.downsample2d(x, ft, down=2, padding=[0, 0, 1, 0])
    pad = [(fw - 1) // 2, (fw - 2) // 2, 1 + (fh - 1) // 2, (fh - 2) // 2]
    assert y.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(y.numpy(), naive_upfirdn2d(X, f, (1, 1), (2, 2), pad, False, 1), atol=1e-10)

#----------------------------------------------------------------------------
# Normalised filters keep a constant image constant (away from the borders).

def test_constant_image_stays_constant():
    x = torch.full([1, 2, 8, 8], 3.0)
    for f in [upfirdn2d.setup_filter([1, 3, 3, 1]), upfirdn2d.setup_filter([1, 3, 3, 1], separable=True)]:
        y = upfirdn2d.upsample2d(x, f)
        assert y.shape == (1, 2, 16, 16)
        torch.testing.assert_close(y[:, :, 2:-2, 2:-2], torch.full([1, 2, 12, 12], 3.0))
        y = upfirdn2d.downsample2d(x, f)
        assert y.shape == (1, 2, 4, 4)
        torch.testing.assert_close(y[:, :, 1:-1, 1:-1], torch.full([1, 2, 2, 2], 3.0))
        y = upfirdn2d.filter2d(x, f)
        torch.testing.assert_close(y[:, :, 2:-2, 2:-2], torch.full([1, 2, 4, 4], 3.0))

#----------------------------------------------------------------------------
# setup_filter: separable default, outer product, normalisation, flip, gain, device.

def test_setup_filter():
    f = upfirdn2d.setup_filter([1, 2, 3])
    assert f.shape == (3, 3) and f.dtype == torch.float32 and f.device.type == 'cpu'
    torch.testing.assert_close(f, torch.outer(torch.tensor([1., 2, 3]), torch.tensor([1., 2, 3])) / 36)
    f8 = upfirdn2d.setup_filter(np.arange(1, 9))
    assert f8.shape == (8,)
    torch.testing.assert_close(f8, torch.arange(1., 9) / 36)
    assert upfirdn2d.setup_filter(np.arange(1, 9), separable=False).shape == (8, 8)
    assert upfirdn2d.setup_filter([1, 2, 3], separable=True).shape == (3,)
    torch.testing.assert_close(upfirdn2d.setup_filter([1, 2, 3], normalize=False, separable=True, flip_filter=True),
        torch.tensor([3., 2, 1]))
    torch.testing.assert_close(upfirdn2d.setup_filter([1, 3], separable=True, gain=4), torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(upfirdn2d.setup_filter([[1, 3]], gain=4), torch.tensor([[1., 3.]]))
    torch.testing.assert_close(upfirdn2d.setup_filter(None), torch.ones([1, 1]))
    torch.testing.assert_close(upfirdn2d.setup_filter(5), torch.ones([1, 1]))
    torch.testing.assert_close(upfirdn2d.setup_filter(5, normalize=False), torch.full([1, 1], 25.))
    with pytest.raises(ValueError, match='1-D or 2-D'):
        upfirdn2d.setup_filter(np.ones([2, 2, 2]))
    with pytest.raises(ValueError, match='separable'):
        upfirdn2d.setup_filter(np.ones([2, 2]), separable=True)

#----------------------------------------------------------------------------
# The parsing helpers shared with conv2d_resample.

def test_parse_helpers():
    assert upfirdn2d._parse_scaling(2) == (2, 2)
    assert upfirdn2d._parse_scaling([1, 3]) == (1, 3)
    assert upfirdn2d._parse_padding(1) == (1, 1, 1, 1)
    assert upfirdn2d._parse_padding([1, -2]) == (1, 1, -2, -2)
    assert upfirdn2d._parse_padding((1, 2, 3, 4)) == (1, 2, 3, 4)
    assert upfirdn2d._get_filter_size(None) == (1, 1)
    assert upfirdn2d._get_filter_size(torch.ones(5)) == (5, 5)
    assert upfirdn2d._get_filter_size(torch.ones(3, 2)) == (2, 3)

#----------------------------------------------------------------------------
# One clear ValueError per kind of bad input.

@pytest.mark.parametrize('kwargs,match', [
    (dict(x=torch.ones(3, 4, 4)), '4-D'),
    (dict(f=torch.ones(2, 2, 2)), '0, 1 or 2 dims'),
    (dict(f=[1, 2]), 'torch.Tensor'),
    (dict(up=0), '>= 1'),
    (dict(down=[1, 0]), '>= 1'),
    (dict(up=1.5), 'int'),
    (dict(down=[1, 2, 3]), 'int or a list'),
    (dict(padding=[1, 2, 3]), 'padding'),
    (dict(padding=0.5), 'padding'),
    (dict(padding=[-3, -3, 0, 0]), 'smaller than 1 pixel'),
    (dict(impl='fast'), 'impl'),
])
def test_errors(kwargs, match):
    args = dict(x=torch.ones(1, 1, 4, 4), f=torch.ones(3))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        upfirdn2d.upfirdn2d(**args)

#----------------------------------------------------------------------------
# gradcheck and gradgradcheck in float64 (separable and 2-D, with up and down).

@pytest.mark.parametrize('f,up,down,padding', [
    (F1, 2, 1, [1, 2, 0, 3]),
    (F2, [1, 2], 2, [2, -1, 1, 1]),
    (F1, 1, 2, 1),
])
def test_gradients(f, up, down, padding):
    x = torch.tensor(X[:1, :2, :4, :3], requires_grad=True)
    fn = lambda x: upfirdn2d.upfirdn2d(x, torch.tensor(f), up=up, down=down, padding=padding, gain=1.3)
    assert torch.autograd.gradcheck(fn, [x])
    assert torch.autograd.gradgradcheck(fn, [x])

#----------------------------------------------------------------------------
# channels_last input gives channels_last output with the same values.

@pytest.mark.parametrize('fn', [upfirdn2d.filter2d, upfirdn2d.upsample2d, upfirdn2d.downsample2d])
def test_channels_last(fn):
    x = torch.randn(2, 4, 8, 6)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    y = fn(x, f)
    y_cl = fn(x.to(memory_format=torch.channels_last), f)
    assert y_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y_cl, y)

#----------------------------------------------------------------------------
# float16 works on the CPU (close to float32).

def test_float16():
    x = torch.randn(1, 2, 8, 8)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    for fn in [upfirdn2d.filter2d, upfirdn2d.upsample2d, upfirdn2d.downsample2d]:
        y = fn(x.half(), f)
        assert y.dtype == torch.float16
        torch.testing.assert_close(y.float(), fn(x, f), rtol=1e-2, atol=1e-2)

#----------------------------------------------------------------------------
# bfloat16 and float16 without up-sampling (equal padding per axis: the convolution pads) against the
# float64 naive loop: values, the input gradient, and the second derivative R1 takes (the gradient's
# derivative with respect to the incoming gradient, which is the op itself applied to v).

@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('f,down,padding', [(F1, 1, [2, 1]), (F2, 2, 2), (F1, [1, 2], 0), (F1, 2, [2, 2, 1, 0])])
def test_reduced_precision_matches_naive(dtype, channels_last, f, down, padding):
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.standard_normal((2, 3, 7, 8))).to(dtype).double() # Values representable in dtype.
    f = torch.tensor(f).to(dtype).double()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    def run(t):
        return upfirdn2d.upfirdn2d(t, f, down=down, padding=padding, gain=1.3)
    down2 = [down, down] if isinstance(down, int) else down
    naive = lambda t: torch.tensor(naive_upfirdn2d(t.numpy(), f.numpy(), (1, 1), down2, as_four(padding), gain=1.3))
    xl = x.to(dtype=dtype, memory_format=fmt).requires_grad_(True)
    y = run(xl)
    assert y.dtype == dtype and y.is_contiguous(memory_format=fmt)
    expected = naive(x)
    torch.testing.assert_close(y.double(), expected, rtol=2e-2, atol=2e-2 * expected.abs().max().item())

    # Input gradient (the adjoint) against float64 autograd through the explicit padding, then its derivative.
    dy = torch.tensor(rng.standard_normal(y.shape)).to(dtype)
    v = torch.tensor(rng.standard_normal(x.shape)).to(dtype)
    dy_l = dy.to(memory_format=fmt).requires_grad_(True)
    gx, = torch.autograd.grad(y, xl, dy_l, create_graph=True)
    x64 = x.clone().requires_grad_(True)
    gx64, = torch.autograd.grad(run(x64), x64, dy.double())
    torch.testing.assert_close(gx.double(), gx64, rtol=2e-2, atol=2e-2 * gx64.abs().max().item())
    ggy, = torch.autograd.grad((gx * v.to(memory_format=fmt)).sum(), dy_l)
    expected = naive(v.double())
    torch.testing.assert_close(ggy.double(), expected, rtol=2e-2, atol=2e-2 * expected.abs().max().item())

#----------------------------------------------------------------------------
# impl='cuda' on the CPU runs the reference path without a warning.

def test_impl_on_cpu():
    x, f = torch.tensor(X), torch.tensor(F2)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        torch.testing.assert_close(upfirdn2d.upfirdn2d(x, f, up=2, impl='cuda'), upfirdn2d.upfirdn2d(x, f, up=2, impl='ref'))

#----------------------------------------------------------------------------
# impl='cuda' on a CUDA tensor without a built kernel warns once and uses the reference.

#----------------------------------------------------------------------------
# The Examples block of docs/ops.md runs and its comments hold.

def test_docs_examples():
    import os
    import re
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs', 'ops.md')
    with open(path, encoding='utf-8') as file:
        code = re.search(r'## Examples\n\n```python\n(.*?)```', file.read(), re.S).group(1)
    ns = dict()
    exec(code, ns)  # pylint: disable=exec-used
    assert ns['up'].shape == (4, 64, 64, 64) and ns['down'].shape == (4, 64, 16, 16) and ns['blur'].shape == (4, 64, 32, 32)
    torch.testing.assert_close(ns['z'], ns['up'])
    torch.testing.assert_close(ns['out'], ns['x'] * 0.5 + ns['y'])
    assert abs(float(ns['f'].sum()) - 1) < 1e-6

#----------------------------------------------------------------------------
