# Tests for avg_spectra.py: spectra of known signals (a sinusoid's peak bin, white noise's flat
# level), the dataset and generator averages against a naive numpy loop, the heat map and slice
# plots, and one-line errors that leave nothing behind.

import os
import pickle

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import avg_spectra
from torch_utils import persistence
from training import network_files
from training import networks_stylegan2

#----------------------------------------------------------------------------
# Independent reference: per image and channel, subtract the mean, multiply by the outer product
# of numpy Kaiser windows of unit energy, zero-pad to interp times the size, |FFT|^2; average.

def naive_spectrum(images, interp, beta, subtract_mean=True):
    _, channels, height, width = images.shape
    wy, wx = np.kaiser(height, beta), np.kaiser(width, beta)
    window = np.outer(wy / np.sqrt(np.sum(wy**2)), wx / np.sqrt(np.sum(wx**2)))
    total = np.zeros([height * interp, width * interp])
    for image in images.astype(np.float64):
        for channel in image:
            centred = channel - channel.mean() if subtract_mean else channel
            total += np.abs(np.fft.fft2(centred * window, s=total.shape))**2 / channels
    return total / len(images)

def run(args):
    return CliRunner().invoke(avg_spectra.main, args)

def assert_one_line_error(result):
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), (result.output, result.exception)
    assert result.output.strip().splitlines()[-1].startswith('Error: ')
    assert 'Traceback' not in result.output

#----------------------------------------------------------------------------
# Known signals.

@pytest.mark.parametrize('interp', [1, 2])
def test_sinusoid_peak_at_its_frequency(interp):
    fy, fx = 5, 3 # Cycles per image along rows and columns.
    y, x = np.meshgrid(np.arange(16), np.arange(16), indexing='ij')
    image = np.cos(2 * np.pi * (fx * x + fy * y) / 16)
    acc = avg_spectra.SpectrumAccumulator(16, 16, interp=interp, beta=8)
    acc.add(torch.from_numpy(image[None, None]))
    spectrum = acc.result()
    assert spectrum.shape == (16 * interp, 16 * interp)
    peak = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    assert peak in [(fy * interp, fx * interp), (16 * interp - fy * interp, 16 * interp - fx * interp)]
    np.testing.assert_allclose(spectrum, naive_spectrum(image[None, None], interp, 8), rtol=1e-9, atol=1e-12)

def test_white_noise_is_flat_at_its_variance():
    sigma = 0.5
    noise = np.random.RandomState(1).randn(400, 1, 32, 32) * sigma
    acc = avg_spectra.SpectrumAccumulator(32, 32, interp=1, beta=8)
    for start in range(0, 400, 100):
        acc.add(torch.from_numpy(noise[start : start + 100]))
    spectrum = acc.result()
    k = np.minimum(np.arange(32), 32 - np.arange(32)) # Distance from zero frequency, cyclic.
    away_from_dc = (k[:, None] > 4) | (k[None, :] > 4) # Mean subtraction and the window touch only these few bins.
    ratio = spectrum[away_from_dc] / sigma**2
    assert abs(ratio.mean() - 1) < 0.03
    assert np.quantile(np.abs(ratio - 1), 0.99) < 0.35

    # Zero frequency: the image mean is removed before windowing, so E|sum w(x - mean)|^2 = s^2 (1 - (sum w)^2 / N).
    wy = np.kaiser(32, 8) / np.sqrt(np.sum(np.kaiser(32, 8)**2))
    expected_dc = sigma**2 * (1 - np.sum(np.outer(wy, wy))**2 / 32**2)
    assert abs(spectrum[0, 0] / expected_dc - 1) < 0.25 and expected_dc < 0.7 * sigma**2

def test_window_has_unit_energy_and_is_kaiser():
    window = avg_spectra.spectrum_window(12, 20, beta=6).numpy()
    assert abs(np.sum(window**2) - 1) < 1e-12
    expected = np.outer(np.kaiser(12, 6), np.kaiser(20, 6))
    np.testing.assert_allclose(window, expected / np.sqrt(np.sum(expected**2)), rtol=1e-10)

#----------------------------------------------------------------------------
# calc on a dataset folder (RGB, a partial last batch) equals the naive loop; so do non-square batches.

def test_calc_dataset_matches_naive_loop(tmp_path):
    images = np.random.RandomState(0).randint(0, 256, size=[5, 16, 16, 3], dtype=np.uint8)
    (tmp_path / 'data').mkdir()
    for idx, image in enumerate(images):
        PIL.Image.fromarray(image).save(tmp_path / 'data' / f'img{idx}.png')
    result = run(['calc', f'--source={tmp_path / "data"}', f'--dest={tmp_path / "s.npz"}', '--batch=2', '--interp=2', '--beta=6', '--device=cpu'])
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / 's.npz') as npz:
        assert int(npz['num_images']) == 5 and list(npz['image_shape']) == [16, 16]
        expected = naive_spectrum(images.transpose(0, 3, 1, 2) / 127.5 - 1, 2, 6)
        np.testing.assert_allclose(npz['spectrum'], expected, rtol=1e-9, atol=1e-12)

def test_non_square_batches_match_naive_loop():
    images = np.random.RandomState(3).rand(7, 2, 6, 10) * 2 - 1
    acc = avg_spectra.SpectrumAccumulator(6, 10, interp=3, beta=4)
    for start in range(0, 7, 3):
        acc.add(torch.from_numpy(images[start : start + 3]))
    assert acc.num_images == 7
    np.testing.assert_allclose(acc.result(), naive_spectrum(images, 3, 4), rtol=1e-9, atol=1e-12)

def test_calc_dataset_subset(tmp_path):
    images = np.random.RandomState(2).randint(0, 256, size=[6, 8, 8], dtype=np.uint8)
    (tmp_path / 'data').mkdir()
    for idx, image in enumerate(images):
        PIL.Image.fromarray(image, 'L').save(tmp_path / 'data' / f'img{idx}.png')
    result = run(['calc', f'--source={tmp_path / "data"}', f'--dest={tmp_path / "s.npz"}', '--num=3', '--seed=4', '--interp=1', '--workers=0'])
    assert result.exit_code == 0, result.output
    chosen = np.arange(6)
    np.random.RandomState(4).shuffle(chosen)
    with np.load(tmp_path / 's.npz') as npz:
        assert int(npz['num_images']) == 3
        expected = naive_spectrum(images[np.sort(chosen[:3]), None] / 127.5 - 1, 1, 8)
        np.testing.assert_allclose(npz['spectrum'], expected, rtol=1e-9, atol=1e-12)

#----------------------------------------------------------------------------
# StyleGAN3's whitening: `stats` gives the pixel mean and std; calc --mean/--std divides by them
# and subtracts no per-image mean.

def test_stats_and_whitened_calc(tmp_path):
    images = np.random.RandomState(5).randint(0, 256, size=[4, 16, 16, 3], dtype=np.uint8)
    (tmp_path / 'data').mkdir()
    for idx, image in enumerate(images):
        PIL.Image.fromarray(image).save(tmp_path / 'data' / f'img{idx}.png')
    result = run(['stats', f'--source={tmp_path / "data"}', '--batch=3', '--workers=0'])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f'--mean={images.astype(np.float64).mean():g} --std={images.astype(np.float64).std():g}'
    result = run(['calc', f'--source={tmp_path / "data"}', f'--dest={tmp_path / "s.npz"}', '--interp=1', '--mean=100', '--std=50', '--workers=0'])
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / 's.npz') as npz:
        assert int(npz['image_size']) == 16
        expected = naive_spectrum((images.transpose(0, 3, 1, 2) - 100.0) / 50, 1, 8, subtract_mean=False)
        np.testing.assert_allclose(npz['spectrum'], expected, rtol=1e-9, atol=1e-12)

#----------------------------------------------------------------------------
# calc on a generator: seeds seed..seed+num-1, images quantised to 8 bits like saved images.

def test_calc_generator_matches_naive_loop(tmp_path):
    torch.manual_seed(0)
    G = networks_stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=16)).eval().requires_grad_(False)
    network_files.save_network_pkl(str(tmp_path / 'g.pkl'), dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None))
    result = run(['calc', f'--source={tmp_path / "g.pkl"}', f'--dest={tmp_path / "s.npz"}', '--num=3', '--seed=7', '--batch=3',
        '--interp=1', '--trunc=0.8', '--device=cpu'])
    assert result.exit_code == 0, result.output
    z = torch.from_numpy(np.concatenate([np.random.RandomState(seed).randn(1, 8) for seed in [7, 8, 9]])).float()
    img = G(z, torch.zeros([3, 0]), truncation_psi=0.8, noise_mode='const')
    quantised = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    with np.load(tmp_path / 's.npz') as npz:
        np.testing.assert_allclose(npz['spectrum'], naive_spectrum(quantised / 127.5 - 1, 1, 8), rtol=1e-9, atol=1e-12)

# A generator pickle whose embedded source was changed is refused unless --trust-code is given.
class _ChangedSourcePickler(pickle.Pickler):
    def reducer_override(self, obj):
        if persistence.is_persistent(obj) and not isinstance(obj, type):
            func, (meta,) = obj.__reduce__()
            return func, (dict(meta, module_src=meta['module_src'] + '\n_CHANGED_BY_SOMEONE_ELSE = 1\n'),)
        return NotImplemented

def test_calc_generator_trust_code(tmp_path):
    G = networks_stylegan2.Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=16, img_channels=1,
        mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=64, channel_max=4)).eval()
    with open(tmp_path / 'g.pkl', 'wb') as f:
        _ChangedSourcePickler(f).dump(dict(G=None, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None))
    args = ['calc', f'--source={tmp_path / "g.pkl"}', f'--dest={tmp_path / "s.npz"}', '--num=2', '--interp=1']
    result = run(args)
    assert_one_line_error(result)
    assert 'Refusing to load' in result.output and not os.path.exists(tmp_path / 's.npz')
    result = run(args + ['--trust-code'])
    assert result.exit_code == 0 and 'ran the code stored in the file' in result.output, result.output
    with np.load(tmp_path / 's.npz') as npz:
        assert int(npz['num_images']) == 2

# Conditional generators: each seed's class comes from its own RandomState right after z (StyleGAN3's rule).
def test_calc_conditional_generator_classes(tmp_path):
    torch.manual_seed(4)
    G = networks_stylegan2.Generator(z_dim=4, c_dim=5, w_dim=4, img_resolution=16, img_channels=1,
        mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=64, channel_max=4)).eval().requires_grad_(False)
    network_files.save_network_pkl(str(tmp_path / 'g.pkl'), dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None))
    result = run(['calc', f'--source={tmp_path / "g.pkl"}', f'--dest={tmp_path / "s.npz"}', '--num=3', '--seed=11', '--batch=3', '--interp=1'])
    assert result.exit_code == 0, result.output
    z, c = [], torch.zeros([3, 5])
    for idx, seed in enumerate([11, 12, 13]):
        rnd = np.random.RandomState(seed)
        z.append(rnd.randn(1, 4))
        c[idx, rnd.randint(5)] = 1
    img = G(torch.from_numpy(np.concatenate(z)).float(), c, noise_mode='const')
    quantised = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    with np.load(tmp_path / 's.npz') as npz:
        np.testing.assert_allclose(npz['spectrum'], naive_spectrum(quantised / 127.5 - 1, 1, 8), rtol=1e-9, atol=1e-12)

#----------------------------------------------------------------------------
# Smoothing: a circular Gaussian convolution of the dB map (naive sum of shifted copies, the kernel
# truncated at 4 sigma as scipy's); interp read from our files or from StyleGAN3's image_size.

def test_smoothing_is_circular_gaussian():
    db = np.random.RandomState(6).randn(12, 12) * 5
    sigma = 1.5
    radius = int(4 * sigma + 0.5)
    weights = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma)**2)
    weights /= weights.sum()
    expected = sum(wy * wx * np.roll(db, (dy, dx), axis=(0, 1))
        for dy, wy in zip(range(-radius, radius + 1), weights) for dx, wx in zip(range(-radius, radius + 1), weights))
    np.testing.assert_allclose(avg_spectra.spectrum_db(10**(db / 10), smooth_bins=sigma), expected, rtol=0, atol=1e-9)

def test_load_spectrum_interp(tmp_path):
    np.savez(tmp_path / 'ours.npz', spectrum=np.ones([24, 24]), interp=3)
    np.savez(tmp_path / 'original.npz', spectrum=np.ones([32, 32]), image_size=8)
    np.savez(tmp_path / 'bare.npz', spectrum=np.ones([8, 8]))
    assert [avg_spectra.load_spectrum(tmp_path / f'{name}.npz')[1] for name in ['ours', 'original', 'bare']] == [3, 4, 1]

#----------------------------------------------------------------------------
# Heat map: centred (zero frequency in the middle), the peak drawn white; slices: profiles and plot.

def test_heatmap_is_centred(tmp_path):
    y, x = np.meshgrid(np.arange(16), np.arange(16), indexing='ij')
    acc = avg_spectra.SpectrumAccumulator(16, 16, interp=1, beta=8)
    acc.add(torch.from_numpy(np.cos(2 * np.pi * (3 * x + 5 * y) / 16)[None, None]))
    np.savez(tmp_path / 's.npz', spectrum=acc.result())
    result = run(['heatmap', str(tmp_path / 's.npz'), f'--output={tmp_path / "h.png"}', '--scale=2', '--smooth=0'])
    assert result.exit_code == 0, result.output
    image = np.asarray(PIL.Image.open(tmp_path / 'h.png'))
    assert image.shape == (32, 32, 3)
    assert list(image[2 * (8 + 5), 2 * (8 + 3)]) == [255, 255, 255] and list(image[2 * (8 - 5), 2 * (8 - 3)]) == [255, 255, 255]
    assert np.sum(np.all(image == 255, axis=2)) == 2 * 4 # Just the two peaks (2x2 pixels each).

def test_heat_colors_endpoints():
    colors = avg_spectra.heat_colors(np.array([-1, 0, 0.5, 1, 2]))
    assert colors[0].tolist() == colors[1].tolist() == [0, 0, 0]
    assert colors[3].tolist() == colors[4].tolist() == [255, 255, 255]
    assert colors[2].tolist() == avg_spectra.HEAT_COLORS[2].tolist()

def test_slices(tmp_path):
    spectrum = np.random.RandomState(0).rand(8, 8) + 0.1
    slices = avg_spectra.spectrum_slices(spectrum)
    np.testing.assert_array_equal(slices['horizontal'][1], [spectrum[0, k] for k in range(5)])
    np.testing.assert_array_equal(slices['diagonal'][1], [spectrum[k, k] for k in range(5)])
    np.testing.assert_allclose(slices['horizontal'][0], [0, 0.125, 0.25, 0.375, 0.5])
    np.testing.assert_allclose(slices['diagonal'][0][-1], 0.5 * np.sqrt(2))
    np.savez(tmp_path / 'a.npz', spectrum=spectrum)
    np.savez(tmp_path / 'b.npz', spectrum=spectrum * 10)
    result = run(['slices', str(tmp_path / 'a.npz'), str(tmp_path / 'b.npz'), f'--output={tmp_path / "s.png"}'])
    assert result.exit_code == 0, result.output
    image = np.asarray(PIL.Image.open(tmp_path / 's.png'))
    for color in avg_spectra.PLOT_COLORS[:2]:
        assert np.sum(np.all(image == color, axis=2)) > 100 # Both lines (and their legend entries) are drawn.

#----------------------------------------------------------------------------
# Bad input: one line, nothing written.

def test_errors_leave_nothing(tmp_path):
    np.save(tmp_path / 'array.npy', np.zeros([4, 4]))
    np.savez(tmp_path / 'other.npz', x=np.zeros(3))
    np.savez(tmp_path / 'rect.npz', spectrum=np.ones([4, 8]))
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'data').mkdir()
    PIL.Image.fromarray(np.zeros([8, 8], dtype=np.uint8)).save(tmp_path / 'data' / 'one.png')
    cases = [
        (['calc', f'--source={tmp_path / "missing"}', f'--dest={tmp_path / "out.npz"}'], 'does not exist'),
        (['calc', f'--source={tmp_path / "missing.pkl"}', f'--dest={tmp_path / "out.npz"}'], 'missing.pkl'),
        (['calc', f'--source={tmp_path / "empty"}', f'--dest={tmp_path / "out.npz"}'], 'No image files'),
        (['heatmap', str(tmp_path / 'array.npy'), f'--output={tmp_path / "out.png"}'], '.npy array'),
        (['heatmap', str(tmp_path / 'other.npz'), f'--output={tmp_path / "out.png"}'], 'no array named "spectrum"'),
        (['heatmap', str(tmp_path / 'missing.npz'), f'--output={tmp_path / "out.png"}'], 'cannot read'),
        (['heatmap', str(tmp_path / 'rect.npz'), f'--output={tmp_path / "out.png"}', '--db-min=5', '--db-max=0'], 'below'),
        (['slices', str(tmp_path / 'rect.npz'), f'--output={tmp_path / "out.png"}'], 'square'),
        (['calc', f'--source={tmp_path / "data"}', f'--dest={tmp_path / "out.npz"}', '--num=3'], 'fewer than 3'),
        (['calc', f'--source={tmp_path / "data"}', f'--dest={tmp_path / "out.npz"}', '--mean=3'], 'both --mean and --std'),
    ]
    for args, message in cases:
        result = run(args)
        assert_one_line_error(result)
        assert message in result.output, result.output
    assert sorted(os.listdir(tmp_path)) == ['array.npy', 'data', 'empty', 'other.npz', 'rect.npz']

#----------------------------------------------------------------------------
