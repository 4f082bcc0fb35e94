"""Bilinear grid sampling with second derivatives.

`grid_sample(input, grid)` is `torch.nn.functional.grid_sample` with mode='bilinear',
padding_mode='zeros' and align_corners=False. PyTorch's own operator has no double
backward; this one does, so penalties that differentiate through an augmentation that
resamples images (R1 with ADA's geometric transforms) work. `_grid_sample_ref` below is
the specification: bilinear interpolation written with gathers, differentiable to any order.
"""

import torch
import torch.nn.functional as F

#----------------------------------------------------------------------------
# Bilinear grid sampling (zeros padding, align_corners=False) with double backward.

def grid_sample(input, grid):
    """Sample `input` at the normalised positions in `grid`, bilinearly.

    Grid coordinates are (x, y) in [-1, 1], where -1 and 1 are the outer edges of the
    border pixels (align_corners=False); samples outside the image read zeros.

    First derivatives with respect to input and grid and second derivatives with respect
    to input run on PyTorch's operator; derivatives of higher order that involve the grid
    fall back to `_grid_sample_ref`.

    Args:
        input: Tensor of shape [N, C, H_in, W_in].
        grid:  Tensor of shape [N, H_out, W_out, 2], same dtype and device as input.

    Returns:
        Tensor of shape [N, C, H_out, W_out].
    """
    _check_args(input, grid)
    if not (torch.is_grad_enabled() and (input.requires_grad or grid.requires_grad)):
        return _grid_sample_torch(input, grid)
    return _GridSample.apply(input, grid)

#----------------------------------------------------------------------------
# Reference implementation (the specification): gather the four neighbours and blend.

def _grid_sample_ref(input, grid):
    _check_args(input, grid)
    n, c, h, w = input.shape
    _, out_h, out_w, _ = grid.shape

    # Pixel coordinates; pixel centres sit at integers (align_corners=False).
    ix = ((grid[..., 0] + 1) * w - 1) / 2
    iy = ((grid[..., 1] + 1) * h - 1) / 2
    x0 = ix.detach().floor()
    y0 = iy.detach().floor()
    fx = ix - x0                                # weight of the right neighbour [NHW]
    fy = iy - y0                                # weight of the lower neighbour [NHW]

    # Sum of the four neighbours; neighbours outside the image contribute zero.
    flat = input.reshape(n, c, h * w)
    out = 0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi = x0 + dx
            yi = y0 + dy
            inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
            index = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long()
            index = index.reshape(n, 1, out_h * out_w).expand(n, c, out_h * out_w)
            values = flat.gather(2, index).reshape(n, c, out_h, out_w)
            out = out + values * (wx * wy * inside).unsqueeze(1)
    return out

#----------------------------------------------------------------------------
# Check argument shapes, dtypes and devices.

def _check_args(input, grid):
    if input.ndim != 4 or grid.ndim != 4 or grid.shape[3] != 2 or grid.shape[0] != input.shape[0]:
        raise ValueError(f'expected input [N, C, H, W] and grid [N, H_out, W_out, 2], got {tuple(input.shape)} and {tuple(grid.shape)}')
    if input.dtype != grid.dtype or input.device != grid.device:
        raise ValueError(f'input and grid must share dtype and device, got {input.dtype}/{input.device} and {grid.dtype}/{grid.device}')

#----------------------------------------------------------------------------
# PyTorch's operator with the fixed options.

def _grid_sample_torch(input, grid):
    return F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros', align_corners=False)

#----------------------------------------------------------------------------
# Forward: PyTorch's operator. Backward: _GridSampleBackward, or the reference
# implementation when the graph of the backward pass must reach the grid.

class _GridSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, grid):
        ctx.save_for_backward(input, grid)
        return _grid_sample_torch(input, grid)

    @staticmethod
    def backward(ctx, grad_output):
        input, grid = ctx.saved_tensors
        needs_input, needs_grid = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled() and needs_grid:
            return _grid_sample_ref_vjp(input, grid, grad_output, needs_input)
        grad_input, grad_grid = _GridSampleBackward.apply(grad_output, input, grid, needs_input, needs_grid)
        return grad_input, grad_grid

#----------------------------------------------------------------------------
# Vector-Jacobian product of the reference, recorded for higher derivatives.

def _grid_sample_ref_vjp(input, grid, grad_output, needs_input):
    with torch.enable_grad():
        out = _grid_sample_ref(input, grid)
    inputs = [input, grid] if needs_input else [grid]
    grads = torch.autograd.grad(out, inputs, grad_output, create_graph=True)
    return (grads[0], grads[1]) if needs_input else (None, grads[0])

#----------------------------------------------------------------------------
# First derivatives of PyTorch's operator (recomputed through public autograd).
# grad_input is linear in grad_output with the grid as coefficients, so its derivative
# with respect to grad_output is grid_sample itself; its derivative with respect to input
# is zero. The grid never requires grad when this function's backward runs.

class _GridSampleBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad_output, input, grid, needs_input, needs_grid):
        ctx.save_for_backward(grid)
        with torch.enable_grad():
            input_leaf = input.detach().requires_grad_(needs_input)
            grid_leaf = grid.detach().requires_grad_(needs_grid)
            out = _grid_sample_torch(input_leaf, grid_leaf)
        leaves = [t for t in (input_leaf, grid_leaf) if t.requires_grad]
        grads = list(torch.autograd.grad(out, leaves, grad_output))
        grad_input = grads.pop(0) if needs_input else None
        grad_grid = grads.pop(0) if needs_grid else None
        return grad_input, grad_grid

    @staticmethod
    def backward(ctx, grad2_grad_input, grad2_grad_grid):
        grid, = ctx.saved_tensors
        if ctx.needs_input_grad[2]:
            raise RuntimeError('grid_sample_gradfix: internal error, grid derivatives must use the reference path')
        grad2_grad_output = None
        if ctx.needs_input_grad[0] and grad2_grad_input is not None:
            grad2_grad_output = grid_sample(grad2_grad_input, grid)
        return grad2_grad_output, None, None, None, None

#----------------------------------------------------------------------------
