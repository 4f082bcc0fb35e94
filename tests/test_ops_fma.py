# Tests of torch_utils.ops.fma against numpy and the reference formula.

import numpy as np
import pytest
import torch

from torch_utils.ops import fma

#----------------------------------------------------------------------------
# Broadcast shape combinations (a, b, c).

SHAPES = [
    ([3, 4], [3, 4], [3, 4]),
    ([3, 1, 4], [5, 1], [4]),
    ([1], [2, 3], [2, 1]),
    ([2, 3], [], [1, 3]),
]

#----------------------------------------------------------------------------
# Values against numpy float64.

@pytest.mark.parametrize('shapes', SHAPES)
def test_values(shapes):
    rng = np.random.default_rng(0)
    a, b, c = [rng.standard_normal(s) for s in shapes]
    y = fma.fma(torch.tensor(a), torch.tensor(b), torch.tensor(c))
    np.testing.assert_allclose(y.numpy(), a * b + c, rtol=1e-14)
    np.testing.assert_allclose(fma._fma_ref(torch.tensor(a), torch.tensor(b), torch.tensor(c)).numpy(), a * b + c, rtol=1e-14)

#----------------------------------------------------------------------------
# Gradients reduce over broadcast dimensions; second derivatives work.

@pytest.mark.parametrize('shapes', SHAPES)
def test_gradients(shapes):
    args = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in shapes]
    assert torch.autograd.gradcheck(fma.fma, args)
    assert torch.autograd.gradgradcheck(fma.fma, args)
    out = fma.fma(*args)
    grads = torch.autograd.grad(out.sum(), args)
    expect = torch.autograd.grad(fma._fma_ref(*args).sum(), args)
    for g, e, a in zip(grads, expect, args):
        assert g.shape == a.shape
        torch.testing.assert_close(g, e)

#----------------------------------------------------------------------------
# Non-tensor arguments and non-broadcastable shapes are errors.

def test_errors():
    with pytest.raises(ValueError, match='b must be a torch.Tensor'):
        fma.fma(torch.ones(2), 2.0, torch.ones(2))
    with pytest.raises(RuntimeError):
        fma.fma(torch.ones(2), torch.ones(3), torch.ones(2))

#----------------------------------------------------------------------------
