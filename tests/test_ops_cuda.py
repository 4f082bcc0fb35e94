# Parity of the CUDA paths of bias_act and upfirdn2d with the reference paths: forward,
# gradient and gradient of gradient over activations, up/down factors, padding, gain,
# clamp, dtypes and memory formats.
#
# Two ways to run the same checks:
#   - "host": the kernel sources (bias_act.cu, upfirdn2d.cu) compiled as plain C++ for
#     the CPU (one emulated thread at a time) and plugged in as the plugin, so the kernel
#     arithmetic, the indexing and the autograd.Functions run on this machine;
#   - "cuda": the real plugin on a GPU (skipped without CUDA).

import ctypes
import os
import subprocess

import pytest
import torch

from torch_utils.ops import bias_act
from torch_utils.ops import upfirdn2d

OPS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'torch_utils', 'ops')
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}

#----------------------------------------------------------------------------
# Host emulation: a stand-in for <cuda_runtime.h> that turns the CUDA qualifiers into
# plain C++ and provides the thread-index variables, plus C entry points that run every
# (block, thread) of a launch in turn.

FAKE_CUDA_RUNTIME = r'''
#pragma once
#include <cmath>
#include <cstdint>
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__
typedef struct CUstream_st* cudaStream_t;
struct HostDim3 { unsigned int x = 0, y = 0, z = 0; };
static HostDim3 threadIdx, blockIdx, blockDim, gridDim;
static float s_f[65536];
static inline void __syncthreads() {}
template <class K> static void host_launch(unsigned grid, unsigned block, K kernel)
{
    gridDim.x = grid; blockDim.x = block;
    for (unsigned b = 0; b < grid; b++)
        for (unsigned t = 0; t < block; t++) { blockIdx.x = b; threadIdx.x = t; kernel(); }
}
'''

BIAS_ACT_ENTRY = r'''
template <class T> static void run(const BiasActParams& p) { host_launch(3, 4, [&] { bias_act_kernel<T>(p); }); }
extern "C" void emu_bias_act(int dtype, const void* x, const void* b, const void* dy, void* out, int64_t numel,
    int64_t bias_step, int64_t bias_len, int act, int mode, float alpha, float gain, float clamp)
{
    BiasActParams p = {x, b, dy, out, numel, bias_step, bias_len, act, mode, alpha, gain, clamp};
    if (dtype == 0) run<float>(p); else if (dtype == 1) run<c10::Half>(p); else run<c10::BFloat16>(p);
}
'''

UPFIRDN2D_ENTRY = r'''
template <class T> static void run(const UpFirDn2DParams& p) { host_launch(3, 1, [&] { upfirdn2d_kernel<T>(p, true); }); }
extern "C" void emu_upfirdn2d(int dtype, const void* x, const float* f, void* y, const int64_t* xs, const int64_t* ys,
    const int* sizes, int c_fastest)
{
    UpFirDn2DParams p;
    p.x = x; p.f = f; p.y = y;
    for (int d = 0; d < 4; d++) { p.x_stride[d] = xs[d]; p.y_stride[d] = ys[d]; }
    p.n = sizes[0]; p.c = sizes[1]; p.in_h = sizes[2]; p.in_w = sizes[3]; p.out_h = sizes[4]; p.out_w = sizes[5];
    p.fh = sizes[6]; p.fw = sizes[7]; p.up_x = sizes[8]; p.up_y = sizes[9]; p.down_x = sizes[10]; p.down_y = sizes[11];
    p.pad_x0 = sizes[12]; p.pad_y0 = sizes[13]; p.c_fastest = c_fastest != 0;
    p.numel = (int64_t)p.n * p.c * p.out_h * p.out_w;
    if (dtype == 0) run<float>(p); else if (dtype == 1) run<c10::Half>(p); else run<c10::BFloat16>(p);
}
'''

#----------------------------------------------------------------------------
# Compiles <name>.cu (up to its launch section) with the entry points into a shared library.

def build_host_library(tmp_dir, name, entry):
    with open(os.path.join(OPS_DIR, f'{name}.cu'), encoding='utf-8') as f:
        text = f.read()
    cut = text.rindex('//---', 0, text.index('// Host-side launch'))
    os.makedirs(os.path.join(tmp_dir, 'inc'), exist_ok=True)
    with open(os.path.join(tmp_dir, 'inc', 'cuda_runtime.h'), 'w', encoding='utf-8') as f:
        f.write(FAKE_CUDA_RUNTIME)
    src, lib = os.path.join(tmp_dir, f'{name}_host.cpp'), os.path.join(tmp_dir, f'{name}_host.so')
    with open(src, 'w', encoding='utf-8') as f:
        f.write(text[:cut] + entry)
    torch_include = os.path.join(os.path.dirname(torch.__file__), 'include')
    cmd = ['c++', '-std=c++17', '-O1', '-shared', '-fPIC', '-I' + os.path.join(tmp_dir, 'inc'), '-I' + torch_include, '-I' + OPS_DIR, src, '-o', lib]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip('no C++ compiler (c++) to build the host emulation of the kernels')
    except subprocess.CalledProcessError as err:
        pytest.fail(f'host build of {name}.cu failed:\n{err.stderr[-3000:]}')
    return ctypes.CDLL(lib)

#----------------------------------------------------------------------------
# The emulated plugins: the argument handling of bias_act.cpp / upfirdn2d.cpp around the
# host-compiled kernels, for CPU tensors.

class HostBiasActPlugin:
    def __init__(self, lib):
        self.lib = lib
        lib.emu_bias_act.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 3 + [ctypes.c_int] * 2 + [ctypes.c_float] * 3

    def bias_act(self, x, b, dy, mode, act, alpha, gain, clamp, dim):
        assert (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)) and x.dtype in DTYPE_CODES
        has_b = b.numel() > 0
        if has_b:
            assert b.dtype == x.dtype and b.is_contiguous() and b.shape == (x.shape[dim],)
        if mode != 0:
            assert dy.dtype == x.dtype and dy.shape == x.shape and dy.stride() == x.stride()
        out = torch.empty_like(x)
        assert out.stride() == x.stride()
        self.lib.emu_bias_act(DTYPE_CODES[x.dtype], x.data_ptr(), b.data_ptr() if has_b else None,
            dy.data_ptr() if mode != 0 else None, out.data_ptr(), x.numel(), x.stride(dim) if has_b else 1,
            x.shape[dim] if has_b else 1, act, mode, alpha, gain, clamp)
        return out

class HostUpfirdn2dPlugin:
    def __init__(self, lib):
        self.lib = lib
        lib.emu_upfirdn2d.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 6 + [ctypes.c_int]

    def upfirdn2d(self, x, f, upx, upy, downx, downy, px0, px1, py0, py1):
        assert x.ndim == 4 and x.dtype in DTYPE_CODES and f.dtype == torch.float32 and f.ndim == 2 and f.is_contiguous()
        fh, fw = f.shape
        out_h = (x.shape[2] * upy + py0 + py1 - fh) // downy + 1
        out_w = (x.shape[3] * upx + px0 + px1 - fw) // downx + 1
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        y = torch.empty([x.shape[0], x.shape[1], out_h, out_w], dtype=x.dtype, memory_format=fmt)
        xs, ys = (ctypes.c_int64 * 4)(*x.stride()), (ctypes.c_int64 * 4)(*y.stride())
        sizes = (ctypes.c_int * 14)(*x.shape, out_h, out_w, fh, fw, upx, upy, downx, downy, px0, py0)
        self.lib.emu_upfirdn2d(DTYPE_CODES[x.dtype], x.data_ptr(), f.data_ptr(), y.data_ptr(), xs, ys, sizes, int(channels_last))
        return y

@pytest.fixture(scope='module')
def host_plugins(tmp_path_factory):
    tmp_dir = str(tmp_path_factory.mktemp('host_kernels'))
    return dict(bias_act=HostBiasActPlugin(build_host_library(tmp_dir, 'bias_act', BIAS_ACT_ENTRY)),
        upfirdn2d=HostUpfirdn2dPlugin(build_host_library(tmp_dir, 'upfirdn2d', UPFIRDN2D_ENTRY)))

#----------------------------------------------------------------------------
# Tolerances per dtype. The kernels compute in float32 and round their results to the
# dtype, so for float16/bfloat16 they are compared with the reference run in float32 on
# the same (rounded) inputs, a few roundings of the dtype apart; atol is relative to the
# largest value of each tensor (two-pass filters round an intermediate). (The reference run in
# float16/bfloat16 itself is further off: it rounds every intermediate, and the clamp
# masks can differ near the bounds.)

TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float16: dict(rtol=5e-3, atol=5e-3), torch.bfloat16: dict(rtol=2e-2, atol=2e-2)}

#----------------------------------------------------------------------------
# Forward, first derivatives and second derivatives of fn(*inputs): the gradient of
# <gg, d<gy, y>/dx> (as R1 differentiates a gradient) w.r.t. every input and gy.

def derivatives(fn, inputs, gy, gg):
    inputs = [t.detach().requires_grad_(True) for t in inputs]
    gy = gy.detach().requires_grad_(True)
    y = fn(*inputs)
    grads = torch.autograd.grad(y, inputs, gy, create_graph=True)
    total = (grads[0].float() * gg.float()).sum()
    grads2 = torch.autograd.grad(total, inputs + [gy], allow_unused=True)
    return [y, *grads] + [g if g is not None else torch.zeros_like(t) for g, t in zip(grads2, inputs + [gy])]

#----------------------------------------------------------------------------
# Compares every output of derivatives() between the fast Function and the reference
# (the latter in float32).

def assert_parity(fast_fn, ref_fn, inputs, gy, gg, tol):
    fast = derivatives(fast_fn, inputs, gy, gg)
    ref = derivatives(ref_fn, [t.float() for t in inputs], gy.float(), gg.float())
    names = ['forward'] + [f'grad {i}' for i in range(len(inputs))] + [f'grad2 {i}' for i in range(len(inputs))] + ['grad2 dy']
    for name, a, b in zip(names, fast, ref, strict=True):
        atol = tol['atol'] * max(1.0, float(b.detach().abs().max()))  # Relative to the tensor's scale.
        torch.testing.assert_close(a.float(), b.float(), rtol=tol['rtol'], atol=atol, msg=lambda m, name=name: f'{name}: {m}')

#----------------------------------------------------------------------------
# bias_act cases: every activation, with and without clamp, gain and alpha overrides.

BIAS_ACT_CASES = [(act, clamp, gain, alpha) for act in bias_act.activation_funcs
    for clamp, gain, alpha in [(None, None, None), (0.5, 1.7, 0.3)]]

def run_bias_act_parity(device, act, clamp, gain, alpha, dtype, channels_last, dim=1):
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(2, 5, 3, 4, generator=gen) * 2).to(device=device, dtype=dtype)
    b = torch.randn(x.shape[dim], generator=gen).to(device=device, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    gy = torch.randn(x.shape, generator=gen).to(device=device, dtype=dtype)
    gg = torch.randn(x.shape, generator=gen).to(device=device, dtype=dtype)
    kwargs = dict(dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
    fast = lambda x, b: bias_act._bias_act_cuda(**kwargs).apply(x, b)
    ref = lambda x, b: bias_act._bias_act_ref(x, b, **kwargs)
    assert_parity(fast, ref, [x, b], gy, gg, TOL[dtype])
    y = fast(x, b)
    assert y.dtype == dtype and y.stride() == x.stride()

@pytest.mark.parametrize('act,clamp,gain,alpha', BIAS_ACT_CASES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_bias_act_host(host_plugins, monkeypatch, act, clamp, gain, alpha, dtype):
    monkeypatch.setattr(bias_act, '_plugin', host_plugins['bias_act'])
    run_bias_act_parity('cpu', act, clamp, gain, alpha, dtype, channels_last=False)
    run_bias_act_parity('cpu', act, clamp, gain, alpha, dtype, channels_last=True, dim=3)

def test_bias_act_host_no_bias(host_plugins, monkeypatch):
    monkeypatch.setattr(bias_act, '_plugin', host_plugins['bias_act'])
    gen = torch.Generator().manual_seed(3)
    x, gy, gg = [torch.randn(3, 4, 5, generator=gen) for _ in range(3)]
    for act in ['lrelu', 'softplus', 'elu']:
        fast = lambda x: bias_act._bias_act_cuda(dim=1, act=act, clamp=0.8).apply(x, None)
        ref = lambda x: bias_act._bias_act_ref(x, None, act=act, clamp=0.8)
        assert_parity(fast, ref, [x], gy, gg, TOL[torch.float32])

@needs_cuda
@pytest.mark.parametrize('act,clamp,gain,alpha', BIAS_ACT_CASES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('channels_last', [False, True])
def test_bias_act_cuda(act, clamp, gain, alpha, dtype, channels_last):
    assert bias_act._init(), str(bias_act._plugin_error)
    run_bias_act_parity('cuda', act, clamp, gain, alpha, dtype, channels_last)

#----------------------------------------------------------------------------
# upfirdn2d cases: up/down factors (per axis too), positive and negative padding, 2-D
# and separable filters of odd/even sizes, flip, gain.

UPFIRDN_CASES = [
    dict(up=1, down=1, padding=0, taps=[[1, 2], [3, 4]]),
    dict(up=2, down=1, padding=[2, 1, 2, 1], taps=[1, 3, 3, 1]),
    dict(up=1, down=2, padding=1, taps=[1, 3, 3, 1]),
    dict(up=[3, 2], down=[1, 2], padding=[1, 2, 0, 3], taps=[[1, 2, 3], [0, 1, -1]]),
    dict(up=2, down=3, padding=[-1, 2, 3, -2], taps=[1, 2, 5, 2, 1], flip_filter=True, gain=3),
    dict(up=1, down=1, padding=[-2, -1, 0, 1], taps=[[2.0]]),
    dict(up=4, down=4, padding=[3, 2, 1, 4], taps=[1, 4, 6, 4, 1, 2, 3, 1], gain=0.5),
    dict(up=2, down=1, padding=[0, 1, 1, 0], taps=3.0),
]

def run_upfirdn2d_parity(device, case, dtype, channels_last):
    case = dict(case)
    taps = case.pop('taps')
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 7, 6, generator=gen).to(device=device, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    f = torch.tensor(taps, dtype=torch.float32, device=device)
    fast = lambda x: upfirdn2d._upfirdn2d_cuda(**case).apply(x, f)
    ref = lambda x: upfirdn2d._upfirdn2d_ref(x, f, **case)
    y = ref(x)
    gy = torch.randn(y.shape, generator=gen).to(device=device, dtype=dtype)
    gg = torch.randn(x.shape, generator=gen).to(device=device, dtype=dtype)
    assert_parity(fast, ref, [x], gy, gg, TOL[dtype])
    assert fast(x).is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

@pytest.mark.parametrize('case', UPFIRDN_CASES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('channels_last', [False, True])
def test_upfirdn2d_host(host_plugins, monkeypatch, case, dtype, channels_last):
    monkeypatch.setattr(upfirdn2d, '_plugin', host_plugins['upfirdn2d'])
    run_upfirdn2d_parity('cpu', case, dtype, channels_last)

@needs_cuda
@pytest.mark.parametrize('case', UPFIRDN_CASES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('channels_last', [False, True])
def test_upfirdn2d_cuda(case, dtype, channels_last):
    assert upfirdn2d._init(), str(upfirdn2d._plugin_error)
    run_upfirdn2d_parity('cuda', case, dtype, channels_last)

#----------------------------------------------------------------------------
# The public functions' CUDA branch (argument checks, bias cast, negative dim, filter
# None, wrappers) with the host plugins standing in and _check_impl forced to "kernel".

def test_public_dispatch_host(host_plugins, monkeypatch):
    monkeypatch.setattr(bias_act, '_plugin', host_plugins['bias_act'])
    monkeypatch.setattr(upfirdn2d, '_plugin', host_plugins['upfirdn2d'])
    for module in [bias_act, upfirdn2d]:
        monkeypatch.setattr(module, '_check_impl', lambda impl, x: impl != 'ref')
    calls = []
    monkeypatch.setattr(bias_act, '_bias_act_cuda', lambda _f=bias_act._bias_act_cuda, **kw: calls.append(kw) or _f(**kw))
    monkeypatch.setattr(upfirdn2d, '_upfirdn2d_cuda', lambda _f=upfirdn2d._upfirdn2d_cuda, **kw: calls.append(kw) or _f(**kw))
    gen = torch.Generator().manual_seed(4)
    x, b = torch.randn(2, 3, 6, 5, generator=gen), torch.randn(5, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(bias_act.bias_act(x, b, dim=-1, act='selu'), bias_act._bias_act_ref(x, b, dim=-1, act='selu'))
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    for fn in [upfirdn2d.upsample2d, upfirdn2d.downsample2d, upfirdn2d.filter2d]:
        torch.testing.assert_close(fn(x, f), fn(x, f, impl='ref'))
    torch.testing.assert_close(upfirdn2d.upfirdn2d(x, None, up=2), upfirdn2d._upfirdn2d_ref(x, None, up=2))
    assert len(calls) == 5 and calls[0]['dim'] == 3
    with pytest.raises(ValueError, match='out of range'):
        bias_act.bias_act(x, b, dim=4)
    with pytest.raises(ValueError, match='smaller than 1 pixel'):
        upfirdn2d.upfirdn2d(x, f, padding=-3)

#----------------------------------------------------------------------------
