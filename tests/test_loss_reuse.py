# Tests of StyleGAN2Loss(reuse_fakes=True): Dmain scores the fakes its step's Gmain made (detached,
# before G's update) instead of running G again. Checked against D's loss on those fakes written out
# by hand in float64, and for the bookkeeping: rounds in order, stale fakes dropped, fallbacks.

import pytest
import torch
import torch.nn.functional as F

from training import loss as loss_module
from training import networks_stylegan2

def _networks():
    torch.manual_seed(0)
    G = networks_stylegan2.Generator(z_dim=8, c_dim=10, w_dim=8, img_resolution=16, img_channels=1,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8)).train()
    D = networks_stylegan2.Discriminator(c_dim=10, img_resolution=16, img_channels=1, channel_base=64, channel_max=8,
        epilogue_kwargs=dict(mbstd_group_size=4, mbstd_num_channels=8)).train()
    return G, D

def _batch(n=8, seed=1):
    gen = torch.Generator().manual_seed(seed)
    real_img = torch.rand([n, 1, 16, 16], generator=gen) * 2 - 1
    real_c = torch.eye(10)[torch.randint(10, [n], generator=gen)]
    gen_z = torch.randn([n, 8], generator=gen)
    gen_c = torch.eye(10)[torch.randint(10, [n], generator=gen)]
    return real_img, real_c, gen_z, gen_c

# A loss whose G records every synthesis output (what Gmain made) and counts the calls.
def _loss(joint, reuse=True):
    G, D = _networks()
    G.requires_grad_(False) # As the training loop: only the phase's module takes gradients.
    D.requires_grad_(False)
    made = []
    G.synthesis.register_forward_hook(lambda _m, _i, out: made.append(out.detach().clone()))
    loss = loss_module.StyleGAN2Loss('cpu', G, D, r1_gamma=1, pl_weight=0, d_joint_pass=joint, reuse_fakes=reuse)
    return loss, made

def _phase(loss, phase, batch):
    module = loss.G if phase.startswith('G') else loss.D
    module.requires_grad_(True)
    loss.accumulate_gradients(phase, *batch, gain=1)
    module.requires_grad_(False)

# D's Dmain gradients written out in float64 on a copy of D: softplus(D(fake)) + softplus(-D(real)).
def _reference_grads(D, fake, fake_c, real, real_c):
    D64 = networks_stylegan2.Discriminator(c_dim=10, img_resolution=16, img_channels=1, channel_base=64, channel_max=8,
        epilogue_kwargs=dict(mbstd_group_size=4, mbstd_num_channels=8)).double()
    D64.load_state_dict({name: t.double() for name, t in D.state_dict().items()})
    D64.requires_grad_(True)
    total = F.softplus(D64(fake.double(), fake_c.double())).mean() + F.softplus(-D64(real.double(), real_c.double())).mean()
    total.backward()
    return {name: p.grad for name, p in D64.named_parameters() if p.grad is not None}

@pytest.mark.parametrize('joint', [False, True])
def test_dmain_scores_gmains_fakes(joint):
    loss, made = _loss(joint)
    real_img, real_c, gen_z, gen_c = _batch()
    d_state = {name: t.clone() for name, t in loss.D.state_dict().items()}
    _phase(loss, 'Gmain', (real_img, real_c, gen_z, gen_c))
    assert len(made) == 1
    other_z, other_c = torch.randn_like(gen_z), torch.roll(gen_c, 1, 0) # Dmain's own draws, which reuse ignores.
    _phase(loss, 'Dmain', (real_img, real_c, other_z, other_c))
    assert len(made) == 1, 'Dmain ran G although Gmain left its fakes'
    loss.D.load_state_dict(d_state) # Unchanged (no optimiser step here); the reference starts from the same weights.
    expected = _reference_grads(loss.D, made[0], gen_c, real_img, real_c)
    got = {name: p.grad for name, p in loss.D.named_parameters() if p.grad is not None}
    assert got.keys() == expected.keys() and len(got) > 10
    for name in got:
        torch.testing.assert_close(got[name].double(), expected[name], rtol=1e-3, atol=1e-5, msg=name)

def test_without_reuse_dmain_makes_its_own_fakes():
    loss, made = _loss(joint=True, reuse=False)
    batch = _batch()
    _phase(loss, 'Gmain', batch)
    _phase(loss, 'Dmain', batch)
    assert len(made) == 2

def test_rounds_are_taken_in_order_and_the_leftovers_dropped():
    loss, made = _loss(joint=True)
    rounds = [_batch(seed=s) for s in (1, 2)]
    for batch in rounds:
        _phase(loss, 'Gmain', batch)
    assert [c for _img, c in loss._fakes] == [batch[3] for batch in rounds]
    assert loss._fakes_for_d(rounds[0][2], rounds[0][3])[0] is not None
    assert torch.equal(loss._fakes[0][0], made[1]) # The first round's fakes went first.
    _phase(loss, 'Greg', rounds[0])
    _phase(loss, 'Gmain', rounds[0]) # The next step: the fakes Dmain did not take are dropped.
    assert len(loss._fakes) == 1 and torch.equal(loss._fakes[0][0], made[2])

def test_without_gmain_fakes_or_with_another_batch_size_dmain_runs_G():
    loss, made = _loss(joint=False)
    _phase(loss, 'Dmain', _batch())
    assert len(made) == 1 # Nothing to reuse.
    _phase(loss, 'Gmain', _batch(n=4))
    _phase(loss, 'Dmain', _batch(n=8))
    assert len(made) == 3 # Gmain's 4 fakes do not fill Dmain's 8.
