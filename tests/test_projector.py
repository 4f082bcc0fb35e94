# Tests of projector.py: schedules and the noise regulariser against naive formulas, the loss
# going down on a tiny generator, and the command line with a stand-in VGG16 detector.

import math
import os
import sys

import click.testing
import numpy as np
import PIL.Image
import pytest
import torch

import legacy
import projector
from metrics import metric_utils
from training import networks

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_metrics import TinyG, write_stand_in_detectors # pylint: disable=wrong-import-position

#----------------------------------------------------------------------------

@pytest.fixture
def det_dir(tmp_path, monkeypatch):
    folder = write_stand_in_detectors(tmp_path / 'detectors')
    monkeypatch.setenv('DNNLIB_DETECTOR_DIR', folder)
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    yield folder
    metric_utils.clear_feature_detector_cache() # Later tests must not see the stand-ins.

def tiny_generator(img_channels=3, seed=0):
    torch.manual_seed(seed)
    return networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=img_channels,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()

#----------------------------------------------------------------------------

def test_learning_rate_schedule_formula():
    assert projector.learning_rate_schedule(0.0) == 0
    assert projector.learning_rate_schedule(0.025) == pytest.approx(0.05) # Half-way up the linear ramp.
    assert projector.learning_rate_schedule(0.5) == pytest.approx(0.1)
    t = 0.9 # 0.1 before the end: cosine ramp-down at 0.4 of its length.
    assert projector.learning_rate_schedule(t) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.4 * math.pi)))

def test_noise_regularization_vs_naive_loops():
    rnd = np.random.RandomState(0)
    maps = [rnd.randn(32, 32), rnd.randn(8, 8)]

    def autocorr(n):
        h, w = n.shape
        ax = sum(n[y, x] * n[y, (x - 1) % w] for y in range(h) for x in range(w)) / (h * w)
        ay = sum(n[y, x] * n[(y - 1) % h, x] for y in range(h) for x in range(w)) / (h * w)
        return ax ** 2 + ay ** 2

    expected = 0.0
    for n in maps:
        while True:
            expected += autocorr(n)
            if n.shape[0] <= 8:
                break
            n = n.reshape(n.shape[0] // 2, 2, n.shape[1] // 2, 2).mean(axis=(1, 3))
    got = projector.noise_regularization([torch.tensor(m) for m in maps])
    assert float(got) == pytest.approx(expected, rel=1e-10)

def test_projection_lowers_distance(det_dir):
    G = TinyG(z_dim=8, w_dim=8) # Linear synthesis with a noise_const buffer: fast enough for 30 steps.
    with torch.no_grad():
        w = G.mapping(torch.randn([1, 8]), None)
        G.synthesis.b16.noise_const.copy_(torch.randn([16, 16]))
        target = ((G.synthesis(w, noise_mode='const') + 1) * 127.5).clamp(0, 255).to(torch.uint8)[0]
    dists = []
    ws = projector.project(G, target, num_steps=30, w_avg_samples=100, step_fn=lambda step, dist, loss: dists.append(dist))
    assert ws.shape == (30, G.mapping.num_ws, 8)
    assert len(dists) == 30 and np.mean(dists[-5:]) < 0.5 * np.mean(dists[:3])
    for name, buf in G.synthesis.named_buffers():
        assert not buf.requires_grad, name # The caller's G is left alone.
    with pytest.raises(ValueError, match='Target must be'):
        projector.project(G, target[:, :8], num_steps=1, w_avg_samples=10)

#----------------------------------------------------------------------------

def test_command_line_outputs(det_dir, tmp_path):
    pkl = str(tmp_path / 'net.pkl')
    G = tiny_generator(img_channels=1)
    legacy.save_network_pkl(pkl, dict(G=None, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None))
    PIL.Image.fromarray(np.random.RandomState(1).randint(0, 256, [30, 44, 3]).astype(np.uint8)).save(tmp_path / 'target.jpg')
    outdir = tmp_path / 'out'
    result = click.testing.CliRunner().invoke(projector.run_projection, ['--network', pkl, '--target', str(tmp_path / 'target.jpg'),
        '--num-steps', '3', '--w-avg-samples', '20', '--outdir', str(outdir), '--device', 'cpu', '--save-video', 'false'])
    assert result.exit_code == 0, result.output
    assert 'step    3/3' in result.output
    for name in ['target.png', 'proj.png']:
        assert PIL.Image.open(outdir / name).size == (16, 16)
    with np.load(outdir / 'projected_w.npz') as data:
        assert data['w'].shape == (1, G.mapping.num_ws, 8)

def test_video_without_imageio_is_a_note(det_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'imageio', None) # Import fails as if not installed.
    G = tiny_generator()
    target = np.zeros([16, 16, 3], np.uint8)
    assert not projector.write_video(str(tmp_path / 'proj.mp4'), G, target, torch.zeros([2, G.mapping.num_ws, 8]))
    assert not (tmp_path / 'proj.mp4').exists()

@pytest.mark.parametrize('args, message', [
    (['--target', 'missing.png'], 'cannot read missing.png'),
    (['--network', 'missing.pkl'], 'missing.pkl'),
])
def test_bad_arguments(det_dir, tmp_path, args, message):
    pkl = str(tmp_path / 'net.pkl')
    legacy.save_network_pkl(pkl, dict(G=None, D=None, G_ema=tiny_generator(), augment_pipe=None, training_set_kwargs=None))
    PIL.Image.new('RGB', (20, 20)).save(tmp_path / 't.png')
    opts = {'--network': pkl, '--target': str(tmp_path / 't.png')}
    opts.update(zip(args[::2], args[1::2]))
    result = click.testing.CliRunner().invoke(projector.run_projection, [x for kv in opts.items() for x in kv] +
        ['--num-steps', '1', '--outdir', str(tmp_path / 'o'), '--device', 'cpu'])
    assert result.exit_code != 0 and message in result.output, result.output

# A generator without a mapping network (BigGAN) is a one-line error, not an AttributeError.
def test_generator_without_mapping(det_dir, tmp_path):
    from training import networks_biggan # pylint: disable=import-outside-toplevel
    pkl = str(tmp_path / 'biggan.pkl')
    G = networks_biggan.Generator(z_dim=16, c_dim=0, img_resolution=16, img_channels=3, ch=2)
    legacy.save_network_pkl(pkl, dict(G=None, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None))
    PIL.Image.new('RGB', (16, 16)).save(tmp_path / 't.png')
    result = click.testing.CliRunner().invoke(projector.run_projection, ['--network', pkl, '--target', str(tmp_path / 't.png'),
        '--num-steps', '1', '--outdir', str(tmp_path / 'o'), '--device', 'cpu'])
    assert result.exit_code == 1 and 'training.networks_biggan.Generator has no mapping network' in result.output, result.output
    assert isinstance(result.exception, SystemExit)

#----------------------------------------------------------------------------
