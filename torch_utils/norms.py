# Normalisation layers of the BigGAN family and virtual batch normalisation.
#
#   fused_bn, manual_bn, batch_stats    functional BatchNorm (statistics in float32)
#   StandingBatchNorm (alias myBN)       BatchNorm with running or standing statistics
#   Normalize2d                          parameter-free normalisation by norm_style
#   ConditionalBatchNorm2d (alias ccbn)  gain = 1 + linear(y), bias = linear(y)
#   UnconditionalBatchNorm2d (alias bn)  learned gain and bias, same forward(x, y=None)
#   VirtualBatchNorm1d / 2d              reference-batch statistics (Salimans et al. 2016)
#
# BatchNorm semantics follow torch.nn.BatchNorm2d: biased batch variance in the
# normalisation, unbiased variance in the running estimate, momentum 0.1, eps 1e-5.
# Cross-replica BatchNorm sums per-channel statistics over all processes of the default
# torch.distributed process group with a differentiable all-reduce.
#
# The layers are persistent classes: a pickled network carries this module's source, so it
# runs the normalisation it was trained with. This module imports only torch and torch_utils;
# training.norms re-exports it. Buffers that differ between processes (running, standing and
# reference statistics) are named by each class's `rank_local_buffers`.

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from torch_utils import misc
from torch_utils import persistence
from torch_utils import spectral_norm

#----------------------------------------------------------------------------
# Registry of norm_style names accepted by Normalize2d, ccbn and bn.

norm_styles = {
    'bn':       'batch normalisation (batch statistics in training; running or standing statistics in eval)',
    'in':       'instance normalisation (per-sample statistics in training; running averages of them in eval, as BigGAN)',
    'gn':       'group normalisation (per-sample statistics over channel groups)',
    'nonorm':   'no normalisation (identity before the gain and bias)',
    'vbn':      'virtual batch normalisation (reference-batch statistics mixed with the batch)',
}

#----------------------------------------------------------------------------
# Sum of a tensor over all processes, differentiable: the gradient of the sum is the sum of
# the gradients, so every process receives the gradient of the global loss.

class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, dy):
        dx = dy.clone()
        dist.all_reduce(dx, op=dist.ReduceOp.SUM)
        return dx

#----------------------------------------------------------------------------
# True when statistics can be synchronised across more than one process.

def _distributed_world():
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

#----------------------------------------------------------------------------
# Per-channel batch statistics.

def batch_stats(x, cross_replica=False):
    """Per-channel mean and biased variance over all dimensions except dim 1, in float32
    (float64 for float64 input).

    Args:
        x:             Input [N, C, ...] of any floating dtype.
        cross_replica: Sum the statistics over all processes of the default process group
                       (differentiably) when torch.distributed is initialised.

    Returns:
        mean:  [C] float32 (or float64).
        var:   [C], biased (mean of squares minus squared mean, clamped at 0).
        count: 0-dim tensor, the number of values per channel (global when synced).
    """
    if x.ndim < 2:
        raise ValueError(f'batch_stats expects an input [N, C, ...], got shape {list(x.shape)}')
    dims = [0] + list(range(2, x.ndim))
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    num_channels = x.shape[1]
    sums = torch.cat([xf.sum(dims), (xf * xf).sum(dims)])   # [2C]
    count = torch.full([1], x.numel() / num_channels, dtype=xf.dtype, device=x.device)
    if cross_replica and _distributed_world():
        packed = _AllReduceSum.apply(torch.cat([sums, count]))
        sums, count = packed[:-1], packed[-1:].detach()
    mean = sums[:num_channels] / count
    var = (sums[num_channels:] / count - mean * mean).clamp(min=0)
    return mean, var, count.reshape([])

#----------------------------------------------------------------------------
# Normalise with given statistics and apply a gain and bias in one multiply-add.

def fused_bn(x, mean, var, gain=None, bias=None, eps=1e-5):
    """(x - mean) / sqrt(var + eps) * gain + bias, computed as x * scale - shift.

    Args:
        x:    Input [N, C, ...].
        mean: Mean, broadcastable to x (e.g. [1, C, 1, 1]).
        var:  Variance, broadcastable to x.
        gain: Optional gain, broadcastable to x (e.g. [N, C, 1, 1]); None = 1.
        bias: Optional bias, broadcastable to x; None = 0.
        eps:  Added to the variance.

    Returns:
        Tensor of the shape and dtype of x (scale and shift are formed in the dtype of the
        statistics, e.g. float32, and cast to the dtype of x).
    """
    scale = torch.rsqrt(var + eps)
    if gain is not None:
        scale = scale * gain
    shift = mean * scale
    if bias is not None:
        shift = shift - bias
    return x * scale.to(x.dtype) - shift.to(x.dtype)

#----------------------------------------------------------------------------
# BatchNorm with the statistics of the current batch.

def manual_bn(x, gain=None, bias=None, return_mean_var=False, eps=1e-5, cross_replica=False):
    """BatchNorm with batch statistics computed in float32 (safe for float16 input).

    Args:
        x:               Input [N, C, ...].
        gain:            Optional gain broadcastable to x; None = 1.
        bias:            Optional bias broadcastable to x; None = 0.
        return_mean_var: Also return the statistics.
        eps:             Added to the variance.
        cross_replica:   Synchronise the statistics over processes (see batch_stats).

    Returns:
        out (shape and dtype of x), or (out, mean [C] float32, biased var [C] float32).
    """
    mean, var, _count = batch_stats(x, cross_replica=cross_replica)
    shape = [1, x.shape[1]] + [1] * (x.ndim - 2)
    out = fused_bn(x, mean.reshape(shape), var.reshape(shape), gain, bias, eps)
    if return_mean_var:
        return out, mean, var
    return out

#----------------------------------------------------------------------------
# BatchNorm without affine parameters that keeps two kinds of statistics for eval mode:
# running averages with momentum (as torch.nn.BatchNorm2d, buffers stored_mean and
# stored_var), or, while `accumulate_standing` is set, standing statistics: plain sums of
# the batch means and unbiased variances over many training-mode passes (buffers
# standing_mean_sum, standing_var_sum, accumulation_counter), whose averages are used in
# eval mode. Gain and bias come from the caller (forward(x, gain, bias)).

@persistence.persistent_class
class StandingBatchNorm(torch.nn.Module):
    rank_local_buffers = ('stored_mean', 'stored_var', 'standing_mean_sum', 'standing_var_sum', 'accumulation_counter')

    def __init__(self,
        num_channels,               # Number of channels C of the input [N, C, ...].
        eps             = 1e-5,     # Added to the variance.
        momentum        = 0.1,      # Weight of the new batch in the running averages.
        cross_replica   = False,    # Synchronise batch statistics over torch.distributed processes.
    ):
        super().__init__()
        self.num_channels = int(num_channels)
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.cross_replica = bool(cross_replica)
        self.accumulate_standing = False
        self.register_buffer('stored_mean', torch.zeros([self.num_channels]))
        self.register_buffer('stored_var', torch.ones([self.num_channels]))
        self.register_buffer('standing_mean_sum', torch.zeros([self.num_channels]))
        self.register_buffer('standing_var_sum', torch.zeros([self.num_channels]))
        self.register_buffer('accumulation_counter', torch.zeros([1]))

    # Reset the running statistics to mean 0, variance 1 and clear the standing sums.
    def reset_stats(self):
        with torch.no_grad():
            self.stored_mean.zero_()
            self.stored_var.fill_(1)
            self.standing_mean_sum.zero_()
            self.standing_var_sum.zero_()
            self.accumulation_counter.zero_()

    # The statistics used in eval mode: ([C] mean, [C] variance).
    def eval_stats(self):
        if not self.accumulate_standing:
            return self.stored_mean, self.stored_var
        if float(self.accumulation_counter) == 0:
            raise RuntimeError('StandingBatchNorm: accumulate_standing is set but no standing statistics were accumulated; '
                'run the network in training mode first (see networks_biggan.accumulate_standing_stats)')
        return self.standing_mean_sum / self.accumulation_counter, self.standing_var_sum / self.accumulation_counter

    def forward(self, x, gain=None, bias=None):
        if x.ndim < 2:
            raise ValueError(f'StandingBatchNorm expects an input [N, C, ...], got shape {list(x.shape)}')
        misc.assert_shape(x, [None, self.num_channels] + [None] * (x.ndim - 2))
        shape = [1, self.num_channels] + [1] * (x.ndim - 2)
        if not self.training:
            mean, var = self.eval_stats()
            return fused_bn(x, mean.reshape(shape), var.reshape(shape), gain, bias, self.eps)

        # Normalise with the batch statistics.
        mean, var, count = batch_stats(x, cross_replica=self.cross_replica)
        if x.numel() == self.num_channels and not (self.cross_replica and _distributed_world()):
            raise ValueError(f'StandingBatchNorm: expected more than 1 value per channel in training mode, got input shape {list(x.shape)}')
        out = fused_bn(x, mean.reshape(shape), var.reshape(shape), gain, bias, self.eps)

        # Update the running or the standing statistics.
        with torch.no_grad():
            mean = mean.to(self.stored_mean.dtype)
            var_unbiased = (var * count / (count - 1).clamp(min=1)).to(self.stored_var.dtype)
            if self.accumulate_standing:
                self.standing_mean_sum.add_(mean)
                self.standing_var_sum.add_(var_unbiased)
                self.accumulation_counter.add_(1)
            else:
                self.stored_mean.lerp_(mean, self.momentum)
                self.stored_var.lerp_(var_unbiased, self.momentum)
        return out

    def extra_repr(self):
        return f'{self.num_channels}, eps={self.eps:g}, momentum={self.momentum:g}, cross_replica={self.cross_replica}'

#----------------------------------------------------------------------------
# Parameter-free normalisation of [N, C, H, W] selected by norm_style (see norm_styles),
# followed by an optional gain and bias: forward(x, gain=None, bias=None).

@persistence.persistent_class
class Normalize2d(torch.nn.Module):
    rank_local_buffers = ('stored_mean', 'stored_var')

    def __init__(self,
        num_channels,               # Number of channels C.
        norm_style      = 'bn',     # One of norm_styles: 'bn', 'in', 'gn', 'nonorm', 'vbn'.
        eps             = 1e-5,     # Added to the variance.
        momentum        = 0.1,      # Running-average momentum ('bn', 'in').
        mybn            = False,    # 'bn' through StandingBatchNorm (supports standing statistics).
        cross_replica   = False,    # 'bn' with statistics synchronised over processes (uses StandingBatchNorm).
        num_groups      = 16,       # 'gn': groups = gcd(num_groups, num_channels).
    ):
        super().__init__()
        if norm_style not in norm_styles:
            raise ValueError(f'Unknown norm_style {norm_style!r}; choose one of {sorted(norm_styles)}')
        if (mybn or cross_replica) and norm_style != 'bn':
            raise ValueError(f"mybn and cross_replica need norm_style 'bn', got {norm_style!r}")
        self.num_channels = int(num_channels)
        self.norm_style = norm_style
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.num_groups = math.gcd(int(num_groups), self.num_channels)
        self.bn = None
        self.vbn = None
        if norm_style == 'bn' and (mybn or cross_replica):
            self.bn = StandingBatchNorm(self.num_channels, eps=eps, momentum=momentum, cross_replica=cross_replica)
        elif norm_style in ('bn', 'in'):
            self.register_buffer('stored_mean', torch.zeros([self.num_channels]))
            self.register_buffer('stored_var', torch.ones([self.num_channels]))
        elif norm_style == 'vbn':
            self.vbn = VirtualBatchNorm2d(self.num_channels, eps=eps, affine=False)

    def forward(self, x, gain=None, bias=None):
        misc.assert_shape(x, [None, self.num_channels, None, None])
        if self.bn is not None:
            return self.bn(x, gain=gain, bias=bias)
        if self.norm_style == 'bn':
            out = F.batch_norm(x, self.stored_mean, self.stored_var, None, None, self.training, self.momentum, self.eps)
        elif self.norm_style == 'in':
            out = F.instance_norm(x, self.stored_mean, self.stored_var, None, None, self.training, self.momentum, self.eps)
        elif self.norm_style == 'gn':
            out = F.group_norm(x, self.num_groups, eps=self.eps)
        elif self.norm_style == 'vbn':
            out = self.vbn(x)
        else:
            out = x
        if gain is not None:
            out = out * gain.to(out.dtype)
        if bias is not None:
            out = out + bias.to(out.dtype)
        return out

    def extra_repr(self):
        return f'{self.num_channels}, norm_style={self.norm_style!r}, eps={self.eps:g}'

#----------------------------------------------------------------------------
# Class-conditional BatchNorm (de Vries et al. 2017; BigGAN): the input is normalised
# without affine parameters, then scaled by 1 + gain(y) and shifted by bias(y), where
# y [N, input_size] is the conditioning vector (e.g. [shared class embedding, z chunk]).
# gain and bias are layers made by `which_linear` (BigGAN's call form, e.g.
# ccbn(C, D, which_linear=functools.partial(SNLinear, bias=False))); without it, linear
# layers without bias, spectrally normalised unless use_sn=False (plain data, as in configs).

@persistence.persistent_class
class ConditionalBatchNorm2d(torch.nn.Module):
    def __init__(self,
        output_size,                # Number of channels C of x.
        input_size,                 # Size of the conditioning vector y.
        which_linear    = None,     # Layer factory f(input_size, output_size) for gain and bias; None = from use_sn/sn_kwargs.
        eps             = 1e-5,     # Added to the variance.
        momentum        = 0.1,      # Running-average momentum.
        cross_replica   = False,    # Synchronise BatchNorm statistics over processes.
        mybn            = False,    # Use StandingBatchNorm (standing statistics).
        norm_style      = 'bn',     # One of norm_styles.
        num_groups      = 16,       # Group count for norm_style 'gn'.
        use_sn          = None,     # Without which_linear: spectral norm on the gain and bias layers; None = True.
        sn_kwargs       = None,     # Keyword arguments of SpectralNormLinear (num_svs, num_itrs, eps); None = defaults.
    ):
        super().__init__()
        if int(input_size) <= 0:
            raise ValueError('ConditionalBatchNorm2d needs input_size > 0; use UnconditionalBatchNorm2d without a conditioning vector')
        self.output_size = int(output_size)
        self.input_size = int(input_size)
        if which_linear is not None:
            if use_sn is not None or sn_kwargs is not None:
                raise ValueError('ConditionalBatchNorm2d: give either which_linear or use_sn/sn_kwargs, not both')
            self.gain = which_linear(self.input_size, self.output_size)
            self.bias = which_linear(self.input_size, self.output_size)
        elif use_sn is None or use_sn:
            sn_kwargs = dict(sn_kwargs or {})
            self.gain = spectral_norm.SpectralNormLinear(self.input_size, self.output_size, bias=False, **sn_kwargs)
            self.bias = spectral_norm.SpectralNormLinear(self.input_size, self.output_size, bias=False, **sn_kwargs)
        else:
            if sn_kwargs:
                raise ValueError('ConditionalBatchNorm2d: sn_kwargs given but use_sn=False')
            self.gain = torch.nn.Linear(self.input_size, self.output_size, bias=False)
            self.bias = torch.nn.Linear(self.input_size, self.output_size, bias=False)
        self.norm = Normalize2d(self.output_size, norm_style=norm_style, eps=eps, momentum=momentum,
            mybn=mybn, cross_replica=cross_replica, num_groups=num_groups)

    def forward(self, x, y):
        misc.assert_shape(x, [None, self.output_size, None, None])
        misc.assert_shape(y, [x.shape[0], self.input_size])
        gain = (1 + self.gain(y)).reshape(y.shape[0], self.output_size, 1, 1) # [NC11]
        bias = self.bias(y).reshape(y.shape[0], self.output_size, 1, 1)       # [NC11]
        return self.norm(x, gain=gain, bias=bias)

    def extra_repr(self):
        return f'out={self.output_size}, in={self.input_size}'

#----------------------------------------------------------------------------
# Unconditional normalisation with a learned per-channel gain (init 1) and bias (init 0),
# with the interface of ConditionalBatchNorm2d: forward(x, y=None); y is not used.

@persistence.persistent_class
class UnconditionalBatchNorm2d(torch.nn.Module):
    def __init__(self,
        output_size,                # Number of channels C of x.
        eps             = 1e-5,     # Added to the variance.
        momentum        = 0.1,      # Running-average momentum.
        cross_replica   = False,    # Synchronise BatchNorm statistics over processes.
        mybn            = False,    # Use StandingBatchNorm (standing statistics).
        norm_style      = 'bn',     # One of norm_styles.
        num_groups      = 16,       # Group count for norm_style 'gn'.
    ):
        super().__init__()
        self.output_size = int(output_size)
        self.gain = torch.nn.Parameter(torch.ones([self.output_size]))
        self.bias = torch.nn.Parameter(torch.zeros([self.output_size]))
        self.norm = Normalize2d(self.output_size, norm_style=norm_style, eps=eps, momentum=momentum,
            mybn=mybn, cross_replica=cross_replica, num_groups=num_groups)

    def forward(self, x, y=None):
        _ = y # Same call signature as ConditionalBatchNorm2d; the output does not depend on y.
        misc.assert_shape(x, [None, self.output_size, None, None])
        return self.norm(x, gain=self.gain.reshape(1, -1, 1, 1), bias=self.bias.reshape(1, -1, 1, 1))

    def extra_repr(self):
        return f'out={self.output_size}'

#----------------------------------------------------------------------------
# Virtual batch normalisation (Salimans et al. 2016, "Improved Techniques for Training
# GANs", sec. 3.4). Statistics are the per-channel mean and mean of squares. Two call forms:
# - Stateful, forward(x) -> out (for use inside a generator). Reference mode: the first call
#   after construction or reset_reference() (or an explicit set_reference(x)) stores the
#   batch's statistics, detached, in the buffers ref_mean and ref_mean_sq and normalises the
#   batch with them. Mixed mode: every later call on a batch of B samples normalises with
#   1/(B+1) * batch statistics + B/(B+1) * reference statistics.
# - Functional (seed 004), forward(x, ref_mean, ref_mean_sq) -> (out, mean, mean_sq): reference
#   mode when either statistic is None (the returned statistics are detached), mixed mode
#   otherwise; nothing is stored. Statistics have the keepdim shape of get_stats, e.g. [1, C, 1].

_STATEFUL = object() # Default of forward's statistics arguments: the stateful call form.

class _VirtualBatchNorm(torch.nn.Module):
    rank_local_buffers = ('ref_mean', 'ref_mean_sq', 'has_reference')

    def __init__(self, num_features, eps=1e-5, affine=True):
        super().__init__()
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.affine = bool(affine)
        self.gamma = torch.nn.Parameter(torch.normal(1.0, 0.02, size=[self.num_features])) if affine else None
        self.beta = torch.nn.Parameter(torch.zeros([self.num_features])) if affine else None
        self.register_buffer('ref_mean', torch.zeros([self.num_features]))
        self.register_buffer('ref_mean_sq', torch.zeros([self.num_features]))
        self.register_buffer('has_reference', torch.zeros([], dtype=torch.bool))

    def _check_input(self, x):
        raise NotImplementedError

    # Per-channel mean and mean of squares of x over all dimensions but 1, keeping them ([1, C, 1] for [N, C, L]).
    def get_stats(self, x):
        dims = [0] + list(range(2, x.ndim))
        return x.mean(dims, keepdim=True), (x * x).mean(dims, keepdim=True)

    # Normalise x with the given statistics ([C] or keepdim shape) and apply gamma and beta.
    def normalize(self, x, mean, mean_sq):
        for name, stat in (('mean', mean), ('mean_sq', mean_sq)):
            if stat is None or stat.numel() != self.num_features:
                got = 'None' if stat is None else f'shape {list(stat.shape)}'
                raise ValueError(f'{type(self).__name__}.normalize: {name} must hold {self.num_features} values (one per feature), got {got}')
        shape = [1, self.num_features] + [1] * (x.ndim - 2)
        mean, mean_sq = mean.reshape(shape), mean_sq.reshape(shape)
        var = (mean_sq - mean * mean).clamp(min=0)
        out = (x - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            out = out * self.gamma.reshape(shape) + self.beta.reshape(shape)
        return out

    # Forget the reference statistics; the next stateful forward call sets them.
    def reset_reference(self):
        with torch.no_grad():
            self.ref_mean.zero_()
            self.ref_mean_sq.zero_()
            self.has_reference.fill_(False)

    # Store the (detached) statistics of the reference batch x; returns x normalised with them.
    def set_reference(self, x):
        self._check_input(x)
        mean, mean_sq = (s.detach() for s in self.get_stats(x))
        with torch.no_grad():
            self.ref_mean.copy_(mean.reshape(-1))
            self.ref_mean_sq.copy_(mean_sq.reshape(-1))
            self.has_reference.fill_(True)
        return self.normalize(x, mean, mean_sq)

    # Statistics of mixed mode for the batch x: 1/(B+1) * batch + B/(B+1) * reference.
    def mixed_stats(self, x, ref_mean=None, ref_mean_sq=None):
        ref_mean = self.ref_mean if ref_mean is None else ref_mean
        ref_mean_sq = self.ref_mean_sq if ref_mean_sq is None else ref_mean_sq
        mean, mean_sq = self.get_stats(x)
        new_coeff = 1.0 / (x.shape[0] + 1.0)
        old_coeff = 1.0 - new_coeff
        ref_mean, ref_mean_sq = ref_mean.reshape(mean.shape), ref_mean_sq.reshape(mean.shape)
        return new_coeff * mean + old_coeff * ref_mean, new_coeff * mean_sq + old_coeff * ref_mean_sq

    def forward(self, x, ref_mean=_STATEFUL, ref_mean_sq=_STATEFUL):
        if ref_mean is not _STATEFUL or ref_mean_sq is not _STATEFUL:
            return self._forward_functional(x, ref_mean, ref_mean_sq)
        if not bool(self.has_reference):
            return self.set_reference(x)
        self._check_input(x)
        mean, mean_sq = self.mixed_stats(x)
        return self.normalize(x, mean, mean_sq)

    # Seed 004's call form: (out, mean, mean_sq); reference mode when a statistic is None.
    def _forward_functional(self, x, ref_mean, ref_mean_sq):
        if ref_mean is _STATEFUL or ref_mean_sq is _STATEFUL:
            raise TypeError(f'{type(self).__name__}: give both ref_mean and ref_mean_sq (None, None for reference mode), or neither')
        self._check_input(x)
        if ref_mean is None or ref_mean_sq is None:
            mean, mean_sq = (s.detach() for s in self.get_stats(x))
        else:
            for name, stat in (('ref_mean', ref_mean), ('ref_mean_sq', ref_mean_sq)):
                if stat.numel() != self.num_features:
                    raise ValueError(f'{type(self).__name__}: {name} must hold {self.num_features} values, got shape {list(stat.shape)}')
            mean, mean_sq = self.mixed_stats(x, ref_mean, ref_mean_sq)
        return self.normalize(x, mean, mean_sq), mean, mean_sq

    def extra_repr(self):
        return f'{self.num_features}, eps={self.eps:g}, affine={self.affine}'

#----------------------------------------------------------------------------
# Virtual batch normalisation of [N, C] or [N, C, L] inputs.

@persistence.persistent_class
class VirtualBatchNorm1d(_VirtualBatchNorm):
    def __init__(self,
        num_features,       # Number of channels C.
        eps     = 1e-5,     # Added to the variance.
        affine  = True,     # Learned gamma (init N(1, 0.02)) and beta (init 0).
    ):
        super().__init__(num_features, eps=eps, affine=affine)

    def _check_input(self, x):
        if x.ndim not in (2, 3):
            raise ValueError(f'VirtualBatchNorm1d expects [N, C] or [N, C, L], got shape {list(x.shape)}')
        misc.assert_shape(x, [None, self.num_features] + [None] * (x.ndim - 2))

#----------------------------------------------------------------------------
# Virtual batch normalisation of [N, C, H, W] inputs.

@persistence.persistent_class
class VirtualBatchNorm2d(_VirtualBatchNorm):
    def __init__(self,
        num_features,       # Number of channels C.
        eps     = 1e-5,     # Added to the variance.
        affine  = True,     # Learned gamma (init N(1, 0.02)) and beta (init 0).
    ):
        super().__init__(num_features, eps=eps, affine=affine)

    def _check_input(self, x):
        if x.ndim != 4:
            raise ValueError(f'VirtualBatchNorm2d expects [N, C, H, W], got shape {list(x.shape)}')
        misc.assert_shape(x, [None, self.num_features, None, None])

#----------------------------------------------------------------------------
# BigGAN's names (aliases).

myBN = StandingBatchNorm
ccbn = ConditionalBatchNorm2d
bn = UnconditionalBatchNorm2d

#----------------------------------------------------------------------------
