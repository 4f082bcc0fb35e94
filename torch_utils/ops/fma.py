# Fused multiply-add: fma(a, b, c) = a * b + c with broadcasting.

import torch

#----------------------------------------------------------------------------
# The fused op. torch.addcmul is a single fused kernel on every device, so there is no
# separate CUDA path and no `impl` argument; autograd reduces the gradients over the
# broadcast dimensions and differentiates twice.

def fma(a, b, c):
    """Computes a * b + c in one kernel.

    Args:
        a: Tensor.
        b: Tensor broadcastable with a.
        c: Tensor broadcastable with a * b.

    Returns:
        Tensor of the broadcast shape of a, b and c.
    """
    for name, t in (('a', a), ('b', b), ('c', c)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f'fma: {name} must be a torch.Tensor, got {type(t).__name__}')
    return torch.addcmul(c, a, b)

#----------------------------------------------------------------------------
# Reference implementation in plain PyTorch (the specification of fma).

def _fma_ref(a, b, c):
    return a * b + c

#----------------------------------------------------------------------------
