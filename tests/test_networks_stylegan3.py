# Tests of training/networks_stylegan3.py: the layer schedule against the published StyleGAN3
# networks, parameter and buffer names, the pieces against independent formulations (modulated conv
# as per-sample convolutions, Fourier features from the formula, filters from scipy), equivariance of
# the input and the generator, gradients, EMAs, truncation and the pickle round trip.

import copy
import io
import math
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.signal
import torch

from training import networks_stylegan3 as n3

from test_isolation import CHILD, embedded_sources, imported_packages

#----------------------------------------------------------------------------
# A tiny generator: 16 px, few channels, 4 layers (2 critically sampled).

def tiny_G(**kwargs):
    torch.manual_seed(0)
    kw = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=256, channel_max=16, num_layers=4) | kwargs
    return n3.Generator(**kw)

#----------------------------------------------------------------------------
# The schedule gives the layers of the published 1024x1024 networks (T: channel_base 32768 / max 512,
# R: 65536 / 1024), with their cutoffs, half-widths and float16 flags.

PUBLISHED_T_1024 = ['L0_36_512', 'L1_36_512', 'L2_52_512', 'L3_52_512', 'L4_84_512', 'L5_148_512', 'L6_148_512',
    'L7_276_323', 'L8_276_203', 'L9_532_128', 'L10_1044_81', 'L11_1044_51', 'L12_1044_32', 'L13_1024_32', 'L14_1024_3']
PUBLISHED_R_1024 = ['L0_36_1024', 'L1_36_1024', 'L2_52_1024', 'L3_52_1024', 'L4_84_1024', 'L5_148_1024', 'L6_148_1024',
    'L7_276_645', 'L8_276_406', 'L9_532_256', 'L10_1044_161', 'L11_1044_102', 'L12_1044_64', 'L13_1024_64', 'L14_1024_3']

@pytest.mark.parametrize('channel_base,channel_max,names', [(32768, 512, PUBLISHED_T_1024), (65536, 1024, PUBLISHED_R_1024)])
def test_schedule_matches_published_networks(channel_base, channel_max, names):
    cutoffs, _, rates, half_widths, sizes, channels = n3.synthesis_layer_schedule(1024, 3, channel_base, channel_max,
        num_layers=14, num_critical=2, first_cutoff=2, first_stopband=2**2.1, last_stopband_rel=2**0.3, margin_size=10)
    assert [f'L{i}_{int(sizes[i])}_{int(channels[i])}' for i in range(15)] == names
    np.testing.assert_allclose(cutoffs[[1, 2, 7, 10]], [3.1748, 5.03968, 50.7968, 203.187], rtol=1e-5)
    np.testing.assert_allclose(half_widths[[0, 1, 5, 12]], [6, 4.8252, 43.8413, 118.346], rtol=1e-5)
    assert list(rates) == [16, 16, 32, 32, 64, 128, 128, 256, 256, 512, 1024, 1024, 1024, 1024, 1024]
    use_fp16 = rates * 2**4 > 1024
    assert not use_fp16[4] and use_fp16[5]

#----------------------------------------------------------------------------
# Names of parameters and buffers (what original pickles carry) and the shapes.

def test_names_and_shapes():
    G = tiny_G(c_dim=5)
    names = G.synthesis.layer_names
    assert G.num_ws == G.synthesis.num_ws == 4 + 2 and len(names) == 5
    assert names[-1].startswith('L4_16_3') and names[-2].startswith('L3_16_')
    buffers = dict(G.named_buffers())
    for name in ['mapping.w_avg', 'synthesis.input.transform', 'synthesis.input.freqs', 'synthesis.input.phases']:
        assert name in buffers
    for layer in names[:-1]:
        for b in ['magnitude_ema', 'up_filter', 'down_filter']:
            assert f'synthesis.{layer}.{b}' in buffers
    assert f'synthesis.{names[-1]}.up_filter' not in buffers # ToRGB: no filters (registered as None).
    params = dict(G.named_parameters())
    for name in ['mapping.embed.weight', 'mapping.fc0.weight', 'mapping.fc1.bias', 'synthesis.input.weight',
            'synthesis.input.affine.weight', f'synthesis.{names[0]}.affine.bias', f'synthesis.{names[0]}.weight', f'synthesis.{names[0]}.bias']:
        assert name in params
    assert 'mapping.fc2.weight' not in params # Mapping depth 2.
    torch.testing.assert_close(G.synthesis.input.affine.bias, torch.tensor([1.0, 0, 0, 0]))
    assert float(G.synthesis.input.affine.weight.detach().abs().max()) == 0
    assert G.mapping.w_avg_beta == 0.998 and n3.MappingNetwork.rank_local_buffers == ('w_avg',)
    img = G(torch.randn(3, 8), torch.eye(5)[:3])
    assert img.shape == (3, 3, 16, 16) and img.dtype == torch.float32 and torch.isfinite(img).all()

def test_config_r_uses_radial_filters_except_critical_layers():
    G = tiny_G(conv_kernel=1, use_radial_filters=True)
    layers = [getattr(G.synthesis, n) for n in G.synthesis.layer_names]
    assert [l.down_filter.ndim if l.down_filter is not None else None for l in layers] == [2, 2, 1, 1, None]
    assert all(l.weight.shape[2:] == (1, 1) for l in layers)

#----------------------------------------------------------------------------
# Filters: Kaiser-windowed designs that match scipy and have unit DC gain; the radial filter is
# symmetric under 90-degree rotation and transposition.

def test_filters():
    G = tiny_G(use_radial_filters=True)
    layer = getattr(G.synthesis, G.synthesis.layer_names[0])
    expected = scipy.signal.firwin(layer.up_taps, layer.in_cutoff, width=layer.in_half_width * 2, fs=layer.tmp_sampling_rate)
    np.testing.assert_allclose(layer.up_filter.numpy(), expected, rtol=1e-6, atol=1e-7)
    assert layer.up_taps == 6 * layer.up_factor
    f = layer.down_filter.double().numpy()
    assert f.shape == (layer.down_taps, layer.down_taps)
    assert abs(f.sum() - 1) < 1e-6
    np.testing.assert_allclose(f, f.T, atol=1e-7)
    np.testing.assert_allclose(f, np.rot90(f), atol=1e-7)
    # Stopband: the radial response is small beyond cutoff + 2 * half-width (the stopband).
    response = np.abs(np.fft.fft2(f, s=[256, 256]))
    freqs = np.fft.fftfreq(256) * layer.tmp_sampling_rate
    radius = np.hypot(*np.meshgrid(freqs, freqs))
    assert response[radius > layer.out_cutoff + layer.out_half_width * 2 + 1].max() < 0.05
    assert n3.design_lowpass_filter(1, 2, 1, 4) is None

#----------------------------------------------------------------------------
# A radial filter with an odd tap count has a tap at r = 0: it takes the jinc's limit there
# (pi * cutoff^2, from J1(x) ~ x / 2) instead of 0 / 0, and matches the float64 formula elsewhere.

def test_radial_filter_odd_taps_uses_jinc_limit():
    numtaps, cutoff, width, fs = 7, 1.5, 1.0, 8.0
    f = n3.design_lowpass_filter(numtaps, cutoff, width, fs, radial=True).double().numpy()
    assert np.isfinite(f).all() and abs(f.sum() - 1) < 1e-6
    taps = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(taps, taps))
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    series = lambda x: sum((-1) ** k * (x / 2) ** (2 * k + 1) / (math.factorial(k) * math.factorial(k + 1)) for k in range(40))
    jinc = np.where(r == 0, np.pi * cutoff ** 2, cutoff * series(2 * np.pi * cutoff * r) / np.where(r == 0, 1, r))
    expected = jinc * np.outer(window, window)
    np.testing.assert_allclose(f, expected / expected.sum(), rtol=1e-5, atol=1e-7)

#----------------------------------------------------------------------------
# Modulated conv equals per-sample float64 convolutions with explicitly modulated weights.

def test_modulated_conv2d_matches_per_sample_convolution():
    gen = torch.Generator().manual_seed(1)
    x, w, s = torch.randn(3, 4, 6, 5, generator=gen).double(), torch.randn(5, 4, 3, 3, generator=gen).double(), torch.randn(3, 4, generator=gen).double()
    gain = torch.tensor(0.7, dtype=torch.float64)
    for demodulate in [True, False]:
        y = n3.modulated_conv2d(x, w, s, demodulate=demodulate, padding=2, input_gain=gain)
        for n in range(3):
            wn = w * s[n].reshape(1, 4, 1, 1)
            if demodulate:
                wn = wn / wn.square().sum(dim=[1, 2, 3], keepdim=True).sqrt()
            expected = torch.nn.functional.conv2d(x[n : n + 1] * gain, wn, padding=2)
            torch.testing.assert_close(y[n : n + 1], expected, rtol=1e-6, atol=1e-6)

#----------------------------------------------------------------------------
# The Fourier features equal sin(2 pi (<f', p> + phase')) * amplitude at the pixel centres p, with
# f', phase' the frequencies and phases moved by the learned and the user transform.

def test_fourier_features_formula():
    torch.manual_seed(2)
    inp = n3.SynthesisInput(w_dim=4, channels=6, size=[10, 8], sampling_rate=8, bandwidth=2)
    with torch.no_grad():
        inp.affine.weight.normal_()
        inp.transform.copy_(torch.tensor([[0.8, -0.6, 0.1], [0.6, 0.8, -0.2], [0, 0, 1]]))
    w = torch.randn(2, 4)
    x = inp(w).detach().double()
    t = inp.affine(w).detach().double().numpy()
    for n in range(2):
        c, s_, tx, ty = t[n] / np.hypot(t[n, 0], t[n, 1])
        m = np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1]]) @ np.array([[1, 0, -tx], [0, 1, -ty], [0, 0, 1]]) @ inp.transform.double().numpy()
        f = inp.freqs.double().numpy() @ m[:2, :2]
        ph = inp.phases.double().numpy() + inp.freqs.double().numpy() @ m[:2, 2]
        amp = np.clip(1 - (np.linalg.norm(f, axis=1) - 2) / (8 / 2 - 2), 0, 1)
        px = (np.arange(10) + 0.5 - 5) / 8 # Pixel centres in input units.
        py = (np.arange(8) + 0.5 - 4) / 8
        feats = np.sin(2 * np.pi * (f[:, 0, None, None] * px[None, None, :] + f[:, 1, None, None] * py[None, :, None] + ph[:, None, None])) * amp[:, None, None]
        expected = np.einsum('dc,chw->dhw', inp.weight.detach().double().numpy() / np.sqrt(6), feats)
        np.testing.assert_allclose(x[n].numpy(), expected, rtol=1e-5, atol=1e-5)

#----------------------------------------------------------------------------
# Equivariance: translating the input by k pixels shifts the features by k pixels exactly; the
# tiny generator (T and R) is equivariant to integer output translations far beyond chance.

def test_input_translation_is_exact():
    torch.manual_seed(3)
    inp = n3.SynthesisInput(w_dim=4, channels=5, size=16, sampling_rate=16, bandwidth=3)
    w = torch.randn(2, 4)
    ref = inp(w)
    with torch.no_grad():
        inp.transform[0, 2] = -3 / 16 # Content moves 3 pixels to the right (+x).
        inp.transform[1, 2] = 2 / 16  # And 2 pixels up (-y).
    out = inp(w)
    torch.testing.assert_close(out[:, :, :-2, 3:], ref[:, :, 2:, :-3], rtol=1e-4, atol=1e-4)

@pytest.mark.parametrize('cfg', [dict(), dict(conv_kernel=1, use_radial_filters=True)])
def test_generator_integer_translation_equivariance(cfg):
    G = tiny_G(img_resolution=32, num_layers=6, **cfg)
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, 8), None)
        ref = G.synthesis(ws)
        G.synthesis.input.transform[0, 2] = -3 / 32
        out = G.synthesis(ws)
    psnr = lambda a, b: float(20 * np.log10(2) - 10 * torch.log10((a - b).square().mean()))
    shifted, unshifted = psnr(out[..., 3:], ref[..., :-3]), psnr(out[..., 3:], ref[..., 3:])
    assert shifted > unshifted + 30, (shifted, unshifted)

#----------------------------------------------------------------------------
# Gradients reach every parameter; update_emas moves w_avg and magnitude_ema (and only then).

def test_gradients_and_emas():
    G = tiny_G(c_dim=3)
    z, c = torch.randn(2, 8), torch.eye(3)[:2]
    G(z, c).square().sum().backward()
    for name, p in G.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and float(p.grad.abs().max()) > 0, name
    layer = getattr(G.synthesis, G.synthesis.layer_names[1])
    before_w, before_m = G.mapping.w_avg.clone(), layer.magnitude_ema.clone()
    with torch.no_grad():
        G(z, c)
    assert torch.equal(G.mapping.w_avg, before_w) and torch.equal(layer.magnitude_ema, before_m)
    with torch.no_grad():
        G(z, c, update_emas=True)
    assert not torch.equal(G.mapping.w_avg, before_w) and not torch.equal(layer.magnitude_ema, before_m)

def test_rank_local_buffers():
    from torch_utils import misc # pylint: disable=import-outside-toplevel
    G = tiny_G()
    expected = ['mapping.w_avg'] + [f'synthesis.{name}.magnitude_ema' for name in G.synthesis.layer_names]
    assert sorted(misc.rank_local_buffer_names(G)) == sorted(expected)

def test_truncation():
    G = tiny_G()
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    z = torch.randn(2, 8)
    ws = G.mapping(z, None, truncation_psi=0)
    torch.testing.assert_close(ws, G.mapping.w_avg.expand_as(ws))
    ws_full, ws_cut = G.mapping(z, None), G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(ws_cut[:, :2], G.mapping.w_avg.lerp(ws_full[:, :2], 0.5))
    torch.testing.assert_close(ws_cut[:, 2:], ws_full[:, 2:])

#----------------------------------------------------------------------------
# Pickle round trip (persistent classes) gives identical output; deepcopy too.

def test_pickle_round_trip():
    G = tiny_G(conv_kernel=1, use_radial_filters=True).eval().requires_grad_(False)
    z = torch.randn(2, 8)
    ref = G(z, None, noise_mode='const')
    buf = io.BytesIO()
    pickle.dump(G, buf)
    G2 = pickle.loads(buf.getvalue())
    assert torch.equal(G2(z, None), ref)
    assert torch.equal(copy.deepcopy(G)(z, None), ref)
    assert G2.init_kwargs['use_radial_filters'] is True

def test_bad_layer_count():
    with pytest.raises(ValueError, match='must exceed num_critical'):
        tiny_G(num_layers=2)

#----------------------------------------------------------------------------
# Self-contained (issue 12 section 1): a pickled G runs bit-identically in a process where `training`
# cannot be imported, and the source it embeds imports only torch, numpy, scipy, torch_utils.

def test_runs_without_training_package(tmp_path):
    G = tiny_G(conv_kernel=1, use_radial_filters=True).eval()
    cases = dict(G=(G, (torch.randn(2, 8), None), dict(truncation_psi=0.7)))
    with open(tmp_path / 'cases.pkl', 'wb') as f:
        pickle.dump(cases, f)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, '-c', CHILD, str(tmp_path / 'cases.pkl'), str(tmp_path / 'out.pt')],
        cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / 'out.pt')['G'], G(*cases['G'][1], **cases['G'][2]))
    for src in embedded_sources(pickle.dumps(G)):
        assert imported_packages(src) <= {'numpy', 'scipy', 'torch', 'torch_utils', 'dnnlib'}

#----------------------------------------------------------------------------
