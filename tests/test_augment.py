# Tests for training.augment: ADA AugmentPipe, checked against numpy / float64 formulations (its p,
# random draws, pickles and errors: test_augment_state.py).

import math

import numpy as np
import pytest
import scipy.ndimage
import torch

from torch_utils.ops import conv2d_gradfix
from torch_utils.ops import grid_sample_gradfix
from torch_utils.ops import upfirdn2d
from training import augment
from training.augment import AugmentPipe, augpipe_specs

#----------------------------------------------------------------------------
# Helpers.

def make_pipe(p=1.0, **kwargs):
    pipe = AugmentPipe(**kwargs)
    pipe.p.fill_(p)
    return pipe

def smooth_images(n, c, size, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(size).double(), torch.arange(size).double(), indexing='ij')
    a = torch.rand([n, c, 1, 1], generator=gen, dtype=torch.float64) * 2 * math.pi
    b = torch.rand([n, c, 1, 1], generator=gen, dtype=torch.float64) * 2 * math.pi
    img = 0.5 * torch.sin(2 * math.pi * 1.1 * x / size + a) * torch.cos(2 * math.pi * 0.8 * y / size + b)
    return img.float()

def random_images(n, c, size, seed=0):
    return torch.rand([n, c, size, size], generator=torch.Generator().manual_seed(seed)) * 2 - 1

# Make an op module attribute raise when called (to prove it is not used).
def forbid(monkeypatch, module, name):
    def boom(*args, **kwargs):
        raise AssertionError(f'{module.__name__}.{name} must not be called')
    monkeypatch.setattr(module, name, boom)

# Forbid every resampling / filtering op.
def forbid_resampling(monkeypatch):
    forbid(monkeypatch, grid_sample_gradfix, 'grid_sample')
    forbid(monkeypatch, upfirdn2d, 'upfirdn2d')
    forbid(monkeypatch, upfirdn2d, 'upsample2d')
    forbid(monkeypatch, conv2d_gradfix, 'conv2d')

#----------------------------------------------------------------------------
# p = 0: same tensor back, no op called, no random numbers drawn.

@pytest.mark.parametrize('name', sorted(augpipe_specs))
def test_identity_at_p0_does_no_work(name, monkeypatch):
    forbid_resampling(monkeypatch)
    forbid(monkeypatch, augment, 'blit_images')
    pipe = AugmentPipe(**augpipe_specs[name])
    x = random_images(3, 3, 16)
    rng = torch.get_rng_state()
    assert pipe(x) is x
    assert torch.equal(torch.get_rng_state(), rng)

#----------------------------------------------------------------------------
# Blits are exact copies and never resample.

def test_xflip_is_exact(monkeypatch):
    forbid_resampling(monkeypatch)
    x = random_images(64, 3, 16)
    torch.manual_seed(1)
    y = make_pipe(xflip=1)(x)
    same = (y == x).flatten(1).all(1)
    flipped = (y == x.flip(3)).flatten(1).all(1)
    assert bool((same | flipped).all()) and same.any() and flipped.any()

def test_rotate90_is_exact(monkeypatch):
    forbid_resampling(monkeypatch)
    x = random_images(64, 3, 16)
    torch.manual_seed(2)
    y = make_pipe(rotate90=1)(x)
    matches = torch.stack([(y == torch.rot90(x, k, dims=[2, 3])).flatten(1).all(1) for k in range(4)])
    assert bool((matches.sum(0) == 1).all())
    assert bool(matches.any(1).all())                       # Every rotation occurs.

def test_xint_is_reflect_padded_integer_shift(monkeypatch):
    forbid_resampling(monkeypatch)
    size, n = 16, 32
    x = random_images(n, 1, size)
    torch.manual_seed(3)
    y = make_pipe(xint=1)(x).numpy()
    r = round(0.125 * size)
    shifts = [(dx, dy) for dx in range(-r, r + 1) for dy in range(-r, r + 1)]
    seen = set()
    for i in range(n):
        padded = np.pad(x[i, 0].numpy(), r, mode='reflect')
        found = [(dx, dy) for dx, dy in shifts
                 if np.array_equal(y[i, 0], padded[r - dy:r - dy + size, r - dx:r - dx + size])]
        assert len(found) == 1
        seen.add(found[0])
    assert len(seen) > 5

def test_blit_pipeline_never_resamples(monkeypatch):
    forbid_resampling(monkeypatch)
    x = random_images(8, 3, 16)
    y = make_pipe(**augpipe_specs['blit'])(x)
    assert y.shape == x.shape

def test_blit_images_matches_numpy():
    ref = torch.zeros(2)
    G = augment._scale2d(torch.tensor([-1.0, 1.0]), 1, ref) @ augment._translate2d(torch.tensor([5.0, -20.0]), torch.tensor([-3.0, 7.0]), ref)
    x = random_images(2, 2, 8)
    y = augment.blit_images(x, G).numpy()
    for i in range(2):
        tx, ty = int(G[i, 0, 2]), int(G[i, 1, 2])
        padded = np.pad(x[i].numpy(), ((0, 0), (30, 30), (30, 30)), mode='reflect')
        expect = padded[:, 30 + ty:30 + ty + 8, 30 + tx:30 + tx + 8]
        if G[i, 0, 0] < 0:                                  # out(x) = in(flip(x) + t): flip the shifted grid.
            cols = (7 - np.arange(8)) + tx
            expect = padded[:, 30 + ty:30 + ty + 8, 30 + cols]
        np.testing.assert_array_equal(y[i], expect)

#----------------------------------------------------------------------------
# General geometric resampling: out(x) = in(G x), checked against the analytic image.

@pytest.mark.parametrize('theta,tx,ty,s', [(0, 0, 0, 1), (0, 0.5, -0.25, 1), (0.4, 1.3, -2.7, 1), (-1.0, 0, 0, 1.2)])
def test_resample_matches_analytic(theta, tx, ty, s):
    size = 32
    fn = lambda x, y: torch.sin(2 * math.pi * 1.3 * x / size + 0.3) * torch.cos(2 * math.pi * 0.7 * y / size + 0.2)
    y, x = torch.meshgrid(torch.arange(size).double(), torch.arange(size).double(), indexing='ij')
    img = fn(x, y)[None, None].float()
    c = (size - 1) / 2
    cx, cy = x - c, y - c
    sx = s * (math.cos(theta) * cx - math.sin(theta) * cy) + tx + c
    sy = s * (math.sin(theta) * cx + math.cos(theta) * cy) + ty + c
    ref = torch.zeros(1)
    G = augment._translate2d(torch.tensor([tx]), torch.tensor([ty]), ref) @ augment._scale2d(s, s, ref) \
        @ augment._rotate2d(torch.tensor([math.cos(theta)]), torch.tensor([math.sin(theta)]), ref)
    out = augment.resample_images(img, G, AugmentPipe().geom_filter)
    err = (out[0, 0] - fn(sx, sy).float()).abs()[10:-10, 10:-10]
    assert err.max() < 3e-3

def test_geometric_keeps_constant_image():
    x = torch.full([16, 3, 16, 16], 0.3)
    torch.manual_seed(4)
    y = make_pipe(**augpipe_specs['bg'])(x)
    assert torch.allclose(y, x, atol=1e-5)

def test_blit_and_general_resample_once_combined(monkeypatch):
    calls = []
    orig = grid_sample_gradfix.grid_sample
    def counting(input, grid):
        calls.append(input.shape[0])
        return orig(input, grid)
    monkeypatch.setattr(grid_sample_gradfix, 'grid_sample', counting)

    # scale_std = 0: the general transform is the identity, so the resampled result is the blit.
    x = smooth_images(32, 1, 32)
    torch.manual_seed(5)
    y = make_pipe(xflip=1, rotate90=1, scale=1, scale_std=0)(x)
    assert calls == [32]
    dihedral = [t for k in range(4) for t in (torch.rot90(x, k, [2, 3]), torch.rot90(x.flip(3), k, [2, 3]))]
    err = torch.stack([(y - t).abs().flatten(1).amax(1) for t in dihedral])
    assert bool((err.amin(0) < 1e-5).all())

def test_only_images_with_general_ops_are_resampled(monkeypatch):
    calls = []
    orig = grid_sample_gradfix.grid_sample
    monkeypatch.setattr(grid_sample_gradfix, 'grid_sample', lambda input, grid: calls.append(input.shape[0]) or orig(input, grid))
    x = random_images(64, 3, 16)
    torch.manual_seed(6)
    y = make_pipe(p=0.5, xflip=1, scale=1)(x)
    exact = ((y == x) | (y == x.flip(3))).flatten(1).all(1)
    assert len(calls) == 1 and 0 < calls[0] < 64
    assert int(exact.sum()) == 64 - calls[0]

def test_non_square_images():
    x = torch.full([8, 3, 16, 24], 0.25)
    torch.manual_seed(21)
    y = make_pipe(xflip=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1)(x)
    assert y.shape == x.shape
    assert torch.allclose(y, y.mean(dim=(1, 2, 3), keepdim=True).expand_as(y), atol=1e-5)  # Constant stays constant.
    z = random_images(16, 1, 12)[:, :, :, :8]                        # [N, 1, 12, 8]
    torch.manual_seed(22)
    w = make_pipe(xflip=1)(z)
    assert bool(((w == z) | (w == z.flip(3))).flatten(1).all(1).all())

#----------------------------------------------------------------------------
# Wavelet constants: orthonormal lowpasses whose highpass has L/2 vanishing moments.

@pytest.mark.parametrize('name', ['SYM2_LOWPASS', 'SYM6_LOWPASS'])
def test_wavelet_constants_define_orthogonal_wavelets(name):
    h = np.array(getattr(augment, name), dtype=np.float64)
    L = len(h)
    assert L == {'SYM2_LOWPASS': 4, 'SYM6_LOWPASS': 12}[name]
    assert abs(h.sum() - math.sqrt(2)) < 5e-12
    assert abs((h * h).sum() - 1) < 5e-12
    for n in range(1, L // 2):                                         # Double-shift orthogonality.
        assert abs(np.dot(h[:L - 2 * n], h[2 * n:])) < 5e-12
    g = (-1.0) ** np.arange(L) * h[::-1]                               # Quadrature-mirror highpass.
    k = np.arange(L, dtype=np.float64)
    for j in range(L // 2):                                            # Vanishing moments 0 .. L/2 - 1.
        assert abs((k ** j * g).sum()) < 1e-10 * np.abs(k ** j * g).sum()

#----------------------------------------------------------------------------
# The sym6 resampling: identity transforms are exact, a transform and its inverse round-trip.

@pytest.mark.parametrize('op', [dict(scale=1, scale_std=0), dict(rotate=1, rotate_max=0),
                                dict(aniso=1, aniso_std=0), dict(xfrac=1, xfrac_std=0),
                                dict(scale=1, rotate=1, aniso=1, xfrac=1, scale_std=0, rotate_max=0, aniso_std=0, xfrac_std=0)])
def test_identity_geometric_transform_is_exact(op, monkeypatch):
    calls = []
    orig = grid_sample_gradfix.grid_sample
    monkeypatch.setattr(grid_sample_gradfix, 'grid_sample', lambda input, grid: calls.append(1) or orig(input, grid))
    x = random_images(8, 3, 16)
    torch.manual_seed(24)
    y = make_pipe(**op)(x)
    assert calls and (y - x).abs().max() < 1e-5                        # Resampled, yet unchanged.
    z = random_images(4, 1, 12)[:, :, :, :10]                          # Non-square.
    assert (make_pipe(**op)(z) - z).abs().max() < 1e-5

def band_limited_image(size, fmax, seed=0, terms=8):
    gen = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(size).double(), torch.arange(size).double(), indexing='ij')
    img = torch.zeros(size, size, dtype=torch.float64)
    for _ in range(terms):
        fx, fy = (torch.rand(2, generator=gen, dtype=torch.float64) * 2 - 1) * fmax   # Cycles per pixel.
        phase = torch.rand([], generator=gen, dtype=torch.float64) * 2 * math.pi
        img += torch.cos(2 * math.pi * (fx * x + fy * y) + phase) / math.sqrt(terms)
    return img[None, None].float()

@pytest.mark.parametrize('theta,s,tx,ty', [(0.5, 1.0, 0.3, -0.7), (0, 1.25, 0, 0), (1.0, 0.8, 1.5, 0.5), (-2.0, 1.1, -0.4, 0.2)])
def test_transform_and_inverse_round_trip(theta, s, tx, ty):
    img = band_limited_image(32, fmax=0.1)                             # At most 1/5 of Nyquist.
    ref = torch.zeros(1)
    G = augment._translate2d(torch.tensor([tx]), torch.tensor([ty]), ref) @ augment._scale2d(s, s, ref) \
        @ augment._rotate2d(torch.tensor([math.cos(theta)]), torch.tensor([math.sin(theta)]), ref)
    f = AugmentPipe().geom_filter
    there = augment.resample_images(img, G, f)
    back = augment.resample_images(there, torch.linalg.inv(G), f)
    err = (back - img).abs()[0, 0, 8:-8, 8:-8]                         # Away from the reflected border.
    assert err.max() < 0.015 * img.abs().max()

#----------------------------------------------------------------------------
# Distributions of the geometric parameters (from the inverse matrices).

def general_matrix(p=1.0, n=20000, H=16, **kwargs):
    torch.manual_seed(7)
    return make_pipe(p, **kwargs)._general_matrix(p, augment._Sampler(n, 'cpu'), H, H)

def test_scale_aniso_xfrac_distributions():
    G, active = general_matrix(scale=1)
    assert bool(active.all())
    assert abs(torch.log2(1 / G[:, 0, 0]).std().item() - 0.2) < 0.01
    G, _ = general_matrix(aniso=1)
    assert torch.allclose(G[:, 0, 0] * G[:, 1, 1], torch.ones(1), atol=1e-5)
    assert abs(torch.log2(G[:, 1, 1]).std().item() - 0.2) < 0.01
    G, _ = general_matrix(xfrac=1, H=16)
    assert abs(G[:, 0, 2].std().item() / 16 - 0.125) < 0.005
    assert abs(G[:, 1, 2].std().item() / 16 - 0.125) < 0.005

def test_rotate_twice_has_probability_p():
    G, active = general_matrix(p=0.4, rotate=1)
    rotated = G[:, 0, 1].abs() > 1e-6
    assert abs(rotated.float().mean().item() - 0.4) < 0.015
    assert abs(active.float().mean().item() - 0.4) < 0.015
    G, _ = general_matrix(p=1, rotate=1, rotate_max=0.25)        # Sum of two U(-pi/4, pi/4).
    angle = torch.atan2(G[:, 1, 0], G[:, 0, 0])
    assert angle.abs().max() <= math.pi / 2 + 1e-5
    assert abs(angle.std().item() - math.pi / 4 * math.sqrt(2 / 3)) < 0.01

def test_probability_multiplier():
    x = random_images(4000, 1, 4)
    torch.manual_seed(8)
    y = make_pipe(p=0.6, xflip=0.5)(x)
    changed = (y != x).flatten(1).any(1).float().mean().item()
    assert abs(changed - 0.6 * 0.5 * 0.5) < 0.03

#----------------------------------------------------------------------------
# Colour: brightness, contrast, lumaflip, hue, saturation.

def luma_chroma(x):
    v = torch.ones(3, dtype=torch.float64) / math.sqrt(3)
    x = x.double().flatten(2)                                     # [N, 3, P]
    luma = torch.einsum('c,ncp->np', v, x)
    return luma, x - v[None, :, None] * luma[:, None, :]

def test_brightness_distribution():
    y = make_pipe(brightness=1)(torch.zeros([8192, 3, 4, 4]))
    means = y.mean(dim=(1, 2, 3))
    assert torch.allclose(y, means[:, None, None, None].expand_as(y), atol=1e-6)
    assert abs(means.std().item() - 0.2) < 0.006 and abs(means.mean().item()) < 0.01

def test_contrast_distribution():
    x = random_images(8192, 3, 4)
    x = x - x.mean(dim=(1, 2, 3), keepdim=True)
    y = make_pipe(contrast=1)(x)
    ratio = torch.log2(y.flatten(1).std(1) / x.flatten(1).std(1))
    assert abs(ratio.std().item() - 0.5) < 0.015 and abs(ratio.mean().item()) < 0.02
    assert torch.allclose(y, x * torch.exp2(ratio)[:, None, None, None], atol=1e-5)

def test_lumaflip_reflects_luma():
    x = random_images(256, 3, 4)
    y = make_pipe(lumaflip=1)(x)
    lx, cx = luma_chroma(x)
    ly, cy = luma_chroma(y)
    assert torch.allclose(cy, cx, atol=1e-5)
    same = torch.isclose(ly, lx, atol=1e-5).all(1)
    flipped = torch.isclose(ly, -lx, atol=1e-5).all(1)
    assert bool((same | flipped).all()) and 0.4 < flipped.float().mean().item() < 0.6

def test_hue_rotates_chroma_keeps_luma():
    x = random_images(4096, 3, 2)
    y = make_pipe(hue=1)(x)
    lx, cx = luma_chroma(x)
    ly, cy = luma_chroma(y)
    assert torch.allclose(ly, lx, atol=1e-5)
    assert torch.allclose(cy.norm(dim=1), cx.norm(dim=1), atol=1e-5)
    v = torch.ones(3, dtype=torch.float64) / math.sqrt(3)
    a, b = cx[:, :, 0], cy[:, :, 0]
    angle = torch.atan2(torch.einsum('c,nc->n', v, torch.cross(a, b, dim=1)), (a * b).sum(1))
    assert abs(angle.mean().item()) < 0.1
    assert abs(angle.std().item() - math.pi / math.sqrt(3)) < 0.05  # Uniform on (-pi, pi).

def test_saturation_distribution_keeps_luma():
    x = random_images(8192, 3, 2)
    y = make_pipe(saturation=1)(x)
    lx, cx = luma_chroma(x)
    ly, cy = luma_chroma(y)
    assert torch.allclose(ly, lx, atol=1e-5)
    ratio = torch.log2(cy.norm(dim=1) / cx.norm(dim=1))         # [N, P]: same per image.
    assert torch.allclose(ratio[:, 0], ratio[:, 1], atol=1e-4)
    assert abs(ratio[:, 0].std().item() - 1.0) < 0.03

def test_color_on_one_channel_is_affine_with_positive_slope():
    x = random_images(2048, 1, 4)
    y = make_pipe(**augpipe_specs['color'])(x)
    xf, yf = x.flatten(1).double(), y.flatten(1).double()
    slope = ((xf - xf.mean(1, keepdim=True)) * (yf - yf.mean(1, keepdim=True))).sum(1) / (xf - xf.mean(1, keepdim=True)).square().sum(1)
    assert bool((slope > 0).all())                                   # No lumaflip on grey.
    assert abs(torch.log2(slope).std().item() - 0.5) < 0.03          # Contrast only.
    x0 = torch.zeros([1, 1, 4, 4])
    assert torch.equal(make_pipe(lumaflip=1, hue=1, saturation=1)(x0 + 0.5), x0 + 0.5)

#----------------------------------------------------------------------------
# Image-space filtering: the original's sym2 filter bank and band normalisation.

# Zero-phase frequency response of a symmetric odd-length filter on the FFT grid of n points.
def zero_phase_response(taps, n):
    centre = (taps.shape[-1] - 1) // 2
    phase = np.exp(2j * np.pi * np.fft.fftfreq(n) * centre)
    return np.fft.fft(taps, n, axis=-1) * phase

def test_filter_bank_bands_match_fft_of_wavelet():
    n = 1024
    bank = augment.design_filter_bank()
    assert bank.shape == (4, 43)
    np.testing.assert_allclose(bank, bank[:, ::-1], atol=1e-15)       # Zero phase.
    # lo(w) = |H(w)|^2 / 2 and hi(w) = |H(w + pi)|^2 / 2 from the FFT of the 4 sym2 taps;
    # lo(2^k w) is lo at the FFT index scaled by 2^k (mod n).
    lo = np.abs(np.fft.fft(augment.SYM2_LOWPASS, n)) ** 2 / 2
    hi = np.roll(lo, n // 2)
    at = lambda r, k: r[(np.arange(n) * 2 ** k) % n]
    expect = [at(lo, 2) * at(lo, 1) * lo, at(hi, 2) * at(lo, 1) * lo, at(hi, 1) * lo, hi]
    response = zero_phase_response(bank, n)
    np.testing.assert_allclose(response.imag, 0, atol=1e-12)
    for band in range(4):
        np.testing.assert_allclose(response[band].real, expect[band], atol=1e-12)
    np.testing.assert_allclose(response.real.sum(0), 1, atol=1e-12)   # Partition of unity.
    w = 2 * np.pi * np.arange(n // 2 + 1) / n
    peaks = w[np.abs(response[:, :n // 2 + 1]).argmax(1)]
    assert peaks[0] == 0 and np.pi / 8 <= peaks[1] <= np.pi / 4 and np.pi / 4 <= peaks[2] <= np.pi / 2 and peaks[3] == np.pi

def test_filter_images_matches_scipy():
    x = random_images(3, 2, 16)
    taps = torch.randn(3, 43, dtype=torch.float64)
    taps = (taps + taps.flip(1)) / 2
    y = augment.filter_images(x, taps.float())
    for n in range(3):
        for c in range(2):
            out = scipy.ndimage.correlate1d(x[n, c].double().numpy(), taps[n].numpy(), axis=1, mode='mirror')
            out = scipy.ndimage.correlate1d(out, taps[n].numpy(), axis=0, mode='mirror')
            np.testing.assert_allclose(y[n, c].numpy(), out, rtol=1e-5, atol=1e-5) # float32 against float64: relative to outputs of size ~50.

def test_filter_unit_gains_reconstruct():
    x = random_images(2, 3, 16)
    taps = AugmentPipe().band_filters.sum(0, keepdim=True).expand(2, -1)
    assert torch.allclose(augment.filter_images(x, taps), x, atol=1e-6)

def test_band_gains_match_sequential_normalisation():
    # The original's formulation: for each band i, a gain vector that is 1 except t_i at i,
    # divided by sqrt(sum_j w_j v_j^2), multiplied into the total (a float64 loop).
    w = np.array(augment.BAND_POWER)
    assert abs(w.sum() - 1) < 1e-12
    rng = np.random.default_rng(0)
    t = np.where(rng.random([64, 4]) < 0.5, 2 ** rng.normal(size=[64, 4]), 1.0)
    expect = np.ones_like(t)
    for i in range(4):
        v = np.ones_like(t)
        v[:, i] = t[:, i]
        expect *= v / np.sqrt((w * v ** 2).sum(1, keepdims=True))
    got = augment.band_gains(torch.tensor(t), torch.tensor(w))
    np.testing.assert_allclose(got.numpy(), expect, rtol=1e-12)

def test_filter_top_band_gain_distribution():
    size = 8
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing='ij')
    checker = ((-1.0) ** (x + y)).expand(4096, 1, size, size)         # hi(pi) = 1: band 3 only.
    torch.manual_seed(10)
    out = make_pipe(imgfilter=1, imgfilter_bands=[0, 0, 0, 1])(checker)
    amp = (out / checker).flatten(1)
    assert torch.allclose(amp, amp[:, :1].expand_as(amp), atol=1e-4)
    # amp = t / sqrt(1 + w3 (t^2 - 1)) along x and along y: solve for t > 0 in float64.
    a, w3 = amp[:, 0].double().sqrt(), augment.BAND_POWER[3]
    t = a * ((1 - w3) / (1 - a ** 2 * w3)).sqrt()
    assert abs(torch.log2(t).std().item() - 1.0) < 0.05 and abs(torch.log2(t).mean().item()) < 0.05

#----------------------------------------------------------------------------
# Noise and cutout.

def test_noise_distribution():
    y = make_pipe(noise=1)(torch.zeros([4096, 3, 8, 8]))
    sigma = y.flatten(1).std(1)
    assert abs(sigma.square().mean().item() - 0.01) < 0.0006
    assert abs(sigma.mean().item() - 0.1 * math.sqrt(2 / math.pi)) < 0.003

def test_cutout_zero_fraction():
    size, s = 32, 0.5
    y = make_pipe(cutout=1)(torch.ones([4096, 1, size, size]))
    zero = y == 0
    # Centre uniform in the image: expected overlap per axis is s - s^2 / 4.
    assert abs(zero.float().mean().item() - (s - s * s / 4) ** 2) < 0.005
    rows, cols = zero[:, 0].any(2), zero[:, 0].any(1)
    assert bool((zero[:, 0] == (rows[:, :, None] & cols[:, None, :])).all())  # One rectangle.
    assert int(rows.sum(1).max()) <= s * size and int(cols.sum(1).max()) <= s * size

#----------------------------------------------------------------------------
# Every pipeline: runs on 1 and 3 channels, gradients reach the input.

@pytest.mark.parametrize('channels', [1, 3])
@pytest.mark.parametrize('name', sorted(augpipe_specs))
def test_pipelines_run_and_backprop(name, channels):
    torch.manual_seed(11)
    x = random_images(4, channels, 16).requires_grad_(True)
    y = make_pipe(0.5, **augpipe_specs[name])(x)
    assert y.shape == x.shape and bool(y.isfinite().all())
    y = make_pipe(1.0, **augpipe_specs[name])(x)
    (y * torch.randn_like(y)).sum().backward()
    assert bool(x.grad.isfinite().all()) and x.grad.abs().sum() > 0

def test_double_backward_for_r1():
    torch.manual_seed(12)
    x = smooth_images(4, 3, 16).requires_grad_(True)
    y = make_pipe(**augpipe_specs['bgcfnc'])(x)
    (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    g.square().sum().backward()
    assert bool(x.grad.isfinite().all()) and x.grad.abs().sum() > 0

# On one-channel images the geometric resampling's convolutions and their first and second derivatives
# run on torch's native kernels (conv2d_gradfix.native_cpu_kernels), not on oneDNN's.
def test_no_onednn_convolution_in_any_pass_on_one_channel():
    from torch.profiler import profile, ProfilerActivity # pylint: disable=import-outside-toplevel
    torch.manual_seed(14)
    x = smooth_images(4, 1, 16).requires_grad_(True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        y = make_pipe(**augpipe_specs['bgc'])(x)
        (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        g.square().sum().backward()
    kernels = {e.key for e in prof.key_averages() if e.key.startswith('aten::') and 'conv' in e.key}
    assert kernels and 'aten::mkldnn_convolution' not in kernels, kernels
    assert torch.backends.mkldnn.enabled

# Ops that fired for no image are left out on the CPU (their random draws still run): the images,
# their gradients and the random stream afterwards equal those of the full computation, where every
# op's identity matrix is built and applied.
@pytest.mark.parametrize('channels', [1, 3])
@pytest.mark.parametrize('name', ['bgc', 'bgcfnc'])
def test_ops_that_fired_for_no_image_change_nothing(name, channels, monkeypatch):
    def run(p, seed):
        torch.manual_seed(seed)
        x = random_images(6, channels, 16, seed=seed).requires_grad_(True)
        y = make_pipe(p, **augpipe_specs[name])(x)
        (g,) = torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum(), x)
        return y.detach(), g, torch.rand([4])
    cases = [(p, seed) for p in (0.01, 0.05, 0.2, 1.0) for seed in range(6)]
    skipped = [run(*case) for case in cases]
    monkeypatch.setattr(augment._Sampler, 'fired', lambda self, gate: True) # pylint: disable=protected-access
    full = [run(*case) for case in cases]
    for (p, seed), a, b in zip(cases, skipped, full):
        for t_skip, t_full in zip(a, b):
            assert torch.equal(t_skip, t_full), (p, seed)

#----------------------------------------------------------------------------
# The backward pass is the true derivative: a random directional derivative in float64
# against central finite differences (fixed random draws).

@pytest.mark.parametrize('channels', [1, 3])
@pytest.mark.parametrize('name', ['bgcfnc', 'blit', 'geom'])
def test_directional_derivative_float64(name, channels):
    pipe = make_pipe(**augpipe_specs[name])
    def fn(x):
        torch.manual_seed(19)
        return pipe(x)
    gen = torch.Generator().manual_seed(20)
    x = random_images(2, channels, 16).double().requires_grad_(True)
    v = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    w = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    (grad,) = torch.autograd.grad((fn(x) * w).sum(), x)
    eps = 1e-6
    with torch.no_grad():
        numeric = ((fn(x + eps * v) - fn(x - eps * v)) * w).sum() / (2 * eps)
    assert abs((grad * v).sum().item() - numeric.item()) < 1e-6 * max(1.0, abs(numeric.item()))

#----------------------------------------------------------------------------
