# Tests of the C kernels of bias_act on the CPU (torch_utils/ops/cpu_kernels.py, cpu_kernels.c):
# float32 results bit-identical to the PyTorch path they replace, bfloat16 results equal to float32
# math on the same inputs rounded once, layouts, threads, and the fallbacks (kernels off, no
# compiler, a failed build).

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from torch_utils.ops import bias_act
from torch_utils.ops import cpu_kernels
from torch_utils.ops import demod_bias_act

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get('CC') or 'cc') is None or os.environ.get(cpu_kernels.ENV) == '0',
    reason='no C compiler, or the CPU kernels are switched off')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#----------------------------------------------------------------------------
# Runs fn with the kernels on (the built library) or off (the PyTorch path).

def with_kernels(on, fn):
    assert cpu_kernels.library() is not None, cpu_kernels.status()
    saved = cpu_kernels._lib, cpu_kernels._state
    if not on:
        cpu_kernels._lib, cpu_kernels._state = None, 'off'
    try:
        return fn()
    finally:
        cpu_kernels._lib, cpu_kernels._state = saved

# y, dx, db and the second derivative with respect to dy of bias_act(x, b) at the given settings.
def results(x, b, dy, **kwargs):
    xx = x.detach().requires_grad_(True)
    bb = b.detach().requires_grad_(True) if b is not None else None
    y = bias_act.bias_act(xx, bb, **kwargs)
    dy = dy.detach().requires_grad_(True)
    grads = torch.autograd.grad(y, [xx] + ([bb] if bb is not None else []), dy, create_graph=True)
    second = torch.autograd.grad(grads[0].float().square().sum(), [dy])[0]
    return [y.detach(), *[g.detach() for g in grads], second]

def sample(shape, dtype, seed, channels_last=False):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x

#----------------------------------------------------------------------------

def test_builds_here():
    assert cpu_kernels.status() == 'loaded'

#----------------------------------------------------------------------------
# float32: every value and gradient equals the PyTorch path's bit for bit (the bias gradient is the
# same torch sum of the same dx), including special values and values exactly on the clamp.

@pytest.mark.parametrize('act', ['linear', 'relu', 'lrelu'])
@pytest.mark.parametrize('clamp', [None, 0.5])
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
def test_float32_bit_identical(act, clamp, layout):
    x = sample([3, 5, 7, 6], torch.float32, 0, channels_last=(layout == 'channels_last'))
    x[0, 0, 0, :4] = torch.tensor([float('nan'), float('inf'), -float('inf'), -0.0])
    x[1, 1, 1, 1] = 0.5 / 0.7 - 0.5 # Lands near the clamp after the bias and gain.
    b = sample([5], torch.float32, 1)
    dy = sample(x.shape, torch.float32, 2, channels_last=(layout == 'channels_last'))
    kwargs = dict(act=act, gain=0.7, clamp=clamp)
    on = with_kernels(True, lambda: results(x, b, dy, **kwargs))
    off = with_kernels(False, lambda: results(x, b, dy, **kwargs))
    for a, c in zip(on, off):
        assert a.stride() == c.stride()
        assert torch.equal(a.nan_to_num(7.0), c.nan_to_num(7.0)) and torch.equal(a.isnan(), c.isnan())

@pytest.mark.parametrize('dim', [0, 1, 2, 3, None])
def test_float32_bias_dims(dim):
    x = sample([4, 3, 5, 6], torch.float32, 3)
    b = sample([x.shape[dim]], torch.float32, 4) if dim is not None else None
    dy = sample(x.shape, torch.float32, 5)
    kwargs = dict(dim=dim if dim is not None else 1, act='lrelu', clamp=1.0)
    on = with_kernels(True, lambda: results(x, b, dy, **kwargs))
    off = with_kernels(False, lambda: results(x, b, dy, **kwargs))
    assert all(torch.equal(a, c) for a, c in zip(on, off))
    # And against float64 numpy math.
    xb = x.double().numpy() + (b.double().numpy().reshape([-1 if i == dim else 1 for i in range(4)]) if b is not None else 0)
    expected = np.clip(np.where(xb > 0, xb, 0.2 * xb) * np.sqrt(2), -1, 1)
    np.testing.assert_allclose(on[0].numpy(), expected, rtol=1e-6, atol=1e-7)

#----------------------------------------------------------------------------
# bfloat16: float32 math on the bfloat16 inputs, rounded to bfloat16 once (the kernel's
# definition; the PyTorch path rounds after every operation).

@pytest.mark.parametrize('act', ['relu', 'lrelu'])
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
def test_bfloat16_rounds_once(act, layout):
    cl = layout == 'channels_last'
    x, b, dy = sample([4, 6, 9, 9], torch.bfloat16, 6, cl), sample([6], torch.bfloat16, 7), sample([4, 6, 9, 9], torch.bfloat16, 8, cl)
    y, dx, db, _ = with_kernels(True, lambda: results(x, b, dy, act=act, gain=1.3, clamp=0.9))
    alpha = 0.2 if act == 'lrelu' else 0.0
    v = x.float() + b.float().reshape(1, -1, 1, 1)
    expected_y = ((torch.where(v > 0, v, v * alpha) * 1.3).clamp(-0.9, 0.9)).to(torch.bfloat16)
    assert torch.equal(y, expected_y)
    yf = y.float()
    d = torch.where((yf <= -0.9) | (yf >= 0.9), 0.0, dy.float()) * 1.3
    expected_dx = torch.where(yf > 0, d, d * alpha).to(torch.bfloat16)
    assert torch.equal(dx, expected_dx)
    torch.testing.assert_close(db.float(), expected_dx.float().sum([0, 2, 3]), rtol=1e-2, atol=1e-2)
    assert y.is_contiguous(memory_format=torch.channels_last) == cl

#----------------------------------------------------------------------------
# Large tensors (several threads, several chunks per row, a row longer than a chunk) give the same
# result with one and with two threads; in place writes into the input.

@pytest.mark.parametrize('shape, channels_last', [([2, 9000, 3, 3], True), ([3, 4, 70, 70], False), ([1, 1, 200, 300], False)])
def test_threads_and_chunks(shape, channels_last):
    x, b = sample(shape, torch.bfloat16, 9, channels_last), sample([shape[1]], torch.bfloat16, 10)
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(bias_act.bias_act(x, b, act='lrelu', clamp=2.0))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(outs[0], outs[1])
    v = x.float() + b.float().reshape(1, -1, 1, 1)
    assert torch.equal(outs[0], (torch.where(v > 0, v, 0.2 * v) * np.sqrt(2)).clamp(-2, 2).to(torch.bfloat16))
    t = x.clone()
    assert bias_act.bias_act(t, b, act='lrelu', clamp=2.0, inplace=True).data_ptr() == t.data_ptr()
    assert torch.equal(t, outs[0])

#----------------------------------------------------------------------------
# channels_last with short rows (the bias along rows of C elements): the kernel runs blocks of whole rows
# against a repeated bias. One row, fewer rows than a block, whole blocks plus a remainder, and C that
# does not divide the block: the same values as float32 math on the inputs, rounded once.

@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('shape', [[1, 32, 1, 1], [1, 32, 3, 3], [2, 32, 5, 7], [3, 100, 4, 4], [2, 3, 11, 13], [1, 300, 2, 2]])
def test_short_rows(dtype, shape):
    x, b = sample(shape, dtype, 13, channels_last=True), sample([shape[1]], dtype, 14)
    y = with_kernels(True, lambda: bias_act.bias_act(x, b, act='lrelu', gain=1.3, clamp=1.1))
    v = x.float() + b.float().reshape(1, -1, 1, 1)
    assert torch.equal(y, (torch.where(v > 0, v, 0.2 * v) * 1.3).clamp(-1.1, 1.1).to(dtype))
    assert y.is_contiguous(memory_format=torch.channels_last)

#----------------------------------------------------------------------------
# bfloat16 stores: groups of 16 go through AVX512-BF16's conversion where the build has it, which reads
# float32 denormals as zero; a group holding one takes the formula. Every result equals torch's own
# rounding of the float32 value (denormals kept, NaN stays NaN, ties to even, overflow to inf), for
# groups with and without such values, in both kernels and both layouts.

def special_bfloat16_values(count, seed):
    rnd = np.random.RandomState(seed)
    bits = rnd.randint(0, 1 << 16, size=count).astype(np.uint16) # Every bfloat16 pattern is fair game.
    bits[:12] = [0x0001, 0x8001, 0x007f, 0x0080, 0x7f7f, 0xff7f, 0x7f80, 0xff80, 0x7fc1, 0xffa0, 0x0000, 0x8000]
    bits[40:56] = 0x3f80 # One whole group without specials.
    return torch.from_numpy(bits.view(np.int16).copy()).view(torch.bfloat16)

@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
@pytest.mark.parametrize('act, gain, clamp', [('linear', 1.0, None), ('lrelu', 1.5, None), ('lrelu', 0.5, 1e38)])
def test_bfloat16_stores_special_values(layout, act, gain, clamp):
    cl = layout == 'channels_last'
    x = special_bfloat16_values(4 * 16 * 7 * 5, 60).reshape(4, 16, 7, 5)
    x = x.contiguous(memory_format=torch.channels_last) if cl else x
    b = torch.zeros(16, dtype=torch.bfloat16)
    b[3] = 1e-39 # A denormal bias: x + b can be one too.
    dy = special_bfloat16_values(x.numel(), 61).reshape(x.shape)
    y = with_kernels(True, lambda: bias_act.bias_act(x, b, act=act, gain=gain, clamp=clamp))
    v = x.float() + b.float().reshape(1, -1, 1, 1)
    v = torch.where(v > 0, v, v * (0.2 if act == 'lrelu' else 1.0)) * gain
    v = v.clamp(-clamp, clamp) if clamp is not None else v
    expected = v.to(torch.bfloat16)
    assert torch.equal(y.isnan(), expected.isnan())
    assert torch.equal(y.nan_to_num(0.0).view(torch.int16), expected.nan_to_num(0.0).view(torch.int16)) # -0 and denormals too.
    g = with_kernels(True, lambda: bias_act._fused_backward(dy, y, act, 0.2, gain, clamp if clamp is not None else -1))
    d = dy.float() * gain
    d = torch.where((y.float() > -clamp) & (y.float() < clamp), d, 0.0) if clamp is not None else d # NaN y: 0.
    d = torch.where(y.float() > 0, d, d * (0.2 if act == 'lrelu' else 1.0))
    assert torch.equal(g.isnan(), d.to(torch.bfloat16).isnan())
    assert torch.equal(g.nan_to_num(0.0).view(torch.int16), d.to(torch.bfloat16).nan_to_num(0.0).view(torch.int16))

# The same stores in the channels_last forwards of demod_bias_act and scale_channels.
def test_bfloat16_stores_special_values_demod_and_scale():
    x = special_bfloat16_values(4 * 16 * 7 * 5, 62).reshape(4, 16, 7, 5).contiguous(memory_format=torch.channels_last)
    d = torch.full([4, 16], 1.5, dtype=torch.bfloat16)
    d[1, 2] = 1e-30 # Products down in the denormals.
    b = torch.zeros(16, dtype=torch.bfloat16)
    with torch.no_grad():
        y = with_kernels(True, lambda: demod_bias_act.demod_bias_act(x, d, None, b, act='lrelu', gain=1.0))
        scaled = with_kernels(True, lambda: demod_bias_act.scale_channels(x, d))
    v = x.float() * d.float()[:, :, None, None]
    vb = v + b.float()[None, :, None, None] # + 0: the bias turns -0 into +0, as the kernel's sum does.
    for got, expected in [(y, torch.where(vb > 0, vb, vb * 0.2).to(torch.bfloat16)), (scaled, v.to(torch.bfloat16))]:
        assert torch.equal(got.isnan(), expected.isnan())
        assert torch.equal(got.nan_to_num(0.0).view(torch.int16), expected.nan_to_num(0.0).view(torch.int16))

#----------------------------------------------------------------------------
# The backward pass with an incoming gradient in another layout than the output.

def test_gradient_in_another_layout():
    x = sample([2, 8, 5, 5], torch.bfloat16, 11, channels_last=True).requires_grad_(True)
    y = bias_act.bias_act(x, None, act='lrelu')
    dy = sample(y.shape, torch.bfloat16, 12) # Contiguous, y channels_last.
    dx, = torch.autograd.grad(y, [x], dy)
    d = dy.float() * np.float32(np.sqrt(2))
    assert torch.equal(dx, torch.where(y.float() > 0, d, d * 0.2).to(torch.bfloat16))

#----------------------------------------------------------------------------
# Where the kernels do not apply, the PyTorch path runs: float64, float16, a strided view.

def test_strided_bias():
    x, b = sample([2, 3, 4, 4], torch.float32, 60), sample([6], torch.float32, 61)[::2] # A view with stride 2.
    assert torch.equal(bias_act.bias_act(x, b, act='lrelu'), bias_act.bias_act(x, b.contiguous(), act='lrelu', impl='ref'))

def test_other_tensors_keep_the_torch_path():
    for x in (torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 3, 4, 4).half(), torch.randn(2, 3, 4, 8)[..., ::2]):
        y = bias_act.bias_act(x, torch.ones(3, dtype=x.dtype), act='lrelu')
        torch.testing.assert_close(y, bias_act.bias_act(x, torch.ones(3, dtype=x.dtype), act='lrelu', impl='ref'))

#----------------------------------------------------------------------------
# Fallbacks, each in a fresh process with its own build folder: switched off, no compiler, a compiler
# that fails (one warning, then the PyTorch path, same float32 values), and a second process that
# loads the finished build instead of compiling again.

def run_python(code, tmp_path, **env):
    full_env = {k: v for k, v in os.environ.items() if k not in (cpu_kernels.ENV, 'CC')}
    full_env.update(TORCH_UTILS_BUILD_DIR=str(tmp_path / 'build'), PYTHONPATH=ROOT, **env)
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=300, check=False)

CHECK = '''
import warnings, torch
from torch_utils.ops import bias_act, cpu_kernels
x = torch.randn(2, 3, 4, 4)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    y = bias_act.bias_act(x, torch.ones(3), act='lrelu', clamp=0.5)
    y = bias_act.bias_act(x, torch.ones(3), act='lrelu', clamp=0.5)
assert torch.equal(y, bias_act.bias_act(x, torch.ones(3), act='lrelu', clamp=0.5, impl='ref'))
print('status', cpu_kernels.status().split(':')[0], 'warnings', len([w for w in caught if 'CPU kernels' in str(w.message)]))
'''

def test_fallbacks(tmp_path):
    off = run_python(CHECK, tmp_path, **{cpu_kernels.ENV: '0'})
    assert 'status off warnings 0' in off.stdout, off.stderr
    no_cc = run_python(CHECK, tmp_path, CC=str(tmp_path / 'no-such-compiler'))
    assert 'status no compiler warnings 0' in no_cc.stdout, no_cc.stderr
    failing = run_python(CHECK, tmp_path, CC=shutil.which('false'))
    assert 'status failed warnings 1' in failing.stdout, failing.stderr
    first = run_python(CHECK, tmp_path)
    assert 'status loaded warnings 0' in first.stdout, first.stderr
    built = [p for p in (tmp_path / 'build').iterdir() if p.name.startswith('cpu_kernels-') and (p / 'cpu_kernels.so').exists()]
    assert len(built) == 1
    stamp = (built[0] / 'cpu_kernels.so').stat().st_mtime_ns
    second = run_python(CHECK, tmp_path, CC=shutil.which('false')) # Would fail if it compiled again.
    assert 'status loaded warnings 0' in second.stdout, second.stderr
    assert (built[0] / 'cpu_kernels.so').stat().st_mtime_ns == stamp

#----------------------------------------------------------------------------
# demod_bias_act: the C kernel against the PyTorch composition it replaces (fma, then bias_act) and
# against float32 / float64 math. float32: equal values, gradients to the order of summation (with and
# without a graph of the gradient); bfloat16: float32 math on the bfloat16 inputs, rounded once.

def demod_results(x, d, noise, b, dy, create_graph=False, **kwargs):
    leaves = [t.detach().requires_grad_(True) if t is not None else None for t in (x, d, noise, b)]
    y = demod_bias_act.demod_bias_act(*leaves, **kwargs)
    grads = torch.autograd.grad(y, [t for t in leaves if t is not None], dy, create_graph=create_graph)
    return [y.detach(), *[g.detach() for g in grads]]

NOISES = {'per-sample': lambda: sample([3, 1, 6, 5], torch.float32, 20), 'const': lambda: sample([6, 5], torch.float32, 21), 'none': lambda: None}

@pytest.mark.parametrize('noise', list(NOISES))
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
@pytest.mark.parametrize('create_graph', [False, True])
def test_demod_float32(noise, layout, create_graph):
    cl = layout == 'channels_last'
    x, dy = sample([3, 7, 6, 5], torch.float32, 22, cl), sample([3, 7, 6, 5], torch.float32, 23, cl)
    d, b, nz = sample([3, 7], torch.float32, 24).abs() + 0.5, sample([7], torch.float32, 25), NOISES[noise]()
    kwargs = dict(act='lrelu', gain=1.3, clamp=1.5, create_graph=create_graph)
    on = with_kernels(True, lambda: demod_results(x, d, nz, b, dy, **kwargs))
    off = with_kernels(False, lambda: demod_results(x, d, nz, b, dy, **kwargs))
    assert torch.equal(on[0], off[0]) and on[0].stride() == off[0].stride()
    assert torch.equal(on[1], off[1]) # dx = g * d: no sum.
    for a, c in zip(on[2:], off[2:]):
        assert a.shape == c.shape and a.dtype == c.dtype
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)
    # Against float64 math.
    v = x.double() * d.double()[:, :, None, None] + (nz.double() if nz is not None else 0) + b.double()[None, :, None, None]
    y64 = (torch.where(v > 0, v, 0.2 * v) * 1.3).clamp(-1.5, 1.5)
    torch.testing.assert_close(on[0].double(), y64, rtol=1e-6, atol=1e-6)
    g = dy.double() * ((y64 > -1.5) & (y64 < 1.5)) * 1.3 * torch.where(v > 0, 1.0, 0.2)
    torch.testing.assert_close(on[2].double(), (g * x.double()).sum([2, 3]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(on[-1].double(), g.sum([0, 2, 3]), rtol=1e-5, atol=1e-5)
    if nz is not None:
        torch.testing.assert_close(on[3].double(), g.sum(1, keepdim=True).sum_to_size(nz.shape), rtol=1e-5, atol=1e-5)

@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
def test_demod_bfloat16_rounds_once(layout):
    cl = layout == 'channels_last'
    x, dy = sample([2, 16, 8, 8], torch.bfloat16, 26, cl), sample([2, 16, 8, 8], torch.bfloat16, 27, cl)
    d, b = (sample([2, 16], torch.float32, 28).abs() + 0.5).bfloat16(), sample([16], torch.bfloat16, 29)
    nz = sample([2, 1, 8, 8], torch.bfloat16, 30)
    y, dx, dd, dnoise, db = with_kernels(True, lambda: demod_results(x, d, nz, b, dy, act='lrelu', gain=1.3, clamp=1.5))
    v = torch.addcmul(nz.float(), x.float(), d.float()[:, :, None, None]) + b.float()[None, :, None, None]
    assert torch.equal(y, (torch.where(v > 0, v, 0.2 * v) * 1.3).clamp(-1.5, 1.5).to(torch.bfloat16))
    yf = y.float()
    g = torch.where((yf > -1.5) & (yf < 1.5), dy.float(), 0.0) * 1.3
    g = torch.where(yf > 0, g, g * 0.2)
    assert torch.equal(dx, (g * d.float()[:, :, None, None]).to(torch.bfloat16))
    assert dd.dtype == dnoise.dtype == db.dtype == torch.bfloat16
    torch.testing.assert_close(dd.float(), (g * x.float()).sum([2, 3]), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(dnoise.float(), g.sum(1, keepdim=True), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(db.float(), g.sum([0, 2, 3]), rtol=1e-2, atol=1e-2)

# channels_last forwards take d, b and s as float buffers in slices of DEMOD_MAX_C (2048) channels: one
# slice, a full one, and a full one plus one channel give float32 math on the bfloat16 inputs, rounded once.
@pytest.mark.parametrize('channels', [3, 32, 2048, 2049])
@pytest.mark.parametrize('noise', [True, False])
def test_demod_and_scale_forward_channels(channels, noise):
    x = sample([2, channels, 3, 2], torch.bfloat16, 36, channels_last=True)
    d, b = (sample([2, channels], torch.float32, 37).abs() + 0.5).bfloat16(), sample([channels], torch.bfloat16, 38)
    nz = sample([2, 1, 3, 2], torch.bfloat16, 39) if noise else None
    with torch.no_grad():
        y = with_kernels(True, lambda: demod_bias_act.demod_bias_act(x, d, nz, b, act='lrelu', gain=1.3, clamp=1.5))
        scaled = with_kernels(True, lambda: demod_bias_act.scale_channels(x, d))
    v = x.float() * d.float()[:, :, None, None] if nz is None else torch.addcmul(nz.float(), x.float(), d.float()[:, :, None, None])
    v = v + b.float()[None, :, None, None]
    assert torch.equal(y, (torch.where(v > 0, v, 0.2 * v) * 1.3).clamp(-1.5, 1.5).to(torch.bfloat16))
    assert torch.equal(scaled, (x.float() * d.float()[:, :, None, None]).to(torch.bfloat16))
    assert y.is_contiguous(memory_format=torch.channels_last) and scaled.is_contiguous(memory_format=torch.channels_last)

def test_demod_sums_do_not_depend_on_threads():
    x, dy = sample([8, 64, 32, 32], torch.bfloat16, 31, True), sample([8, 64, 32, 32], torch.bfloat16, 32, True)
    d, b, nz = sample([8, 64], torch.float32, 33).abs(), sample([64], torch.float32, 34), sample([8, 1, 32, 32], torch.float32, 35)
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            outs.append(demod_results(x, d, nz, b, dy, act='lrelu'))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, c) for out in outs[1:] for a, c in zip(out, outs[0]))

def test_demod_errors_and_other_tensors():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match='d must be'):
        demod_bias_act.demod_bias_act(x, torch.ones(2, 4), None, torch.zeros(3))
    with pytest.raises(ValueError, match='s must be'):
        demod_bias_act.scale_channels(x, torch.ones(2, 4))
    noise = torch.randn(2, 3, 4, 4) # Per channel: not the kernel's form, so the composition.
    y = demod_bias_act.demod_bias_act(x, torch.ones(2, 3), noise, torch.zeros(3), act='lrelu')
    assert torch.equal(y, demod_bias_act._demod_bias_act_ref(x, torch.ones(2, 3), noise, torch.zeros(3), 'lrelu', 0.2, np.sqrt(2), -1))
    x64 = x.double() # No kernel: the composition.
    y = demod_bias_act.demod_bias_act(x64, torch.ones(2, 3), None, torch.zeros(3), act='relu')
    assert y.dtype == torch.float64 and torch.equal(y, bias_act.bias_act(x64, torch.zeros(3, dtype=torch.float64), act='relu'))

#----------------------------------------------------------------------------
# scale_channels: x * s[:, :, None, None]; the same values, dx exactly torch's, ds to the order of summation
# in float32 and as float32 math on the bfloat16 inputs (rounded once) in bfloat16.

@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
def test_scale_channels(dtype, layout):
    cl = layout == 'channels_last'
    x, dy, s = sample([3, 8, 7, 5], dtype, 40, cl), sample([3, 8, 7, 5], dtype, 41, cl), sample([3, 8], torch.float32, 42)
    def run():
        xx, ss = x.detach().requires_grad_(True), s.detach().requires_grad_(True)
        y = demod_bias_act.scale_channels(xx, ss)
        return [y, *torch.autograd.grad(y, [xx, ss], dy)]
    y, dx, ds = with_kernels(True, run)
    ref = with_kernels(False, run)
    assert torch.equal(y, ref[0]) and torch.equal(dx, ref[1]) and y.stride() == ref[0].stride()
    assert ds.dtype == torch.float32
    expected = (dy.float() * x.float()).sum([2, 3]).to(dtype).float() # Float32 sums, rounded to x's dtype (then cast back).
    torch.testing.assert_close(ds, expected, rtol=1e-5, atol=1e-5)
    if dtype == torch.float32:
        torch.testing.assert_close(ds, ref[2], rtol=1e-5, atol=1e-6)
    with torch.no_grad(): # Generation: the kernel's forward alone.
        assert torch.equal(demod_bias_act.scale_channels(x, s), x * s.to(dtype).reshape(3, 8, 1, 1))
    # A graph of the gradient (path length): torch ops, the same first derivative.
    xx, ss = x.detach().requires_grad_(True), s.detach().requires_grad_(True)
    dx2, = torch.autograd.grad(demod_bias_act.scale_channels(xx, ss), [xx], dy, create_graph=True)
    assert torch.equal(dx2, dx) and dx2.requires_grad

#----------------------------------------------------------------------------
# depthwise_transpose (conv2d_gradfix's strided depthwise transposed convolutions in bfloat16,
# channels_last): float64 F.conv_transpose2d on the same bfloat16 values, rounded once, for strides,
# paddings and output paddings that leave some output pixels without taps; and through conv2d_gradfix
# (autograd, second derivative) the same as the phases it replaces, up to bfloat16 rounding.

@pytest.mark.parametrize('shape, k, stride, padding, output_padding', [
    ([4, 32, 8, 8], 4, 2, 1, 0), ([3, 16, 9, 7], 4, 2, 2, 1), ([2, 8, 7, 5], 3, 2, 0, 1), ([2, 8, 5, 6], 5, 3, 1, 2),
    ([2, 8, 6, 6], 2, 2, 0, 0), ([2, 8, 4, 4], 4, 2, 4, 0), ([2, 40, 3, 3], 6, 3, 2, 2), ([1, 3, 6, 6], 4, 1, 1, 0)])
def test_depthwise_transpose(shape, k, stride, padding, output_padding):
    assert cpu_kernels.library() is not None
    x = sample(shape, torch.bfloat16, 50, channels_last=True)
    w = sample([shape[1], 1, k, k], torch.bfloat16, 51)
    out = cpu_kernels.depthwise_transpose(x, w, (stride, stride), (padding, padding), (output_padding, output_padding))
    expected = torch.nn.functional.conv_transpose2d(x.double(), w.double(), stride=stride, padding=padding,
        output_padding=output_padding, groups=shape[1])
    assert out.shape == expected.shape and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out.double(), expected.to(torch.bfloat16).double(), rtol=8e-3, atol=1e-5) # One rounding (float32 sums).

def test_depthwise_transpose_in_conv2d_gradfix():
    from torch_utils.ops import conv2d_gradfix
    x = sample([4, 24, 8, 8], torch.bfloat16, 52, channels_last=True)
    w = sample([24, 1, 4, 4], torch.bfloat16, 53)
    dy = sample([4, 24, 16, 16], torch.bfloat16, 54, channels_last=True)
    def run():
        xx, ww = x.detach().requires_grad_(True), w.detach().requires_grad_(True)
        y = conv2d_gradfix.conv_transpose2d(xx, ww, stride=2, padding=1, groups=24)
        dx, = torch.autograd.grad(y, [xx], dy, create_graph=True)
        second, = torch.autograd.grad(dx.float().square().sum(), [ww])
        return y, dx, second
    on, off = with_kernels(True, run), with_kernels(False, run)
    torch.testing.assert_close(on[0].float(), off[0].float(), rtol=1e-2, atol=2e-2)
    assert torch.equal(on[1], off[1]) # The backward is a strided conv2d either way.
    torch.testing.assert_close(on[2].float(), off[2].float(), rtol=1e-2, atol=1e-2)

#----------------------------------------------------------------------------
# A compiler without OpenMP (Apple's clang): the build retries without it and the kernels run on one
# thread, with the same results. Two processes starting at once on an empty build folder: one builds,
# the other waits for it, both load.

def test_build_without_openmp(tmp_path):
    script = tmp_path / 'cc-without-openmp'
    script.write_text(f'#!/bin/sh\ncase "$*" in *-fopenmp*) echo "no OpenMP here" >&2; exit 1;; esac\nexec {shutil.which("cc")} "$@"\n')
    script.chmod(0o755)
    result = run_python(CHECK + 'print(bias_act.bias_act(torch.randn(4, 64, 64, 64), torch.ones(64), act="lrelu").shape)', tmp_path, CC=str(script))
    assert 'status loaded warnings 0' in result.stdout, result.stderr

def test_concurrent_first_builds(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in (cpu_kernels.ENV, 'CC')}
    env.update(TORCH_UTILS_BUILD_DIR=str(tmp_path / 'build'), PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, '-c', CHECK], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        for _ in range(2)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for (out, err), proc in zip(outputs, procs):
        assert proc.returncode == 0 and 'status loaded warnings 0' in out, err
    assert len([p for p in (tmp_path / 'build').iterdir() if p.name.startswith('cpu_kernels-')]) == 1

#----------------------------------------------------------------------------
# A whole mixed-precision generator and discriminator (bfloat16 blocks, channels_last) in training mode
# (random noise, unfused modulation), with a path-length-style gradient of a gradient: with the kernels
# the images and all parameter gradients are at least as close to the same networks in float32 as the
# PyTorch path's bfloat16 results are (the kernels round once where it rounds after every step).

def test_networks_with_and_without_kernels():
    from training import networks_stylegan2
    torch.manual_seed(0)
    G = networks_stylegan2.Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=512, channel_max=32, num_fp16_res=2, conv_clamp=256, mixed_dtype='bfloat16', fp16_channels_last=True))
    D = networks_stylegan2.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=512, channel_max=32,
        num_fp16_res=2, conv_clamp=256, block_kwargs=dict(mixed_dtype='bfloat16', fp16_channels_last=True))
    assert G.synthesis.b16.use_fp16 and D.b16.use_fp16
    with torch.no_grad(): # Trained-looking values where a fresh network has zeros (noise strengths, biases).
        for name, param in list(G.named_parameters()) + list(D.named_parameters()):
            if name.endswith('noise_strength') or name.endswith('.bias'):
                param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(len(name))) * 0.3)
    z = torch.randn([8, 16])
    def run(force_fp32=False):
        torch.manual_seed(1)
        ws = G.mapping(z, None)
        img = G.synthesis(ws, force_fp32=force_fp32)
        logits = D(img, None, force_fp32=force_fp32)
        grads = torch.autograd.grad(logits.sum(), list(G.parameters()) + list(D.parameters()), allow_unused=True)
        torch.manual_seed(2)
        img2 = G.synthesis(ws, force_fp32=force_fp32)
        pl_grad, = torch.autograd.grad((img2 * torch.randn_like(img2)).sum(), [ws], create_graph=True)
        pl_grads = torch.autograd.grad(pl_grad.square().sum(), list(G.synthesis.parameters()), allow_unused=True)
        flat = torch.cat([g.flatten() for g in grads + pl_grads if g is not None])
        return img.detach(), flat
    on, off, ref = with_kernels(True, run), with_kernels(False, run), run(force_fp32=True)
    def error(result, which):
        return ((result[which] - ref[which]).norm() / ref[which].norm()).item()
    for which in (0, 1):
        assert error(on, which) < 0.08 and error(on, which) <= 1.25 * error(off, which) + 1e-3, (which, error(on, which), error(off, which))
