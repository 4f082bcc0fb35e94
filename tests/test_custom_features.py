# Tests of the metrics on a user-supplied feature network (fd_custom, pr_custom, acc_custom):
# the formulas against independent ones (eigen-decomposition, naive loops), the real-vs-real
# halves against the detector called directly, the cache key and the one-line errors.

import os
import warnings

import numpy as np
import PIL.Image
import pytest
import scipy.linalg
import torch

import dnnlib
from metrics import custom_features
from metrics import metric_main
from metrics import metric_utils

#----------------------------------------------------------------------------
# A feature network with the custom-detector contract: features are 4x4 area means, class = brightness bin.

class BrightnessNet(torch.nn.Module):
    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = images.to(torch.float32) / 255
        if return_features:
            return torch.nn.functional.adaptive_avg_pool2d(x, [4, 4]).flatten(1) * self.scale
        level = (x.mean(dim=[1, 2, 3]) * 10).floor().clamp(0, 9).long()
        return torch.nn.functional.one_hot(level, 10).to(torch.float32)

def write_net(path, net=None):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning) # torch.jit.script is deprecated; detectors are TorchScript.
        torch.jit.script(net or BrightnessNet()).save(str(path))
    metric_utils.clear_feature_detector_cache()
    return str(path)

#----------------------------------------------------------------------------
# A labelled 1-channel dataset whose image brightness encodes the class (bin centre), with pixel noise.

def make_labelled_folder(folder, num_images=40, resolution=8, seed=0):
    os.makedirs(folder, exist_ok=True)
    rnd = np.random.RandomState(seed)
    labels = []
    for i in range(num_images):
        cls = i % 10
        img = np.clip(cls * 25.5 + 12 + rnd.randint(-8, 9, size=[resolution, resolution]), 0, 255).astype(np.uint8)
        PIL.Image.fromarray(img).save(os.path.join(folder, f'img{i:04d}.png'))
        labels.append([f'img{i:04d}.png', cls])
    with open(os.path.join(folder, 'dataset.json'), 'w') as f:
        import json
        json.dump(dict(labels=labels), f)
    return dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=str(folder), use_labels=True)

#----------------------------------------------------------------------------
# Conditional stand-in generator: brightness of the intended class (honest=True) or always class 3.

class ClassG(torch.nn.Module):
    def __init__(self, honest=True, resolution=8):
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = 4, 10, resolution, 1
        self.honest = honest

    def forward(self, z, c, **kwargs):
        cls = c.argmax(1).to(torch.float32) if self.honest else torch.full([len(z)], 3.0)
        level = (cls * 25.5 + 12.75) / 127.5 - 1 + z[:, 0] * 0.02
        return level.reshape(-1, 1, 1, 1).expand(-1, 1, self.img_resolution, self.img_resolution)

@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    net = write_net(tmp_path / 'net.pt')
    monkeypatch.setenv(custom_features.CUSTOM_DETECTOR_ENV, net)
    yield dnnlib.EasyDict(tmp=tmp_path, net=net, dataset_kwargs=make_labelled_folder(tmp_path / 'data'))
    metric_utils.clear_feature_detector_cache()

#----------------------------------------------------------------------------

def test_fd_vs_symmetric_eigen_form():
    rnd = np.random.RandomState(1)
    x = rnd.randn(300, 5) @ rnd.randn(5, 5)
    y = rnd.randn(200, 5) @ rnd.randn(5, 5) + 0.7
    def cov(a): # Population covariance by explicit sums.
        d = a - a.mean(0)
        return d.T @ d / len(a)
    s1, s2 = cov(x), cov(y)
    w, v = np.linalg.eigh(s1)
    s1_half = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(s1_half @ s2 @ s1_half) # tr((S1^1/2 S2 S1^1/2)^1/2) = tr((S1 S2)^1/2).
    expected = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum()
    assert abs(custom_features.feature_fd(x, y) - expected) < 1e-8 * max(1, expected)
    assert abs(custom_features.feature_fd(x, x)) < 1e-6

def test_pr_vs_naive_loops():
    rnd = np.random.RandomState(2)
    ref, probe = rnd.randn(30, 3), rnd.randn(25, 3) * 0.6 + 0.8
    def radii(a): # Distance to the 3rd nearest other item.
        return [sorted(np.linalg.norm(a[i] - a[j]) for j in range(len(a)) if j != i)[2] for i in range(len(a))]
    def coverage(manifold, points):
        r = radii(manifold)
        return np.mean([any(np.linalg.norm(p - m) <= rm for m, rm in zip(manifold, r)) for p in points])
    precision, recall = custom_features.feature_pr(ref, probe, nhood_size=3)
    assert abs(precision - coverage(ref, probe)) < 1e-12
    assert abs(recall - coverage(probe, ref)) < 1e-12
    assert 0 < precision < 1 and 0 < recall < 1

def test_real_halves_are_disjoint_and_match_direct_features(env):
    opts = metric_utils.MetricOptions(dataset_kwargs=env.dataset_kwargs)
    a, b = custom_features.real_halves(opts, env.net)
    assert a.shape == b.shape == (20, 48) # Grey repeated to 3 channels, 4x4 means each.
    ds = dnnlib.util.construct_class_by_name(**env.dataset_kwargs)
    images = torch.from_numpy(np.stack([ds[i][0] for i in range(len(ds))]))
    direct = BrightnessNet()(images.repeat([1, 3, 1, 1]), return_features=True).double().numpy()
    order = np.random.RandomState(0).permutation(len(ds))
    np.testing.assert_allclose(a, direct[order[:20]], rtol=1e-6)
    np.testing.assert_allclose(b, direct[order[20:]], rtol=1e-6)

def test_metrics_end_to_end(env):
    kw = dict(G=ClassG(), dataset_kwargs=env.dataset_kwargs, device='cpu')
    fd = metric_main.calc_metric('fd_custom', **kw).results
    opts = metric_utils.MetricOptions(dataset_kwargs=env.dataset_kwargs)
    a, b = custom_features.real_halves(opts, env.net)
    assert abs(fd.fd_custom_real - custom_features.feature_fd(a, b)) < 1e-9
    assert np.isfinite(fd.fd_custom) and fd.fd_custom >= 0
    pr = metric_main.calc_metric('pr_custom', **kw).results
    assert (pr.pr_custom_real_precision, pr.pr_custom_real_recall) == custom_features.feature_pr(b, a)
    assert all(0 <= pr[k] <= 1 for k in pr)
    acc = metric_main.calc_metric('acc_custom', **kw, max_items=50).results
    assert acc.acc_custom == 1 and acc.acc_custom_real == 1
    liar = metric_main.calc_metric('acc_custom', **dict(kw, G=ClassG(honest=False)), max_items=200).results
    assert liar.acc_custom < 0.5 and liar.acc_custom_real == 1 # Right only when the drawn label is 3.

def test_one_seeded_generation_pass_serves_all_three(env, monkeypatch):
    class ShiftG(ClassG):
        def __init__(self):
            super().__init__()
            self.shift = torch.nn.Parameter(torch.zeros([]))
        def forward(self, z, c, **kwargs):
            return super().forward(z, c) + self.shift
    passes = []
    generate = custom_features._generate
    monkeypatch.setattr(custom_features, '_generate', lambda *args: passes.append(1) or generate(*args))
    G = ShiftG()
    kw = dict(G=G, dataset_kwargs=env.dataset_kwargs, device='cpu')
    first = metric_main.calc_metric('fd_custom', **kw).results
    assert metric_main.calc_metric('pr_custom', **kw).results and metric_main.calc_metric('acc_custom', **kw).results.acc_custom == 1
    assert len(passes) == 1
    custom_features._last_pass.update(key=None, value=None)
    assert metric_main.calc_metric('fd_custom', **kw).results == first and len(passes) == 2 # Seeded: same numbers.
    with torch.no_grad():
        G.shift.fill_(0.5) # New weights: a new pass, other images.
    assert metric_main.calc_metric('fd_custom', **kw).results.fd_custom != first.fd_custom and len(passes) == 3

def test_real_accuracy_is_read_once_per_network_and_dataset(env, monkeypatch, tmp_path):
    reads = []
    accuracy = custom_features._dataset_accuracy
    monkeypatch.setattr(custom_features, '_dataset_accuracy', lambda *args: reads.append(1) or accuracy(*args))
    monkeypatch.setattr(custom_features, '_real_acc', dict(key=None, value=None))
    kw = dict(G=ClassG(), dataset_kwargs=env.dataset_kwargs, device='cpu')
    for _snapshot in range(3):
        assert metric_main.calc_metric('acc_custom', **kw).results.acc_custom_real == 1
    assert len(reads) == 1
    write_net(env.net, BrightnessNet(scale=2.0)) # The same path with other contents: read again.
    assert metric_main.calc_metric('acc_custom', **kw).results.acc_custom_real == 1 and len(reads) == 2
    other = make_labelled_folder(tmp_path / 'other', num_images=30) # Another dataset: read again.
    assert metric_main.calc_metric('acc_custom', **dict(kw, dataset_kwargs=other)).results.acc_custom_real == 1 and len(reads) == 3

def test_cache_follows_the_detector_file(env):
    opts = metric_utils.MetricOptions(dataset_kwargs=env.dataset_kwargs)
    first = custom_features.dataset_features(opts, env.net, 40)
    assert len(os.listdir(dnnlib.make_cache_dir_path('gan-metrics'))) == 1
    np.testing.assert_array_equal(custom_features.dataset_features(opts, env.net, 40), first)
    write_net(env.net, BrightnessNet(scale=2.0)) # Same path, new contents: the cache must not answer.
    np.testing.assert_allclose(custom_features.dataset_features(opts, env.net, 40), first * 2)
    assert len(os.listdir(dnnlib.make_cache_dir_path('gan-metrics'))) == 2

def test_errors_are_one_line(env, monkeypatch):
    with pytest.raises(ValueError, match='acc_custom needs a class-conditional'):
        G = ClassG()
        G.c_dim = 0
        metric_main.calc_metric('acc_custom', G=G, dataset_kwargs=env.dataset_kwargs)
    monkeypatch.delenv(custom_features.CUSTOM_DETECTOR_ENV)
    with pytest.raises(ValueError, match='--detector'):
        metric_main.calc_metric('fd_custom', G=ClassG(), dataset_kwargs=env.dataset_kwargs)
    monkeypatch.setenv(custom_features.CUSTOM_DETECTOR_ENV, str(env.tmp / 'missing.pt'))
    with pytest.raises(FileNotFoundError, match='missing.pt'):
        metric_main.calc_metric('pr_custom', G=ClassG(), dataset_kwargs=env.dataset_kwargs)

#----------------------------------------------------------------------------
