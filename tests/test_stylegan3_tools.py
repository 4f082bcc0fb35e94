# StyleGAN3 networks in the tools and network files: a pickle made by another copy of the StyleGAN3
# code (its own embedded source, as an original pickle) converts into our classes with identical
# outputs and on to the weights-only format; our own pickles load without running their code;
# generate.py, style_mixing.py and projector work on StyleGAN3 generators.

import importlib.util
import os
import subprocess
import sys

import click.testing
import numpy as np
import PIL.Image
import pytest
import torch

import legacy
import projector
import style_mixing
from metrics import metric_utils
from training import networks_stylegan2
from training import networks_stylegan3

from test_metrics import write_stand_in_detectors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#----------------------------------------------------------------------------
# A copy of the StyleGAN3 module with different source text: its classes are "another codebase's",
# whose embedded source no fingerprint knows (as an original StyleGAN3 pickle's).

@pytest.fixture(scope='module')
def foreign_module(tmp_path_factory):
    src = open(networks_stylegan3.__file__, encoding='utf-8').read() + "\n_REVISION = 'another codebase'\n"
    path = tmp_path_factory.mktemp('foreign') / 'foreign_stylegan3_networks.py'
    path.write_text(src, encoding='utf-8')
    spec = importlib.util.spec_from_file_location('foreign_stylegan3_networks', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module

def make_data(module=networks_stylegan3, **kwargs):
    torch.manual_seed(0)
    G = module.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=256, channel_max=8,
        num_layers=4, **kwargs)
    with torch.no_grad():
        G.mapping.w_avg.normal_()
        G.synthesis.input.transform.copy_(torch.tensor([[0.9, -0.2, 0.05], [0.2, 0.9, 0.1], [0, 0, 1]]))
        for name, buf in G.named_buffers():
            if name.endswith('magnitude_ema'):
                buf.fill_(0.7)
    D = networks_stylegan2.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=8)
    G_ema = G.__class__(*G.init_args, **G.init_kwargs)
    G_ema.load_state_dict(G.state_dict())
    nets = dict(G=G, D=D, G_ema=G_ema)
    for net in nets.values():
        net.eval().requires_grad_(False)
    return dict(nets, augment_pipe=None, training_set_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path='x.zip', resolution=16))

def images(G, psi=0.7):
    z = torch.randn([3, 8], generator=torch.Generator().manual_seed(5))
    return G(z, None, truncation_psi=psi, noise_mode='const')

#----------------------------------------------------------------------------

@pytest.mark.parametrize('cfg', [dict(), dict(conv_kernel=1, use_radial_filters=True)])
def test_convert_foreign_stylegan3_pickle(foreign_module, tmp_path, cfg):
    old = make_data(foreign_module, **cfg)
    legacy.save_network_pkl(str(tmp_path / 'old.pkl'), old)
    loaded = legacy.load_network_pkl(str(tmp_path / 'old.pkl'), trust_code=True)
    assert type(loaded['G_ema']).__module__ != 'training.networks_stylegan3'
    new, diffs = legacy.convert_network_data(loaded)
    assert diffs == dict(G=0, D=0, G_ema=0)
    assert type(new['G_ema']) is networks_stylegan3.Generator
    assert torch.equal(images(new['G_ema']), images(old['G_ema']))
    assert torch.equal(new['G_ema'].synthesis.input.transform, old['G_ema'].synthesis.input.transform)

    # On to the weights-only format: loads without unpickling, same images.
    legacy.save_network_safetensors(str(tmp_path / 'net.safetensors'), new)
    again = legacy.load_network_pkl(str(tmp_path / 'net.safetensors'))
    assert type(again['G_ema']) is networks_stylegan3.Generator
    assert torch.equal(images(again['G_ema']), images(old['G_ema']))

def test_convert_cli(foreign_module, tmp_path):
    old = make_data(foreign_module)
    legacy.save_network_pkl(str(tmp_path / 'old.pkl'), old)
    cmd = [sys.executable, 'legacy.py', f'--source={tmp_path / "old.pkl"}', f'--dest={tmp_path / "new.pkl"}']
    refused = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and not os.path.exists(tmp_path / 'new.pkl') # Unknown code: not run without --trust-code.
    result = subprocess.run(cmd + ['--trust-code'], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'G_ema: rebuilt as training.networks_stylegan3.Generator, identical outputs' in result.stdout
    new = legacy.load_network_pkl(str(tmp_path / 'new.pkl'))
    assert torch.equal(images(new['G_ema']), images(old['G_ema']))

def test_own_pickle_loads_without_running_its_code(tmp_path):
    data = make_data()
    legacy.save_network_pkl(str(tmp_path / 'net.pkl'), data)
    loaded = legacy.load_network_pkl(str(tmp_path / 'net.pkl'))
    assert type(loaded['G_ema']) is networks_stylegan3.Generator
    assert torch.equal(images(loaded['G_ema']), images(data['G_ema']))

#----------------------------------------------------------------------------
# The tools on a StyleGAN3 pickle.

@pytest.fixture
def sg3_pickle(tmp_path):
    path = str(tmp_path / 'sg3.pkl')
    legacy.save_network_pkl(path, make_data())
    return path

def test_generate_and_style_mixing(sg3_pickle, tmp_path):
    proc = subprocess.run([sys.executable, 'generate.py', f'--network={sg3_pickle}', '--seeds=0-2', '--trunc=0.5',
        f'--outdir={tmp_path / "gen"}', '--device=cpu'], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path / 'gen')) == ['seed0000.png', 'seed0001.png', 'seed0002.png']
    result = click.testing.CliRunner().invoke(style_mixing.generate_style_mix, [f'--network={sg3_pickle}', '--rows=0,1',
        '--cols=2,3,4', '--styles=0-3', f'--outdir={tmp_path / "mix"}', '--device=cpu'])
    assert result.exit_code == 0, result.output
    grid = PIL.Image.open(tmp_path / 'mix' / 'grid.png')
    assert grid.size == (16 * 4, 16 * 3)

def test_projector(tmp_path, monkeypatch):
    monkeypatch.setenv('DNNLIB_DETECTOR_DIR', write_stand_in_detectors(tmp_path / 'detectors'))
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    try:
        G = make_data()['G_ema']
        target = torch.from_numpy(np.random.RandomState(0).randint(0, 256, [3, 16, 16]).astype(np.uint8))
        ws = projector.project(G, target, num_steps=3, w_avg_samples=20)
        assert ws.shape == (3, G.num_ws, 8) and torch.isfinite(ws).all()
    finally:
        metric_utils.clear_feature_detector_cache()

#----------------------------------------------------------------------------
