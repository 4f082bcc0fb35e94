# Fused bias + activation + gain + clamp: bias_act().
#
# y = clamp(act(x + b, alpha) * gain, -clamp, clamp), with b broadcast along one
# dimension of x. See docs/ops.md.

import math
import numbers
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from dnnlib import EasyDict

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
# CUDA kernel dispatch. The compiled plugin comes with a later change; until then every
# call runs the reference path, with one warning when a CUDA kernel was asked for in vain.

_plugin = None                  # Compiled CUDA extension, None while not built.
_warned_no_cuda = False         # Whether the reference-path fallback warning was shown.

#----------------------------------------------------------------------------
# Whether the CUDA kernel can run on tensor x.

def _cuda_available(x):
    return _plugin is not None and x.device.type == 'cuda'

#----------------------------------------------------------------------------
# Checks `impl` and warns once when a CUDA tensor has to use the reference path.

def _check_impl(impl, x):
    global _warned_no_cuda
    if impl not in ('ref', 'cuda'):
        raise ValueError(f"bias_act: impl must be 'ref' or 'cuda', got {impl!r}")
    if impl == 'cuda' and x.device.type == 'cuda' and not _cuda_available(x) and not _warned_no_cuda:
        _warned_no_cuda = True
        warnings.warn('bias_act: no CUDA kernel is available; using the reference PyTorch path '
            '(slower, same results).', RuntimeWarning, stacklevel=3)

#----------------------------------------------------------------------------
# The fused op.

def bias_act(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None, impl='cuda'):
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
        impl:  'cuda' (CUDA kernel for CUDA tensors when built, else reference) or 'ref'.

    Returns:
        Tensor with the shape, dtype and memory format of x.
    """
    _check_impl(impl, x)
    return _bias_act_ref(x, b=b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)

#----------------------------------------------------------------------------
# Reference implementation in plain PyTorch (the specification of bias_act).

def _bias_act_ref(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None):
    spec, alpha, gain, clamp = _parse_args(act, alpha, gain, clamp)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f'bias_act: x must be a torch.Tensor, got {type(x).__name__}')

    # Bias along `dim`.
    if b is not None:
        if not isinstance(dim, numbers.Integral) or not -x.ndim <= dim < x.ndim:
            raise ValueError(f'bias_act: dim={dim!r} is out of range for x of shape {list(x.shape)}')
        dim = int(dim) % x.ndim
        if not isinstance(b, torch.Tensor) or b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f'bias_act: b must be a 1-D tensor of length x.shape[{dim}] = {x.shape[dim]}, '
                f'got {list(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__}')
        x = x + b.to(x.dtype).reshape([-1 if i == dim else 1 for i in range(x.ndim)])

    # Activation, gain, clamp.
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x

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
    if not all(np.isfinite([alpha, gain])):
        raise ValueError(f'bias_act: alpha and gain must be finite, got alpha={alpha}, gain={gain}')
    return spec, alpha, gain, clamp

#----------------------------------------------------------------------------
