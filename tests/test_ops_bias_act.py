# Tests of torch_utils.ops.bias_act against independent float64 formulas.

import math
import warnings

import numpy as np
import pytest
import torch

from torch_utils.ops import bias_act

#----------------------------------------------------------------------------
# Independent float64 activation formulas (numpy), with each activation's alpha.

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

NUMPY_ACTS = {
    'linear':   lambda x, a: x,
    'relu':     lambda x, a: np.maximum(x, 0),
    'lrelu':    lambda x, a: np.where(x >= 0, x, a * x),
    'tanh':     lambda x, a: np.tanh(x),
    'sigmoid':  lambda x, a: 1 / (1 + np.exp(-x)),
    'elu':      lambda x, a: np.where(x > 0, x, a * (np.exp(x) - 1)),
    'selu':     lambda x, a: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * (np.exp(x) - 1)),
    'softplus': lambda x, a: np.log1p(np.exp(x)),
    'swish':    lambda x, a: x / (1 + np.exp(-x)),
}

EXPECTED_DEFAULTS = {  # name: (def_alpha, def_gain)
    'linear': (0, 1), 'relu': (0, math.sqrt(2)), 'lrelu': (0.2, math.sqrt(2)), 'tanh': (0, 1),
    'sigmoid': (0, 1), 'elu': (1, 1), 'selu': (0, 1), 'softplus': (0, 1), 'swish': (0, math.sqrt(2)),
}

#----------------------------------------------------------------------------
# Input values at least 0.1 away from the relu/lrelu kink at 0, so gradients are smooth.

def away_from_zero(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 2.5, size=shape) * rng.choice([-1, 1], size=shape)
    return x

#----------------------------------------------------------------------------
# The registry: names, defaults and metadata fields.

def test_activation_registry():
    assert set(bias_act.activation_funcs) == set(NUMPY_ACTS)
    for name, (alpha, gain) in EXPECTED_DEFAULTS.items():
        spec = bias_act.activation_funcs[name]
        assert spec.def_alpha == pytest.approx(alpha) and spec.def_gain == pytest.approx(gain)
        assert set(spec) == {'func', 'def_alpha', 'def_gain', 'cuda_idx', 'ref', 'has_2nd_grad'}
    assert len({spec.cuda_idx for spec in bias_act.activation_funcs.values()}) == len(NUMPY_ACTS)

#----------------------------------------------------------------------------
# Each activation with default alpha/gain and a bias along dim 1.

@pytest.mark.parametrize('act', sorted(NUMPY_ACTS))
def test_activation_defaults(act):
    x = away_from_zero([2, 3, 4, 5])
    b = np.array([0.5, -0.25, 0.05])
    alpha, gain = EXPECTED_DEFAULTS[act]
    expect = NUMPY_ACTS[act](x + b.reshape(1, 3, 1, 1), alpha) * gain
    y = bias_act.bias_act(torch.tensor(x), torch.tensor(b), act=act)
    assert y.dtype == torch.float64 and y.shape == x.shape
    np.testing.assert_allclose(y.numpy(), expect, rtol=1e-12, atol=1e-12)

#----------------------------------------------------------------------------
# Explicit alpha, gain and clamp.

@pytest.mark.parametrize('act', sorted(NUMPY_ACTS))
def test_alpha_gain_clamp(act):
    x = away_from_zero([4, 6], seed=1) * 2
    alpha = 0.3
    expect = np.clip(NUMPY_ACTS[act](x, alpha) * 2.5, -1.5, 1.5)
    y = bias_act.bias_act(torch.tensor(x), act=act, alpha=alpha, gain=2.5, clamp=1.5)
    np.testing.assert_allclose(y.numpy(), expect, rtol=1e-12, atol=1e-12)
    y = bias_act.bias_act(torch.tensor(x), act=act, alpha=alpha, gain=2.5, clamp=-1)
    np.testing.assert_allclose(y.numpy(), NUMPY_ACTS[act](x, alpha) * 2.5, rtol=1e-12, atol=1e-12)
    assert bias_act.bias_act(torch.tensor(x), act=act, clamp=0).abs().max() == 0

#----------------------------------------------------------------------------
# The bias runs along the requested dimension, negative dims included.

@pytest.mark.parametrize('dim', [0, 2, 3, -1, -3])
def test_bias_dim(dim):
    x = away_from_zero([2, 3, 4, 5], seed=2)
    b = np.linspace(-1, 1, x.shape[dim])
    shape = [1] * 4
    shape[dim] = -1
    expect = NUMPY_ACTS['lrelu'](x + b.reshape(shape), 0.2) * math.sqrt(2)
    y = bias_act.bias_act(torch.tensor(x), torch.tensor(b), dim=dim, act='lrelu')
    np.testing.assert_allclose(y.numpy(), expect, rtol=1e-12, atol=1e-12)

#----------------------------------------------------------------------------
# A 2-D input with a bias along dim 1 (fully-connected layers).

def test_fully_connected_shape():
    x = away_from_zero([7, 3], seed=3)
    b = np.array([1.0, 2.0, 3.0])
    y = bias_act.bias_act(torch.tensor(x), torch.tensor(b), act='relu', gain=1)
    np.testing.assert_allclose(y.numpy(), np.maximum(x + b, 0), rtol=1e-12)

#----------------------------------------------------------------------------
# One clear ValueError per kind of bad input.

@pytest.mark.parametrize('kwargs,match', [
    (dict(act='gelu'), 'unknown activation.*lrelu'),
    (dict(b=torch.ones(4)), 'length x.shape'),
    (dict(b=torch.ones(3, 1)), '1-D'),
    (dict(dim=4), 'out of range'),
    (dict(dim=-5), 'out of range'),
    (dict(clamp=-2), 'clamp'),
    (dict(impl='fast'), 'impl'),
    (dict(gain=float('nan')), 'finite'),
])
def test_errors(kwargs, match):
    args = dict(x=torch.ones(2, 3, 4, 4), b=torch.ones(3))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        bias_act.bias_act(**args)

#----------------------------------------------------------------------------
# gradcheck and gradgradcheck in float64 for every activation, w.r.t. x and b.

@pytest.mark.parametrize('act', sorted(NUMPY_ACTS))
def test_gradients(act):
    x = torch.tensor(away_from_zero([2, 3, 2], seed=4), requires_grad=True)
    b = torch.tensor([0.02, -0.03, 0.01], dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: bias_act.bias_act(x, b, act=act, gain=1.3)
    assert torch.autograd.gradcheck(fn, [x, b])
    assert torch.autograd.gradgradcheck(fn, [x, b])

#----------------------------------------------------------------------------
# Clamped outputs pass no gradient.

def test_clamp_gradient():
    x = torch.tensor([-3.0, -0.5, 0.5, 3.0], requires_grad=True)
    bias_act.bias_act(x, act='linear', clamp=1).sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 0]

#----------------------------------------------------------------------------
# float16 on the CPU: computed in float16, close to float32, dtype kept; the bias is
# cast to the dtype of x.

@pytest.mark.parametrize('act', sorted(NUMPY_ACTS))
def test_float16(act):
    x = torch.randn(2, 3, 4, 4)
    b = torch.randn(3)
    y = bias_act.bias_act(x.half(), b, act=act, clamp=256)
    assert y.dtype == torch.float16
    torch.testing.assert_close(y.float(), bias_act.bias_act(x, b, act=act, clamp=256), rtol=1e-2, atol=1e-2)

#----------------------------------------------------------------------------
# channels_last input gives channels_last output.

def test_channels_last():
    x = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    y = bias_act.bias_act(x, torch.randn(3), act='lrelu', clamp=1)
    assert y.is_contiguous(memory_format=torch.channels_last)

#----------------------------------------------------------------------------
# impl='cuda' on the CPU runs the reference path without a warning.

def test_impl_on_cpu():
    x = torch.randn(2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        torch.testing.assert_close(bias_act.bias_act(x, act='swish', impl='cuda'), bias_act.bias_act(x, act='swish', impl='ref'))

#----------------------------------------------------------------------------
# impl='cuda' on a CUDA tensor without a built kernel warns once and uses the reference.

#----------------------------------------------------------------------------

#----------------------------------------------------------------------------
# The hand-fused path of impl='auto' without the CUDA kernel (linear, relu, lrelu) against 'ref':
# equal forward values and first derivatives in float32 and float64, equal second derivatives
# (with respect to the incoming gradient, as R1 takes them), the layout kept, and an unclamped
# linear output that may be modified in place.

@pytest.mark.parametrize('act', ['linear', 'relu', 'lrelu'])
@pytest.mark.parametrize('clamp', [None, 0.5])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('channels_last', [False, True])
def test_fused_matches_ref(act, clamp, dtype, channels_last):
    x = torch.tensor(away_from_zero([3, 4, 5, 6], seed=1), dtype=dtype)
    x = x.to(memory_format=torch.channels_last) if channels_last else x
    b = torch.tensor([0.5, -0.25, 0.05, 0.3], dtype=dtype)
    results = []
    for impl in ('ref', 'auto'):
        xx, bb = x.detach().requires_grad_(True), b.detach().requires_grad_(True)
        y = bias_act.bias_act(xx, bb, act=act, gain=0.7, clamp=clamp, impl=impl)
        dy = torch.tensor(away_from_zero(y.shape, seed=2), dtype=dtype).requires_grad_(True)
        dx, db = torch.autograd.grad(y, [xx, bb], dy, create_graph=True)
        second = torch.autograd.grad((dx * dx).sum() + db.square().sum(), [dy])[0]
        results.append((y, dx, db, second))
        assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
    for ref, fused in zip(*results):
        torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-6) # Sums (db) may add in another order.
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])

def test_fused_in_place_and_no_grad():
    x = torch.randn([2, 3, 4, 4], requires_grad=True)
    y = bias_act.bias_act(x, torch.zeros(3), act='linear', gain=2)
    y.add_(1) # What resnet blocks do with the skip branch.
    y.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 2.0))
    with torch.no_grad():
        assert torch.equal(bias_act.bias_act(x, None, act='lrelu', clamp=0.3), bias_act.bias_act(x, None, act='lrelu', clamp=0.3, impl='ref'))
    assert bias_act.bias_act(x, None) is x

#----------------------------------------------------------------------------
# inplace=True on a temporary (as the network layers pass their convolution's output): the result is
# written into that tensor, with exactly the values, first and second derivatives (with respect to the
# original leaf and the incoming gradient) of the out-of-place fused path, and in float32 those of
# 'ref' (which ignores inplace).

@pytest.mark.parametrize('act', ['linear', 'lrelu'])
@pytest.mark.parametrize('clamp', [None, 0.5])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_fused_inplace(act, clamp, dtype):
    x = torch.tensor(away_from_zero([3, 4, 5, 6], seed=3), dtype=torch.float32).to(memory_format=torch.channels_last)
    b = torch.tensor([0.5, -0.25, 0.05, 0.3])
    results = []
    for impl, inplace in (('ref', True), ('auto', False), ('auto', True)):
        leaf, bb = x.detach().requires_grad_(True), b.detach().requires_grad_(True)
        t = (leaf * 1.5).to(dtype) # A temporary, like a convolution's output.
        y = bias_act.bias_act(t, bb, act=act, gain=0.7, clamp=clamp, impl=impl, inplace=inplace)
        assert (y.data_ptr() == t.data_ptr()) == (impl == 'auto' and inplace)
        dy = torch.tensor(away_from_zero(y.shape, seed=4)).to(dtype).requires_grad_(True)
        dx, db = torch.autograd.grad(y, [leaf, bb], dy, create_graph=True)
        second = torch.autograd.grad((dx * dx).sum() + db.square().sum(), [dy])[0]
        results.append([y, dx, db, second])
    if dtype == torch.float32: # In bfloat16, rounding moves values across the clamp differently in 'ref'.
        for got in results[1:]:
            for a, expected in zip(got, results[0]):
                torch.testing.assert_close(a, expected, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(a, c) for a, c in zip(results[1], results[2])) # In place = out of place, exactly.
    with torch.no_grad():
        t = x.clone()
        assert bias_act.bias_act(t, b, act=act, clamp=clamp, inplace=True) is t
        torch.testing.assert_close(t, bias_act.bias_act(x, b, act=act, clamp=clamp, impl='ref'))

#----------------------------------------------------------------------------
# bfloat16 on the CPU: the fused path close to float64 math.

@pytest.mark.parametrize('act', ['linear', 'lrelu'])
def test_fused_bfloat16(act):
    x = away_from_zero([2, 3, 4, 5], seed=3)
    b = np.array([0.5, -0.25, 0.05])
    y = bias_act.bias_act(torch.tensor(x, dtype=torch.bfloat16), torch.tensor(b), act=act, clamp=1.5)
    assert y.dtype == torch.bfloat16
    expected = np.clip(NUMPY_ACTS[act](x + b.reshape(1, 3, 1, 1), 0.2) * bias_act.activation_funcs[act].def_gain, -1.5, 1.5)
    np.testing.assert_allclose(y.float().numpy(), expected, rtol=2e-2, atol=2e-2)
