# Tests for gen_video.py on tiny networks: the keyframe layout, the periodic spline (through the
# keyframes, looping, smooth at the loop), frames equal to the generator's own images at the
# keyframes, PNG and video output, and one-line errors that leave nothing behind.

import os
import pickle
import sys

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import gen_video
from torch_utils import persistence
from training import network_files
from training import networks_biggan
from training import networks_stylegan2
from training import networks_stylegan3

#----------------------------------------------------------------------------
# Tiny networks pickled once per module.

def tiny_stylegan2(c_dim=0):
    torch.manual_seed(1)
    G = networks_stylegan2.Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=16))
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    return G.eval().requires_grad_(False)

def write(G, path):
    network_files.save_network_pkl(str(path), dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None))
    return str(path)

@pytest.fixture(scope='module')
def nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp('nets')
    torch.manual_seed(2)
    G3 = networks_stylegan3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=256,
        channel_max=16, num_layers=4).eval().requires_grad_(False)
    torch.manual_seed(3)
    Gb = networks_biggan.Generator(z_dim=16, c_dim=2, img_resolution=16, img_channels=1, ch=1).eval().requires_grad_(False)
    G2, G2c = tiny_stylegan2(), tiny_stylegan2(c_dim=3)
    return dict(sg2=(write(G2, folder / 'sg2.pkl'), G2), sg2c=(write(G2c, folder / 'sg2c.pkl'), G2c),
        sg3=(write(G3, folder / 'sg3.pkl'), G3), biggan=(write(Gb, folder / 'biggan.pkl'), Gb))

def run(args):
    return CliRunner().invoke(gen_video.generate_video_cmd, args)

def z_of(seeds, z_dim):
    return torch.from_numpy(np.concatenate([np.random.RandomState(s).randn(1, z_dim) for s in seeds])).float()

def to_uint8(img):
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()

def read_frames(folder):
    names = sorted(os.listdir(folder))
    return names, [np.asarray(PIL.Image.open(os.path.join(folder, name))) for name in names]

#----------------------------------------------------------------------------
# --grid takes WxH or W,H.

@pytest.mark.parametrize('text,expected', [('4x2', (4, 2)), (' 3 , 1 ', (3, 1)), ('1x1', (1, 1))])
def test_parse_grid(text, expected):
    assert gen_video.parse_grid(None, None, text) == expected

#----------------------------------------------------------------------------
# Keyframe layout: seeds cycled over [grid_h, grid_w, K] (keyframes fastest), shuffled by a seed.

def test_layout_seeds():
    grid = gen_video.layout_seeds([10, 11, 12], grid_w=2, grid_h=1, num_keyframes=2)
    assert grid.tolist() == [[[10, 11], [12, 10]]]
    shuffled = gen_video.layout_seeds(list(range(12)), grid_w=3, grid_h=2, num_keyframes=2, shuffle_seed=5)
    expected = np.arange(12)
    np.random.RandomState(5).shuffle(expected)
    assert shuffled.shape == (2, 3, 2) and shuffled.reshape(-1).tolist() == expected.tolist()

#----------------------------------------------------------------------------
# The spline passes exactly through the keyframes, has period K, and its first and second
# derivatives agree on both sides of the loop point.

@pytest.mark.parametrize('num_keyframes', [1, 2, 5])
def test_periodic_spline(num_keyframes):
    keyframes = np.random.RandomState(num_keyframes).randn(2, 3, num_keyframes, 4, 5)
    spline = gen_video.periodic_spline(keyframes)
    for j in range(num_keyframes):
        np.testing.assert_allclose(spline(j), keyframes[:, :, j], rtol=0, atol=1e-12)
        np.testing.assert_allclose(spline(j + num_keyframes), keyframes[:, :, j], rtol=0, atol=1e-12)
    for t in [0.3, 1.7, 2.25]:
        np.testing.assert_allclose(spline(t + num_keyframes), spline(t), rtol=0, atol=1e-10)
    eps = 1e-7
    for nu in [1, 2]:
        np.testing.assert_allclose(spline(num_keyframes - eps, nu), spline(eps, nu), rtol=0, atol=1e-4)
    if num_keyframes == 1:
        np.testing.assert_allclose(spline(0.5), keyframes[:, :, 0], rtol=0, atol=1e-12) # Constant.
    else:
        assert not np.allclose(spline(0.5), keyframes[:, :, 0]) # Moves between keyframes.

#----------------------------------------------------------------------------
# PNG frames of a StyleGAN2 grid: K * w_frames files; keyframe frames are the generator's images
# for the cell's seeds, tiled left to right.

def test_png_frames_stylegan2(nets, tmp_path):
    path, G = nets['sg2']
    out = tmp_path / 'frames'
    result = run([f'--network={path}', '--seeds=0-3', '--grid=2x1', '--w-frames=2', '--trunc=0.7', f'--output={out}', '--png-frames', '--device=cpu'])
    assert result.exit_code == 0, result.output
    names, frames = read_frames(out)
    assert names == [f'frame{idx:06d}.png' for idx in range(4)]
    for frame_idx, cell_seeds in [(0, [0, 2]), (2, [1, 3])]:
        img = to_uint8(G(z_of(cell_seeds, 8), torch.zeros([2, 0]), truncation_psi=0.7, noise_mode='const'))
        np.testing.assert_array_equal(frames[frame_idx], np.concatenate(list(img), axis=1))
    assert frames[1].shape == (16, 32, 3)
    assert not np.array_equal(frames[1], frames[0]) and not np.array_equal(frames[1], frames[2])
    assert [name for name in os.listdir(tmp_path)] == ['frames'] # No temporary folder left.

def test_png_frames_conditional_rows(nets, tmp_path):
    path, G = nets['sg2c']
    out = tmp_path / 'frames'
    result = run([f'--network={path}', '--seeds=5,6', '--grid=1x2', '--w-frames=1', '--class=2', f'--output={out}', '--png-frames', '--batch=1'])
    assert result.exit_code == 0, result.output
    _, frames = read_frames(out)
    assert len(frames) == 1 and frames[0].shape == (32, 16, 3)
    c = torch.zeros([2, 3])
    c[:, 2] = 1
    img = to_uint8(G(z_of([5, 6], 8), c, noise_mode='const'))
    assert np.abs(frames[0].astype(int) - np.concatenate(list(img), axis=0)).max() <= 1 # Batch 1 vs 2: rounding only.

def test_png_frames_stylegan3(nets, tmp_path):
    path, G = nets['sg3']
    result = run([f'--network={path}', '--seeds=4,9', '--w-frames=1', f'--output={tmp_path / "f"}', '--png-frames'])
    assert result.exit_code == 0, result.output
    _, frames = read_frames(tmp_path / 'f')
    for frame, seed in zip(frames, [4, 9]):
        np.testing.assert_array_equal(frame, to_uint8(G(z_of([seed], 8), torch.zeros([1, 0])))[0])

# Generators without mapping/synthesis (BigGAN): z is interpolated; grayscale frames.
def test_png_frames_biggan(nets, tmp_path):
    path, G = nets['biggan']
    result = run([f'--network={path}', '--seeds=1,2', '--w-frames=3', '--class=1', f'--output={tmp_path / "f"}', '--png-frames'])
    assert result.exit_code == 0, result.output
    _, frames = read_frames(tmp_path / 'f')
    assert len(frames) == 6 and frames[0].shape == (16, 16)
    c = torch.tensor([[0.0, 1.0]])
    for frame_idx, seed in [(0, 1), (3, 2)]:
        np.testing.assert_array_equal(frames[frame_idx], to_uint8(G(z_of([seed], 16), c))[0, :, :, 0])

# BigGAN truncation is applied once to the keyframe z (these seeds need no redraws: |z| <= 2), then
# frames render with psi = 1; psi outside [0, 1] is a one-line error.
def test_biggan_truncation(nets, tmp_path):
    path, G = nets['biggan']
    assert z_of([3], 16).abs().max() <= 2
    result = run([f'--network={path}', '--seeds=3', '--w-frames=1', '--class=0', '--trunc=0.5', f'--output={tmp_path / "f"}', '--png-frames'])
    assert result.exit_code == 0, result.output
    _, frames = read_frames(tmp_path / 'f')
    np.testing.assert_array_equal(frames[0], to_uint8(G(0.5 * z_of([3], 16), torch.tensor([[1.0, 0.0]])))[0, :, :, 0])
    result = run([f'--network={path}', '--seeds=3', '--class=0', '--trunc=1.5', f'--output={tmp_path / "g"}', '--png-frames'])
    assert result.exit_code == 2 and '--trunc' in result.output and not os.path.exists(tmp_path / 'g')

#----------------------------------------------------------------------------
# Video output (needs the `video` extra); without it, a one-line error naming the extra.

def test_video(nets, tmp_path):
    imageio = pytest.importorskip('imageio')
    pytest.importorskip('imageio_ffmpeg')
    path, _ = nets['sg2']
    result = run([f'--network={path}', '--seeds=0-5', '--grid=3x1', '--w-frames=2', f'--output={tmp_path / "v.mp4"}', '--fps=10'])
    assert result.exit_code == 0, result.output
    with imageio.get_reader(str(tmp_path / 'v.mp4')) as reader:
        frames = [frame for frame in reader]
    assert len(frames) == 4 and frames[0].shape == (16, 48, 3)
    assert os.listdir(tmp_path) == ['v.mp4']

def test_video_without_extra(nets, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'imageio', None)
    path, _ = nets['sg2']
    result = run([f'--network={path}', '--seeds=0', f'--output={tmp_path / "v.mp4"}'])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f'Error: {gen_video.VIDEO_HINT}']
    assert 'pip install .[video]' in result.output and os.listdir(tmp_path) == []

#----------------------------------------------------------------------------
# A pickle whose embedded source was changed loads only with --trust-code (as in generate.py).

class _ChangedSourcePickler(pickle.Pickler):
    def reducer_override(self, obj):
        if persistence.is_persistent(obj) and not isinstance(obj, type):
            func, (meta,) = obj.__reduce__()
            return func, (dict(meta, module_src=meta['module_src'] + '\n_CHANGED_BY_SOMEONE_ELSE = 1\n'),)
        return NotImplemented

def test_trust_code(nets, tmp_path):
    path = tmp_path / 'changed.pkl'
    with open(path, 'wb') as f:
        _ChangedSourcePickler(f).dump(dict(G=None, D=None, G_ema=nets['sg2'][1], augment_pipe=None, training_set_kwargs=None))
    args = [f'--network={path}', '--seeds=0', '--w-frames=1', f'--output={tmp_path / "f"}', '--png-frames']
    result = run(args)
    assert result.exit_code == 1 and result.output.strip().splitlines()[-1].startswith('Error: Refusing to load')
    assert '--trust-code' in result.output and not os.path.exists(tmp_path / 'f')
    result = run(args + ['--trust-code'])
    assert result.exit_code == 0, result.output
    assert 'ran the code stored in the file' in result.output and len(os.listdir(tmp_path / 'f')) == 1

#----------------------------------------------------------------------------
# Bad input: one line, nothing written.

@pytest.mark.parametrize('args,message', [
    (['--network={missing}', '--seeds=0'], 'missing.pkl'),
    (['--seeds=0', '--grid=3by2'], 'not a grid size'),
    (['--seeds=0', '--grid=0x2'], 'not a grid size'),
    (['--seeds=0-4', '--grid=2x2'], 'do not fill a 2x2 grid'),
    (['--seeds=0', '--class=1'], 'unconditional'),
    (['--seeds=0', '--num-keyframes=0'], '--num-keyframes'),
])
def test_bad_input(nets, tmp_path, args, message):
    args = [arg.format(missing=tmp_path / 'missing.pkl') for arg in args]
    if not any(arg.startswith('--network') for arg in args):
        args.append(f'--network={nets["sg2"][0]}')
    result = run(args + [f'--output={tmp_path / "out"}', '--png-frames'])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines()[-1].startswith('Error: ') and message in result.output, result.output
    assert os.listdir(tmp_path) == []

def test_bad_output(nets, tmp_path):
    (tmp_path / 'full').mkdir()
    (tmp_path / 'full' / 'keep.txt').write_text('x')
    path = nets['sg2'][0]
    result = run([f'--network={path}', '--seeds=0', f'--output={tmp_path / "full"}', '--png-frames'])
    assert result.exit_code == 2 and 'not an empty folder' in result.output
    result = run([f'--network={path}', '--seeds=0', f'--output={tmp_path / "full"}'])
    assert result.exit_code == 2 and 'is a folder' in result.output
    assert os.listdir(tmp_path / 'full') == ['keep.txt'] and os.listdir(tmp_path) == ['full']

#----------------------------------------------------------------------------
