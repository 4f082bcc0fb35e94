# Training StyleGAN3 by name: the presets' published hyper-parameters as --dry-run resolves them, the
# loss's blur fade against scipy, and tiny StyleGAN3-T and -R runs through train.py on the CPU whose
# snapshots render with generate.py.

import glob
import json
import os
import subprocess
import sys

import click.testing
import numpy as np
import pytest
import scipy.ndimage
import torch

import dnnlib
import train
from training import loss as loss_module
from training import presets

from test_train_cli import make_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp('sg3data') / 'plain', num_images=8, resolution=16, labels=False)

def invoke(main, args):
    return click.testing.CliRunner().invoke(main, [str(a) for a in args])

def dry_run(args):
    result = invoke(train.main, list(args) + ['--dry-run'])
    assert result.exit_code == 0, result.output
    return json.loads(result.output, object_hook=dnnlib.EasyDict)

#----------------------------------------------------------------------------
# The StyleGAN3 release's settings (train.py and the paper's appendix D), at batch 32 and 64.

def test_presets_are_registered():
    for name in ['stylegan3-t', 'stylegan3-r', 'stylegan2-sg3']:
        assert presets.get(name).family.name == 'StyleGAN3'

@pytest.mark.parametrize('batch', [32, 64])
def test_stylegan3_t_hyperparameters(tmp_path, data, batch):
    c = dry_run([f'--outdir={tmp_path}', f'--data={data}', '--cfg=stylegan3-t', '--gamma=8', f'--batch={batch}', '--device=cpu'])
    assert c.G_kwargs.class_name == 'training.networks_stylegan3.Generator'
    assert c.D_kwargs.class_name == 'training.networks_stylegan2.Discriminator'
    assert (c.G_kwargs.channel_base, c.G_kwargs.channel_max, c.D_kwargs.channel_base, c.D_kwargs.channel_max) == (32768, 512, 32768, 512)
    assert c.G_kwargs.conv_kernel == 3 and not c.G_kwargs.use_radial_filters
    assert c.G_kwargs.mapping_kwargs.num_layers == 2 and c.G_kwargs.z_dim == c.G_kwargs.w_dim == 512
    assert (c.G_opt_kwargs.lr, c.D_opt_kwargs.lr, c.G_opt_kwargs.betas, c.G_opt_kwargs.eps) == (0.0025, 0.002, [0, 0.99], 1e-8)
    assert c.loss_kwargs.r1_gamma == 8 and c.loss_kwargs.pl_weight == 0 and c.loss_kwargs.style_mixing_prob == 0
    assert c.loss_kwargs.get('blur_init_sigma', 0) == 0
    assert c.ema_kimg == pytest.approx(batch * 10 / 32) and c.ema_rampup == 0.05
    assert c.G_kwargs.magnitude_ema_beta == pytest.approx(0.5 ** (batch / 20000))
    assert c.D_kwargs.epilogue_kwargs.mbstd_group_size == 4 and c.D_kwargs.architecture == 'resnet'
    assert (c.G_reg_interval, c.D_reg_interval, c.batch_size) == (None, 16, batch)
    assert c.augment_kwargs.xflip == 1 and c.ada_target == 0.6 # ADA with bgc, as the release.

def test_stylegan3_r_hyperparameters(tmp_path, data):
    c = dry_run([f'--outdir={tmp_path}', f'--data={data}', '--cfg=stylegan3-r', '--gamma=2', '--batch=64', '--device=cpu'])
    assert (c.G_kwargs.channel_base, c.G_kwargs.channel_max, c.D_kwargs.channel_base, c.D_kwargs.channel_max) == (65536, 1024, 32768, 512)
    assert c.G_kwargs.conv_kernel == 1 and c.G_kwargs.use_radial_filters
    assert c.loss_kwargs.blur_init_sigma == 10 and c.loss_kwargs.blur_fade_kimg == pytest.approx(64 * 200 / 32)
    c = dry_run([f'--outdir={tmp_path}', f'--data={data}', '--cfg=stylegan3-r', '--gamma=2', '--cbase=1000', '--cmax=100', '--map=3', '--device=cpu'])
    assert (c.G_kwargs.channel_base, c.G_kwargs.channel_max, c.D_kwargs.channel_base, c.D_kwargs.channel_max) == (2000, 200, 1000, 100)
    assert c.G_kwargs.mapping_kwargs.num_layers == 3

def test_stylegan2_baseline_of_the_release(tmp_path, data):
    c = dry_run([f'--outdir={tmp_path}', f'--data={data}', '--cfg=stylegan2-sg3', '--gamma=10', '--device=cpu'])
    assert c.G_kwargs.class_name == 'training.networks_stylegan2.Generator'
    assert c.G_kwargs.mapping_kwargs.num_layers == 8 and c.G_kwargs.synthesis_kwargs.channel_base == 32768
    assert c.G_opt_kwargs.lr == c.D_opt_kwargs.lr == 0.002
    assert (c.loss_kwargs.pl_weight, c.loss_kwargs.style_mixing_prob, c.loss_kwargs.pl_no_weight_grad, c.G_reg_interval) == (2, 0.9, True, 4)

def test_gamma_is_required(tmp_path, data):
    result = invoke(train.main, [f'--outdir={tmp_path}', f'--data={data}', '--cfg=stylegan3-t', '--device=cpu', '--dry-run'])
    assert result.exit_code != 0 and 'needs --gamma' in result.output and 'Traceback' not in result.output
    result = invoke(train.main, [f'--outdir={tmp_path}', f'--data={data}', '--cfg=stylegan3-t', '--gamma=1', '--ch=8', '--dry-run'])
    assert result.exit_code != 0 and '--ch applies to the BigGAN' in result.output

#----------------------------------------------------------------------------
# Blur fade: sigma falls linearly to 0 over blur_fade_kimg; the blur is the normalised separable kernel
# 2^(-(x/sigma)^2) over |x| <= floor(3 sigma), zero padding (scipy.ndimage with mode='constant').

def test_blur_sigma_schedule():
    assert loss_module.blur_sigma_at(0, 10, 200) == 10
    assert loss_module.blur_sigma_at(100_000, 10, 200) == pytest.approx(5)
    assert loss_module.blur_sigma_at(250_000, 10, 200) == 0
    assert loss_module.blur_sigma_at(0, 10, 0) == 0

@pytest.mark.parametrize('sigma', [0.2, 1.0, 2.5])
def test_blur_images_matches_scipy(sigma):
    img = torch.randn(2, 3, 12, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = loss_module.blur_images(img, sigma)
    radius = int(np.floor(sigma * 3))
    if radius == 0:
        assert out is img
        return
    taps = 2.0 ** (-(np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    expected = scipy.ndimage.convolve1d(img.numpy(), taps, axis=3, mode='constant')
    expected = scipy.ndimage.convolve1d(expected, taps, axis=2, mode='constant')
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6)

def test_loss_blurs_what_D_sees():
    seen = []
    class RecordingD(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones([]))
        def forward(self, img, c):
            seen.append(img.detach().clone())
            return img.sum([1, 2, 3])[:, None] * self.scale
    class Gen(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3 * 8 * 8)
        def forward(self, z, c):
            return self.fc(z).reshape(-1, 3, 8, 8)
    loss = loss_module.StyleGAN2Loss('cpu', Gen(), RecordingD(), r1_gamma=1, pl_weight=0, style_mixing_prob=0,
        blur_init_sigma=2, blur_fade_kimg=1)
    real = torch.randn(2, 3, 8, 8)
    for cur_nimg, sigma in [(0, 2.0), (500, 1.0), (1000, 0.0)]:
        seen.clear()
        loss.accumulate_gradients('Dmain', real, None, torch.randn(2, 4), None, gain=1, cur_nimg=cur_nimg)
        torch.testing.assert_close(seen[-1], loss_module.blur_images(real, sigma))

#----------------------------------------------------------------------------
# pl_no_weight_grad (the StyleGAN3 release's stylegan2 config) is a pure speed-up for StyleGAN2 in
# training (modulation scales activations, not conv weights): the path-length gradient w.r.t. ws skips
# conv weight gradients it does not need; the final gradients are equal. StyleGAN3 folds the styles into
# the conv weights, so there it would change the gradient (its presets keep pl_weight 0).

@pytest.mark.parametrize('family', ['stylegan2', 'stylegan3'])
def test_pl_no_weight_grad_changes_nothing_but_work(monkeypatch, family):
    from training import networks_stylegan2, networks_stylegan3 # pylint: disable=import-outside-toplevel
    calls = []
    conv2d_weight = torch.nn.grad.conv2d_weight
    monkeypatch.setattr(torch.nn.grad, 'conv2d_weight', lambda *args, **kwargs: calls.append(1) or conv2d_weight(*args, **kwargs))
    grads, counts = [], []
    for skip in [False, True]:
        torch.manual_seed(0)
        if family == 'stylegan2':
            G = networks_stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=128, channel_max=8))
        else:
            G = networks_stylegan3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                channel_base=128, channel_max=8, num_layers=3)
        D = networks_stylegan2.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=8)
        loss = loss_module.StyleGAN2Loss('cpu', G, D, r1_gamma=0, pl_weight=2, style_mixing_prob=0, pl_no_weight_grad=skip)
        calls.clear()
        torch.manual_seed(1)
        loss.accumulate_gradients('Greg', None, None, torch.randn(4, 8), torch.zeros(4, 0), gain=1, cur_nimg=0)
        grads.append({name: p.grad.clone() for name, p in G.named_parameters() if p.grad is not None})
        counts.append(len(calls))
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    assert counts[1] < counts[0], counts
    same = [torch.allclose(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-7) for name in grads[0]]
    assert all(same) if family == 'stylegan2' else not all(same)

#----------------------------------------------------------------------------
# Tiny StyleGAN3-T and -R train through train.py on the CPU; their snapshots render with generate.py.

@pytest.mark.slow
@pytest.mark.parametrize('cfg', ['stylegan3-t', 'stylegan3-r'])
def test_tiny_training_and_generate(tmp_path, data, cfg):
    result = invoke(train.main, [f'--outdir={tmp_path / "runs"}', f'--data={data}', f'--cfg={cfg}', '--gamma=1', '--device=cpu',
        '--cbase=128', '--cmax=8', '--batch=2', '--kimg=0.002', '--tick=0.002', '--snap=1', '--workers=0', '--aug=noaug', '--metrics=none'])
    assert result.exit_code == 0, result.output
    pkls = sorted(glob.glob(str(tmp_path / 'runs' / '*' / 'network-snapshot-*.pkl')))
    assert pkls
    proc = subprocess.run([sys.executable, 'generate.py', f'--network={pkls[-1]}', '--seeds=0-1', f'--outdir={tmp_path / "out"}',
        '--device=cpu', '--trunc=0.7'], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(os.listdir(tmp_path / 'out')) == ['seed0000.png', 'seed0001.png']

#----------------------------------------------------------------------------
# Exact resume of a StyleGAN3-R run while D's input blur is fading and the magnitude EMAs move: a run to
# 4 images continued to 8 equals a straight run to 8 (networks, optimizer moments, loss state).

@pytest.mark.slow
def test_stylegan3_exact_resume(tmp_path, data):
    from test_training import assert_states_equal, dry_run_options, final_state, launch_options, run_main # pylint: disable=import-outside-toplevel
    args = [f'--data={data}', '--cfg=stylegan3-r', '--gamma=1', '--device=cpu', '--cbase=128', '--cmax=8', '--batch=2',
        '--workers=0', '--tick=0.004', '--snap=1', '--metrics=none', '--kimg=0.008']
    c = dry_run_options([f'--outdir={tmp_path / "straight"}'] + args)
    c.loss_kwargs.blur_fade_kimg = 0.008 # Sigma 10 -> 0 over this run.
    straight = final_state(launch_options(c, tmp_path / 'straight'))
    run_dir = launch_options(dnnlib.EasyDict(c, total_kimg=0.004), tmp_path / 'split')
    assert final_state(run_dir)['cur_nimg'] == 4
    run_main([f'--outdir={tmp_path / "split"}', f'--resume={run_dir}', '--kimg=0.008'])
    resumed = final_state(run_dir)
    assert_states_equal(resumed, straight)
    ema = [v for k, v in resumed['G_ema'].items() if k.endswith('magnitude_ema')]
    assert ema and not all(float(v) == 1 for v in ema)

#----------------------------------------------------------------------------
