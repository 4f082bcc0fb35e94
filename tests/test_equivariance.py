# Tests of metrics/equivariance.py: the image motions against naive numpy formulations, and the
# metrics eqt50k_int, eqt50k_frac and eqr50k on a generator that is exactly equivariant by construction
# (it samples a band-limited continuous function at transformed coordinates), on one that is not (it
# ignores the transform), and on a tiny StyleGAN3 generator.

import numpy as np
import pytest
import torch

from metrics import equivariance
from metrics import metric_main
from training import networks_stylegan2
from training import networks_stylegan3

#----------------------------------------------------------------------------
# Toy generators: images are sums of low-frequency sinusoids of the (transformed) coordinates.

class ToyInput(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer('transform', torch.eye(3))

class ToySynthesis(torch.nn.Module):
    def __init__(self, res, equivariant):
        super().__init__()
        self.res, self.equivariant = res, equivariant
        self.input = ToyInput()
        gen = torch.Generator().manual_seed(0)
        self.register_buffer('freqs', (torch.rand([3, 6, 2], generator=gen) * 2 - 1) * (res / 10)) # [C, K, xy] cycles per image.

    def forward(self, ws, noise_mode='const'):
        p = (torch.arange(self.res, dtype=torch.float64) + 0.5) / self.res - 0.5
        py, px = torch.meshgrid(p, p, indexing='ij')
        m = self.input.transform.double() if self.equivariant else torch.eye(3, dtype=torch.float64)
        qx, qy = m[0, 0] * px + m[0, 1] * py + m[0, 2], m[1, 0] * px + m[1, 1] * py + m[1, 2]
        phase = ws[:, 0, :6].double()[:, None, :, None, None] # [N, 1, K, 1, 1]
        f = self.freqs.double()[None, :, :, :, None, None] # [1, C, K, 2, 1, 1]
        arg = f[:, :, :, 0] * qx + f[:, :, :, 1] * qy + phase
        return (torch.sin(2 * np.pi * arg).sum(2) / 6).float()

class ToyMapping(torch.nn.Module):
    def forward(self, z, c, **kwargs):
        return z[:, None, :]

class ToyG(torch.nn.Module):
    def __init__(self, res=32, equivariant=True):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.img_resolution, self.img_channels = 8, 0, 8, res, 3
        self.mapping = ToyMapping()
        self.synthesis = ToySynthesis(res, equivariant)

#----------------------------------------------------------------------------
# Naive motions: per-pixel loops over the formulas.

def naive_fractional_shift_1d(row, d, a=3):
    n = len(row)
    k, f = int(np.floor(d)), d - np.floor(d)
    js = np.arange(-a, a)
    taps = np.sinc(f + js) * np.sinc((f + js) / a)
    taps /= taps.sum()
    out, mask = np.zeros(n), np.zeros(n)
    for i in range(n):
        src = i - k + js
        out[i] = sum(t * row[s] for t, s in zip(taps, src) if 0 <= s < n)
        mask[i] = float(src.min() >= 0 and src.max() < n)
    return out, mask

def test_integer_translation():
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    y, mask = equivariance.integer_translation(x, 2, -1)
    expected = np.zeros(x.shape)
    expected[:, :, :5, 2:] = x.numpy()[:, :, 1:, :5]
    np.testing.assert_array_equal(y.numpy(), expected)
    assert mask.sum() == 2 * 3 * 5 * 5 and float((y * (1 - mask)).abs().max()) == 0
    y, mask = equivariance.integer_translation(x, 7, 0)
    assert float(mask.sum()) == 0

@pytest.mark.parametrize('tx,ty', [(1.3, -2.6), (-0.25, 0.0), (3.0, 0.5)])
def test_fractional_translation_matches_naive(tx, ty):
    x = torch.randn(1, 2, 12, 14, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y, mask = equivariance.fractional_translation(x, tx, ty)
    xn = x.numpy()
    stage = np.stack([[naive_fractional_shift_1d(xn[0, c, r], tx)[0] for r in range(12)] for c in range(2)])
    expected = np.stack([np.stack([naive_fractional_shift_1d(stage[c, :, col], ty)[0] for col in range(14)], axis=1) for c in range(2)])
    np.testing.assert_allclose(y[0].numpy(), expected, atol=1e-12)
    mx = naive_fractional_shift_1d(np.zeros(14), tx)[1]
    my = naive_fractional_shift_1d(np.zeros(12), ty)[1]
    np.testing.assert_array_equal(mask[0, 0].numpy(), np.outer(my, mx))

def test_rotation_of_band_limited_image():
    # Rotating the samples of a smooth function ~ sampling the rotated function (inside the mask).
    G = ToyG(res=48)
    ws = torch.rand(1, 1, 8)
    img = G.synthesis(ws)
    angle = 0.7
    rotated = equivariance.lanczos_rotation(img, angle)
    G.synthesis.input.transform.copy_(equivariance.input_transform(angle=angle))
    truth = equivariance.lanczos_rotation(G.synthesis(ws), 0.0)
    mask = equivariance.rotation_mask(img.shape, angle, margin_px=4)
    err = float(((rotated - truth).square() * mask).sum() / mask.sum())
    assert err < 1e-4 and float(mask.mean()) > 0.3

#----------------------------------------------------------------------------
# The metrics: exact equivariance scores far above a generator that ignores the transform.

def run_metric(name, G):
    return metric_main.calc_metric(name, G=G, device='cpu', max_items=8).results[name]

@pytest.mark.parametrize('name,good', [('eqt50k_int', 100), ('eqt50k_frac', 50), ('eqr50k', 50)])
def test_metrics_on_equivariant_and_not(name, good):
    assert metric_main.is_valid_metric(name)
    equivariant, broken = run_metric(name, ToyG()), run_metric(name, ToyG(equivariant=False))
    assert equivariant > good, equivariant
    assert broken < 25, broken # Low-frequency content: a wrong image still correlates a little.

def test_metric_on_tiny_stylegan3():
    torch.manual_seed(0)
    G = networks_stylegan3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=256,
        channel_max=8, num_layers=4)
    transform = G.synthesis.input.transform.clone()
    value = run_metric('eqt50k_int', G)
    assert np.isfinite(value) and value > 20
    assert torch.equal(G.synthesis.input.transform, transform) # The user's G is untouched.

def test_metric_needs_stylegan3():
    G = networks_stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
        synthesis_kwargs=dict(channel_base=64, channel_max=8))
    with pytest.raises(ValueError, match='need a StyleGAN3 generator'):
        run_metric('eqr50k', G)

#----------------------------------------------------------------------------
