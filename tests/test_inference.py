# training.inference: latents from seeds, and BigGAN's truncation seeded per seed in the image tools.

import numpy as np
import PIL.Image
import torch

import generate
from training import inference
from training import networks_biggan
from training import networks_stylegan2

#----------------------------------------------------------------------------
# The naive formulation: one element at a time, redrawing in index order from the seed's own stream.

def _naive_truncated_z(seed, z_dim, threshold=2.0):
    rnd = np.random.RandomState(seed)
    z = list(rnd.randn(z_dim))
    while True:
        outside = [i for i in range(z_dim) if abs(z[i]) > threshold]
        if not outside:
            return np.array(z)
        for i, value in zip(outside, rnd.randn(len(outside))):
            z[i] = value

def test_seeds_to_z():
    seeds = [0, 5, 123]
    plain = inference.seeds_to_z(seeds, 512)
    np.testing.assert_array_equal(plain[1], np.random.RandomState(5).randn(512)) # The original convention.
    assert np.abs(plain).max() > 2 # Some elements need redraws.
    truncated = inference.seeds_to_z(seeds, 512, truncate=True)
    assert np.abs(truncated).max() <= 2
    for row, seed in zip(truncated, seeds):
        np.testing.assert_array_equal(row, _naive_truncated_z(seed, 512))

#----------------------------------------------------------------------------
# generate.py with BigGAN and psi < 1: each seed's image is the same in any batch and whatever torch's RNG.

def test_biggan_truncation_is_seeded(tmp_path):
    torch.manual_seed(0)
    G = networks_biggan.Generator(z_dim=16, c_dim=2, img_resolution=16, img_channels=1, ch=1).eval().requires_grad_(False)
    seeds = [0, 1, 2, 3]
    assert np.abs(inference.seeds_to_z(seeds, 16)).max() > 2 # Without the seeded redraws torch's RNG would decide.
    torch.manual_seed(1)
    generate.generate_images(G, seeds, str(tmp_path / 'a'), truncation_psi=0.5, class_idx=1, batch_size=4)
    torch.manual_seed(2)
    generate.generate_images(G, seeds, str(tmp_path / 'b'), truncation_psi=0.5, class_idx=1, batch_size=1)
    for seed in seeds:
        a, b = (np.asarray(PIL.Image.open(tmp_path / run / f'seed{seed:04d}.png')) for run in 'ab')
        np.testing.assert_array_equal(a, b)
    assert inference.biggan_truncation(G, 0.5) and not inference.biggan_truncation(G, 1)
    G2 = networks_stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=1,
        mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=64, channel_max=8))
    assert not inference.biggan_truncation(G2, 0.5) # StyleGAN truncates in W.
