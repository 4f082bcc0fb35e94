# Tests of torch_utils.ops.filtered_lrelu: the reference path against a naive float64
# numpy/scipy formulation, its first and second derivatives (gradcheck/gradgradcheck), the
# argument checks, and the CUDA path's parity with the reference, run on the host-compiled
# kernels (see tests/test_ops_cuda.py) and on a GPU when there is one.

import math
import os

import numpy as np
import pytest
import scipy.signal
import torch

from torch_utils.ops import filtered_lrelu
from torch_utils.ops import upfirdn2d

from test_ops_cuda import TOL, assert_parity, build_host_library, HostUpfirdn2dPlugin, UPFIRDN2D_ENTRY

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')

#----------------------------------------------------------------------------
# Naive float64 formulation: per image, zero-stuff, pad/crop, 2-D convolution with scipy,
# leaky ReLU, gain, clamp, convolution with fd, decimation.

def naive_resample(img, f, up, down, padding, flip_filter, gain):
    px0, px1, py0, py1 = padding
    f = np.ones([1, 1]) if f is None else np.asarray(f, dtype=np.float64)
    f = np.outer(f, f) if f.ndim == 1 else np.atleast_2d(f)
    f = f * gain
    if flip_filter:
        f = f[::-1, ::-1]
    h, w = img.shape
    z = np.zeros([h * up, w * up])
    z[::up, ::up] = img
    z = np.pad(z, [[max(py0, 0), max(py1, 0)], [max(px0, 0), max(px1, 0)]])
    z = z[max(-py0, 0) : z.shape[0] - max(-py1, 0), max(-px0, 0) : z.shape[1] - max(-px1, 0)]
    return scipy.signal.convolve2d(z, f, mode='valid')[::down, ::down]

def naive_filtered_lrelu(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
    x = np.asarray(x, dtype=np.float64)
    padding = [padding] * 4 if isinstance(padding, int) else padding if len(padding) == 4 else [padding[0], padding[0], padding[1], padding[1]]
    out = []
    for n in range(x.shape[0]):
        chans = []
        for c in range(x.shape[1]):
            t = naive_resample(x[n, c] + (b[c] if b is not None else 0), fu, up, 1, padding, flip_filter, up ** 2)
            t = np.where(t > 0, t, t * slope) * gain
            if clamp is not None:
                t = np.clip(t, -clamp, clamp)
            chans.append(naive_resample(t, fd, 1, down, [0, 0, 0, 0], flip_filter, 1))
        out.append(chans)
    return np.array(out)

#----------------------------------------------------------------------------
# Cases: up/down factors, separable and 2-D filters, padding forms, gain, slope, clamp, flip.

RNG = np.random.default_rng(5)
FU4 = [0.1, 0.6, 0.9, 0.3]                               # Asymmetric separable taps.
FD2 = [[0.5, 1.0, 0.2], [0.3, -0.2, 0.6]]                # Asymmetric 2-D taps.
CASES = [
    dict(fu=None, fd=None, up=1, down=1, padding=0),
    dict(fu=FU4, fd=FU4, up=2, down=2, padding=[2, 1, 1, 2], clamp=0.7),
    dict(fu=FU4, fd=FD2, up=2, down=1, padding=[3, 2], slope=0.05, gain=1.3),
    dict(fu=FD2, fd=[1, 2, 1], up=1, down=2, padding=[1, 0, 2, 1], flip_filter=True),
    dict(fu=[v / 11 for v in [1, 3, 3, 1, 2, 1]], fd=FU4, up=3, down=2, padding=[-1, 4, 2, 0], clamp=0.5, gain=1.0, slope=1.0),
    dict(fu=None, fd=FU4, up=2, down=4, padding=[5, 4, 3, 6], flip_filter=True, clamp=1.5),
]

def case_tensors(case, dtype=torch.float64):
    case = dict(case)
    f = lambda taps: None if taps is None else torch.tensor(taps, dtype=dtype)
    case['fu'], case['fd'] = f(case['fu']), f(case['fd'])
    return case

#----------------------------------------------------------------------------

@pytest.mark.parametrize('case', CASES)
def test_reference_matches_naive(case):
    x = RNG.standard_normal((2, 3, 7, 6))
    b = RNG.standard_normal(3)
    kw = dict(gain=math.sqrt(2), slope=0.2, clamp=None, flip_filter=False) | case
    expected = naive_filtered_lrelu(x, b=b, **kw)
    t = case_tensors(case)
    y = filtered_lrelu.filtered_lrelu(torch.tensor(x), b=torch.tensor(b), **t)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-10)
    y32 = filtered_lrelu.filtered_lrelu(torch.tensor(x, dtype=torch.float32), b=torch.tensor(b, dtype=torch.float32), **case_tensors(case, torch.float32))
    assert y32.dtype == torch.float32
    np.testing.assert_allclose(y32.numpy(), expected, rtol=1e-4, atol=1e-4)

@pytest.mark.parametrize('case', CASES)
def test_reference_gradcheck(case):
    t = case_tensors(case)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, generator=gen, requires_grad=True)
    fn = lambda x, b: filtered_lrelu.filtered_lrelu(x, b=b, **t)
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))

def test_reference_filter_gradients():
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, generator=gen)
    fu = torch.tensor(FU4, dtype=torch.float64, requires_grad=True)
    fd = torch.tensor(FD2, dtype=torch.float64, requires_grad=True)
    fn = lambda fu, fd: filtered_lrelu.filtered_lrelu(x, fu, fd, up=2, down=2, padding=2, clamp=0.8)
    assert torch.autograd.gradcheck(fn, (fu, fd))

def test_defaults_are_stylegan3s():
    # gain sqrt(2), slope 0.2, no clamp, no filters: a plain scaled leaky ReLU.
    x = torch.tensor([[[[-2.0, 3.0]]]], dtype=torch.float64)
    y = filtered_lrelu.filtered_lrelu(x)
    torch.testing.assert_close(y, torch.tensor([[[[-0.4 * math.sqrt(2), 3 * math.sqrt(2)]]]], dtype=torch.float64))

@pytest.mark.parametrize('kwargs,match', [
    (dict(up=0), 'up must be an int'),
    (dict(down=1.5), 'down must be an int'),
    (dict(b=torch.zeros(4)), 'b must be a 1-D tensor of length'),
    (dict(clamp=-1), 'clamp must be None or >= 0'),
    (dict(padding=[1, 2, 3]), 'padding must be'),
    (dict(fu=[1, 2]), 'fu must be None or'),
    (dict(impl='fast'), "impl must be 'auto', 'cuda' or 'ref'"),
    (dict(gain=float('nan')), 'gain and slope must be finite'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        filtered_lrelu.filtered_lrelu(torch.zeros(1, 3, 4, 4), **kwargs)

#----------------------------------------------------------------------------
# Host emulation of the activation kernel: the .cu compiled as plain C++ (tests/test_ops_cuda.py).

FILTERED_LRELU_ENTRY = r'''
template <class T> static void run(const FilteredLReluActParams& p) { host_launch(3, 4, [&] { filtered_lrelu_act_kernel<T>(p); }); }
extern "C" void emu_filtered_lrelu(int dtype, const void* x, void* y, uint8_t* codes, int64_t numel, int mode,
    float gain, float slope, float clamp)
{
    FilteredLReluActParams p = {x, y, codes, numel, mode, gain, slope, clamp};
    if (dtype == 0) run<float>(p); else if (dtype == 1) run<c10::Half>(p); else run<c10::BFloat16>(p);
}
'''

DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}

# The argument handling of filtered_lrelu.cpp around the host-compiled kernel, for CPU tensors.
class HostFilteredLReluPlugin:
    def __init__(self, lib):
        import ctypes
        self.lib = lib
        lib.emu_filtered_lrelu.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 3 + [ctypes.c_int64, ctypes.c_int] + [ctypes.c_float] * 3

    def _run(self, x, codes, mode, gain, slope, clamp):
        assert x.dtype in DTYPE_CODES and (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))
        assert codes.dtype == torch.uint8 and codes.shape == x.shape and codes.stride() == x.stride()
        y = torch.empty_like(x)
        assert y.stride() == x.stride()
        self.lib.emu_filtered_lrelu(DTYPE_CODES[x.dtype], x.data_ptr(), y.data_ptr(), codes.data_ptr(), x.numel(), mode, gain, slope, clamp)
        return y

    def act_forward(self, x, gain, slope, clamp):
        codes = torch.empty_like(x, dtype=torch.uint8)
        return self._run(x, codes, 0, gain, slope, clamp), codes

    def act_masked(self, x, codes, gain, slope):
        return self._run(x, codes, 1, gain, slope, -1.0)

@pytest.fixture(scope='module')
def host_plugins(tmp_path_factory):
    tmp_dir = str(tmp_path_factory.mktemp('host_filtered_lrelu'))
    return dict(filtered_lrelu=HostFilteredLReluPlugin(build_host_library(tmp_dir, 'filtered_lrelu', FILTERED_LRELU_ENTRY)),
        upfirdn2d=HostUpfirdn2dPlugin(build_host_library(tmp_dir, 'upfirdn2d', UPFIRDN2D_ENTRY)))

#----------------------------------------------------------------------------
# Parity of the CUDA Functions with the reference: forward, gradients w.r.t. x and b, and
# second derivatives (w.r.t. x, b and the incoming gradient).

# In float16/bfloat16 the clamp is left out: the kernel path rounds the up-sampled image
# to the dtype, so an element next to the bound can land on the other side of it than in
# the float32 reference (a discrete gradient difference); the codes are dtype-independent
# float32 logic, checked in float32.

def run_parity(device, case, dtype, channels_last):
    if dtype != torch.float32:
        case = dict(case, clamp=None)
    t = case_tensors(case, torch.float32)
    t = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in t.items()}
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 7, 6, generator=gen).to(device=device, dtype=dtype)
    b = (torch.randn(3, generator=gen) * 0.5).to(device=device, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    fu, fd = t.pop('fu'), t.pop('fd')
    args = filtered_lrelu._parse_args(x, fu, fd, b, t.get('up', 1), t.get('down', 1), t.get('padding', 0),
        t.get('gain', math.sqrt(2)), t.get('slope', 0.2), t.get('clamp'))
    fast = lambda x, b: filtered_lrelu._filtered_lrelu_cuda(*args, flip_filter=t.get('flip_filter', False)).apply(x, fu, fd, b)
    ref = lambda x, b: filtered_lrelu._filtered_lrelu_ref(x, fu, fd, b, **t)
    y = ref(x.float(), b.float())
    gy = torch.randn(y.shape, generator=gen).to(device=device, dtype=dtype)
    gg = torch.randn(x.shape, generator=gen).to(device=device, dtype=dtype)
    assert_parity(fast, ref, [x, b], gy, gg, TOL[dtype])
    assert fast(x, b).dtype == dtype

@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_path_host(host_plugins, monkeypatch, case, dtype):
    monkeypatch.setattr(filtered_lrelu, '_plugin', host_plugins['filtered_lrelu'])
    monkeypatch.setattr(upfirdn2d, '_plugin', host_plugins['upfirdn2d'])
    run_parity('cpu', case, dtype, channels_last=False)
    if dtype == torch.float32:
        run_parity('cpu', case, dtype, channels_last=True)

def test_public_dispatch_host(host_plugins, monkeypatch):
    # The public function's CUDA branch (bias cast, filters None, cache) with the host plugins.
    monkeypatch.setattr(filtered_lrelu, '_plugin', host_plugins['filtered_lrelu'])
    monkeypatch.setattr(upfirdn2d, '_plugin', host_plugins['upfirdn2d'])
    monkeypatch.setattr(filtered_lrelu, '_check_impl', lambda impl, x: impl != 'ref')
    gen = torch.Generator().manual_seed(4)
    x, b = torch.randn(2, 3, 6, 5, generator=gen), torch.randn(3, dtype=torch.float64, generator=gen)
    fu = upfirdn2d.setup_filter([1, 3, 3, 1])
    for kw in [dict(fu=fu, fd=fu, up=2, down=2, padding=3, clamp=1.0), dict(b=None)]:
        kw = dict(dict(b=b), **kw)
        torch.testing.assert_close(filtered_lrelu.filtered_lrelu(x, **kw), filtered_lrelu.filtered_lrelu(x, impl='ref', **kw))
    fu_grad = fu.clone().requires_grad_(True)  # A filter gradient forces the reference path.
    y = filtered_lrelu.filtered_lrelu(x, fu_grad, up=2, padding=2)
    y.sum().backward()
    assert fu_grad.grad is not None

def test_impl_cuda_on_cpu_runs_reference():
    x = torch.randn(1, 2, 3, 3)
    torch.testing.assert_close(filtered_lrelu.filtered_lrelu(x, impl='cuda'), filtered_lrelu.filtered_lrelu(x, impl='ref'))

@needs_cuda
@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('channels_last', [False, True])
def test_cuda_path_gpu(case, dtype, channels_last):
    assert filtered_lrelu._init(), str(filtered_lrelu._error_text())
    run_parity('cuda', case, dtype, channels_last)

#----------------------------------------------------------------------------
