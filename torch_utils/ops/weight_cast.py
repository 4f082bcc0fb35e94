# The weights of a convolution that runs in reduced precision, prepared in one pass over them:
#
#     scaled_cast(w, gain, dtype)  = (w * gain).to(dtype)
#     cast_with_tap_sums(w, dtype) = (w.to(dtype), w.square().sum(dim=[2, 3]))
#
# Conv2dLayer scales its float32 weight by its gain and casts it for a bfloat16 block; a modulated
# convolution in its reduced-precision form casts its weight and sums the squares of each filter's taps
# (for the demodulation coefficients). For a float32 [O, I, kh, kw] CPU weight cast to bfloat16, with the
# CPU kernels built (cpu_kernels), each is one C kernel forward and one backward, where the PyTorch path
# takes two to three passes each way. Values and gradients equal that path's bit for bit: the cast and
# products are the same operations, and the kernel sums the squares in the order torch's sum takes for the
# networks' weights (contiguous: 8 interleaved partial sums; channels_last with the input channels filling
# torch's vectors: tap after tap; other shapes may differ in the last bit). tests/test_ops_weight_cast.py
# checks both. Elsewhere (other dtypes, devices, small weights, or no kernels) it is that path. See docs/ops.md.

import torch

from torch_utils.ops import cpu_kernels

#----------------------------------------------------------------------------

def scaled_cast(w, gain, dtype):
    """(w * gain).to(dtype), the same values and gradient.

    Args:
        w:     Weight [O, I, kh, kw].
        gain:  Python number.
        dtype: Target dtype.
    """
    if not _kernel_applies(w, dtype):
        return (w * gain).to(dtype)
    if _needs_graph(w):
        return _WeightCast.apply(w, float(gain), False)
    return cpu_kernels.weight_cast_forward(w, float(gain), sums=False)[0]

def cast_with_tap_sums(w, dtype):
    """(w.to(dtype), w.square().sum(dim=[2, 3])), the same values and gradients.

    Args:
        w:     Weight [O, I, kh, kw].
        dtype: Dtype of the first result; the sums keep w's dtype.
    """
    if not _kernel_applies(w, dtype):
        return w.to(dtype), _SquaredTapSums.apply(w)
    if _needs_graph(w):
        return _WeightCast.apply(w, 1.0, True)
    return cpu_kernels.weight_cast_forward(w, 1.0, sums=True)

# Weights of fewer elements keep the PyTorch path: there the calls cost more than the passes (the demo's
# 32-channel layers: 1.3 ms more per training step through the kernel).
KERNEL_MIN_NUMEL = 1 << 15

def _kernel_applies(w, dtype):
    return (w.numel() >= KERNEL_MIN_NUMEL and dtype == torch.bfloat16 and w.dtype == torch.float32
        and cpu_kernels.dense_4d(w) and cpu_kernels.usable(w))

def _needs_graph(w):
    return torch.is_grad_enabled() and w.requires_grad

#----------------------------------------------------------------------------
# The kernel as a Function: bf16(w * gain), and with `sums` also the squared tap sums. Its backward
# runs the C kernel unless a graph of the gradient is being built: then the same derivative in torch ops.

class _WeightCast(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, gain, sums):  # pylint: disable=arguments-differ
        ctx.save_for_backward(w)
        ctx.gain = gain
        out, row_sums = cpu_kernels.weight_cast_forward(w, gain, sums)
        return (out, row_sums) if sums else out

    @staticmethod
    def backward(ctx, g, g_sums=None):  # pylint: disable=arguments-differ
        w, = ctx.saved_tensors
        if torch.is_grad_enabled():
            terms = []
            if g is not None:
                terms.append(g.to(w.dtype) * ctx.gain)
            if g_sums is not None:
                terms.append(w * (g_sums * 2).unsqueeze(2).unsqueeze(3))
            grad = sum(terms[1:], terms[0]) if terms else None
            return grad, None, None
        if g is None and g_sums is None:
            return None, None, None
        g_sums = g_sums.to(torch.float32).contiguous() if g_sums is not None else None
        return cpu_kernels.weight_cast_grad(g, w, g_sums, ctx.gain), None, None

#----------------------------------------------------------------------------
# weight.square().sum(dim=[2, 3]) with the same values and gradient, the backward as one product
# (w * 2g instead of autograd's pow, scale, product and expand; bit-identical: 2g is exact).

class _SquaredTapSums(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight):  # pylint: disable=arguments-differ
        ctx.save_for_backward(weight)
        return weight.square().sum(dim=[2, 3])

    @staticmethod
    def backward(ctx, grad):  # pylint: disable=arguments-differ
        weight, = ctx.saved_tensors
        return weight * (grad * 2).unsqueeze(2).unsqueeze(3)

#----------------------------------------------------------------------------
