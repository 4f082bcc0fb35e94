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
# Features [n, F] (float64) of n images from opts.G, batch_size images per G call (small networks: large batches are faster).

def generated_features(opts, detector_path, n, batch_size=64):
    stats = metric_utils.compute_feature_stats_for_generator(opts, detector_path, dict(return_features=True),
        rel_lo=0, rel_hi=1, batch_size=batch_size, batch_gen=batch_size, capture_all=True, max_items=n)
    return stats.get_all().astype(np.float64)

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
    gen = generated_features(opts, path, len(real_b))
    if opts.rank != 0:
        return float('nan'), float('nan')
    return feature_fd(gen, real_b), feature_fd(real_a, real_b)

#----------------------------------------------------------------------------
# pr_custom: precision/recall (k = 3) of n generated images against half B, and of half A against half B.

def compute_pr(opts, nhood_size=3):
    path = get_detector_path()
    real_a, real_b = real_halves(opts, path)
    gen = generated_features(opts, path, len(real_b))
    if opts.rank != 0:
        return (float('nan'),) * 4
    return feature_pr(real_b, gen, nhood_size) + feature_pr(real_b, real_a, nhood_size)

#----------------------------------------------------------------------------
# acc_custom: fraction of n generated images (n as above) the network classifies as the label they were
# generated for (labels drawn from the dataset), and the same fraction for the dataset's own images.

def compute_acc(opts, batch_size=64):
    if opts.G is None or opts.G.c_dim == 0:
        raise ValueError('acc_custom needs a class-conditional generator (c_dim > 0)')
    path = get_detector_path()
    detector = metric_utils.get_feature_detector(path, device=opts.device, num_gpus=opts.num_gpus, rank=opts.rank)
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    dataset = metric_utils.construct_dataset(opts)
    if getattr(dataset, 'label_dim', 0) != opts.G.c_dim:
        raise ValueError(f'acc_custom needs dataset labels of width {opts.G.c_dim} (use_labels=True): got {getattr(dataset, "label_dim", 0)}')
    G = copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)
    rnd = metric_utils.RankRandom(opts)
    correct = torch.zeros([2], dtype=torch.float64, device=opts.device) # generated, real
    count = torch.zeros([2], dtype=torch.float64, device=opts.device)
    num_gen = -(-opts.cap(min(len(dataset) // 2, MAX_HALF)) // opts.num_gpus) # As many as fd_custom and pr_custom.
    with torch.no_grad():
        for start in range(0, num_gen, batch_size):
            c = metric_utils.sample_labels(dataset, min(batch_size, num_gen - start), G.c_dim, opts.device, rnd.numpy)
            images = metric_utils.generate_images(G, rnd.randn([len(c), G.z_dim]), c, opts.G_kwargs)
            pred = metric_utils.run_detector(detector, images).argmax(1)
            correct[0] += (pred == c.argmax(1)).sum()
            count[0] += len(c)
        real_items = list(range(opts.rank, opts.cap(len(dataset)), opts.num_gpus))
        for start in range(0, len(real_items), batch_size):
            images, labels = zip(*[dataset[i] for i in real_items[start:start + batch_size]])
            pred = metric_utils.run_detector(detector, torch.from_numpy(np.stack(images)).to(opts.device)).argmax(1)
            correct[1] += (pred.cpu() == torch.from_numpy(np.stack(labels)).argmax(1)).sum()
            count[1] += len(labels)
    if opts.num_gpus > 1:
        torch.distributed.all_reduce(correct)
        torch.distributed.all_reduce(count)
    acc = (correct / count.clamp(min=1)).cpu().tolist()
    return acc[0], acc[1]

#----------------------------------------------------------------------------
