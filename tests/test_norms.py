# Tests of torch_utils/norms.py (re-exported by training/norms.py) against torch's own
# normalisation layers and numpy, including the call forms of seeds 000 and 004.

import functools
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from torch_utils import norms
from torch_utils import spectral_norm

#----------------------------------------------------------------------------
# Numpy reference: normalise [N, C, ...] with given per-channel statistics.

def _np_normalize(x, mean, var, eps):
    shape = [1, -1] + [1] * (x.ndim - 2)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)

#----------------------------------------------------------------------------

def test_fused_bn_matches_unfused_formula():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    mean = torch.randn(1, 4, 1, 1, dtype=torch.float64)
    var = torch.rand(1, 4, 1, 1, dtype=torch.float64) + 0.5
    gain = torch.randn(3, 4, 1, 1, dtype=torch.float64)
    bias = torch.randn(3, 4, 1, 1, dtype=torch.float64)
    ref = (x - mean) / torch.sqrt(var + 1e-3) * gain + bias
    torch.testing.assert_close(norms.fused_bn(x, mean, var, gain, bias, eps=1e-3), ref)
    torch.testing.assert_close(norms.fused_bn(x, mean, var), (x - mean) / torch.sqrt(var + 1e-5))

#----------------------------------------------------------------------------

def test_manual_bn_matches_batch_norm_and_keeps_float32_stats():
    torch.manual_seed(1)
    x = torch.randn(4, 3, 6, 6) * 2 + 0.5
    out, mean, var = norms.manual_bn(x, return_mean_var=True)
    torch.testing.assert_close(out, F.batch_norm(x, None, None, training=True), atol=1e-5, rtol=1e-5)
    xn = x.double().numpy()
    np.testing.assert_allclose(mean.numpy(), xn.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var.numpy(), xn.var(axis=(0, 2, 3)), rtol=1e-5)

    # Float16 input: statistics stay float32, the output keeps the input dtype.
    out16, mean16, var16 = norms.manual_bn(x.half(), return_mean_var=True)
    assert mean16.dtype == torch.float32 and var16.dtype == torch.float32
    assert out16.dtype == torch.float16
    ref16 = _np_normalize(x.half().double().numpy(), mean16.double().numpy(), var16.double().numpy(), 1e-5)
    np.testing.assert_allclose(out16.double().numpy(), ref16, atol=1e-2)
    np.testing.assert_allclose(mean16.numpy(), x.half().double().numpy().mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)

    # Two-dimensional input [N, C].
    x2 = torch.randn(8, 3)
    torch.testing.assert_close(norms.manual_bn(x2), F.batch_norm(x2, None, None, training=True), atol=1e-5, rtol=1e-5)

#----------------------------------------------------------------------------

def test_standing_batch_norm_running_stats_match_torch():
    torch.manual_seed(2)
    mine = norms.StandingBatchNorm(3)
    ref = torch.nn.BatchNorm2d(3, affine=False)
    for _ in range(5):
        x = torch.randn(4, 3, 5, 5) * 3 + 1
        torch.testing.assert_close(mine(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mine.stored_mean, ref.running_mean)
    torch.testing.assert_close(mine.stored_var, ref.running_var)
    mine.eval()
    ref.eval()
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(mine(x), ref(x), atol=1e-5, rtol=1e-5)

#----------------------------------------------------------------------------

def test_standing_stats_are_average_of_batch_stats():
    torch.manual_seed(3)
    m = norms.myBN(4)
    m.reset_stats()
    m.accumulate_standing = True
    batches = [torch.randn(3, 4, 2, 2) * (i + 1) + i for i in range(4)]
    for x in batches:
        m(x)
    means = [x.double().numpy().mean(axis=(0, 2, 3)) for x in batches]
    variances = [x.double().numpy().var(axis=(0, 2, 3), ddof=1) for x in batches]
    mean, var = m.eval_stats()
    np.testing.assert_allclose(mean.numpy(), np.mean(means, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var.numpy(), np.mean(variances, axis=0), rtol=1e-5)
    assert float(m.accumulation_counter) == 4
    torch.testing.assert_close(m.stored_mean, torch.zeros(4))    # Running stats untouched.

    # Eval mode normalises with the standing averages, with the given gain and bias.
    m.eval()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    gain = torch.randn(2, 4, 1, 1, dtype=torch.float64)
    bias = torch.randn(2, 4, 1, 1, dtype=torch.float64)
    ref = _np_normalize(x.numpy(), np.mean(means, axis=0), np.mean(variances, axis=0), 1e-5) * gain.numpy() + bias.numpy()
    np.testing.assert_allclose(m(x, gain, bias).numpy(), ref, rtol=1e-5, atol=1e-6)

    # Without accumulated passes, eval mode says what to do.
    m.reset_stats()
    with pytest.raises(RuntimeError, match='no standing statistics'):
        m(x)

#----------------------------------------------------------------------------

def test_standing_batch_norm_rejects_single_value_per_channel():
    with pytest.raises(ValueError, match='more than 1 value'):
        norms.StandingBatchNorm(3)(torch.randn(1, 3))

#----------------------------------------------------------------------------
# Independent formulation of each norm style (no affine parameters).

def _reference_norm(x, style, num_groups):
    if style == 'bn':
        return F.batch_norm(x, None, None, training=True)
    if style == 'in':
        return F.instance_norm(x)
    if style == 'gn':
        return F.group_norm(x, num_groups)
    return x

#----------------------------------------------------------------------------

@pytest.mark.parametrize('style,mybn', [('bn', False), ('bn', True), ('in', False), ('gn', False), ('nonorm', False)])
def test_ccbn_formula_every_style(style, mybn):
    torch.manual_seed(4)
    layer = norms.ccbn(12, 5, norm_style=style, mybn=mybn, num_groups=8, use_sn=False)
    with torch.no_grad():
        layer.gain.weight.normal_()
        layer.bias.weight.normal_()
    x = torch.randn(4, 12, 5, 5) * 2 + 1
    y = torch.randn(4, 5)
    gain = (1 + y @ layer.gain.weight.t()).reshape(4, 12, 1, 1)
    bias = (y @ layer.bias.weight.t()).reshape(4, 12, 1, 1)
    ref = _reference_norm(x, style, num_groups=4) * gain + bias    # gcd(8, 12) = 4 groups.
    torch.testing.assert_close(layer(x, y), ref, atol=1e-4, rtol=1e-4)

#----------------------------------------------------------------------------

def test_ccbn_vbn_style_and_spectral_norm_layers():
    torch.manual_seed(5)
    layer = norms.ccbn(3, 2, norm_style='vbn')
    layer.eval()
    x = torch.randn(6, 3, 4, 4, dtype=torch.float64)
    y = torch.randn(6, 2)
    gain = (1 + y @ layer.gain.W_().t()).reshape(6, 3, 1, 1).double().detach()
    bias = (y @ layer.bias.W_().t()).reshape(6, 3, 1, 1).double().detach()
    ref = _np_normalize(x.numpy(), x.numpy().mean(axis=(0, 2, 3)), x.numpy().var(axis=(0, 2, 3)), 1e-5)
    np.testing.assert_allclose(layer(x.float(), y).double().detach().numpy(), ref * gain.numpy() + bias.numpy(), rtol=1e-4, atol=1e-4)
    assert layer.norm.vbn.gamma is None and not hasattr(layer.norm, 'stored_mean')

#----------------------------------------------------------------------------

def test_ccbn_eval_uses_running_stats_like_batchnorm2d():
    torch.manual_seed(6)
    layer = norms.ccbn(3, 2, use_sn=False)
    ref = torch.nn.BatchNorm2d(3, affine=False)
    for _ in range(3):
        x = torch.randn(5, 3, 4, 4) + 2
        layer(x, torch.randn(5, 2))
        ref(x)
    layer.eval()
    ref.eval()
    x = torch.randn(2, 3, 4, 4)
    y = torch.zeros(2, 2)
    torch.testing.assert_close(layer(x, y), ref(x), atol=1e-5, rtol=1e-5)

#----------------------------------------------------------------------------
# Seed 000's ccbn keeps running statistics for 'bn' and 'in' (F.batch_norm / F.instance_norm with
# stored_mean, stored_var) and normalises with them in eval mode: the same as torch's own layers.

@pytest.mark.parametrize('style, ref_class', [('bn', torch.nn.BatchNorm2d), ('in', torch.nn.InstanceNorm2d)])
def test_ccbn_eval_running_stats_match_torch_layers(style, ref_class):
    torch.manual_seed(16)
    layer = norms.ccbn(3, 2, torch.nn.Linear, norm_style=style)
    ref = ref_class(3, affine=False, track_running_stats=True)
    for _ in range(3):
        x = torch.randn(5, 3, 4, 4) * 2 + torch.randn(5, 3, 1, 1)
        layer(x, torch.randn(5, 2))
        ref(x)
    layer.eval()
    ref.eval()
    x, y = torch.randn(2, 3, 4, 4), torch.randn(2, 2)
    gain = 1 + layer.gain(y)[:, :, None, None]
    bias = layer.bias(y)[:, :, None, None]
    torch.testing.assert_close(layer(x, y), ref(x) * gain + bias, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.norm.stored_var, ref.running_var)

#----------------------------------------------------------------------------

def test_unconditional_bn_wrapper():
    torch.manual_seed(7)
    layer = norms.bn(4, mybn=True)
    with torch.no_grad():
        layer.gain.normal_()
        layer.bias.normal_()
    x = torch.randn(3, 4, 5, 5)
    ref = F.batch_norm(x, None, None, layer.gain, layer.bias, training=True)
    torch.testing.assert_close(layer(x), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer(x, y=torch.randn(3, 7)), ref, atol=1e-5, rtol=1e-5)

#----------------------------------------------------------------------------

def test_bad_norm_arguments():
    with pytest.raises(ValueError, match='Unknown norm_style'):
        norms.ccbn(4, 2, norm_style='layer')
    assert norms.ccbn(4, 2, cross_replica=True).norm.bn.cross_replica
    with pytest.raises(ValueError, match="need norm_style 'bn'"):
        norms.bn(4, mybn=True, norm_style='in')
    with pytest.raises(ValueError, match='input_size > 0'):
        norms.ccbn(4, 0)
    with pytest.raises(ValueError, match='use_sn=False'):
        norms.ccbn(4, 2, use_sn=False, sn_kwargs=dict(num_itrs=2))
    with pytest.raises(TypeError):
        norms.ccbn(4, 2, sn_kwargs=dict(num_iters=2))
    layer = norms.ccbn(4, 2)
    with pytest.raises(AssertionError):
        layer(torch.randn(2, 4, 3, 3), torch.randn(3, 2))
    with pytest.raises(AssertionError):
        layer(torch.randn(2, 5, 3, 3), torch.randn(2, 2))

#----------------------------------------------------------------------------

def test_aliases():
    assert norms.myBN is norms.StandingBatchNorm
    assert norms.ccbn is norms.ConditionalBatchNorm2d
    assert norms.bn is norms.UnconditionalBatchNorm2d
    from training import norms as old_path # The pre-move import path names the same objects.
    for name in ('fused_bn', 'manual_bn', 'batch_stats', 'myBN', 'ccbn', 'bn', 'Normalize2d', 'VirtualBatchNorm1d', 'VirtualBatchNorm2d'):
        assert getattr(old_path, name) is getattr(norms, name), name

#----------------------------------------------------------------------------
# Virtual batch norm: reference mode and mixed mode against numpy (seed 004 formulas).

def test_virtual_batch_norm_1d_formulas():
    torch.manual_seed(8)
    vbn = norms.VirtualBatchNorm1d(3, eps=1e-5)
    with torch.no_grad():
        vbn.gamma.normal_()
        vbn.beta.normal_()
    g = vbn.gamma.detach().double().numpy().reshape(1, 3, 1)
    b = vbn.beta.detach().double().numpy().reshape(1, 3, 1)
    ref_x = torch.randn(6, 3, 5) * 2 + 1
    out_ref = vbn(ref_x)
    r = ref_x.double().numpy()
    ref_mean, ref_mean_sq = r.mean(axis=(0, 2)), (r ** 2).mean(axis=(0, 2))
    expect = (r - ref_mean.reshape(1, 3, 1)) / np.sqrt(1e-5 + ref_mean_sq - ref_mean ** 2).reshape(1, 3, 1) * g + b
    np.testing.assert_allclose(out_ref.detach().double().numpy(), expect, rtol=1e-4, atol=1e-4)

    # Mixed mode: 1/(B+1) of the batch statistics, B/(B+1) of the reference statistics.
    x = torch.randn(4, 3, 5) - 1
    xn = x.double().numpy()
    mean = xn.mean(axis=(0, 2)) / 5 + ref_mean * 4 / 5
    mean_sq = (xn ** 2).mean(axis=(0, 2)) / 5 + ref_mean_sq * 4 / 5
    expect = (xn - mean.reshape(1, 3, 1)) / np.sqrt(1e-5 + mean_sq - mean ** 2).reshape(1, 3, 1) * g + b
    np.testing.assert_allclose(vbn(x).detach().double().numpy(), expect, rtol=1e-4, atol=1e-4)

    # The reference statistics stay fixed; [N, C] input works too.
    np.testing.assert_allclose(vbn.ref_mean.numpy(), ref_mean, rtol=1e-5, atol=1e-6)
    x2 = torch.randn(2, 3)
    mean2 = x2.double().numpy().mean(axis=0) / 3 + ref_mean * 2 / 3
    mean_sq2 = (x2.double().numpy() ** 2).mean(axis=0) / 3 + ref_mean_sq * 2 / 3
    expect2 = (x2.double().numpy() - mean2) / np.sqrt(1e-5 + mean_sq2 - mean2 ** 2) * g[:, :, 0] + b[:, :, 0]
    np.testing.assert_allclose(vbn(x2).detach().double().numpy(), expect2, rtol=1e-4, atol=1e-4)

#----------------------------------------------------------------------------

def test_virtual_batch_norm_2d_reference_is_detached_and_resettable():
    torch.manual_seed(9)
    vbn = norms.VirtualBatchNorm2d(2, affine=False)
    ref_x = torch.randn(5, 2, 3, 3, requires_grad=True)
    out = vbn.set_reference(ref_x)
    out.sum().backward()
    r = ref_x.detach().double().numpy()
    inv_std = 1 / np.sqrt(r.var(axis=(0, 2, 3)) + 1e-5)
    # Statistics are constants: d(sum out)/dx = 1 / std per channel.
    np.testing.assert_allclose(ref_x.grad.numpy(), np.broadcast_to(inv_std.reshape(1, 2, 1, 1), r.shape), rtol=1e-4)
    assert bool(vbn.has_reference)
    vbn.reset_reference()
    assert not bool(vbn.has_reference)
    x = torch.randn(3, 2, 3, 3)
    torch.testing.assert_close(vbn(x), F.batch_norm(x, None, None, training=True), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match='expects'):
        vbn(torch.randn(3, 2, 3))
    with pytest.raises(ValueError, match='expects'):
        norms.VirtualBatchNorm1d(2)(torch.randn(3, 2, 3, 3))

#----------------------------------------------------------------------------

def test_cross_replica_without_distributed_is_plain_bn():
    torch.manual_seed(10)
    layer = norms.StandingBatchNorm(3, cross_replica=True)
    ref = torch.nn.BatchNorm2d(3, affine=False)
    x = torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(layer(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.stored_var, ref.running_var)

#----------------------------------------------------------------------------
# Global batch, gains and loss weights shared by the processes and the reference.

def _cross_replica_problem():
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(6, 3, 4, 4, generator=gen, dtype=torch.float64) * 2 + 1
    gain = torch.randn(6, 3, 1, 1, generator=gen, dtype=torch.float64)
    bias = torch.randn(6, 3, 1, 1, generator=gen, dtype=torch.float64)
    weights = torch.randn(6, 3, 4, 4, generator=gen, dtype=torch.float64)
    return x, gain, bias, weights

#----------------------------------------------------------------------------
# One process of the cross-replica test: BN over its half of the batch, loss on its half.

def _cross_replica_worker(rank, world_size, init_file, out_dir):
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world_size)
    try:
        x, gain, bias, weights = _cross_replica_problem()
        rows = slice(rank * 3, (rank + 1) * 3)
        x = x[rows].clone().requires_grad_(True)
        gain = gain[rows].clone().requires_grad_(True)
        layer = norms.StandingBatchNorm(3, cross_replica=True).double()
        out = layer(x, gain, bias[rows])
        (out * weights[rows]).sum().backward()
        result = dict(out=out.detach(), x_grad=x.grad, gain_grad=gain.grad, mean=layer.stored_mean, var=layer.stored_var)
        torch.save(result, os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()

#----------------------------------------------------------------------------

@pytest.mark.slow
def test_cross_replica_two_gloo_processes_match_global_batch(tmp_path):
    mp.spawn(_cross_replica_worker, args=(2, str(tmp_path / 'init'), str(tmp_path)), nprocs=2, join=True)
    x, gain, bias, weights = _cross_replica_problem()
    x.requires_grad_(True)
    gain.requires_grad_(True)
    ref = torch.nn.BatchNorm2d(3, affine=False).double()
    out = ref(x) * gain + bias
    (out * weights).sum().backward()
    for rank in range(2):
        got = torch.load(tmp_path / f'rank{rank}.pt', weights_only=True)
        rows = slice(rank * 3, (rank + 1) * 3)
        torch.testing.assert_close(got['out'], out[rows].detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got['x_grad'], x.grad[rows], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got['gain_grad'], gain.grad[rows], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got['mean'], ref.running_mean, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(got['var'], ref.running_var, atol=1e-6, rtol=1e-5)

#----------------------------------------------------------------------------
# Seed 000's call forms, as written there: which_bn = partial(ccbn, which_linear=bn_linear, ...),
# bn_linear = partial(which_linear, bias=False), which_linear = partial(SNLinear, num_svs, num_itrs, eps).

@pytest.mark.parametrize('mybn', [False, True])
def test_seed_ccbn_call_form_with_sn_linear_factory(mybn):
    torch.manual_seed(12)
    which_linear = functools.partial(spectral_norm.SNLinear, num_svs=1, num_itrs=1, eps=1e-8)
    bn_linear = functools.partial(which_linear, bias=False)
    which_bn = functools.partial(norms.ccbn, which_linear=bn_linear, cross_replica=False, mybn=mybn,
        input_size=(20 + 4), norm_style='bn', eps=1e-5)
    layer = which_bn(6)
    assert isinstance(layer.gain, spectral_norm.SNLinear) and layer.gain.bias is None
    layer = layer.double()
    x = torch.randn(5, 6, 4, 4, dtype=torch.float64) * 3 - 1
    y = torch.randn(5, 24, dtype=torch.float64)
    assert layer(x, y).shape == x.shape

    # Let power iteration converge (training-mode passes of the SN layers), then compare with an
    # independent formula: float64 SVD for the spectral norm, F.batch_norm for the normalisation.
    for _ in range(100):
        layer.gain(y)
        layer.bias(y)
    W_gain = layer.gain.weight.detach()
    W_bias = layer.bias.weight.detach()
    gain = 1 + y @ (W_gain / torch.linalg.svdvals(W_gain)[0]).t()
    bias = y @ (W_bias / torch.linalg.svdvals(W_bias)[0]).t()
    ref = F.batch_norm(x, None, None, training=True, eps=1e-5) * gain[:, :, None, None] + bias[:, :, None, None]
    torch.testing.assert_close(layer(x, y), ref, atol=1e-6, rtol=1e-6)

#----------------------------------------------------------------------------
# ccbn(output_size, input_size, which_linear) with nn.Linear: gain = 1 + linear(y) with bias.

def test_seed_ccbn_positional_which_linear_nn_linear():
    torch.manual_seed(13)
    layer = norms.ccbn(4, 3, torch.nn.Linear, 1e-5, 0.1, False, False, 'bn')
    assert layer.gain.bias is not None
    x, y = torch.randn(6, 4, 3, 3), torch.randn(6, 3)
    gain = 1 + F.linear(y, layer.gain.weight, layer.gain.bias)
    bias = F.linear(y, layer.bias.weight, layer.bias.bias)
    ref = F.batch_norm(x, None, None, training=True) * gain[:, :, None, None] + bias[:, :, None, None]
    torch.testing.assert_close(layer(x, y), ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match='either which_linear'):
        norms.ccbn(4, 3, torch.nn.Linear, use_sn=True)

#----------------------------------------------------------------------------
# Seed 000's myBN, bn, fused_bn and manual_bn call forms against F.batch_norm / torch.nn.BatchNorm2d.

def test_seed_mybn_bn_fused_manual_call_forms():
    torch.manual_seed(14)
    m = norms.myBN(3, eps=1e-5, momentum=0.1)
    ref = torch.nn.BatchNorm2d(3, affine=False, eps=1e-5, momentum=0.1)
    gain, bias = torch.randn(4, 3, 1, 1), torch.randn(4, 3, 1, 1)
    for _ in range(3):
        x = torch.randn(4, 3, 5, 5) * 2 + 1
        torch.testing.assert_close(m(x, gain, bias), ref(x) * gain + bias, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m.stored_mean, ref.running_mean)

    # Standing statistics, as the seed runs them: reset_stats, accumulate_standing, training passes, eval.
    m.reset_stats()
    m.accumulate_standing = True
    batches = [torch.randn(4, 3, 5, 5) + i for i in range(3)]
    for x in batches:
        m(x, gain, bias)
    m.eval()
    mean = torch.stack([x.mean(dim=[0, 2, 3]) for x in batches]).mean(0)
    var = torch.stack([x.transpose(0, 1).reshape(3, -1).var(dim=1, unbiased=True) for x in batches]).mean(0)
    x = torch.randn(4, 3, 5, 5)
    expect = F.batch_norm(x, mean, var, training=False) * gain + bias
    torch.testing.assert_close(m(x, gain, bias), expect, atol=1e-5, rtol=1e-5)

    # bn(output_size, eps, momentum, cross_replica, mybn) with forward(x, y=None).
    layer = norms.bn(3, 1e-5, 0.1, False, True)
    x = torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(layer(x), F.batch_norm(x, None, None, training=True), atol=1e-5, rtol=1e-5)

    # fused_bn(x, mean, var, gain, bias, eps) and manual_bn(x, gain, bias, return_mean_var, eps).
    out, mean, var = norms.manual_bn(x, gain, bias, return_mean_var=True, eps=1e-3)
    torch.testing.assert_close(out, F.batch_norm(x, None, None, training=True, eps=1e-3) * gain + bias, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(norms.fused_bn(x, mean.reshape(1, 3, 1, 1), var.reshape(1, 3, 1, 1), gain, bias, 1e-3), out)

#----------------------------------------------------------------------------
# Seed 004's functional VBN call form, as written there, against numpy.

def test_seed_vbn_functional_call_form():
    torch.manual_seed(15)
    vbn = norms.VirtualBatchNorm1d(4, eps=1e-5)
    g = vbn.gamma.detach().double().numpy().reshape(1, 4, 1)
    b = vbn.beta.detach().double().numpy().reshape(1, 4, 1)
    ref_x = torch.randn(8, 4, 6) * 2 + 1
    x = torch.randn(3, 4, 6) - 0.5
    ref_out, ref_mean, ref_mean_sq = vbn(ref_x, None, None)
    out, mean, mean_sq = vbn(x, ref_mean, ref_mean_sq)
    assert ref_mean.shape == (1, 4, 1) and not ref_mean.requires_grad
    assert not bool(vbn.has_reference)   # The functional form stores nothing.

    r, xn = ref_x.double().numpy(), x.double().numpy()
    rm, rms = r.mean(axis=(0, 2), keepdims=True), (r ** 2).mean(axis=(0, 2), keepdims=True)
    np.testing.assert_allclose(ref_out.detach().double().numpy(), (r - rm) / np.sqrt(1e-5 + rms - rm ** 2) * g + b, rtol=1e-4, atol=1e-4)
    mm = xn.mean(axis=(0, 2), keepdims=True) / 4 + rm * 3 / 4
    mms = (xn ** 2).mean(axis=(0, 2), keepdims=True) / 4 + rms * 3 / 4
    np.testing.assert_allclose(mean.detach().double().numpy(), mm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean_sq.detach().double().numpy(), mms, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.detach().double().numpy(), (xn - mm) / np.sqrt(1e-5 + mms - mm ** 2) * g + b, rtol=1e-4, atol=1e-4)

    # get_stats and normalize as in the seed; wrong statistic sizes are clear errors.
    m, ms = vbn.get_stats(x)
    torch.testing.assert_close(vbn.normalize(x, m, ms), vbn(x, None, None)[0])
    with pytest.raises(ValueError, match='4 values'):
        vbn.normalize(x, m[:, :3], ms)
    with pytest.raises(ValueError, match='4 values'):
        vbn(x, torch.zeros(1, 3, 1), torch.ones(1, 3, 1))
    with pytest.raises(TypeError, match='both ref_mean and ref_mean_sq'):
        vbn(x, ref_mean)

#----------------------------------------------------------------------------
# Rank-local buffers (running, standing and reference statistics) are declared by the classes.

def test_rank_local_buffer_declarations():
    import re
    layers = [norms.StandingBatchNorm(3), norms.Normalize2d(3), norms.VirtualBatchNorm2d(3), norms.VirtualBatchNorm1d(3)]
    for layer in layers:
        names = [name for name, _buf in layer.named_buffers(recurse=False)]
        local = [name for name in names if any(re.fullmatch(p, name) for p in type(layer).rank_local_buffers)]
        assert names and local == names, type(layer).__name__

#----------------------------------------------------------------------------
