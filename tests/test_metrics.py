# Tests of the quality metrics against independent formulations (closed forms, float64 numpy,
# naive loops), with small stand-in TorchScript detectors written to a temporary folder.

import json
import math
import os
import warnings

import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib
from metrics import metric_main
from metrics import metric_utils
from metrics import frechet_inception_distance
from metrics import kernel_inception_distance
from metrics import inception_score
from metrics import precision_recall
from metrics import perceptual_path_length

#----------------------------------------------------------------------------
# Stand-in detector with the published call signature: features from 4x4 area means of the image.

class StandInDetector(torch.nn.Module):
    def __init__(self, num_features: int, num_classes: int, seed: int):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.proj = torch.nn.Parameter(torch.randn([48, num_features], generator=gen) * 0.5)
        self.cls = torch.nn.Parameter(torch.randn([num_features, num_classes], generator=gen) * 2)
        self.bias = torch.nn.Parameter(torch.randn([num_classes], generator=gen))

    def forward(self, images: torch.Tensor, return_features: bool = False, no_output_bias: bool = False,
            resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        x = images.to(torch.float32) / 127.5 - 1
        x = torch.nn.functional.adaptive_avg_pool2d(x, [4, 4]).flatten(1)
        f = torch.tanh(x @ self.proj)
        if return_lpips:
            return f / f.square().sum(dim=1, keepdim=True).sqrt()
        if return_features:
            return f
        logits = f @ self.cls
        if not no_output_bias:
            logits = logits + self.bias
        return torch.softmax(logits, dim=1)

#----------------------------------------------------------------------------
# Write inception-2015-12-05.pt and vgg16.pt stand-ins into a folder; returns the folder.

def write_stand_in_detectors(folder, num_features=8):
    os.makedirs(folder, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning) # torch.jit.script is deprecated; the files are TorchScript.
        for name, seed in [('inception-2015-12-05.pt', 1), ('vgg16.pt', 2)]:
            torch.jit.script(StandInDetector(num_features, 10, seed)).save(os.path.join(folder, name))
    metric_utils.clear_feature_detector_cache()
    return str(folder)

#----------------------------------------------------------------------------
# Tiny generator with the StyleGAN2 interface (mapping, synthesis, noise_const buffers).
# Every z it sees is logged in a class attribute, which survives the metrics' deepcopy.

class TinySynthesisLayer(torch.nn.Module):
    def __init__(self, resolution):
        super().__init__()
        self.register_buffer('noise_const', torch.randn([resolution, resolution]))

class TinyMapping(torch.nn.Module):
    def __init__(self, z_dim, w_dim, num_ws):
        super().__init__()
        self.num_ws = num_ws
        self.fc = torch.nn.Linear(z_dim, w_dim)
        self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None):
        return torch.tanh(self.fc(z)).unsqueeze(1).repeat([1, self.num_ws, 1])

class TinySynthesis(torch.nn.Module):
    def __init__(self, w_dim, num_ws, resolution, channels):
        super().__init__()
        self.resolution, self.channels = resolution, channels
        self.fc = torch.nn.Linear(w_dim * num_ws, channels * resolution * resolution)
        self.b16 = TinySynthesisLayer(resolution)

    def forward(self, ws, noise_mode='random', force_fp32=False):
        x = self.fc(ws.flatten(1)).reshape([-1, self.channels, self.resolution, self.resolution])
        if noise_mode == 'const':
            x = x + 0.3 * self.b16.noise_const
        elif noise_mode == 'random':
            x = x + 0.3 * torch.randn_like(x[:, :1])
        return torch.tanh(x)

class TinyG(torch.nn.Module):
    z_log = []

    def __init__(self, z_dim=6, w_dim=6, num_ws=2, resolution=16, channels=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, 0, w_dim, num_ws
        self.img_resolution, self.img_channels = resolution, channels
        self.mapping = TinyMapping(z_dim, w_dim, num_ws)
        self.synthesis = TinySynthesis(w_dim, num_ws, resolution, channels)

    def forward(self, z, c, noise_mode='const', **kwargs):
        TinyG.z_log.append(z.detach().clone())
        return self.synthesis(self.mapping(z, c, **kwargs), noise_mode=noise_mode)

#----------------------------------------------------------------------------
# A folder of random PNG images; returns dataset_kwargs for ImageFolderDataset.

def make_image_folder(folder, num_images=24, resolution=16, channels=3, seed=0):
    os.makedirs(folder, exist_ok=True)
    rnd = np.random.RandomState(seed)
    for i in range(num_images):
        img = rnd.randint(0, 256, size=[resolution, resolution, channels]).astype(np.uint8)
        PIL.Image.fromarray(img[:, :, 0] if channels == 1 else img).save(os.path.join(folder, f'img{i:04d}.png'))
    return dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=str(folder))

#----------------------------------------------------------------------------

@pytest.fixture
def env(tmp_path, monkeypatch):
    det_dir = write_stand_in_detectors(tmp_path / 'detectors')
    monkeypatch.setenv('DNNLIB_DETECTOR_DIR', det_dir)
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    yield dnnlib.EasyDict(tmp=tmp_path, det_dir=det_dir, dataset_kwargs=make_image_folder(tmp_path / 'data'))
    metric_utils.clear_feature_detector_cache()

# Features of uint8 images [N, C, H, W] from a stand-in detector, called directly.
def load_detector(det_dir, name):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning) # torch.jit.load is deprecated; the files are TorchScript.
        return torch.jit.load(os.path.join(det_dir, name))

def detector_features(det_dir, name, images, **kwargs):
    det = load_detector(det_dir, name)
    if images.shape[1] == 1:
        images = images.repeat([1, 3, 1, 1])
    return det(images, **kwargs).detach().numpy().astype(np.float64)

def dataset_images(dataset_kwargs):
    dataset = dnnlib.util.construct_class_by_name(**dataset_kwargs)
    return torch.from_numpy(np.stack([dataset[i][0] for i in range(len(dataset))]))

# FID through eigenvalues: tr sqrt(S1 S2) = sum sqrt(eig(S1 S2)) (real, >= 0 for PSD S1, S2).
def fid_reference(x, y):
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False, bias=True), np.cov(y, rowvar=False, bias=True)
    eig = np.linalg.eigvals(s1 @ s2).real.clip(min=0)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig).sum())

#----------------------------------------------------------------------------

def test_frechet_distance_diagonal_closed_form():
    rnd = np.random.RandomState(0)
    mu1, mu2 = rnd.randn(5), rnd.randn(5)
    d1, d2 = rnd.rand(5) + 0.1, rnd.rand(5) + 0.1
    expected = ((mu1 - mu2) ** 2).sum() + (d1 + d2 - 2 * np.sqrt(d1 * d2)).sum()
    got = frechet_inception_distance.frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2))
    assert got == pytest.approx(expected, rel=1e-10)

def test_frechet_distance_general_vs_eigenvalues():
    rnd = np.random.RandomState(1)
    x, y = rnd.randn(200, 6), rnd.randn(300, 6) @ rnd.randn(6, 6) + 0.5
    s1, s2 = np.cov(x, rowvar=False, bias=True), np.cov(y, rowvar=False, bias=True)
    got = frechet_inception_distance.frechet_distance(x.mean(0), s1, y.mean(0), s2)
    assert got == pytest.approx(fid_reference(x, y), rel=1e-8)
    assert frechet_inception_distance.frechet_distance(x.mean(0), s1, x.mean(0), s1) == pytest.approx(0, abs=1e-8)
    with pytest.raises(ValueError, match='Mismatched'):
        frechet_inception_distance.frechet_distance(x.mean(0), s1, y.mean(0)[:3], s2[:3, :3])

def test_feature_stats_population_moments_and_max_items(tmp_path):
    rnd = np.random.RandomState(2)
    x = rnd.randn(50, 4).astype(np.float32)
    stats = metric_utils.FeatureStats(capture_all=True, capture_mean_cov=True, max_items=43)
    for chunk in np.array_split(x, 7):
        stats.append(chunk)
    assert stats.is_full() and stats.num_items == 43
    mean, cov = stats.get_mean_cov()
    ref = x[:43].astype(np.float64)
    np.testing.assert_allclose(mean, ref.mean(0), rtol=1e-10)
    np.testing.assert_allclose(cov, np.cov(ref, rowvar=False, bias=True), rtol=1e-8, atol=1e-12)
    np.testing.assert_array_equal(stats.get_all(), x[:43])
    old_mask = os.umask(0o022)
    try:
        for name in ['stats.pkl', 'stats.npz']:
            stats.save(str(tmp_path / name))                 # Through dnnlib.util.atomic_write.
            assert ((tmp_path / name).stat().st_mode & 0o777) == 0o644
    finally:
        os.umask(old_mask)
    assert sorted(os.listdir(tmp_path)) == ['stats.npz', 'stats.pkl']
    for name in ['stats.pkl', 'stats.npz']:
        loaded = metric_utils.FeatureStats.load(str(tmp_path / name))
        np.testing.assert_array_equal(loaded.get_all(), x[:43])
        np.testing.assert_array_equal(loaded.get_mean_cov()[1], cov)
        assert loaded.max_items == 43 and loaded.num_items == 43
    with pytest.raises(ValueError, match='Features must be'):
        stats.append(x[0])

#----------------------------------------------------------------------------

def test_kid_vs_naive_double_loop():
    rnd = np.random.RandomState(3)
    real, gen = rnd.randn(7, 3), rnd.randn(7, 3) + 0.3
    k = lambda a, b: (sum(a[i] * b[i] for i in range(3)) / 3 + 1) ** 3
    m = 7
    xx = sum(k(gen[i], gen[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(real[i], real[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(gen[i], real[j]) for i in range(m) for j in range(m)) / (m * m)
    got = kernel_inception_distance.kernel_distance(real, gen, num_subsets=3, max_subset_size=1000)
    assert got == pytest.approx(xx + yy - 2 * xy, rel=1e-9)
    with pytest.raises(ValueError, match='at least 2'):
        kernel_inception_distance.kernel_distance(real[:1], gen, num_subsets=1)

def test_inception_score_vs_direct_formula():
    rnd = np.random.RandomState(4)
    logits = rnd.randn(40, 5) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for part in np.split(probs, 4):
        marginal = [sum(p[k] for p in part) / len(part) for k in range(5)]
        kl = [sum(p[k] * (math.log(p[k]) - math.log(marginal[k])) for k in range(5)) for p in part]
        scores.append(math.exp(sum(kl) / len(kl)))
    mean, std = inception_score.inception_score(probs, num_splits=4)
    assert mean == pytest.approx(np.mean(scores), rel=1e-10)
    assert std == pytest.approx(np.std(scores), rel=1e-8)
    assert inception_score.inception_score(np.eye(5)[[0, 1, 2, 3, 4] * 2], num_splits=1)[0] == pytest.approx(5)

def test_precision_recall_vs_brute_force_knn():
    rnd = np.random.RandomState(5)
    real, gen = rnd.randn(30, 4), rnd.randn(25, 4) * 1.5 + 0.5

    def coverage(manifold, probes, k):
        radii = [sorted(np.linalg.norm(m - o) for o in manifold)[k] for m in manifold]
        inside = [any(np.linalg.norm(p - m) <= r for m, r in zip(manifold, radii)) for p in probes]
        return sum(inside) / len(inside)

    real_t, gen_t = torch.tensor(real, dtype=torch.float32), torch.tensor(gen, dtype=torch.float32)
    for kw in [dict(row_batch_size=10000, col_batch_size=10000), dict(row_batch_size=7, col_batch_size=4)]:
        assert precision_recall.manifold_coverage(real_t, gen_t, nhood_size=3, **kw) == pytest.approx(coverage(real, gen, 3))
        assert precision_recall.manifold_coverage(gen_t, real_t, nhood_size=3, **kw) == pytest.approx(coverage(gen, real, 3))

#----------------------------------------------------------------------------

def test_slerp_geometry_and_filtered_mean():
    rnd = torch.Generator().manual_seed(6)
    a, b = torch.randn([4, 5], generator=rnd, dtype=torch.float64), torch.randn([4, 5], generator=rnd, dtype=torch.float64)
    t = torch.tensor([[0.0], [0.25], [0.5], [1.0]], dtype=torch.float64)
    out = perceptual_path_length.slerp(a, b, t)
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((an * bn).sum(1))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(torch.acos((out * an).sum(1).clamp(-1, 1)), t[:, 0] * omega)
    torch.testing.assert_close(torch.acos((out * bn).sum(1).clamp(-1, 1)), (1 - t[:, 0]) * omega)

    values = np.random.RandomState(7).rand(300) ** 3
    s = np.sort(values)
    lo, hi = s[int(np.floor(0.01 * 299))], s[int(np.ceil(0.99 * 299))]
    expected = np.mean([v for v in values if lo <= v <= hi])
    assert perceptual_path_length.filtered_mean(values) == pytest.approx(expected, rel=1e-12)

#----------------------------------------------------------------------------

def test_fid_end_to_end_vs_direct_features(env):
    TinyG.z_log.clear()
    G = TinyG()
    opts = metric_utils.MetricOptions(G=G, dataset_kwargs=env.dataset_kwargs, cache=False)
    fid = frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=20)

    real = detector_features(env.det_dir, 'inception-2015-12-05.pt', dataset_images(env.dataset_kwargs), return_features=True)
    z = torch.cat(TinyG.z_log)[:20]
    with torch.no_grad():
        fake_images = (G(z, None) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    fake = detector_features(env.det_dir, 'inception-2015-12-05.pt', fake_images, return_features=True)
    assert len(real) == 24
    assert fid == pytest.approx(fid_reference(fake, real), rel=1e-4, abs=1e-6)

def test_ppl_wend_vs_direct_formula(env, monkeypatch):
    calls = dnnlib.EasyDict(mapping=[], synthesis=[])
    mapping_forward, synthesis_forward = TinyMapping.forward, TinySynthesis.forward
    def log_mapping(self, z, c, **kwargs):
        calls.mapping.append(mapping_forward(self, z, c, **kwargs))
        return calls.mapping[-1]
    def log_synthesis(self, ws, noise_mode='random', force_fp32=False):
        calls.synthesis.append((ws.clone(), self.b16.noise_const.clone(), noise_mode))
        return synthesis_forward(self, ws, noise_mode=noise_mode, force_fp32=force_fp32)
    monkeypatch.setattr(TinyMapping, 'forward', log_mapping)
    monkeypatch.setattr(TinySynthesis, 'forward', log_synthesis)
    G = TinyG()
    opts = metric_utils.MetricOptions(G=G, cache=False)
    eps = 1e-2
    ppl = perceptual_path_length.compute_ppl(opts, num_samples=6, epsilon=eps, space='w', sampling='end', crop=True, batch_size=2)

    # Rebuild every distance from the logged latents and noise with the original G.
    vgg16 = load_detector(env.det_dir, 'vgg16.pt')
    dists = []
    for w01, (ws, noise, noise_mode) in zip(calls.mapping, calls.synthesis):
        w0, w1 = w01.chunk(2)
        assert noise_mode == 'const'
        torch.testing.assert_close(ws, torch.cat([w0, w0 + eps * (w1 - w0)]))
        G.synthesis.b16.noise_const.copy_(noise)
        with torch.no_grad():
            img = (synthesis_forward(G.synthesis, ws, noise_mode='const')[:, :, 6:14, 4:12] + 1) * 127.5 # Face crop of 16x16.
            f = vgg16(img, resize_images=False, return_lpips=True).to(torch.float64)
        dists += ((f[:2] - f[2:]) ** 2).sum(1).div(eps ** 2).tolist()
    assert len(dists) == 6 and len({round(n.sum().item(), 6) for _, n, _ in calls.synthesis}) == 3 # Fresh noise per batch.
    assert ppl == pytest.approx(np.mean(dists), rel=1e-4) # With 6 samples the percentiles keep them all.

def test_dataset_stats_cache_hit_and_miss(env, monkeypatch):
    calls = []
    run_detector = metric_utils.run_detector
    monkeypatch.setattr(metric_utils, 'run_detector', lambda det, images, **kw: calls.append(len(images)) or run_detector(det, images, **kw))
    opts = metric_utils.MetricOptions(dataset_kwargs=env.dataset_kwargs, cache=True)
    compute = lambda max_items: metric_utils.compute_feature_stats_for_dataset(opts, metric_utils.INCEPTION_URL,
        dict(return_features=True), batch_size=8, capture_mean_cov=True, max_items=max_items)

    first = compute(None)
    assert sum(calls) == 24
    assert len(os.listdir(dnnlib.make_cache_dir_path('gan-metrics'))) == 1
    second = compute(None)
    assert sum(calls) == 24 # Hit: the detector did not run again.
    np.testing.assert_array_equal(first.get_mean_cov()[1], second.get_mean_cov()[1])
    compute(10)
    assert sum(calls) == 34 # Miss: different max_items.
    opts.dataset_kwargs.xflip = True
    compute(None)
    assert sum(calls) == 34 + 48 # Miss: different dataset options.

def test_grayscale_dataset_features_repeat_channels(env):
    kwargs = make_image_folder(env.tmp / 'gray', num_images=5, channels=1)
    opts = metric_utils.MetricOptions(dataset_kwargs=kwargs, cache=False)
    stats = metric_utils.compute_feature_stats_for_dataset(opts, metric_utils.VGG16_URL, dict(return_features=True), capture_all=True)
    expected = detector_features(env.det_dir, 'vgg16.pt', dataset_images(kwargs), return_features=True)
    np.testing.assert_allclose(stats.get_all(), expected, rtol=1e-5, atol=1e-6)

#----------------------------------------------------------------------------

def test_offline_error_names_file_and_folder(tmp_path, monkeypatch):
    empty = tmp_path / 'nothing'
    monkeypatch.setenv('DNNLIB_DETECTOR_DIR', str(empty))
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    def offline(*args, **kwargs):
        raise OSError('network is unreachable')
    monkeypatch.setattr(dnnlib.util, '_download', offline)
    metric_utils.clear_feature_detector_cache()
    with pytest.raises(FileNotFoundError) as info:
        metric_utils.get_feature_detector(metric_utils.VGG16_URL)
    message = str(info.value)
    assert '\n' not in message and 'vgg16.pt' in message and str(empty) in message
    with pytest.raises(FileNotFoundError, match='inception-2015-12-05.pt'):
        metric_utils.get_feature_detector(str(tmp_path / 'inception-2015-12-05.pt'))

def test_corrupt_detector_file_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv('DNNLIB_DETECTOR_DIR', str(tmp_path))
    (tmp_path / 'vgg16.pt').write_bytes(b'not a torchscript archive')
    metric_utils.clear_feature_detector_cache()
    with pytest.raises(ValueError, match='vgg16.pt is not a TorchScript feature detector') as info:
        metric_utils.get_feature_detector(metric_utils.VGG16_URL)
    assert '\n' not in str(info.value)

def test_detector_from_download_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('DNNLIB_DETECTOR_DIR', str(tmp_path / 'nothing'))
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    src = write_stand_in_detectors(tmp_path / 'src')
    cached = dnnlib.util.url_cache_path(metric_utils.VGG16_URL)
    os.makedirs(os.path.dirname(cached))
    os.replace(os.path.join(src, 'vgg16.pt'), cached)
    monkeypatch.setattr(dnnlib.util, '_download', None) # Any download attempt would fail loudly.
    det = metric_utils.get_feature_detector(metric_utils.VGG16_URL)
    assert det(torch.zeros([1, 3, 8, 8], dtype=torch.uint8), return_features=True).shape == (1, 8)
    metric_utils.clear_feature_detector_cache()

#----------------------------------------------------------------------------

def test_calc_metric_all_registered_small(env):
    G = TinyG()
    custom = [m for m in metric_main.list_valid_metrics() if m.endswith('_custom')] # Need a feature network: tests/test_custom_features.py.
    custom += [m for m in metric_main.list_valid_metrics() if m.startswith('eq')] # Need a StyleGAN3 G: tests/test_equivariance.py.
    for metric in [m for m in metric_main.list_valid_metrics() if m not in custom]:
        result = metric_main.calc_metric(metric, G=G, dataset_kwargs=env.dataset_kwargs, max_items=12, cache=False)
        assert result.metric == metric and result.max_items == 12 and result.num_gpus == 1
        assert all(np.isfinite(v) for v in result.results.values()), (metric, result.results)
    assert 0 <= result.results.ppl_wend
    with pytest.raises(ValueError, match='Unknown metric.*fid50k_full'):
        metric_main.calc_metric('fid5k', G=G, dataset_kwargs=env.dataset_kwargs)

def test_report_metric_appends_jsonl(tmp_path, capsys):
    result = dnnlib.EasyDict(results=dict(fid50k_full=1.5), metric='fid50k_full', total_time=2.0, total_time_str='2s', num_gpus=1)
    snapshot = str(tmp_path / 'network-snapshot-000000.pkl')
    metric_main.report_metric(result, run_dir=str(tmp_path), snapshot_pkl=snapshot)
    metric_main.report_metric(result, run_dir=str(tmp_path), snapshot_pkl=snapshot)
    lines = (tmp_path / 'metric-fid50k_full.jsonl').read_text().splitlines()
    assert len(lines) == 2
    entry = json.loads(lines[0])
    assert entry['results'] == {'fid50k_full': 1.5} and entry['snapshot_pkl'] == 'network-snapshot-000000.pkl'
    assert set(entry) == {'results', 'metric', 'total_time', 'total_time_str', 'num_gpus', 'snapshot_pkl', 'timestamp'}
    assert 'fid50k_full' in capsys.readouterr().out

def test_ranks_draw_different_latents():
    draws = []
    for rank in range(2):
        torch.manual_seed(123) # Every process starts from the same global seed.
        rnd = metric_utils.RankRandom(metric_utils.MetricOptions(num_gpus=2, rank=rank))
        draws.append(rnd.randn([3, 4]))
    assert not torch.equal(draws[0], draws[1])
    torch.manual_seed(123)
    torch.testing.assert_close(metric_utils.RankRandom(metric_utils.MetricOptions(num_gpus=2, rank=0)).randn([3, 4]), draws[0])

def test_progress_monitor_reports_sub_ranges(capsys):
    seen = []
    root = metric_utils.ProgressMonitor(verbose=True, progress_fn=lambda cur, total: seen.append((cur, total)))
    sub = root.sub(tag='dataset features', num_items=100, flush_interval=50, rel_lo=0.5, rel_hi=1)
    for cur in [10, 50, 60, 100]:
        sub.update(cur)
    assert seen == [(0, 1000), (500, 1000), (750, 1000), (1000, 1000)] # Start, sub start, flush at 50, the end.
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith('dataset features') and 'items 50' in lines[0]
