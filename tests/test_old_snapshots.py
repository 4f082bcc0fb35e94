# Snapshots written by an earlier commit's training loop (tests/fixtures, made at 9dd6ba4) still load,
# run their own embedded code to the same outputs as today's classes, and resume training. Their
# embedded sources import training.networks_layers, training.networks_discriminator, training.norms and
# training.spectral_norm, so loading them also checks those re-export modules.

import ast
import glob
import json
import os
import pickle
import sys

import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib
import legacy
import train
from torch_utils import misc
from training import networks_biggan
from training import networks_stylegan2

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')
SG2_PKL = os.path.join(FIXTURES, 'snapshot-9dd6ba4-stylegan2.pkl')
BIGGAN_PKL = os.path.join(FIXTURES, 'snapshot-9dd6ba4-biggan.pkl')

#----------------------------------------------------------------------------
# The fixture, loaded through the scripting API running the code stored in it (trust_code: these tests
# are about that code), and a today's-class copy of one of its networks.

def load(path):
    with open(path, 'rb') as f:
        return legacy.load_network_pkl(f, trust_code=True)

def rebuild(old, module):
    new = getattr(module, type(old).__name__)(*old.init_args, **old.init_kwargs)
    misc.copy_params_and_buffers(old, new, require_all=True)
    return new.train(old.training).requires_grad_(False)

def one_hot(n, c_dim):
    return torch.eye(c_dim)[torch.arange(n) % c_dim]

# The module object that an embedded source was executed as, found from one of its classes.
def embedded_module(obj):
    return sys.modules[type(obj).__module__]

#----------------------------------------------------------------------------
# Every `from training.X import names` of the sources embedded in the fixtures resolves today.

@pytest.mark.parametrize('path', [SG2_PKL, BIGGAN_PKL])
def test_embedded_imports_resolve(path):
    data = load(path)
    sources = {type(m)._orig_module_src for key in ('G', 'D') for m in data[key].modules() if hasattr(type(m), '_orig_module_src')}
    imported = set()
    for src in sources:
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ImportFrom) and (node.module or '').split('.')[0] == 'training':
                imported.update(f'{node.module}.{alias.name}' for alias in node.names)
    assert imported, 'the fixture was expected to import from training (that is what it tests)'
    for name in sorted(imported):
        assert dnnlib.util.get_obj_by_name(name) is not None, name

#----------------------------------------------------------------------------
# StyleGAN2: the old code (made to run its own embedded modulated convolution as well) and today's
# classes with the copied weights give bit-identical G, G_ema and D outputs.

def test_stylegan2_snapshot_matches_today(monkeypatch):
    data = load(SG2_PKL)
    assert set(data) == {'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}
    assert data['training_set_kwargs']['use_labels'] and data['augment_pipe'] is not None

    # The old networks.py takes its layer functions from today's re-export; point it at its own.
    old_layers = embedded_module(data['G'].mapping)
    old_synthesis = embedded_module(data['G'].synthesis)
    assert old_synthesis is not old_layers and 'modulated_conv2d' in vars(old_layers)
    for name in ('modulated_conv2d', 'normalize_2nd_moment', '_block_dtype'):
        monkeypatch.setattr(old_synthesis, name, getattr(old_layers, name))
    monkeypatch.setattr(embedded_module(data['D']), '_block_dtype', old_layers._block_dtype)

    torch.manual_seed(0)
    z, c = torch.randn([4, data['G'].z_dim]), one_hot(4, data['G'].c_dim)
    for key in ('G', 'G_ema'):
        old = data[key]
        new = rebuild(old, networks_stylegan2)
        assert type(old) is not type(new)
        for training_mode in (False, True):
            old.train(training_mode)
            new.train(training_mode)
            for kwargs in (dict(noise_mode='const'), dict(truncation_psi=0.7, truncation_cutoff=2), dict(noise_mode='random')):
                torch.manual_seed(1)
                expected = old(z, c, **kwargs)
                torch.manual_seed(1)
                assert torch.equal(new(z, c, **kwargs), expected), (key, training_mode, kwargs)
        assert torch.equal(new.mapping.w_avg, old.mapping.w_avg)
    img = data['G_ema'].eval()(z, c, noise_mode='const')
    assert torch.equal(rebuild(data['D'], networks_stylegan2)(img, c), data['D'](img, c))

#----------------------------------------------------------------------------
# BigGAN: the snapshot's generator and discriminator against today's classes, in eval mode (no
# spectral-norm power iteration, stored batch-norm statistics).

def test_biggan_snapshot_matches_today():
    data = load(BIGGAN_PKL)
    assert data['training_set_kwargs']['use_labels'] and data['augment_pipe'] is not None
    G, D = data['G_ema'].eval(), data['D'].eval()
    G_new, D_new = rebuild(G, networks_biggan).eval(), rebuild(D, networks_biggan).eval()
    # The snapshot hook switched G_ema's batch norms to standing statistics: a plain attribute, not a buffer.
    new_modules = dict(G_new.named_modules())
    for name, module in G.named_modules():
        if hasattr(module, 'accumulate_standing'):
            new_modules[name].accumulate_standing = module.accumulate_standing
    torch.manual_seed(0)
    z, c = torch.randn([4, G.z_dim]), one_hot(4, G.c_dim)
    img = G(z, c)
    assert img.shape == (4, 3, 16, 16)
    assert torch.equal(G_new(z, c), img)
    assert torch.equal(D_new(img, c), D(img, c))

#----------------------------------------------------------------------------
# train.py --resume=<old snapshot>: a run of today's classes starts from its weights. With zero learning
# rates G and D keep them exactly; the new snapshot holds today's StyleGAN2 classes.

def make_dataset(path, num_images=8, resolution=16, num_classes=4):
    os.makedirs(path)
    rnd = np.random.RandomState(0)
    labels = []
    for i in range(num_images):
        PIL.Image.fromarray(rnd.randint(0, 256, size=[resolution, resolution, 3], dtype=np.uint8)).save(os.path.join(path, f'{i}.png'))
        labels.append([f'{i}.png', i % num_classes])
    with open(os.path.join(path, 'dataset.json'), 'w') as f:
        json.dump(dict(labels=labels), f)
    return path

def test_resume_from_stylegan2_snapshot(tmp_path):
    data = make_dataset(str(tmp_path / 'data'))
    outdir = tmp_path / 'runs'
    # The snapshot's D has the original's single stddev feature (small's before the class groups): --mbstd-ch=1.
    train.main.main(args=[f'--outdir={outdir}', f'--data={data}', f'--resume={SG2_PKL}', '--cfg=small', '--cond=1',
        '--device=cpu', '--batch=4', '--workers=0', '--cbase=256', '--cmax=16', '--map=1', '--mbstd-ch=1', '--glr=0', '--dlr=0',
        '--kimg=0.004', '--tick=0.004', '--snap=1', '--metrics=none'], standalone_mode=False)
    snapshots = sorted(glob.glob(str(outdir / '*' / 'network-snapshot-*.pkl')))
    assert snapshots
    old, new = load(SG2_PKL), load(snapshots[-1])
    for key in ('G', 'D'):
        assert type(new[key]).__name__ == type(old[key]).__name__
        assert type(new[key])._orig_module_src == networks_stylegan2.Generator._orig_module_src
        new_params = dict(new[key].named_parameters())
        for name, param in old[key].named_parameters():
            assert torch.equal(new_params[name], param), f'{key}.{name} differs from the resumed snapshot'
    pickle.dumps(new['G_ema']) # Today's snapshot pickles again.

#----------------------------------------------------------------------------
