# Tests of the auxiliary classifier (AC-GAN, Odena et al. 2017): D's class head on the epilogue's fc
# features, and StyleGAN2Loss(aux_weight) adding its cross-entropy to G's loss on the fakes and to D's
# loss on the reals. The losses and gradients are checked against the formula written out in float64.

import unittest.mock

import pytest
import torch
import torch.nn.functional as F

from torch_utils import training_stats
from training import loss as loss_module
from training import networks_stylegan2

def _networks(aux=True):
    torch.manual_seed(0)
    G = networks_stylegan2.Generator(z_dim=8, c_dim=10, w_dim=8, img_resolution=16, img_channels=1,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8)).train()
    D = networks_stylegan2.Discriminator(c_dim=10, img_resolution=16, img_channels=1, channel_base=64, channel_max=8,
        epilogue_kwargs=dict(mbstd_group_size=4, mbstd_num_channels=8), aux_classifier=aux).train()
    if aux:
        with torch.no_grad():
            D.b4.aux.weight.normal_() # Away from the initial near-uniform class logits.
    return G, D

def _batch():
    gen = torch.Generator().manual_seed(1)
    return (torch.rand([8, 1, 16, 16], generator=gen) * 2 - 1, torch.eye(10)[torch.randint(10, [8], generator=gen)],
        torch.randn([8, 8], generator=gen), torch.eye(10)[torch.randint(10, [8], generator=gen)])

# Cross-entropy per sample in float64: log-sum-exp of the class logits minus the labelled one.
def _ce64(class_logits, c):
    x = class_logits.double()
    return torch.logsumexp(x, dim=1) - (x * c.double()).sum(dim=1)

def test_head_reads_the_fc_features():
    _G, D = _networks()
    img, c = _batch()[:2]
    seen = []
    D.b4.fc.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        plain = D(img, c)
        logits, class_logits = D(img, c, return_aux=True)
    assert torch.equal(plain, logits) and class_logits.shape == (8, 10)
    expected = seen[1].double() @ (D.b4.aux.weight.double() * D.b4.aux.weight_gain).T + D.b4.aux.bias.double() * D.b4.aux.bias_gain
    torch.testing.assert_close(class_logits.double(), expected, rtol=1e-5, atol=1e-6)

def test_head_needs_labels_and_is_off_by_default():
    with pytest.raises(ValueError, match='aux_classifier needs a conditional'):
        networks_stylegan2.Discriminator(c_dim=0, img_resolution=16, img_channels=1, aux_classifier=True)
    _G, D = _networks(aux=False)
    assert not hasattr(D.b4, 'aux')
    with pytest.raises(ValueError, match='return_aux needs'):
        D(*_batch()[:2], return_aux=True)
    with pytest.raises(ValueError, match='aux_weight needs a discriminator'):
        loss_module.StyleGAN2Loss('cpu', *_networks(aux=False), aux_weight=1)

def _phase(phase, weight=0.5):
    G, D = _networks()
    loss = loss_module.StyleGAN2Loss('cpu', G, D, r1_gamma=1, pl_weight=0, style_mixing_prob=0, aux_weight=weight)
    stats = {}
    def record(name, value):
        stats.setdefault(name, value.detach())
        return value
    module = G if phase == 'Gmain' else D
    module.requires_grad_(True)
    torch.manual_seed(5) # G's noise.
    with unittest.mock.patch.object(training_stats, 'report', record):
        value = loss.accumulate_gradients(phase, *_batch(), gain=1)
    return G, D, value, {n: p.grad for n, p in module.named_parameters()}, stats

def test_gmain_adds_the_weighted_cross_entropy_of_the_fakes():
    G, D, value, grads, stats = _phase('Gmain')
    _real_img, _real_c, gen_z, gen_c = _batch()
    G.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    logits, class_logits = D(G(gen_z, gen_c), gen_c, return_aux=True)
    expected = (F.softplus(-logits.double())[:, 0] + 0.5 * _ce64(class_logits, gen_c)).mean()
    expected.backward()
    torch.testing.assert_close(value.double(), expected.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats['Loss/G/aux'][:, 0].double(), _ce64(class_logits, gen_c).detach(), rtol=1e-5, atol=1e-6)
    for name, p in G.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)

def test_dmain_adds_the_weighted_cross_entropy_of_the_reals():
    G, D, value, grads, stats = _phase('Dmain')
    real_img, real_c, gen_z, gen_c = _batch()
    D.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    with torch.no_grad():
        fake = G(gen_z, gen_c)
    real_logits, class_logits = D(real_img, real_c, return_aux=True)
    loss_fake = F.softplus(D(fake, gen_c).double()).mean()
    loss_real = (F.softplus(-real_logits.double())[:, 0] + 0.5 * _ce64(class_logits, real_c)).mean()
    (loss_fake + loss_real).backward()
    torch.testing.assert_close(value.double(), (loss_fake + loss_real).detach(), rtol=1e-5, atol=1e-6)
    assert grads['b4.aux.weight'] is not None and 'Loss/D/aux' in stats
    for name, p in D.named_parameters():
        if p.grad is not None or grads[name] is not None:
            torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)

def test_r1_phase_has_no_classifier_term():
    _G, _D, _value, grads, stats = _phase('Dreg')
    assert 'Loss/D/aux' not in stats and grads['b4.aux.weight'] is None
