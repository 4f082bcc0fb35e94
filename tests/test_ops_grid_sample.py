# Tests for torch_utils.ops.grid_sample_gradfix: parity with F.grid_sample and with a
# naive per-pixel loop, gradcheck, gradgradcheck, and the fast path against the reference.

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import grid_sample_gradfix

#----------------------------------------------------------------------------
# Random float64 input and a grid reaching a little outside [-1, 1].

def _inputs(n=2, c=3, h=5, w=6, out_h=4, out_w=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    grid = torch.rand(n, out_h, out_w, 2, generator=gen, dtype=torch.float64) * 2.6 - 1.3
    return x, grid

#----------------------------------------------------------------------------
# Naive bilinear sampling with zeros outside, one output pixel at a time (numpy).

def _naive_grid_sample(x, grid):
    x = x.numpy()
    grid = grid.numpy()
    n, c, h, w = x.shape
    out = np.zeros((n, c, grid.shape[1], grid.shape[2]))
    for b in range(n):
        for i in range(grid.shape[1]):
            for j in range(grid.shape[2]):
                px = ((grid[b, i, j, 0] + 1) * w - 1) / 2
                py = ((grid[b, i, j, 1] + 1) * h - 1) / 2
                for yy in (math.floor(py), math.floor(py) + 1):
                    for xx in (math.floor(px), math.floor(px) + 1):
                        if 0 <= yy < h and 0 <= xx < w:
                            weight = (1 - abs(px - xx)) * (1 - abs(py - yy))
                            out[b, :, i, j] += weight * x[b, :, yy, xx]
    return torch.from_numpy(out)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('fn', [grid_sample_gradfix.grid_sample, grid_sample_gradfix._grid_sample_ref])
def test_forward_matches_torch_and_naive(fn):
    x, grid = _inputs()
    y = fn(x, grid)
    torch.testing.assert_close(y, F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False))
    torch.testing.assert_close(y, _naive_grid_sample(x, grid))

#----------------------------------------------------------------------------

def test_identity_grid_reproduces_input():
    x, _ = _inputs(h=4, w=5)
    theta = torch.tensor([[1, 0, 0], [0, 1, 0]], dtype=torch.float64).expand(2, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    torch.testing.assert_close(grid_sample_gradfix.grid_sample(x, grid), x)
    torch.testing.assert_close(grid_sample_gradfix._grid_sample_ref(x, grid), x)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('fn', [grid_sample_gradfix.grid_sample, grid_sample_gradfix._grid_sample_ref])
def test_gradcheck(fn):
    x, grid = _inputs(n=1, c=2, h=4, w=5, out_h=3, out_w=4, seed=1)
    assert torch.autograd.gradcheck(fn, (x.requires_grad_(True), grid.requires_grad_(True)))

#----------------------------------------------------------------------------

@pytest.mark.parametrize('fn', [grid_sample_gradfix.grid_sample, grid_sample_gradfix._grid_sample_ref])
@pytest.mark.parametrize('grid_grad', [False, True])
def test_gradgradcheck(fn, grid_grad):
    x, grid = _inputs(n=1, c=2, h=4, w=5, out_h=3, out_w=4, seed=2)
    assert torch.autograd.gradgradcheck(fn, (x.requires_grad_(True), grid.requires_grad_(grid_grad)))

#----------------------------------------------------------------------------

def test_torch_operator_lacks_double_backward_but_ours_has_it():
    x, grid = _inputs(seed=3)
    x.requires_grad_(True)
    penalty = lambda gx: gx.square().sum()
    gx, = torch.autograd.grad(grid_sample_gradfix.grid_sample(x, grid).sin().sum(), [x], create_graph=True)
    gx_ref, = torch.autograd.grad(grid_sample_gradfix._grid_sample_ref(x, grid).sin().sum(), [x], create_graph=True)
    torch.testing.assert_close(gx, gx_ref)
    g2, = torch.autograd.grad(penalty(gx), [x])
    g2_ref, = torch.autograd.grad(penalty(gx_ref), [x])
    torch.testing.assert_close(g2, g2_ref)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('grid_grad', [False, True])
def test_fast_matches_reference_first_and_second_derivatives(grid_grad):
    x, grid = _inputs(n=2, c=3, h=8, w=7, out_h=6, out_w=5, seed=4)
    x.requires_grad_(True)
    grid.requires_grad_(grid_grad)
    inputs = [x, grid] if grid_grad else [x]
    results = []
    for fn in (grid_sample_gradfix.grid_sample, grid_sample_gradfix._grid_sample_ref):
        y = fn(x, grid)
        gen = torch.Generator().manual_seed(5)
        grads = torch.autograd.grad((y.sin() * torch.randn(y.shape, generator=gen, dtype=y.dtype)).sum(), inputs, create_graph=True)
        second = torch.autograd.grad(sum(g.square().sum() for g in grads), inputs)
        results.append((y,) + grads + second)
    for a, r in zip(*results):
        torch.testing.assert_close(a, r)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
@pytest.mark.parametrize('channels_last', [False, True])
def test_dtypes_and_memory_formats_match_torch(dtype, channels_last):
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x, grid = _inputs(seed=6)
    x = x.to(dtype=dtype, memory_format=memory_format).requires_grad_(True)
    grid = grid.to(dtype).requires_grad_(True)
    y = grid_sample_gradfix.grid_sample(x, grid)
    y_ref = F.grid_sample(x, grid, align_corners=False)
    torch.testing.assert_close(y, y_ref)
    gy = torch.randn_like(y)
    for a, r in zip(torch.autograd.grad(y, [x, grid], gy), torch.autograd.grad(y_ref, [x, grid], gy)):
        torch.testing.assert_close(a, r)

#----------------------------------------------------------------------------

def test_bad_arguments_raise_clear_errors():
    x, grid = _inputs()
    with pytest.raises(ValueError, match='expected input'):
        grid_sample_gradfix.grid_sample(x[0], grid)
    with pytest.raises(ValueError, match='expected input'):
        grid_sample_gradfix.grid_sample(x, grid[..., :1])
    with pytest.raises(ValueError, match='expected input'):
        grid_sample_gradfix.grid_sample(x, grid[:1])
    with pytest.raises(ValueError, match='dtype'):
        grid_sample_gradfix.grid_sample(x, grid.float())

#----------------------------------------------------------------------------
