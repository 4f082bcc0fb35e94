# Tests of torch_utils/spectral_norm.py (re-exported by training/spectral_norm.py) against
# numpy's SVD, including seed 001's call forms.

import functools
import pickle

import numpy as np
import pytest
import torch

import torch.nn.functional as F

from torch_utils import spectral_norm as sn

#----------------------------------------------------------------------------
# A matrix with well separated singular values (so power iteration converges quickly).

def _matrix_with_singular_values(rows, cols, svs, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal([rows, rows]))
    V, _ = np.linalg.qr(rng.standard_normal([cols, cols]))
    S = np.zeros([rows, cols])
    S[np.arange(len(svs)), np.arange(len(svs))] = svs
    return U @ S @ V.T

#----------------------------------------------------------------------------

def _run_training_steps(layer, x, steps):
    layer.train()
    for _ in range(steps):
        layer(x)

#----------------------------------------------------------------------------

def test_linear_singular_values_match_svd():
    torch.manual_seed(0)
    layer = sn.SpectralNormLinear(6, 8, num_svs=2, num_itrs=5)
    W = _matrix_with_singular_values(8, 6, [3.0, 2.0, 1.0, 0.5, 0.3, 0.1])
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(W, dtype=torch.float32))
    _run_training_steps(layer, torch.randn(2, 6), 40)
    ref = np.linalg.svd(W, compute_uv=False)
    np.testing.assert_allclose(float(layer.sv0), ref[0], rtol=1e-4)
    np.testing.assert_allclose(float(layer.sv1), ref[1], rtol=1e-4)
    assert layer.sv[0] is layer.sv0 and len(layer.u) == 2

#----------------------------------------------------------------------------

def test_random_weight_converges_and_normalised_weight_has_unit_norm():
    torch.manual_seed(1)
    layer = sn.SpectralNormConv2d(3, 5, kernel_size=3, num_svs=3, num_itrs=400)
    _run_training_steps(layer, torch.randn(1, 3, 4, 4), 1)
    W = layer.weight.detach().double().reshape(5, -1).numpy()
    ref = np.linalg.svd(W, compute_uv=False)
    got = [float(s) for s in layer.sv]
    np.testing.assert_allclose(got, ref[:3], rtol=1e-3)
    layer.eval()
    W_sn = layer.W_().detach().double().reshape(5, -1).numpy()
    np.testing.assert_allclose(np.linalg.norm(W_sn, 2), 1.0, rtol=1e-4)

#----------------------------------------------------------------------------
# A linear layer whose transposed weight is normalised.

class _TransposedSNLinear(torch.nn.Linear, sn.SpectralNormMixin):
    def __init__(self, in_features, out_features):
        torch.nn.Linear.__init__(self, in_features, out_features)
        sn.SpectralNormMixin.__init__(self, num_itrs=30, transpose=True)

    def forward(self, x):
        return torch.nn.functional.linear(x, self.W_(), self.bias)

#----------------------------------------------------------------------------

def test_transpose_and_embedding():
    torch.manual_seed(2)
    W = torch.tensor(_matrix_with_singular_values(4, 7, [2.0, 1.0, 0.5, 0.25], seed=3), dtype=torch.float32)
    emb = sn.SpectralNormEmbedding(4, 7, num_itrs=30)
    with torch.no_grad():
        emb.weight.copy_(W)
    emb.train()
    emb(torch.tensor([0]))
    assert emb.u0.shape == (1, 4)
    np.testing.assert_allclose(float(emb.sv0), 2.0, rtol=1e-4)

    # A transposed matrix has the same singular values; u lives on the other side.
    lin = _TransposedSNLinear(7, 4)
    with torch.no_grad():
        lin.weight.copy_(W)
    assert lin.u0.shape == (1, 7)
    lin.train()
    lin(torch.randn(1, 7))
    np.testing.assert_allclose(float(lin.sv0), 2.0, rtol=1e-4)

#----------------------------------------------------------------------------

def test_embedding_float_one_hot_equals_lookup():
    torch.manual_seed(3)
    emb = sn.SNEmbedding(5, 3).eval()
    idx = torch.tensor([4, 0, 2])
    one_hot = torch.nn.functional.one_hot(idx, 5).float()
    torch.testing.assert_close(emb(one_hot), emb(idx))
    with pytest.raises(ValueError, match='one-hot'):
        emb(torch.zeros(2, 4))

#----------------------------------------------------------------------------

def test_eval_mode_does_not_update_buffers():
    torch.manual_seed(4)
    layer = sn.SNLinear(5, 6, num_svs=2)
    layer.eval()
    before = {k: v.clone() for k, v in layer.named_buffers()}
    x = torch.randn(3, 5)
    y1 = layer(x)
    y2 = layer(x)
    for k, v in layer.named_buffers():
        assert torch.equal(v, before[k]), k
    assert torch.equal(y1, y2)

    # Training mode changes u and records the singular values.
    layer.train()
    layer(x)
    assert not torch.equal(layer.u0, before['u0'])
    assert not torch.equal(layer.sv0, before['sv0'])

#----------------------------------------------------------------------------
# d/dW sum(G * W / sigma) = G / sigma - sum(G * W) / sigma^2 * u1 v1^T at convergence.

def test_gradient_matches_analytic_formula():
    torch.manual_seed(5)
    W = _matrix_with_singular_values(6, 4, [2.5, 1.0, 0.5, 0.2], seed=6)
    layer = sn.SNLinear(4, 6, num_itrs=50)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(W, dtype=torch.float32))
    _run_training_steps(layer, torch.randn(1, 4), 1)
    layer.eval()
    G = np.random.default_rng(7).standard_normal(W.shape)
    loss = (layer.W_() * torch.tensor(G, dtype=torch.float32)).sum()
    loss.backward()
    U, S, Vt = np.linalg.svd(W)
    ref = G / S[0] - (G * W).sum() / S[0] ** 2 * np.outer(U[:, 0], Vt[0])
    np.testing.assert_allclose(layer.weight.grad.numpy(), ref, rtol=1e-4, atol=1e-5)

#----------------------------------------------------------------------------

def test_power_iteration_vectors_are_orthonormal():
    torch.manual_seed(8)
    W = torch.randn(7, 5, dtype=torch.float64)
    us = [torch.randn(1, 7, dtype=torch.float64) for _ in range(3)]
    for _ in range(3):
        svs, new_us, new_vs = sn.power_iteration(W, us, update=True)
    for vecs in (new_us, new_vs):
        M = torch.cat(vecs, dim=0)
        torch.testing.assert_close(M @ M.t(), torch.eye(3, dtype=torch.float64))
    assert all(torch.equal(a, b) for a, b in zip(us, new_us))
    assert len(svs) == 3

#----------------------------------------------------------------------------

def test_forward_uses_normalised_weight():
    torch.manual_seed(9)
    conv = sn.SNConv2d(2, 3, 3, padding=1).eval()
    x = torch.randn(2, 2, 5, 5)
    ref = torch.nn.functional.conv2d(x, conv.W_(), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), ref)
    lin = sn.SNLinear(4, 2).eval()
    x = torch.randn(3, 4)
    torch.testing.assert_close(lin(x), x @ lin.W_().t() + lin.bias)

#----------------------------------------------------------------------------

def test_bad_arguments():
    with pytest.raises(ValueError, match='num_svs'):
        sn.SNLinear(3, 4, num_svs=0)
    with pytest.raises(ValueError, match='rank bound'):
        sn.SNLinear(3, 4, num_svs=4)

#----------------------------------------------------------------------------

def test_aliases_and_pickle():
    assert sn.SNConv2d is sn.SpectralNormConv2d
    assert sn.SNLinear is sn.SpectralNormLinear
    assert sn.SNEmbedding is sn.SpectralNormEmbedding
    assert sn.SN is sn.SpectralNormMixin
    torch.manual_seed(10)
    conv = sn.SNConv2d(2, 3, 3, num_svs=2)
    conv.train()
    x = torch.randn(1, 2, 6, 6)
    conv(x)
    conv.eval()
    clone = pickle.loads(pickle.dumps(conv))
    assert torch.equal(conv(x), clone(x))
    assert sn.is_spectral_norm_module(clone) and not sn.is_spectral_norm_module(torch.nn.Linear(2, 2))

#----------------------------------------------------------------------------
# Seed 001's constructor arguments and API (W_(), u, sv), as written there, against float64 SVD.

def test_seed_sn_layer_call_forms():
    torch.manual_seed(11)
    conv = sn.SNConv2d(3, 4, 3, 1, 1, 1, 1, True, num_svs=2, num_itrs=1, eps=1e-12)
    lin = sn.SNLinear(5, 6, True, num_svs=1, num_itrs=1, eps=1e-12)
    emb = sn.SNEmbedding(7, 3, None, None, 2, False, False, None, num_svs=1, num_itrs=1, eps=1e-12)
    for layer, x in ((conv, torch.randn(2, 3, 5, 5)), (lin, torch.randn(2, 5)), (emb, torch.tensor([0, 6]))):
        layer.train()
        for _ in range(300):
            layer(x)
        W = layer.weight.detach().double().reshape(layer.weight.shape[0], -1).numpy()
        svs = np.linalg.svd(W, compute_uv=False)
        assert len(layer.u) == layer.num_svs and len(layer.sv) == layer.num_svs
        np.testing.assert_allclose([float(s) for s in layer.sv], svs[:layer.num_svs], rtol=1e-4)
        layer.eval()
        np.testing.assert_allclose(layer.W_().detach().double().numpy(), layer.weight.detach().double().numpy() / svs[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(conv(torch.ones(1, 3, 4, 4)), F.conv2d(torch.ones(1, 3, 4, 4), conv.W_(), conv.bias, padding=1))
    torch.testing.assert_close(emb(torch.tensor([2])), emb.W_()[2:3])

    # functools.partial factories, as BigGAN builds which_conv / which_linear / which_embedding.
    which_conv = functools.partial(sn.SNConv2d, kernel_size=3, padding=1, num_svs=1, num_itrs=1, eps=1e-6)
    assert which_conv(2, 8)(torch.randn(1, 2, 4, 4)).shape == (1, 8, 4, 4)
    with pytest.raises(ValueError, match='max_norm and sparse'):
        sn.SNEmbedding(4, 3, max_norm=1.0)

#----------------------------------------------------------------------------
# Seed 001's mixin form: class X(nn.Module subclass, SN) calling SN.__init__(self, num_svs, num_itrs, num_outputs).

class _SeedStyleSNConv1d(torch.nn.Conv1d, sn.SN):
    def __init__(self, in_channels, out_channels, kernel_size, num_svs=1, num_itrs=1, eps=1e-12):
        torch.nn.Conv1d.__init__(self, in_channels, out_channels, kernel_size)
        sn.SN.__init__(self, num_svs, num_itrs, out_channels, eps=eps)

    def forward(self, x):
        return F.conv1d(x, self.W_(), self.bias)

def test_seed_mixin_form():
    torch.manual_seed(12)
    layer = _SeedStyleSNConv1d(3, 5, 2, num_itrs=200)
    layer(torch.randn(1, 3, 4))
    W = layer.weight.detach().double().reshape(5, -1).numpy()
    np.testing.assert_allclose(float(layer.sv0), np.linalg.svd(W, compute_uv=False)[0], rtol=1e-4)
    assert layer.u0.shape == (1, 5)
    with pytest.raises(ValueError, match='num_outputs=4'):
        sn.SN.__init__(torch.nn.Linear(3, 5), 1, 1, 4)

#----------------------------------------------------------------------------

def test_old_import_path():
    from training import spectral_norm as old_path
    for name in ('SN', 'SNConv2d', 'SNLinear', 'SNEmbedding', 'power_iteration', 'gram_schmidt', 'is_spectral_norm_module'):
        assert getattr(old_path, name) is getattr(sn, name), name

#----------------------------------------------------------------------------
