# Quality metrics on the features of a feature network the user supplies (a TorchScript file):
# Frechet distance, precision/recall (k-NN manifolds, Kynkaanniemi et al. 2019) and class
# accuracy, each next to its real-vs-real floor measured between two disjoint halves of the dataset.
# The demo scores its digits this way with its own classifier; any user can score offline with theirs.

import copy
import hashlib
import os
import warnings

import numpy as np
import scipy.linalg
import torch

import dnnlib

from . import metric_utils
from .frechet_inception_distance import frechet_distance
from .precision_recall import manifold_coverage

#----------------------------------------------------------------------------
# The feature network: a TorchScript file named by $DNNLIB_CUSTOM_DETECTOR (calc_metrics.py --detector).
# Call contract (that of the published Inception file): detector(images) with uint8 images
# [N, 3, H, W] (one-channel images are repeated to three); return_features=True gives features
# [N, F] (fd_custom, pr_custom), return_features=False class scores [N, classes] (acc_custom).

CUSTOM_DETECTOR_ENV = 'DNNLIB_CUSTOM_DETECTOR'
MAX_HALF = 25000    # Items per real half (and generated images) at most.

def get_detector_path():
    path = os.environ.get(CUSTOM_DETECTOR_ENV)
    if not path:
        raise ValueError(f'The *_custom metrics need a feature network: give calc_metrics.py --detector=PATH '
            f'(a TorchScript file) or set {CUSTOM_DETECTOR_ENV}')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Custom feature network not found: {path} (--detector / {CUSTOM_DETECTOR_ENV})')
    return os.path.abspath(path)

#----------------------------------------------------------------------------
# md5 of a file's bytes: part of the cache key, so a retrained network at the same path is not served stale features.

def _file_md5(path):
    md5 = hashlib.md5()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            md5.update(chunk)
    return md5.hexdigest()

#----------------------------------------------------------------------------
# Features [N, F] (float64) of up to max_items dataset images, cached under <cache>/gan-metrics
# with a key that covers the detector file's contents.

def dataset_features(opts, detector_path, max_items):
    if opts.cache:
        key = metric_utils.dataset_stats_cache_key(opts.dataset_kwargs, _file_md5(detector_path),
            dict(return_features=True), dict(max_items=max_items, custom=True))
        name = os.path.splitext(os.path.basename(str(opts.dataset_kwargs.get('path', 'dataset'))))[0]
        cache_file = dnnlib.make_cache_dir_path('gan-metrics', f'{name}-custom-{key}.pkl')
        if metric_utils._broadcast_flag(opts.rank == 0 and os.path.isfile(cache_file), opts): # pylint: disable=protected-access
            return metric_utils.FeatureStats.load(cache_file).get_all().astype(np.float64)
    cache, opts.cache = opts.cache, False
    try:
        stats = metric_utils.compute_feature_stats_for_dataset(opts, detector_path, dict(return_features=True),
            rel_lo=0, rel_hi=0, max_items=max_items, capture_all=True)
    finally:
        opts.cache = cache
    if cache and opts.rank == 0:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        stats.save(cache_file)
    return stats.get_all().astype(np.float64)

#----------------------------------------------------------------------------
# The dataset's features split into two disjoint halves A and B of n items each (seeded shuffle),
# the whole dataset when it holds at most 2 * MAX_HALF images, else a seeded random subset of that size.

def real_halves(opts, detector_path):
    opts.dataset_kwargs.update(max_size=2 * MAX_HALF, xflip=False)
    num_items = opts.cap(2 * MAX_HALF)
    features = dataset_features(opts, detector_path, num_items)
    n = len(features) // 2
    if n < 4:
        raise ValueError(f'The *_custom metrics need at least 8 dataset images: got {len(features)}')
    order = np.random.RandomState(0).permutation(len(features))
    return features[order[:n]], features[order[n:2 * n]]

#----------------------------------------------------------------------------
# One pass over n generated images serves all three metrics: the latents and labels are seeded (the same
# for every snapshot, so a learning curve is not blurred by sampling noise), and the last pass is kept
# for the same generator object with the same weights, network file and options.

_last_pass = dict(key=None, value=None)

def _module_digest(module):
    md5 = hashlib.md5()
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        md5.update(name.encode())
        md5.update(tensor.detach().to('cpu', torch.float32).contiguous().numpy().tobytes())
    return md5.hexdigest()

def generated_pass(opts, detector_path, n, batch_size=64):
    """(features [n, F] float64, correct [n] bool or None): features of n images of opts.G (batch_size
    per G call) and, for conditional generators, whether the network classifies each as its label."""
    key = (id(opts.G), _module_digest(opts.G), _file_md5(detector_path), n, repr(sorted(opts.G_kwargs.items())), str(opts.device),
        opts.num_gpus, opts.rank, repr(sorted(opts.dataset_kwargs.items())))
    return _last_value(_last_pass, key, lambda: _generate(opts, detector_path, n, batch_size))

# The value kept in `store` when its key is `key`, else compute() kept under `key` (the old value freed first).
def _last_value(store, key, compute):
    if store['key'] != key:
        store.update(key=None, value=None)
        store.update(key=key, value=compute())
    return store['value']

def _generate(opts, detector_path, n, batch_size):
    G = copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)
    detector = metric_utils.get_feature_detector(detector_path, device=opts.device, num_gpus=opts.num_gpus, rank=opts.rank)
    dataset = metric_utils.construct_dataset(opts) if G.c_dim > 0 else None
    z_gen = torch.Generator().manual_seed(opts.rank)
    label_rnd = np.random.RandomState(opts.rank)
    features = metric_utils.FeatureStats(capture_all=True, max_items=n)
    correct = metric_utils.FeatureStats(capture_all=True, max_items=n)
    progress = opts.progress.sub(tag='generator features', num_items=n)
    with torch.no_grad():
        while not features.is_full():
            z = torch.randn([batch_size, G.z_dim], generator=z_gen).to(opts.device)
            c = metric_utils.sample_labels(dataset, batch_size, G.c_dim, opts.device, label_rnd)
            images = metric_utils.generate_images(G, z, c, opts.G_kwargs)
            features.append_torch(metric_utils.run_detector(detector, images, return_features=True), opts.num_gpus, opts.rank)
            if G.c_dim > 0:
                hit = metric_utils.run_detector(detector, images).argmax(1) == c.argmax(1)
                correct.append_torch(hit.to(torch.float32)[:, None], opts.num_gpus, opts.rank)
            progress.update(features.num_items)
    return features.get_all().astype(np.float64), (correct.get_all()[:, 0] > 0.5 if G.c_dim > 0 else None)

#----------------------------------------------------------------------------
# Frechet distance between Gaussians fitted (mean, population covariance) to two feature sets.

def feature_fd(x, y):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning) # Collapsed features have singular covariances; the real part stays meaningful.
        return frechet_distance(x.mean(0), np.cov(x, rowvar=False, bias=True), y.mean(0), np.cov(y, rowvar=False, bias=True))

#----------------------------------------------------------------------------
# Precision and recall of set `probe` against set `ref` with k-NN manifolds (raw features, float64).

def feature_pr(ref, probe, nhood_size=3):
    ref, probe = torch.from_numpy(ref), torch.from_numpy(probe)
    precision = manifold_coverage(ref, probe, nhood_size=nhood_size)
    recall = manifold_coverage(probe, ref, nhood_size=nhood_size)
    return precision, recall

#----------------------------------------------------------------------------
# fd_custom: FD of n generated images against real half B, and of real half A against half B (the floor).

def compute_fd(opts):
    path = get_detector_path()
    real_a, real_b = real_halves(opts, path)
    gen, _correct = generated_pass(opts, path, len(real_b))
    if opts.rank != 0:
        return float('nan'), float('nan')
    return feature_fd(gen, real_b), feature_fd(real_a, real_b)

#----------------------------------------------------------------------------
# pr_custom: precision/recall (k = 3) of n generated images against half B, and of half A against half B.

def compute_pr(opts, nhood_size=3):
    path = get_detector_path()
    real_a, real_b = real_halves(opts, path)
    gen, _correct = generated_pass(opts, path, len(real_b))
    if opts.rank != 0:
        return (float('nan'),) * 4
    return feature_pr(real_b, gen, nhood_size) + feature_pr(real_b, real_a, nhood_size)

#----------------------------------------------------------------------------
# acc_custom: fraction of the n generated images (the pass above) the network classifies as the label they
# were generated for (labels drawn from the dataset), and the same fraction for the dataset's own images.

def compute_acc(opts, batch_size=64):
    if opts.G is None or opts.G.c_dim == 0:
        raise ValueError('acc_custom needs a class-conditional generator (c_dim > 0)')
    path = get_detector_path()
    dataset = metric_utils.construct_dataset(opts)
    if getattr(dataset, 'label_dim', 0) != opts.G.c_dim:
        raise ValueError(f'acc_custom needs dataset labels of width {opts.G.c_dim} (use_labels=True): got {getattr(dataset, "label_dim", 0)}')
    real_a, _real_b = real_halves(opts, path)
    _features, correct = generated_pass(opts, path, len(real_a), batch_size) # Dataset options as fd_custom's.
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    data_path = str(opts.dataset_kwargs.get('path', ''))
    stat = os.stat(data_path) if os.path.exists(data_path) else None
    stamp = (stat.st_size, stat.st_mtime_ns) if stat else None
    key = (_file_md5(path), repr(sorted(opts.dataset_kwargs.items())), stamp, opts.max_items, str(opts.device), opts.num_gpus, opts.rank)
    return float(correct.mean()), _last_value(_real_acc, key, lambda: _dataset_accuracy(opts, path, batch_size))

# The fraction of the dataset's images (all of them, or opts.max_items) the network classifies as their label; the
# last result is kept for the same network file, dataset options and dataset file size and time (a training run asks
# again at every snapshot).

_real_acc = dict(key=None, value=None)

def _dataset_accuracy(opts, path, batch_size):
    dataset = metric_utils.construct_dataset(opts)
    detector = metric_utils.get_feature_detector(path, device=opts.device, num_gpus=opts.num_gpus, rank=opts.rank)
    hits = torch.zeros([2], dtype=torch.float64) # correct, total (this rank's share of the dataset)
    items = list(range(opts.rank, opts.cap(len(dataset)), opts.num_gpus))
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            images, labels = zip(*[dataset[i] for i in items[start:start + batch_size]])
            pred = metric_utils.run_detector(detector, torch.from_numpy(np.stack(images)).to(opts.device)).argmax(1).cpu()
            hits += torch.tensor([float((pred == torch.from_numpy(np.stack(labels)).argmax(1)).sum()), len(labels)], dtype=torch.float64)
    if opts.num_gpus > 1:
        hits = hits.to(opts.device)
        torch.distributed.all_reduce(hits)
    return float(hits[0] / hits[1])

#----------------------------------------------------------------------------
