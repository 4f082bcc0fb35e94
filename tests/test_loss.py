# Tests of training/loss.py on toy networks written here: R1 and path-length gradients against
# finite differences (they need correct second derivatives), style mixing, hinge terms, phases.

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import conv2d_gradfix
from training import loss as loss_module

#----------------------------------------------------------------------------
# A tiny StyleGAN-like generator: mapping z -> ws [N, num_ws, w_dim], synthesis ws -> image [N, 1, 4, 4].

class ToyMapping(torch.nn.Module):
    def __init__(self, z_dim=3, w_dim=3, num_ws=3):
        super().__init__()
        self.num_ws = num_ws
        self.weight = torch.nn.Parameter(torch.randn(z_dim, w_dim, dtype=torch.float64))

    def forward(self, z, c, update_emas=False):
        w = torch.tanh(z @ self.weight)
        return w[:, None, :].repeat(1, self.num_ws, 1)

class ToySynthesis(torch.nn.Module):
    def __init__(self, w_dim=3, num_ws=3):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(num_ws, w_dim, 16, dtype=torch.float64) * 0.5)

    def forward(self, ws, update_emas=False):
        x = torch.einsum('nlw,lwp->np', ws, self.weight)
        return torch.sin(x).reshape(-1, 1, 4, 4) + 0.1 * x.reshape(-1, 1, 4, 4) ** 2

class ToyG(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.z_dim, self.c_dim = 3, 0
        self.mapping = ToyMapping()
        self.synthesis = ToySynthesis()

    def forward(self, z, c):
        return self.synthesis(self.mapping(z, c))

# A tiny discriminator whose convolution goes through conv2d_gradfix, as the real ones do.
class ToyD(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Parameter(torch.randn(2, 1, 3, 3, dtype=torch.float64) * 0.5)
        self.fc = torch.nn.Parameter(torch.randn(2 * 16, 1, dtype=torch.float64) * 0.3)

    def forward(self, img, c):
        x = conv2d_gradfix.conv2d(img, self.conv, padding=1)
        x = torch.tanh(x) + 0.1 * x ** 2
        return x.flatten(1) @ self.fc

def _flat_grads(params):
    return torch.cat([p.grad.flatten() for p in params])

def _finite_difference(fn, params, eps=1e-6):
    grads = []
    for p in params:
        g = torch.zeros_like(p).flatten()
        for i in range(p.numel()):
            orig = p.data.flatten()[i].item()
            p.data.view(-1)[i] = orig + eps
            plus = fn()
            p.data.view(-1)[i] = orig - eps
            minus = fn()
            p.data.view(-1)[i] = orig
            g[i] = (plus - minus) / (2 * eps)
        grads.append(g)
    return torch.cat(grads)

#----------------------------------------------------------------------------

def test_r1_gradient_matches_finite_differences():
    torch.manual_seed(0)
    G, D = ToyG(), ToyD()
    loss = loss_module.StyleGAN2Loss('cpu', G, D, r1_gamma=3.0, style_mixing_prob=0, pl_weight=0)
    real = torch.randn(4, 1, 4, 4, dtype=torch.float64)
    c = torch.zeros(4, 0, dtype=torch.float64)
    loss.accumulate_gradients('Dreg', real, c, None, None, gain=2.0)
    analytic = _flat_grads(D.parameters())

    # Independent formulation: penalty(theta) = gain * mean(gamma/2 * |d sum D(x) / dx|^2).
    def penalty():
        x = real.clone().requires_grad_(True)
        g, = torch.autograd.grad(D(x, c).sum(), x)
        return (2.0 * 1.5 * g.square().sum([1, 2, 3]).mean()).item()
    numeric = _finite_difference(penalty, list(D.parameters()))
    np.testing.assert_allclose(analytic.numpy(), numeric.numpy(), rtol=1e-5, atol=1e-7)

def test_path_length_gradient_matches_finite_differences():
    torch.manual_seed(0)
    G, D = ToyG(), ToyD()
    loss = loss_module.StyleGAN2Loss('cpu', G, D, style_mixing_prob=0, pl_weight=2.0, pl_batch_shrink=2, pl_decay=0.3)
    loss.pl_mean = torch.tensor(0.7, dtype=torch.float64)
    z = torch.randn(6, 3, dtype=torch.float64)
    c = torch.zeros(6, 0, dtype=torch.float64)
    torch.manual_seed(123)
    loss.accumulate_gradients('Greg', None, None, z, c, gain=4.0)
    analytic = _flat_grads(G.parameters())
    assert abs(loss.pl_mean.item() - 0.7) > 1e-6  # The running mean moved.

    # Independent formulation of Eq. 4 with the same noise (same seed) and the same starting mean.
    def penalty():
        torch.manual_seed(123)
        ws = G.mapping(z[:3], c[:3])
        ws_leaf = ws.detach().requires_grad_(True)
        img = G.synthesis(ws_leaf)
        y = torch.randn_like(img) / 4.0
        jac_ws = torch.autograd.grad((img * y).sum(), ws_leaf)[0]
        lengths = jac_ws.square().sum(2).mean(1).sqrt()
        mean = 0.7 + 0.3 * (lengths.mean() - 0.7)
        return (4.0 * 2.0 * (lengths - mean).square().mean()).item()
    numeric = _finite_difference(penalty, list(G.parameters()))
    # The synthesis weights see the penalty directly; mapping weights only through the ws values.
    np.testing.assert_allclose(analytic.numpy(), numeric.numpy(), rtol=1e-5, atol=1e-7)

def test_logistic_and_hinge_terms():
    x = torch.tensor([-2.0, 0.0, 3.0])
    g, d_fake, d_real = loss_module.adversarial_losses['logistic']
    np.testing.assert_allclose(g(x).numpy(), np.log1p(np.exp(-x.numpy())), rtol=1e-6)
    np.testing.assert_allclose(d_fake(x).numpy(), np.log1p(np.exp(x.numpy())), rtol=1e-6)
    g, d_fake, d_real = loss_module.adversarial_losses['hinge']
    assert g(x).tolist() == [2.0, 0.0, -3.0]
    assert d_fake(x).tolist() == [0.0, 1.0, 4.0]
    assert d_real(x).tolist() == [3.0, 1.0, 0.0]

def test_dmain_gradient_is_mean_of_terms():
    torch.manual_seed(1)
    G, D = ToyG(), ToyD()
    loss = loss_module.HingeLoss('cpu', G, D)
    real = torch.randn(4, 1, 4, 4, dtype=torch.float64)
    z = torch.randn(4, 3, dtype=torch.float64)
    c = torch.zeros(4, 0, dtype=torch.float64)
    total = loss.accumulate_gradients('Dmain', real, c, z, c, gain=1.0)
    fake = G(z, c).detach()
    expect = F.relu(1 + D(fake, c)).mean() + F.relu(1 - D(real, c)).mean()
    assert torch.allclose(total, expect.detach())
    D.zero_grad()
    expect.backward()
    grads = [p.grad.clone() for p in D.parameters()]
    D.zero_grad()
    loss.accumulate_gradients('Dmain', real, c, z, c, gain=1.0)
    for p, g in zip(D.parameters(), grads):
        assert torch.allclose(p.grad, g)

def test_style_mixing_takes_tail_layers_from_second_latent():
    G, D = ToyG(), ToyD()
    loss = loss_module.StyleGAN2Loss('cpu', G, D, style_mixing_prob=1.0, pl_weight=0)
    z = torch.randn(2, 3, dtype=torch.float64)
    c = torch.zeros(2, 0, dtype=torch.float64)
    captured = {}
    synthesis_forward = G.synthesis.forward
    def capture(ws, update_emas=False):
        captured['ws'] = ws
        return synthesis_forward(ws)
    G.synthesis.forward = capture
    for seed in range(10):
        torch.manual_seed(seed)
        loss.run_G(z, c)
        ws, first = captured['ws'], G.mapping(z, c)
        same = [bool(torch.equal(ws[:, i], first[:, i])) for i in range(ws.shape[1])]
        cutoff = same.index(False)
        assert 1 <= cutoff < ws.shape[1] and not any(same[cutoff:])

def test_bad_configuration_errors():
    G, D = ToyG(), ToyD()
    with pytest.raises(ValueError, match='Unknown adversarial'):
        loss_module.StyleGAN2Loss('cpu', G, D, adversarial='wasserstein')
    with pytest.raises(ValueError, match='Unknown phase'):
        loss_module.StyleGAN2Loss('cpu', G, D).accumulate_gradients('Gall', None, None, None, None, 1)
    class PlainG(torch.nn.Module):
        def forward(self, z, c):
            return z
    with pytest.raises(ValueError, match='pl_weight=0'):
        loss_module.StyleGAN2Loss('cpu', PlainG(), D)

#----------------------------------------------------------------------------
# w_avg is tracked in every training-mode mapping call (Gmain, Greg, the Dmain fake pass) from the
# first latents only: the style-mixing call leaves it alone, as in the original.

def _tiny_stylegan2():
    from training import networks_stylegan2
    torch.manual_seed(0)
    G = networks_stylegan2.Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=8, img_channels=1,
        mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=32, channel_max=4)).train()
    D = networks_stylegan2.Discriminator(c_dim=0, img_resolution=8, img_channels=1, channel_base=32, channel_max=4,
        epilogue_kwargs=dict(mbstd_group_size=2)).train()
    return G, D

@pytest.mark.parametrize('phase', ['Gmain', 'Greg', 'Dmain'])
def test_w_avg_tracked_in_every_training_call(phase):
    G, D = _tiny_stylegan2()
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn([4]))
    before = G.mapping.w_avg.clone()
    loss = loss_module.StyleGAN2Loss('cpu', G, D, r1_gamma=1, style_mixing_prob=1, pl_weight=2, pl_batch_shrink=2)
    z = torch.randn([4, 4])
    c = torch.zeros([4, 0])
    used_z = z[:2] if phase == 'Greg' else z # Greg runs on batch // pl_batch_shrink.
    with torch.no_grad():
        w = G.mapping(used_z, c, update_emas=False)[:, 0] # [NC]
    expected = w.mean(dim=0).lerp(before, G.mapping.w_avg_beta)
    loss.accumulate_gradients(phase, real_img=torch.randn([4, 1, 8, 8]), real_c=c, gen_z=z, gen_c=c, gain=1)
    torch.testing.assert_close(G.mapping.w_avg, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(G.mapping.w_avg, before)

# The loss owns its running state: state_dict() / load_state_dict() round-trip it, a missing entry is an error.
def test_loss_state_round_trip():
    G, D = ToyG(), ToyD()
    loss = loss_module.StyleGAN2Loss('cpu', G, D)
    loss.pl_mean.fill_(1.25)
    loss.real_sign_stats.copy_(torch.tensor([8.0, -3.0], dtype=torch.float64))
    state = loss.state_dict()
    assert set(state) == {'pl_mean', 'real_sign_stats'}
    loss.pl_mean.fill_(0) # The saved state is a copy.
    other = loss_module.StyleGAN2Loss('cpu', G, D)
    other.load_state_dict(state)
    assert float(other.pl_mean) == 1.25 and other.real_sign_stats.tolist() == [8.0, -3.0]
    with pytest.raises(ValueError, match='missing real_sign_stats'):
        other.load_state_dict(dict(pl_mean=torch.zeros([])))

#----------------------------------------------------------------------------
