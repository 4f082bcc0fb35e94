# Tests of training/networks_biggan.py: tiny networks, architecture tables, truncation,
# self-attention, projection and standing statistics.

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_utils import norms
from training import networks_biggan as nb

#----------------------------------------------------------------------------

def _labels(n, c_dim):
    if c_dim == 0:
        return torch.zeros([n, 0])
    return F.one_hot(torch.arange(n) % c_dim, c_dim).float()

#----------------------------------------------------------------------------
# Tiny configurations: channel multiplier 2 (16 channels per block at 32 px, 8 at 16 px).

_TINY_CONFIGS = {
    'cond_attn':        dict(res=32, c_dim=4, attn_res=[16]),
    'uncond':           dict(res=32, c_dim=0, attn_res=[]),
    'cond_vbn':         dict(res=16, c_dim=4, attn_res=[], norm='vbn', vbn_ref_size=4),
    'uncond_vbn_attn':  dict(res=16, c_dim=0, attn_res=[8], norm='vbn', vbn_ref_size=3),
    'uncond_flat_mybn': dict(res=16, c_dim=0, attn_res=[], hier=False, mybn=True),
    'cond_gn_N02':      dict(res=16, c_dim=3, attn_res=[], norm_style='gn', G_init='N02'),
    'cond_in_xavier':   dict(res=16, c_dim=3, attn_res=[], norm_style='in', G_init='xavier'),
    'cond_nonorm':      dict(res=16, c_dim=3, attn_res=[], norm_style='nonorm'),
    'cond_noSN_unshared': dict(res=16, c_dim=3, attn_res=[8], G_param='none', G_shared=False, D_param='none'),
}

#----------------------------------------------------------------------------
# A generator and a discriminator of one tiny configuration.

def _tiny_pair(c_dim, attn_res, res=32, D_param='SN', **G_kwargs):
    G = nb.Generator(z_dim=16, c_dim=c_dim, img_resolution=res, img_channels=3, ch=2, attn_res=attn_res, **G_kwargs)
    D = nb.Discriminator(c_dim=c_dim, img_resolution=res, img_channels=3, ch=2, attn_res=attn_res, D_param=D_param)
    return G, D

#----------------------------------------------------------------------------

@pytest.mark.parametrize('name', sorted(_TINY_CONFIGS))
def test_tiny_networks_forward_backward_pickle(name):
    torch.manual_seed(0)
    G, D = _tiny_pair(**_TINY_CONFIGS[name])
    for attention in list(G.attentions) + list(D.attentions):
        if isinstance(attention, nb.SelfAttention):
            with torch.no_grad():
                attention.gamma.fill_(0.5)  # Non-zero, so the attention convs get non-zero gradients.
    z = torch.randn(3, 16)
    c = _labels(3, G.c_dim)
    img = G(z, c)
    assert img.shape == (3, 3, G.img_resolution, G.img_resolution) and img.abs().max() <= 1
    logits = D(img, c)
    assert logits.shape == (3, 1)
    logits.square().sum().backward()
    for net in (G, D):
        for param_name, param in net.named_parameters():
            assert param.grad is not None, param_name
            assert torch.isfinite(param.grad).all(), param_name
            assert param.grad.abs().sum() > 0, param_name

    # Pickle round trip: identical outputs in eval mode.
    G.eval()
    D.eval()
    with torch.no_grad():
        img = G(z, c)
        clone_G, clone_D = pickle.loads(pickle.dumps((G, D)))
        assert torch.equal(clone_G(z, c), img)
        assert torch.equal(clone_D(img, c), D(img, c))
    assert clone_G.init_kwargs == G.init_kwargs

#----------------------------------------------------------------------------

def test_interface_attributes():
    G, D = _tiny_pair(c_dim=4, attn_res=[])
    assert (G.z_dim, G.c_dim, G.img_resolution, G.img_channels) == (16, 4, 32, 3)
    assert (D.c_dim, D.img_resolution, D.img_channels) == (4, 32, 3)
    assert G.z_chunk_sizes == [4, 4, 4, 4]
    G1 = nb.Generator(z_dim=10, c_dim=0, img_resolution=32, img_channels=1, ch=1)
    assert G1.z_chunk_sizes == [3, 3, 2, 2]
    assert G1(torch.randn(2, 10), torch.zeros(2, 0)).shape == (2, 1, 32, 32)
    z = torch.randn(2, 16)
    c = _labels(2, 4)
    G.eval()
    D.eval()
    assert torch.equal(G(z, c, update_emas=True), G(z, c))
    assert torch.equal(G(z, c, truncation_psi=0), G(torch.zeros_like(z), c))
    assert torch.equal(D(G(z, c), c, update_emas=True), D(G(z, c), c))

    # Cross-replica and standing-statistics BatchNorm reach every norm layer.
    G_sync = nb.Generator(z_dim=16, c_dim=4, img_resolution=16, img_channels=3, ch=1, cross_replica=True)
    standing = [m for m in G_sync.modules() if isinstance(m, norms.StandingBatchNorm)]
    assert len(standing) == 5 and all(m.cross_replica for m in standing)

#----------------------------------------------------------------------------

def test_architecture_tables_match_biggan():
    arch = nb.generator_arch(128, 64)
    assert [a[0] for a in arch] == [1024, 1024, 512, 256, 128]
    assert [a[1] for a in arch] == [1024, 512, 256, 128, 64]
    assert [a[2] for a in arch] == [8, 16, 32, 64, 128]
    arch = nb.generator_arch(256, 64)
    assert [a[1] for a in arch] == [1024, 512, 512, 256, 128, 64]
    assert [a[1] for a in nb.generator_arch(32, 64)] == [256, 256, 256]
    assert len(nb.generator_arch(1024, 1)) == 8
    arch = nb.discriminator_arch(128, 64, 3)
    assert [a[0] for a in arch] == [3, 64, 128, 256, 512, 1024]
    assert [a[1] for a in arch] == [64, 128, 256, 512, 1024, 1024]
    assert [a[3] for a in arch] == [64, 32, 16, 8, 4, 4]
    arch = nb.discriminator_arch(32, 64, 3)
    assert [a[2] for a in arch] == [True, True, False, False]
    assert [a[3] for a in nb.discriminator_arch(1024, 1, 3)][-2:] == [4, 4]

#----------------------------------------------------------------------------

def test_other_resolutions():
    torch.manual_seed(1)
    for res in (16, 64):
        G = nb.Generator(z_dim=12, c_dim=2, img_resolution=res, img_channels=3, ch=1, shared_dim=4)
        D = nb.Discriminator(c_dim=2, img_resolution=res, img_channels=3, ch=1)
        img = G(torch.randn(2, 12), _labels(2, 2))
        assert img.shape == (2, 3, res, res)
        assert D(img, _labels(2, 2)).shape == (2, 1)
        assert G.attn_res == ((64,) if res == 64 else ())

#----------------------------------------------------------------------------

def test_bad_arguments():
    with pytest.raises(ValueError, match='power of two'):
        nb.Generator(z_dim=16, c_dim=0, img_resolution=48, img_channels=3, ch=1)
    with pytest.raises(ValueError, match='power of two'):
        nb.Discriminator(c_dim=0, img_resolution=8, img_channels=3, ch=1)
    with pytest.raises(ValueError, match='attn_res'):
        nb.Generator(z_dim=16, c_dim=0, img_resolution=32, img_channels=3, ch=1, attn_res=[64])
    with pytest.raises(ValueError, match='Unknown generator norm'):
        nb.Generator(z_dim=16, c_dim=0, img_resolution=32, img_channels=3, ch=1, norm='ln')
    with pytest.raises(ValueError, match='sets the norm style'):
        nb.Generator(z_dim=16, c_dim=0, img_resolution=32, img_channels=3, ch=1, norm='vbn', norm_style='gn')
    with pytest.raises(ValueError, match='Unknown weight initialisation'):
        nb.Discriminator(c_dim=0, img_resolution=32, img_channels=3, ch=1, D_init='kaiming')
    with pytest.raises(ValueError, match='shared_dim >= 1'):
        nb.Generator(z_dim=16, c_dim=2, img_resolution=32, img_channels=3, ch=1, shared_dim=0)
    with pytest.raises(ValueError, match='ch >= 1'):
        nb.Discriminator(c_dim=0, img_resolution=32, img_channels=3, ch=0)
    with pytest.raises(ValueError, match='z_dim >= 4'):
        nb.Generator(z_dim=3, c_dim=0, img_resolution=32, img_channels=3, ch=1)
    with pytest.raises(TypeError):
        nb.Generator(z_dim=16, c_dim=0, img_resolution=32, img_channels=3, ch=1, noise_mode='const')
    G, D = _tiny_pair(c_dim=2, attn_res=[])
    with pytest.raises(AssertionError):
        G(torch.randn(2, 15), _labels(2, 2))
    with pytest.raises(AssertionError):
        G(torch.randn(2, 16), _labels(2, 3))
    with pytest.raises(AssertionError):
        D(torch.randn(2, 3, 16, 16), _labels(2, 2))
    with pytest.raises(TypeError):
        G(torch.randn(2, 16), _labels(2, 2), noise_mode='const')
    with pytest.raises(ValueError, match='truncation_psi'):
        G(torch.randn(2, 16), _labels(2, 2), truncation_psi=1.5)

#----------------------------------------------------------------------------

def test_truncation_trick():
    torch.manual_seed(2)
    z = torch.randn(64, 32) * 1.5
    assert nb.truncate_z(z, 1) is z
    out = nb.truncate_z(z, 0.5)
    assert out.abs().max() <= 1.0
    inside = z.abs() <= 2
    torch.testing.assert_close(out[inside], z[inside] * 0.5)
    assert (~inside).any()
    assert torch.equal(nb.truncate_z(z, 0), torch.zeros_like(z))

#----------------------------------------------------------------------------

def test_weight_inits():
    torch.manual_seed(3)
    lin = torch.nn.Linear(4, 8)
    nb.init_weights(lin, 'ortho')
    torch.testing.assert_close(lin.weight.t() @ lin.weight, torch.eye(4), atol=1e-5, rtol=1e-5)
    big = torch.nn.Linear(200, 200)
    nb.init_weights(big, 'N02')
    assert abs(float(big.weight.detach().std()) - 0.02) < 0.001

#----------------------------------------------------------------------------
# Self-attention against an explicit float64 formulation with the normalised weights.

def test_self_attention_formula():
    torch.manual_seed(4)
    attn = nb.SelfAttention(16).eval()
    with torch.no_grad():
        attn.gamma.fill_(0.7)
    x = torch.randn(2, 16, 4, 6)
    mats = {name: getattr(attn, name).W_().detach().double().reshape(getattr(attn, name).out_channels, -1) for name in ('theta', 'phi', 'g', 'o')}
    xd = x.double()
    proj = lambda name, t: torch.einsum('oc,nchw->nohw', mats[name], t)
    theta = proj('theta', xd).flatten(2)                                # [2, 2, 24]
    phi = F.max_pool2d(proj('phi', xd), 2).flatten(2)                   # [2, 2, 6]
    g = F.max_pool2d(proj('g', xd), 2).flatten(2)                       # [2, 8, 6]
    expect = torch.empty_like(xd)
    for n in range(2):
        scores = theta[n].t() @ phi[n]                                  # [24, 6]
        beta = torch.exp(scores - scores.max(dim=1, keepdim=True).values)
        beta = beta / beta.sum(dim=1, keepdim=True)
        attended = (g[n] @ beta.t()).reshape(8, 4, 6)
        expect[n] = xd[n] + 0.7 * torch.einsum('oc,chw->ohw', mats['o'], attended)
    torch.testing.assert_close(attn(x).double(), expect, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        attn.gamma.zero_()
    assert torch.equal(attn(x), x)

#----------------------------------------------------------------------------
# Projection discriminator: the label enters as sum(embed(c) * h).

def test_projection_term():
    torch.manual_seed(5)
    D = nb.Discriminator(c_dim=3, img_resolution=32, img_channels=3, ch=1).eval()
    features = []
    D.linear.register_forward_hook(lambda _module, inputs, _output: features.append(inputs[0]))
    img = torch.randn(2, 3, 32, 32)
    c1, c2 = _labels(2, 3), _labels(2, 3).roll(1, dims=1)
    with torch.no_grad():
        diff = D(img, c1) - D(img, c2)
        E = D.embed.W_()
    expect = ((c1 - c2) @ E * features[0]).sum(dim=1, keepdim=True)
    torch.testing.assert_close(diff, expect, atol=1e-5, rtol=1e-4)

#----------------------------------------------------------------------------
# Standing statistics equal the average of the batch statistics seen by each layer.

def test_accumulate_standing_stats():
    torch.manual_seed(6)
    G, _D = _tiny_pair(c_dim=3, attn_res=[], res=16, mybn=True)
    layers = [m for m in G.modules() if isinstance(m, norms.StandingBatchNorm)]
    inputs = {id(m): [] for m in layers}
    hooks = [m.register_forward_hook(lambda module, args, _out: inputs[id(module)].append(args[0].detach().double().numpy())) for m in layers]
    u_before = [b.clone() for name, b in G.named_buffers() if name.endswith('u0')]
    nb.accumulate_standing_stats(G, num_batches=3, batch_size=4, device='cpu', seed=1)
    assert not G.training
    for m in layers:
        seen = inputs[id(m)]
        assert len(seen) == 3
        mean, var = m.eval_stats()
        np.testing.assert_allclose(mean.numpy(), np.mean([x.mean(axis=(0, 2, 3)) for x in seen], axis=0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(var.numpy(), np.mean([x.var(axis=(0, 2, 3), ddof=1) for x in seen], axis=0), rtol=1e-4, atol=1e-6)
    u_after = [b for name, b in G.named_buffers() if name.endswith('u0')]
    assert all(torch.equal(a, b) for a, b in zip(u_before, u_after))
    for hook in hooks:
        hook.remove()

    # Eval output is deterministic and survives pickling; a plain-BN G cannot do this.
    z, c = torch.randn(2, 16), _labels(2, 3)
    with torch.no_grad():
        img = G(z, c)
        assert torch.equal(pickle.loads(pickle.dumps(G))(z, c), img)
    G_plain, _D = _tiny_pair(c_dim=3, attn_res=[])
    with pytest.raises(ValueError, match='mybn=True'):
        nb.accumulate_standing_stats(G_plain, num_batches=1, batch_size=2, device='cpu')

#----------------------------------------------------------------------------
# Virtual BN generator: the reference batch sets the statistics, each sample's output
# depends on its own batch only through the 1/(B+1) share.

def test_vbn_generator_uses_reference_batch():
    torch.manual_seed(7)
    G, _D = _tiny_pair(c_dim=2, attn_res=[], res=16, norm='vbn', vbn_ref_size=5)
    G.eval()
    z, c = torch.randn(3, 16), _labels(3, 2)
    with torch.no_grad():
        a = G(z, c)
        b = G(z, c)
        assert torch.equal(a, b)
        vbn_layers = [m for m in G.modules() if isinstance(m, norms.VirtualBatchNorm2d)]
        assert vbn_layers and all(bool(m.has_reference) for m in vbn_layers)
        ref_mean = [m.ref_mean.clone() for m in vbn_layers]
        G.vbn_ref_z.add_(1)   # A different reference batch changes the statistics and the output.
        assert not torch.equal(G(z, c), a)
        assert not all(torch.equal(m.ref_mean, r) for m, r in zip(vbn_layers, ref_mean))

#----------------------------------------------------------------------------
# Unpickling in a fresh process that never imported the defining modules.

@pytest.mark.slow
def test_pickle_loads_in_fresh_process(tmp_path):
    torch.manual_seed(8)
    G, D = _tiny_pair(c_dim=2, attn_res=[8], res=16, mybn=True)
    G.eval()
    z, c = torch.randn(2, 16), _labels(2, 2)
    with torch.no_grad():
        img = G(z, c)
        torch.save(dict(z=z, c=c, img=img, logits=D.eval()(img, c)), tmp_path / 'io.pt')
    with open(tmp_path / 'nets.pkl', 'wb') as f:
        pickle.dump(dict(G=G, D=D), f)
    script = (
        'import pickle, sys, torch\n'
        'sys.path.insert(0, sys.argv[1])\n'
        'nets = pickle.load(open(sys.argv[2] + "/nets.pkl", "rb"))\n'
        'assert "training.networks_biggan" not in sys.modules\n'
        'io = torch.load(sys.argv[2] + "/io.pt")\n'
        'with torch.no_grad():\n'
        '    img = nets["G"](io["z"], io["c"])\n'
        '    assert torch.equal(img, io["img"])\n'
        '    assert torch.equal(nets["D"](img, io["c"]), io["logits"])\n'
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, '-c', script, root, str(tmp_path)], check=True, cwd=str(tmp_path))

#----------------------------------------------------------------------------
# BigGAN's ema_start: G_ema copies G before ema_start_kimg, then averages (half-life ema_kimg).

def test_ema_start_copies_before_start():
    from training import training_loop
    torch.manual_seed(9)
    G, G_ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    w_ema = G_ema.weight.detach().clone()
    training_loop._update_ema(G, G_ema, cur_nimg=900, batch_size=100, ema_kimg=1, ema_rampup=None, ema_start_kimg=1)
    assert torch.equal(G_ema.weight, G.weight)
    with torch.no_grad():
        G_ema.weight.copy_(w_ema)
    training_loop._update_ema(G, G_ema, cur_nimg=1000, batch_size=100, ema_kimg=1, ema_rampup=None, ema_start_kimg=1)
    beta = 0.5 ** (100 / 1000)
    torch.testing.assert_close(G_ema.weight, G.weight.detach() * (1 - beta) + w_ema * beta)

#----------------------------------------------------------------------------
# G_param / D_param choose the layer factories: 'SN' makes every conv, linear and embedding
# (except G's shared class table, as in BigGAN) spectrally normalised, 'none' makes none.

def test_layer_param_is_one_switch():
    from torch_utils import spectral_norm
    torch.manual_seed(10)
    layers = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding)
    for param in ('SN', 'none'):
        G = nb.Generator(z_dim=16, c_dim=3, img_resolution=16, img_channels=3, ch=2, attn_res=[8], G_param=param)
        D = nb.Discriminator(c_dim=3, img_resolution=16, img_channels=3, ch=2, attn_res=[8], D_param=param)
        for net in (G, D):
            found = [(name, m) for name, m in net.named_modules() if isinstance(m, layers) and name != 'shared']
            assert len(found) > 10
            assert all(spectral_norm.is_spectral_norm_module(m) == (param == 'SN') for _name, m in found), param
        assert not spectral_norm.is_spectral_norm_module(G.shared)
        c = _labels(3, 3)
        img = G(torch.randn(3, 16), c)
        D(img, c).sum().backward()
        assert all(p.grad is not None for p in G.parameters())
    with torch.no_grad():   # Without SN the projection term is sum((c @ E) * h) with the plain table E.
        D.eval()
        feats = []
        D.linear.register_forward_hook(lambda _m, inputs, _out: feats.append(inputs[0]))
        x = torch.randn(2, 3, 16, 16)
        c1, c2 = _labels(2, 3), _labels(2, 3).roll(1, dims=1)
        diff = D(x, c1) - D(x, c2)
        torch.testing.assert_close(diff, ((c1 - c2) @ D.embed.weight * feats[0]).sum(1, keepdim=True), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match='Unknown layer parameterisation'):
        nb.Generator(z_dim=16, c_dim=0, img_resolution=16, img_channels=3, ch=1, G_param='SVD')
    which_conv, which_linear, which_embedding = nb.layer_factories('SN', dict(num_svs=2))
    assert which_conv(4, 4, 3).num_svs == 2 and which_linear(4, 4).num_svs == 2 and which_embedding(4, 4).num_svs == 2

#----------------------------------------------------------------------------
# G_shared=False: each block's norm is conditioned on [one-hot c, z chunk] directly.

def test_unshared_conditioning():
    torch.manual_seed(11)
    G = nb.Generator(z_dim=16, c_dim=3, img_resolution=16, img_channels=3, ch=2, attn_res=[], G_shared=False)
    assert G.shared is None and G.blocks[0].cond_size == 3 + G.z_chunk_sizes[1]
    seen = []
    G.blocks[1].norm1.register_forward_hook(lambda _m, args, _out: seen.append(args[1]))
    z, c = torch.randn(2, 16), _labels(2, 3)
    G(z, c)
    chunks = torch.split(z, G.z_chunk_sizes, dim=1)
    torch.testing.assert_close(seen[0], torch.cat([c, chunks[2]], dim=1))
    G_flat = nb.Generator(z_dim=16, c_dim=3, img_resolution=16, img_channels=3, ch=2, G_shared=False, hier=False)
    assert G_flat.blocks[0].cond_size == 3
    assert nb.Generator(z_dim=16, c_dim=3, img_resolution=16, img_channels=3, ch=2, G_shared=False, shared_dim=0).shared is None

#----------------------------------------------------------------------------
# Every running, standing and reference statistic of G is declared rank-local; nothing else is.

def test_rank_local_buffers_of_generator():
    from torch_utils import misc
    G = nb.Generator(z_dim=16, c_dim=3, img_resolution=16, img_channels=3, ch=2, mybn=True)
    local = set(misc.rank_local_buffer_names(G))
    stats = {name for name, _b in G.named_buffers() if name.rsplit('.', 1)[-1] in
        ('stored_mean', 'stored_var', 'standing_mean_sum', 'standing_var_sum', 'accumulation_counter')}
    assert stats and local == stats
    G_vbn = nb.Generator(z_dim=16, c_dim=3, img_resolution=16, img_channels=3, ch=2, norm='vbn', vbn_ref_size=2)
    local = misc.rank_local_buffer_names(G_vbn)
    assert local and all(name.rsplit('.', 1)[-1] in ('ref_mean', 'ref_mean_sq', 'has_reference') for name in local)

#----------------------------------------------------------------------------
# The baseline snapshot (tests/fixtures, written at 9dd6ba4): in training mode (power iteration,
# batch statistics, buffer updates) today's classes with its weights compute what its own code does.

BIGGAN_FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'snapshot-9dd6ba4-biggan.pkl')

def test_baseline_snapshot_training_mode_matches_today():
    from torch_utils import misc
    with open(BIGGAN_FIXTURE, 'rb') as f:
        data = pickle.load(f)
    assert 'from training import norms' in type(data['G'])._orig_module_src   # Old code, importing today's re-exports.
    torch.manual_seed(12)
    z, c = torch.randn(4, data['G'].z_dim), _labels(4, data['G'].c_dim)
    for key, cls in (('G', nb.Generator), ('D', nb.Discriminator)):
        old = data[key].train()
        new = cls(**old.init_kwargs).train()
        misc.copy_params_and_buffers(old, new, require_all=True)
        assert [n for n, _t in misc.named_params_and_buffers(old)] == [n for n, _t in misc.named_params_and_buffers(new)]
        args = (z, c) if key == 'G' else (torch.randn(4, 3, 16, 16), c)
        for _ in range(2):
            assert torch.equal(new(*args), old(*args)), key
        for (name, a), (_name, b) in zip(misc.named_params_and_buffers(old), misc.named_params_and_buffers(new)):
            assert torch.equal(a, b), name

#----------------------------------------------------------------------------
# train.py --resume=<baseline BigGAN snapshot>: today's classes start from its weights (zero learning
# rates keep them exactly) and the new snapshot holds today's self-contained module.

@pytest.mark.slow
def test_resume_from_baseline_snapshot(tmp_path):
    import glob
    import json
    import PIL.Image
    import train
    os.makedirs(tmp_path / 'data')
    rnd = np.random.RandomState(0)
    for i in range(8):
        PIL.Image.fromarray(rnd.randint(0, 256, size=[16, 16, 3], dtype=np.uint8)).save(tmp_path / 'data' / f'{i}.png')
    with open(tmp_path / 'data' / 'dataset.json', 'w') as f:
        json.dump(dict(labels=[[f'{i}.png', i % 4] for i in range(8)]), f)
    train.main.main(args=[f'--outdir={tmp_path / "runs"}', f'--data={tmp_path / "data"}', f'--resume={BIGGAN_FIXTURE}',
        '--cfg=biggan32', '--ch=4', '--cond=1', '--device=cpu', '--batch=4', '--workers=0', '--glr=0', '--dlr=0',
        '--kimg=0.004', '--tick=0.004', '--snap=1', '--metrics=none', '--num-standing-accumulations=2'], standalone_mode=False)
    (snapshot,) = glob.glob(str(tmp_path / 'runs' / '*' / 'network-snapshot-*.pkl'))
    with open(BIGGAN_FIXTURE, 'rb') as f:
        old = pickle.load(f)
    with open(snapshot, 'rb') as f:
        new = pickle.load(f)
    for key in ('G', 'D'):
        assert type(new[key])._orig_module_src == getattr(nb, type(old[key]).__name__)._orig_module_src
        new_params = dict(new[key].named_parameters())
        for name, param in old[key].named_parameters():
            assert torch.equal(new_params[name], param), f'{key}.{name}'
    standing = [m for m in new['G_ema'].modules() if hasattr(m, 'accumulate_standing')]
    assert standing and all(float(m.accumulation_counter) == 2 for m in standing)

#----------------------------------------------------------------------------
# --cfg=biggan on 32x32 and 64x64 data: the architecture and settings of that resolution's row, a tiny
# run on the CPU, and generate.py drawing class images with truncation from its snapshot.

def _dataset(path, resolution, num_images=8, num_classes=3):
    import json
    import PIL.Image
    os.makedirs(path, exist_ok=True)
    rnd = np.random.RandomState(resolution)
    for i in range(num_images):
        PIL.Image.fromarray(rnd.randint(0, 256, size=[resolution, resolution, 3], dtype=np.uint8)).save(os.path.join(path, f'{i}.png'))
    with open(os.path.join(path, 'dataset.json'), 'w') as f:
        json.dump(dict(labels=[[f'{i}.png', i % num_classes] for i in range(num_images)]), f)
    return str(path)

@pytest.mark.slow
@pytest.mark.parametrize('resolution', [32, 64])
def test_train_and_generate_by_resolution(tmp_path, resolution):
    import glob
    import json
    import PIL.Image
    import train
    data = _dataset(tmp_path / 'data', resolution)
    train.main.main(args=[f'--outdir={tmp_path / "runs"}', f'--data={data}', '--cfg=biggan', '--cond=1', '--ch=2',
        '--device=cpu', '--batch=4', '--workers=0', '--kimg=0.004', '--tick=0.004', '--snap=1', '--metrics=none',
        '--num-standing-accumulations=2', f'--G-attn={resolution // 2}'], standalone_mode=False)
    (run_dir,) = glob.glob(str(tmp_path / 'runs' / '*'))
    with open(os.path.join(run_dir, 'training_options.json')) as f:
        c = json.load(f)
    if resolution == 32:  # BigGAN-PyTorch's CIFAR row.
        assert (c['D_steps_per_G'], c['G_opt_kwargs']['lr'], c['D_opt_kwargs']['lr'], c['ema_start_kimg']) == (4, 2e-4, 2e-4, 50)
        assert (c['G_kwargs']['z_dim'], c['G_kwargs']['hier'], c['G_kwargs']['G_shared'], c['D_kwargs']['attn_res']) == (128, False, False, [])
    else:                 # The ImageNet rows: attention '64' lands in G's last block only.
        assert (c['D_steps_per_G'], c['G_opt_kwargs']['lr'], c['D_opt_kwargs']['lr']) == (2, 1e-4, 4e-4)
        assert (c['G_kwargs']['z_dim'], c['G_kwargs']['hier'], c['G_kwargs']['G_shared'], c['D_kwargs']['attn_res']) == (120, True, True, [])
    assert c['G_kwargs']['attn_res'] == [resolution // 2]
    (snapshot,) = glob.glob(os.path.join(run_dir, 'network-snapshot-*.pkl'))
    with open(snapshot, 'rb') as f:
        G = pickle.load(f)['G_ema']
    assert G.img_resolution == resolution and [b.out_channels for b in G.blocks] == [o for _i, o, _r in nb.generator_arch(resolution, 2)]
    assert any(isinstance(a, nb.SelfAttention) or type(a).__name__ == 'SelfAttention' for a in G.attentions)

    # generate.py: class-conditional images with truncation; another class gives other images.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    images = []
    for cls in (0, 2):
        out = tmp_path / f'class{cls}'
        result = subprocess.run([sys.executable, 'generate.py', f'--network={snapshot}', '--seeds=0-1', f'--class={cls}',
            '--trunc=0.7', f'--outdir={out}', '--device=cpu'], cwd=root, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        files = sorted(glob.glob(str(out / '*.png')))
        assert len(files) == 2
        images.append(np.asarray(PIL.Image.open(files[0]), dtype=np.float32))
    assert images[0].shape == (resolution, resolution, 3) and np.abs(images[0] - images[1]).mean() > 0

#----------------------------------------------------------------------------
# Combinations the data or the family cannot satisfy: one line before training starts, nothing written.

@pytest.mark.parametrize('args, fragment', [
    (['--cfg=biggan', '--G-attn=64'], '--G-attn=64: at this dataset resolution the blocks output 8, 16, 32 px'),
    (['--cfg=biggan', '--D-attn=32'], '--D-attn=32: at this dataset resolution the blocks output 8, 16 px'),
    (['--cfg=biggan', '--G-attn=big'], '--G-attn: expected resolutions'),
    (['--cfg=biggan', '--shared-dim=64'], '--shared-dim applies with the shared class embedding (--G-shared=1)'),
    (['--cfg=biggan32', '--cond=0', '--G-shared=1'], '--G-shared applies to class-conditional training'),
    (['--cfg=small', '--num-D-steps=2'], '--num-D-steps applies to the BigGAN configs'),
    (['--cfg=biggan', '--G-param=SVD'], "'SVD' is not one of 'SN', 'none'"),
    (['--cfg=biggan', '--num-D-steps=0'], '--num-D-steps'),
])
def test_bad_combinations_are_one_line_errors(tmp_path, args, fragment):
    import click.testing
    import train
    data = _dataset(tmp_path / 'data', 32)
    args = [f'--outdir={tmp_path / "runs"}', f'--data={data}', '--device=cpu'] + (['--cond=1'] if '--cond=0' not in args else []) + args
    result = click.testing.CliRunner().invoke(train.main, args)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith(('Usage:', 'Try '))]
    assert len(lines) == 1 and fragment in lines[0], result.output
    assert not os.path.exists(tmp_path / 'runs')

#----------------------------------------------------------------------------
# Each BigGAN option reaches the config (dry run), and --cfg=biggan picks the row of the resolution.

def test_biggan_options_reach_config(tmp_path):
    import json
    import click.testing
    import train
    data = _dataset(tmp_path / 'data', 64)
    args = [f'--outdir={tmp_path}', f'--data={data}', '--device=cpu', '--cond=1', '--cfg=biggan', '--G-param=none',
        '--D-param=none', '--G-shared=1', '--hier=0', '--shared-dim=32', '--G-attn=16,32', '--D-attn=0', '--num-D-steps=3',
        '--ema-start=7.5', '--num-standing-accumulations=0', '--dry-run']
    result = click.testing.CliRunner().invoke(train.main, args)
    assert result.exit_code == 0, result.output
    c = json.loads(result.output)
    G, D = c['G_kwargs'], c['D_kwargs']
    assert (G['G_param'], D['D_param'], G['G_shared'], G['hier'], G['shared_dim']) == ('none', 'none', True, False, 32)
    assert (G['attn_res'], D['attn_res'], c['D_steps_per_G'], c['ema_start_kimg'], c['snapshot_hooks']) == ([16, 32], [], 3, 7.5, [])
    nb.Generator(c_dim=3, img_resolution=64, img_channels=3, **{k: v for k, v in G.items() if k != 'class_name'} | dict(ch=1))
    nb.Discriminator(c_dim=3, img_resolution=64, img_channels=3, **{k: v for k, v in D.items() if k != 'class_name'} | dict(ch=1))

#----------------------------------------------------------------------------
# Every row of --cfg=biggan builds networks with BigGAN's tables: channel multipliers per block,
# attention after the 64 px blocks (none in D at 64 px), z split evenly into the hierarchical chunks.

@pytest.mark.parametrize('resolution', [128, 256, 512])
def test_biggan_rows_build(resolution):
    from training import presets
    c = presets.get('biggan').config(resolution, gpus=1)
    G_kwargs = {k: v for k, v in c.G_kwargs.items() if k != 'class_name'} | dict(ch=1)
    D_kwargs = {k: v for k, v in c.D_kwargs.items() if k != 'class_name'} | dict(ch=1)
    G = nb.Generator(c_dim=10, img_resolution=resolution, img_channels=3, **G_kwargs)
    D = nb.Discriminator(c_dim=10, img_resolution=resolution, img_channels=3, **D_kwargs)
    G_mults = {128: [16, 8, 4, 2, 1], 256: [16, 8, 8, 4, 2, 1], 512: [16, 8, 8, 4, 2, 1, 1]}[resolution]
    D_mults = {128: [1, 2, 4, 8, 16, 16], 256: [1, 2, 4, 8, 8, 16, 16], 512: [1, 1, 2, 4, 8, 8, 16, 16]}[resolution]
    assert [b.out_channels for b in G.blocks] == G_mults and [b.out_channels for b in D.blocks] == D_mults
    assert G.attn_res == (64,) and D.attn_res == (64,)
    assert len(set(G.z_chunk_sizes)) == 1 and G.z_dim == {128: 120, 256: 140, 512: 128}[resolution]
    assert (c.D_steps_per_G, c.G_opt_kwargs.lr, c.D_opt_kwargs.lr, c.batch_size) == (2, 1e-4, 4e-4, 256)

#----------------------------------------------------------------------------
