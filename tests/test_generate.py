# Tests for generate.py and style_mixing.py on tiny networks: images match the network's
# own output under the original seed convention; bad arguments end in one-line errors.

import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import generate
import legacy
import style_mixing
from training import networks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#----------------------------------------------------------------------------
# Tiny network files: unconditional RGB, conditional (3 classes) RGB, unconditional grayscale.

def write_net(path, c_dim=0, img_channels=3):
    torch.manual_seed(c_dim + 10 * img_channels)
    G = networks.Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=16, img_channels=img_channels,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=16))
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    G.eval().requires_grad_(False)
    legacy.save_network_pkl(str(path), dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None))
    return G

@pytest.fixture(scope='module')
def nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp('nets')
    return dict(
        uncond=(str(folder / 'uncond.pkl'), write_net(folder / 'uncond.pkl')),
        cond=(str(folder / 'cond.pkl'), write_net(folder / 'cond.pkl', c_dim=3)),
        gray=(str(folder / 'gray.pkl'), write_net(folder / 'gray.pkl', img_channels=1)),
    )

def run(cmd, args):
    return CliRunner().invoke(cmd, args)

def expected_image(G, seed, psi=1, class_idx=None):
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim))
    c = torch.zeros([1, G.c_dim])
    if class_idx is not None:
        c[0, class_idx] = 1
    img = G(z, c, truncation_psi=psi, noise_mode='const')
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()

#----------------------------------------------------------------------------
# The seed list type.

@pytest.mark.parametrize('text,expected', [('0-3,7', [0, 1, 2, 3, 7]), ('5', [5]), (' 2 - 4 , 9', [2, 3, 4, 9])])
def test_seed_list(text, expected):
    assert generate.IntRangeList().convert(text, None, None) == expected

@pytest.mark.parametrize('text', ['x', '1-', '3-1', '1,,2', '-4', '99999999999'])
def test_seed_list_errors(text):
    with pytest.raises(Exception) as info:
        generate.IntRangeList().convert(text, None, None)
    assert info.type.__name__ == 'BadParameter'

#----------------------------------------------------------------------------
# generate.py: one PNG per seed, equal to the network's output for z = RandomState(seed).randn(1, z_dim).

def test_generate_seeds(nets, tmp_path):
    path, G = nets['uncond']
    result = run(generate.generate_images_cmd, [f'--network={path}', '--seeds=0-2,5', '--trunc=0.7', f'--outdir={tmp_path}', '--batch=1', '--device=cpu'])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path)) == ['seed0000.png', 'seed0001.png', 'seed0002.png', 'seed0005.png']
    for seed in [0, 5]:
        image = PIL.Image.open(tmp_path / f'seed{seed:04d}.png')
        assert image.mode == 'RGB' and image.size == (16, 16)
        assert np.array_equal(np.asarray(image), expected_image(G, seed, psi=0.7))

def test_generate_batches_match(nets, tmp_path):
    path, _ = nets['uncond']
    for batch in [1, 3]:
        assert run(generate.generate_images_cmd, [f'--network={path}', '--seeds=0-3', f'--outdir={tmp_path / str(batch)}', f'--batch={batch}']).exit_code == 0
    for seed in range(4):
        a = np.asarray(PIL.Image.open(tmp_path / '1' / f'seed{seed:04d}.png')).astype(int)
        b = np.asarray(PIL.Image.open(tmp_path / '3' / f'seed{seed:04d}.png')).astype(int)
        assert np.abs(a - b).max() <= 1

def test_generate_conditional(nets, tmp_path):
    path, G = nets['cond']
    result = run(generate.generate_images_cmd, [f'--network={path}', '--seeds=3', '--class=2', f'--outdir={tmp_path}', '--batch=1'])
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'seed0003.png')), expected_image(G, 3, class_idx=2))

def test_generate_grayscale(nets, tmp_path):
    path, G = nets['gray']
    assert run(generate.generate_images_cmd, [f'--network={path}', '--seeds=1', f'--outdir={tmp_path}', '--batch=1']).exit_code == 0
    image = PIL.Image.open(tmp_path / 'seed0001.png')
    assert image.mode == 'L'
    assert np.array_equal(np.asarray(image), expected_image(G, 1)[:, :, 0])

def test_generate_projected_w(nets, tmp_path):
    path, G = nets['uncond']
    ws = torch.randn([2, G.num_ws, G.w_dim])
    np.savez(tmp_path / 'w.npz', w=ws.numpy())
    result = run(generate.generate_images_cmd, [f'--network={path}', f'--projected-w={tmp_path / "w.npz"}', f'--outdir={tmp_path / "out"}', '--batch=1'])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / 'out')) == ['proj00.png', 'proj01.png']
    img = G.synthesis(ws[1:], noise_mode='const')
    expected = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'out' / 'proj01.png')), expected)

def test_generate_from_safetensors(nets, tmp_path):
    path, G = nets['uncond']
    legacy.save_network_safetensors(str(tmp_path / 'net.safetensors'), legacy.load_network_pkl(path))
    result = run(generate.generate_images_cmd, [f'--network={tmp_path / "net.safetensors"}', '--seeds=4', f'--outdir={tmp_path / "out"}', '--batch=1'])
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'out' / 'seed0004.png')), expected_image(G, 4))

#----------------------------------------------------------------------------
# Bad arguments: nonzero exit, one-line error, no traceback, nothing written.

def bad_npz(tmp_path):
    np.savez(tmp_path / 'bad_w.npz', w=np.zeros([1, 3, 8], dtype=np.float32))
    np.save(tmp_path / 'w.npy', np.zeros([1, 6, 8], dtype=np.float32))
    return str(tmp_path / 'bad_w.npz')

@pytest.mark.parametrize('net,extra,match', [
    ('uncond', ['--seeds=x'], "'x' is not a list"),
    ('missing', ['--seeds=0'], 'No such file'),
    ('corrupt', ['--seeds=0'], 'not a valid network pickle'),
    ('cond', ['--seeds=0', '--class=3'], 'out of range'),
    ('cond', ['--seeds=0'], 'conditional; give --class'),
    ('uncond', ['--seeds=0', '--class=0'], 'unconditional'),
    ('uncond', [], 'either --seeds or --projected-w'),
    ('uncond', ['--seeds=0', '--noise-mode=loud'], "'loud' is not one of"),
    ('uncond', ['--projected-w=BAD_NPZ'], 'expected [N, 6, 8]'),
    ('uncond', ['--projected-w=NPY'], 'not an .npz archive'),
    ('uncond', ['--seeds=0', '--standing-stats=2'], 'only BigGAN generators'),
])
def test_generate_errors(nets, tmp_path, net, extra, match):
    paths = dict(missing=str(tmp_path / 'missing.pkl'), corrupt=str(tmp_path / 'corrupt.pkl'))
    (tmp_path / 'corrupt.pkl').write_bytes(b'\x80\x04garbage')
    network = paths.get(net) or nets[net][0]
    extra = [arg.replace('BAD_NPZ', bad_npz(tmp_path)).replace('NPY', str(tmp_path / 'w.npy')) for arg in extra]
    result = run(generate.generate_images_cmd, [f'--network={network}', f'--outdir={tmp_path / "out"}'] + extra)
    assert result.exit_code != 0
    assert match in result.output, result.output
    assert 'Traceback' not in result.output and isinstance(result.exception, SystemExit)
    assert len([line for line in result.output.splitlines() if line.startswith('Error')]) == 1
    assert not os.path.exists(tmp_path / 'out')

def test_generate_error_in_real_process(tmp_path):
    result = subprocess.run([sys.executable, 'generate.py', '--network=nope.pkl', '--seeds=x', f'--outdir={tmp_path / "out"}'],
        cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr and "Invalid value for '--seeds'" in result.stderr

#----------------------------------------------------------------------------
# style_mixing.py: grid layout and individual mixed images.

def test_style_mixing(nets, tmp_path):
    path, G = nets['uncond']
    result = run(style_mixing.generate_style_mix, [f'--network={path}', '--rows=0,1', '--cols=2-4', '--styles=0-2', '--trunc=0.8', f'--outdir={tmp_path}'])
    assert result.exit_code == 0, result.output
    files = set(os.listdir(tmp_path))
    assert {'grid.png', '0-2.png', '1-4.png', '0-0.png', '4-4.png'} <= files
    grid = np.asarray(PIL.Image.open(tmp_path / 'grid.png'))
    assert grid.shape == (16 * 3, 16 * 4, 3)
    assert (grid[:16, :16] == 0).all()
    tile = lambda row, col: grid[16 * row : 16 * (row + 1), 16 * col : 16 * (col + 1)]
    load = lambda name: np.asarray(PIL.Image.open(tmp_path / name))
    assert np.array_equal(tile(0, 1), load('2-2.png'))
    assert np.array_equal(tile(2, 0), load('1-1.png'))
    assert np.array_equal(tile(2, 3), load('1-4.png'))

    # The mixed image: row seed's w with layers 0-2 from the column seed, truncated by 0.8.
    ws = {}
    for seed in (1, 4):
        w = G.mapping(torch.from_numpy(np.random.RandomState(seed).randn(1, 8)), None)
        ws[seed] = G.mapping.w_avg + (w - G.mapping.w_avg) * 0.8
    mixed = ws[1].clone()
    mixed[:, :3] = ws[4][:, :3]
    img = G.synthesis(mixed, noise_mode='const')
    expected = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()
    assert np.abs(load('1-4.png').astype(int) - expected).max() <= 1

@pytest.mark.parametrize('extra,match', [
    (['--rows=0', '--cols=1', '--styles=0-6'], 'out of range'),
    (['--rows=x', '--cols=1'], "'x' is not a list"),
])
def test_style_mixing_errors(nets, tmp_path, extra, match):
    result = run(style_mixing.generate_style_mix, [f'--network={nets["uncond"][0]}', f'--outdir={tmp_path / "out"}'] + extra)
    assert result.exit_code != 0 and match in result.output, result.output
    assert 'Traceback' not in result.output
    assert not os.path.exists(tmp_path / 'out')

def test_style_mixing_grayscale_conditional(tmp_path):
    write_net(tmp_path / 'net.pkl', c_dim=2, img_channels=1)
    result = run(style_mixing.generate_style_mix, [f'--network={tmp_path / "net.pkl"}', '--rows=0', '--cols=1', '--styles=1', '--class=1', f'--outdir={tmp_path / "out"}'])
    assert result.exit_code == 0, result.output
    assert PIL.Image.open(tmp_path / 'out' / 'grid.png').mode == 'L'

#----------------------------------------------------------------------------

#----------------------------------------------------------------------------
# style_mixing.py on a generator without a mapping network (BigGAN): one line, nothing written.

def test_style_mixing_biggan_is_one_line(tmp_path):
    biggan = os.path.join(ROOT, 'tests', 'fixtures', 'snapshot-9dd6ba4-biggan.pkl')
    result = run(style_mixing.generate_style_mix, [f'--network={biggan}', '--rows=0', '--cols=1', f'--outdir={tmp_path / "out"}'])
    assert result.exit_code != 0 and 'no mapping network' in result.output, result.output
    assert 'Traceback' not in result.output and not os.path.exists(tmp_path / 'out')
