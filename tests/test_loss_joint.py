# Tests of the loss's joint Dmain pass (StyleGAN2Loss(d_joint_pass=True)): one D call over the
# fakes and the reals must give the logits, statistics and gradients of the two separate passes,
# because the halves are interleaved so that every minibatch-stddev group holds one half only.

import unittest.mock

import pytest
import torch

from torch_utils import training_stats
from training import loss as loss_module
from training import networks_stylegan2
from training.augment import AugmentPipe

#----------------------------------------------------------------------------
# A conditional StyleGAN2 pair at 16x16 in float32, D with per-channel minibatch stddev in groups of 4.

def _networks(mbstd_group_size=4, c_dim=10, aux=False):
    torch.manual_seed(0)
    G = networks_stylegan2.Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=16, img_channels=1,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8)).train()
    D = networks_stylegan2.Discriminator(c_dim=c_dim, img_resolution=16, img_channels=1, channel_base=64, channel_max=8,
        epilogue_kwargs=dict(mbstd_group_size=mbstd_group_size, mbstd_num_channels=8), aux_classifier=aux).train()
    return G, D

def _batch(n_fake=8, n_real=8, c_dim=10):
    gen = torch.Generator().manual_seed(1)
    real_img = torch.rand([n_real, 1, 16, 16], generator=gen) * 2 - 1
    real_c = torch.eye(10)[torch.randint(10, [n_real], generator=gen)][:, :c_dim]
    gen_z = torch.randn([n_fake, 8], generator=gen)
    gen_c = torch.eye(10)[torch.randint(10, [n_fake], generator=gen)][:, :c_dim]
    return real_img, real_c, gen_z, gen_c

# One Dmain phase; returns (loss, D's gradients, reported statistics, real sign counts).
def _dmain(joint, augment=False, n_fake=8, n_real=8, mbstd_group_size=4, c_dim=10, aux_weight=0):
    G, D = _networks(mbstd_group_size, c_dim, aux=(aux_weight != 0))
    pipe = AugmentPipe(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1) if augment else None
    if pipe is not None:
        pipe.p.fill_(0.5)
    loss = loss_module.StyleGAN2Loss('cpu', G, D, augment_pipe=pipe, r1_gamma=1, pl_weight=0, d_joint_pass=joint, aux_weight=aux_weight)
    stats = {}
    def record(name, value):
        stats[name] = (value.numel(), float(value.detach().double().mean()))
        return value
    torch.manual_seed(123) # Style mixing, noise and augmentation draw from the global RNG in the same order either way.
    with unittest.mock.patch.object(training_stats, 'report', record):
        value = loss.accumulate_gradients('Dmain', *_batch(n_fake, n_real, c_dim), gain=1)
    grads = {name: p.grad.clone() for name, p in D.named_parameters() if p.grad is not None}
    return value, grads, stats, loss.real_sign_stats.clone()

def _assert_same(a, b):
    value_a, grads_a, stats_a, signs_a = a
    value_b, grads_b, stats_b, signs_b = b
    torch.testing.assert_close(value_a, value_b, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6, msg=name)
    assert stats_a.keys() == stats_b.keys()
    assert {'Loss/scores/fake', 'Loss/scores/real', 'Loss/signs/fake', 'Loss/signs/real', 'Loss/D/loss'} <= set(stats_a)
    for name in stats_a:
        assert stats_a[name][0] == stats_b[name][0], name
        assert stats_a[name][1] == pytest.approx(stats_b[name][1], rel=1e-5, abs=1e-6), name
    assert torch.equal(signs_a, signs_b)

@pytest.mark.parametrize('augment', [False, True])
def test_joint_dmain_equals_separate_passes(augment):
    _assert_same(_dmain(joint=True, augment=augment), _dmain(joint=False, augment=augment))

def test_joint_dmain_with_the_auxiliary_classifier():
    joint, separate = _dmain(joint=True, aux_weight=0.5), _dmain(joint=False, aux_weight=0.5)
    _assert_same(joint, separate)
    assert 'Loss/D/aux' in joint[2] and any(name.startswith('b4.aux.') for name in joint[1])

def test_joint_dmain_unconditional():
    _assert_same(_dmain(joint=True, c_dim=0), _dmain(joint=False, c_dim=0))

# The interleaving matters: D over the plain concatenation mixes fakes and reals in its groups.
def test_plain_concatenation_would_mix_the_groups():
    G, D = _networks()
    real_img, real_c, gen_z, gen_c = _batch()
    with torch.no_grad():
        fake_img = G(gen_z, gen_c, noise_mode='const')
        separate = torch.cat([D(fake_img, gen_c), D(real_img, real_c)])
        plain = D(torch.cat([fake_img, real_img]), torch.cat([gen_c, real_c]))
    assert (plain - separate).abs().max() > 1e-3

# Halves that do not fill whole groups take the separate passes.
def test_batches_that_do_not_fill_groups_fall_back():
    G, D = _networks()
    loss = loss_module.StyleGAN2Loss('cpu', G, D, pl_weight=0, d_joint_pass=True)
    assert loss.d_group_size == 4
    assert loss._can_join(8, 8) and loss._can_join(4, 4)
    assert not loss._can_join(6, 6) and not loss._can_join(8, 4) and not loss._can_join(2, 2)
    _assert_same(_dmain(joint=True, n_fake=2, n_real=2), _dmain(joint=False, n_fake=2, n_real=2)) # Groups of 2 each pass.

#----------------------------------------------------------------------------
# Which discriminators qualify: only those whose samples meet in fixed minibatch-stddev groups and
# that keep no running state.

def test_joint_group_size_of_discriminators():
    from training import networks_biggan
    _G, D = _networks()
    assert loss_module.joint_group_size(D) == 4
    assert loss_module.joint_group_size(_networks(mbstd_group_size=None)[1]) is None # The whole batch is one group.
    toy = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten())
    assert loss_module.joint_group_size(toy) == 1
    assert loss_module.joint_group_size(torch.nn.Sequential(torch.nn.BatchNorm2d(2))) is None
    biggan_D = networks_biggan.Discriminator(c_dim=10, img_resolution=32, img_channels=3, ch=4)
    assert loss_module.joint_group_size(biggan_D) is None # Spectral norm's power-iteration vectors change per pass.

def test_joint_pass_refused_for_a_coupled_discriminator():
    G, _D = _networks()
    with pytest.raises(ValueError, match='d_joint_pass needs'):
        loss_module.StyleGAN2Loss('cpu', G, torch.nn.Sequential(torch.nn.BatchNorm2d(1)), pl_weight=0, d_joint_pass=True)

#----------------------------------------------------------------------------
