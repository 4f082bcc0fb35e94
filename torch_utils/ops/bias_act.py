# Fused bias + activation + gain + clamp: bias_act().
#
# y = clamp(act(x + b, alpha) * gain, -clamp, clamp), with b broadcast along one
# dimension of x. See docs/ops.md.

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F

from dnnlib import EasyDict
from torch_utils import custom_ops
from torch_utils.ops import cpu_kernels

#----------------------------------------------------------------------------
# Activation functions by name. func(x, alpha) is the plain activation; def_alpha and
# def_gain are the defaults of bias_act(); cuda_idx numbers the function for a CUDA
# kernel; ref says which tensor a CUDA backward needs ('x' the input, 'y' the output,
# '' none); has_2nd_grad says whether the second derivative is non-zero.

activation_funcs = EasyDict(
    linear   = EasyDict(func=lambda x, alpha: x,                                  def_alpha=0.0, def_gain=1.0,          cuda_idx=1, ref='',  has_2nd_grad=False),
    relu     = EasyDict(func=lambda x, alpha: F.relu(x),                          def_alpha=0.0, def_gain=math.sqrt(2), cuda_idx=2, ref='y', has_2nd_grad=False),
    lrelu    = EasyDict(func=lambda x, alpha: F.leaky_relu(x, alpha),             def_alpha=0.2, def_gain=math.sqrt(2), cuda_idx=3, ref='y', has_2nd_grad=False),
    tanh     = EasyDict(func=lambda x, alpha: torch.tanh(x),                      def_alpha=0.0, def_gain=1.0,          cuda_idx=4, ref='y', has_2nd_grad=True),
    sigmoid  = EasyDict(func=lambda x, alpha: torch.sigmoid(x),                   def_alpha=0.0, def_gain=1.0,          cuda_idx=5, ref='y', has_2nd_grad=True),
    elu      = EasyDict(func=lambda x, alpha: F.elu(x, alpha),                    def_alpha=1.0, def_gain=1.0,          cuda_idx=6, ref='y', has_2nd_grad=True),
    selu     = EasyDict(func=lambda x, alpha: F.selu(x),                          def_alpha=0.0, def_gain=1.0,          cuda_idx=7, ref='y', has_2nd_grad=True),
    softplus = EasyDict(func=lambda x, alpha: F.softplus(x),                      def_alpha=0.0, def_gain=1.0,          cuda_idx=8, ref='y', has_2nd_grad=True),
    swish    = EasyDict(func=lambda x, alpha: torch.sigmoid(x) * x,               def_alpha=0.0, def_gain=math.sqrt(2), cuda_idx=9, ref='x', has_2nd_grad=True),
)

#----------------------------------------------------------------------------
# CUDA kernel dispatch. The plugin (bias_act.cpp/.cu/.h) is built by custom_ops at the
# first call on a CUDA tensor; a failed build leaves the reason in _plugin_error.

_plugin = None                  # Compiled CUDA extension, None while not built.
_plugin_error = None            # custom_ops.PluginError of a failed build, None otherwise.
_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

#----------------------------------------------------------------------------
# Builds or loads the plugin once per process; True when it is usable.

def _init():
    return custom_ops.init_op_plugin(__name__, 'bias_act')

#----------------------------------------------------------------------------
# Whether the CUDA kernel can run on tensor x (builds the plugin on first use).

def _cuda_available(x):
    return x.device.type == 'cuda' and x.dtype in _KERNEL_DTYPES and _init()

#----------------------------------------------------------------------------
# Checks `impl` and decides the path (custom_ops.use_cuda_kernel): True = CUDA kernel, False = reference.

def _check_impl(impl, x):
    return custom_ops.use_cuda_kernel('bias_act', impl, x, _KERNEL_DTYPES, _cuda_available, lambda: _plugin_error)

#----------------------------------------------------------------------------
# The fused op.

def bias_act(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None, impl='auto', inplace=False):
    """Adds a bias, applies an activation, scales by a gain and clamps.

    Args:
        x:     Input tensor of any shape.
        b:     Bias, a 1-D tensor of length x.shape[dim], or None (no bias). It is cast
               to the dtype of x.
        dim:   Dimension of x the bias runs along (negative counts from the end).
        act:   Activation name, a key of `activation_funcs`.
        alpha: Shape parameter (lrelu slope, elu alpha; ignored by the others).
               None = the activation's def_alpha.
        gain:  Factor applied after the activation. None = the activation's def_gain.
        clamp: Clamp the result to [-clamp, clamp]. None or -1 = no clamping.
        impl:  'auto' (CUDA kernel for CUDA tensors when it builds, else the reference
               path after one warning), 'cuda' (as 'auto', but an error when a CUDA
               tensor cannot use the kernel) or 'ref'. Without the kernel (CPU tensors),
               'auto' runs linear, relu and lrelu as one hand-fused step (same values
               as 'ref', fewer passes over memory) and the others as 'ref'.
        inplace: True when x is a temporary nobody else reads (e.g. a convolution's output): the
               hand-fused path then writes the result into x instead of a new tensor (same
               values); the other paths ignore it. Not for leaves that require gradients.

    Returns:
        Tensor with the shape, dtype and memory format of x.
    """
    if _check_impl(impl, x):
        _parse_args(act, alpha, gain, clamp)
        dim = _check_bias(x, b, dim)
        b = b.to(x.dtype) if b is not None else None
        return _bias_act_cuda(dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp).apply(x, b)
    if impl != 'ref' and act in _FUSED_ACTS and isinstance(x, torch.Tensor):
        return _bias_act_fused(x, b=b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, inplace=inplace)
    return _bias_act_ref(x, b=b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)

#----------------------------------------------------------------------------
# Reference implementation in plain PyTorch (the specification of bias_act).

def _bias_act_ref(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None):
    spec, alpha, gain, clamp = _parse_args(act, alpha, gain, clamp)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f'bias_act: x must be a torch.Tensor, got {type(x).__name__}')

    # Bias along `dim`.
    if b is not None:
        dim = _check_bias(x, b, dim)
        x = x + b.to(x.dtype).reshape([-1 if i == dim else 1 for i in range(x.ndim)])

    # Activation, gain, clamp.
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x

#----------------------------------------------------------------------------
# Hand-fused path without the CUDA kernel, for the activations whose derivative is a function of
# the output and whose second derivative is zero. Forward: one new tensor (x + b), then the
# activation, gain and clamp in place. Backward: from the output y alone, as ATen's own backward
# kernels of clamp (hardtanh), the gain and the activation compute it, in the reference's order
# (so float32 gradients equal the reference's); itself a Function, so R1 can differentiate it.
# The one difference: where x + b lands exactly on +-clamp, 'ref' passes the gradient and this
# path does not (it cannot tell that value from a clamped one).

_FUSED_ACTS = ('linear', 'relu', 'lrelu')

def _bias_act_fused(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None, inplace=False):
    _spec, alpha, gain, clamp = _parse_args(act, alpha, gain, clamp)
    if b is not None:
        dim = _check_bias(x, b, dim)
        b = b.to(x.dtype).reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    if b is None and act == 'linear' and gain == 1 and clamp < 0:
        return x
    if not torch.is_grad_enabled() or not (x.requires_grad or (b is not None and b.requires_grad)):
        return _fused_forward(x, b, dim, act, alpha, gain, clamp, inplace)
    return _BiasActFused.apply(x, b, dim, act, alpha, gain, clamp, inplace)

# y = clamp(act(x + b) * gain) with one new tensor, or in x itself. b is broadcastable to x along
# one dimension; the C kernel (cpu_kernels) takes dense float32 and bfloat16 CPU tensors in one pass.
def _fused_forward(x, b, dim, act, alpha, gain, clamp, inplace=False):
    layout = _kernel_layout(x, b, dim)
    if layout is not None:
        out = x if inplace else torch.empty_like(x)
        return cpu_kernels.bias_act_forward(out, x, b.reshape(-1).contiguous() if b is not None else None, layout, act, alpha, gain, clamp)
    if inplace:
        y = x.add_(b) if b is not None else x
    else:
        y = x + b if b is not None else x.clone()
    if act == 'relu':
        y = F.relu_(y)
    elif act == 'lrelu':
        y = F.leaky_relu_(y, alpha)
    if gain != 1:
        y = y.mul_(gain)
    if clamp >= 0:
        y = y.clamp_(-clamp, clamp)
    return y

# dx from dy and the output y: clamp mask, gain, activation slope (the reference's order).
def _fused_backward(dy, y, act, alpha, gain, clamp):
    if y is not None and (act != 'linear' or clamp >= 0) and _kernel_layout(y, None, None) is not None and dy.dtype == y.dtype:
        dy = _like(dy, y)
        return cpu_kernels.bias_act_grad(torch.empty_like(y), dy, y, act, alpha, gain, clamp)
    dx = torch.ops.aten.hardtanh_backward(dy, y, -clamp, clamp) if clamp >= 0 else dy
    if gain != 1:
        dx = dx.mul_(gain) if dx is not dy else dx * gain # In place on the new tensor of the clamp's backward.
    if dx is not dy: # The activation's backward in place too (its out= form, elementwise).
        if act == 'relu':
            return torch.ops.aten.threshold_backward.grad_input(dx, y, 0, grad_input=dx)
        if act == 'lrelu':
            return torch.ops.aten.leaky_relu_backward.grad_input(dx, y, alpha, True, grad_input=dx)
    if act == 'relu':
        dx = torch.ops.aten.threshold_backward(dx, y, 0)
    elif act == 'lrelu':
        dx = torch.ops.aten.leaky_relu_backward(dx, y, alpha, True)
    return dx

# [outer, channels, inner] of x for the C kernels, or None where they do not apply (not a dense
# float32 / bfloat16 CPU tensor, a bias of another dtype, kernels off or not built).
def _kernel_layout(x, b, dim):
    if (b is not None and b.dtype != x.dtype) or not cpu_kernels.usable(x):
        return None
    return cpu_kernels.bias_layout(x, dim if b is not None else None)

# y = bias_act(x, b); saves only y, and only when the gradient depends on it.
class _BiasActFused(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, dim, act, alpha, gain, clamp, inplace):  # pylint: disable=arguments-differ
        y = _fused_forward(x, b, dim, act, alpha, gain, clamp, inplace)
        if inplace:
            ctx.mark_dirty(x)
        ctx.save_for_backward(y if act != 'linear' or clamp >= 0 else None) # Linear, unclamped: y may be modified in place.
        ctx.args = (act, alpha, gain, clamp)
        ctx.b_shape = b.shape if b is not None else None
        return y

    @staticmethod
    def backward(ctx, dy):  # pylint: disable=arguments-differ
        y, = ctx.saved_tensors
        dx = _BiasActFusedGrad.apply(dy, y, *ctx.args)
        db = dx.sum_to_size(ctx.b_shape) if ctx.needs_input_grad[1] else None
        return (dx if ctx.needs_input_grad[0] else None), db, None, None, None, None, None, None

# dx = _fused_backward(dy, y): linear in dy, piecewise constant in y (zero derivative).
class _BiasActFusedGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dy, y, act, alpha, gain, clamp):  # pylint: disable=arguments-differ
        ctx.save_for_backward(y)
        ctx.args = (act, alpha, gain, clamp)
        return _fused_backward(dy, y, act, alpha, gain, clamp)

    @staticmethod
    def backward(ctx, d_dx):  # pylint: disable=arguments-differ
        y, = ctx.saved_tensors
        d_dy = _BiasActFusedGrad.apply(d_dx, y, *ctx.args) if ctx.needs_input_grad[0] else None
        return d_dy, None, None, None, None, None

#----------------------------------------------------------------------------
# Checks b against x and dim; returns dim as a non-negative int (b None: dim as given).

def _check_bias(x, b, dim):
    if b is None:
        return dim
    if not isinstance(dim, numbers.Integral) or not -x.ndim <= dim < x.ndim:
        raise ValueError(f'bias_act: dim={dim!r} is out of range for x of shape {list(x.shape)}')
    dim = int(dim) % x.ndim
    if not isinstance(b, torch.Tensor) or b.ndim != 1 or b.shape[0] != x.shape[dim]:
        raise ValueError(f'bias_act: b must be a 1-D tensor of length x.shape[{dim}] = {x.shape[dim]}, '
            f'got {list(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__}')
    return dim

#----------------------------------------------------------------------------
# Resolves act/alpha/gain/clamp to (spec, alpha, gain, clamp) with clamp -1 = off.

def _parse_args(act, alpha, gain, clamp):
    if act not in activation_funcs:
        raise ValueError(f'bias_act: unknown activation {act!r}; valid names: {", ".join(activation_funcs)}')
    spec = activation_funcs[act]
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)
    if clamp < 0 and clamp != -1:
        raise ValueError(f'bias_act: clamp must be >= 0, or None / -1 for no clamping, got {clamp}')
    if not (math.isfinite(alpha) and math.isfinite(gain)): # (math: this runs for every call, numpy's check costs more)
        raise ValueError(f'bias_act: alpha and gain must be finite, got alpha={alpha}, gain={gain}')
    return spec, alpha, gain, clamp

#----------------------------------------------------------------------------
# CUDA path: autograd.Functions around the kernel, one pair per argument tuple. The
# backward is the same kernel in derivative mode, itself a Function, so R1 and
# path-length regularisation (gradients of gradients) run on the kernel too.

_bias_act_cuda_cache = dict()

def _bias_act_cuda(dim=1, act='linear', alpha=None, gain=None, clamp=None):
    spec, alpha, gain, clamp = _parse_args(act, alpha, gain, clamp)
    key = (dim, act, alpha, gain, clamp)
    if key in _bias_act_cuda_cache:
        return _bias_act_cuda_cache[key]

    # Runs the kernel: mode 0 forward, 1 first derivative, 2 second-derivative factor.
    def run(x, b, dy, mode):
        b = b if b is not None else x.new_empty([0])
        dy = _like(dy, x) if dy is not None else x.new_empty([0])
        return _plugin.bias_act(x, b, dy, mode, spec.cuda_idx, alpha, gain, clamp, dim)

    # Sum over every dimension except the bias dimension.
    def sum_to_bias(t):
        return t.sum([i for i in range(t.ndim) if i != dim])

    # y = bias_act(x, b).
    class BiasActCuda(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, b):  # pylint: disable=arguments-differ
            x = _dense(x)
            ctx.save_for_backward(x, b)
            return run(x, b, None, 0)

        @staticmethod
        def backward(ctx, dy):  # pylint: disable=arguments-differ
            x, b = ctx.saved_tensors
            dx = BiasActCudaGrad.apply(dy, x, b)
            db = sum_to_bias(dx) if ctx.needs_input_grad[1] else None
            return (dx if ctx.needs_input_grad[0] else None), db

    # dx = dy * gain * act'(x + b) * [not clamped]; linear in dy.
    class BiasActCudaGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, dy, x, b):  # pylint: disable=arguments-differ
            ctx.save_for_backward(dy, x, b)
            return run(x, b, dy, 1)

        @staticmethod
        def backward(ctx, d_dx):  # pylint: disable=arguments-differ
            dy, x, b = ctx.saved_tensors
            d_dy = d_x = d_b = None
            if ctx.needs_input_grad[0]:
                d_dy = BiasActCudaGrad.apply(d_dx, x, b)
            if spec.has_2nd_grad and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
                d_x = d_dx * run(x, b, dy, 2)
                d_b = sum_to_bias(d_x) if ctx.needs_input_grad[2] else None
            return d_dy, d_x, d_b

    _bias_act_cuda_cache[key] = BiasActCuda
    return BiasActCuda

#----------------------------------------------------------------------------
# x itself when it is dense (contiguous or channels_last), else a contiguous copy.

def _dense(x):
    if x.is_contiguous() or (x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last)):
        return x
    return x.contiguous()

#----------------------------------------------------------------------------
# t in the dtype and memory layout (strides) of the dense tensor ref.

def _like(t, ref):
    if t.dtype == ref.dtype and t.stride() == ref.stride():
        return t
    return torch.empty_like(ref).copy_(t)

#----------------------------------------------------------------------------
