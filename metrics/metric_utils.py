# Shared machinery of the quality metrics: options, feature detectors, feature statistics,
# the on-disk cache of dataset statistics and the loops that feed images to a detector.

import copy
import hashlib
import os
import pickle
import time
import urllib.parse
import warnings

import numpy as np
import torch

import dnnlib

#----------------------------------------------------------------------------
# Where the published detectors live (see COMPAT.md) and the local folder searched first.

DETECTOR_CDN = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/'
INCEPTION_URL = DETECTOR_CDN + 'inception-2015-12-05.pt'
VGG16_URL = DETECTOR_CDN + 'vgg16.pt'
DETECTOR_DIR_ENV = 'DNNLIB_DETECTOR_DIR'

#----------------------------------------------------------------------------
# Everything a metric needs to know about what to evaluate and where.

class MetricOptions:
    def __init__(self,
        G               = None,     # Generator (torch.nn.Module); None for dataset-only work.
        G_kwargs        = {},       # Extra keyword arguments for G(z, c, ...), e.g. noise_mode.
        dataset_kwargs  = {},       # Dataset constructor dict (class_name, path, ...).
        num_gpus        = 1,        # Number of cooperating processes.
        rank            = 0,        # Rank of this process, 0 <= rank < num_gpus.
        device          = None,     # torch.device (or its name); None = cpu.
        progress        = None,     # ProgressMonitor; None = silent.
        cache           = True,     # Read and write dataset statistics in the on-disk cache.
        max_items       = None,     # Cap on every item count (real, generated, PPL samples); None = the metric's own. For tests and quick looks only.
    ):
        if not 0 <= rank < num_gpus:
            raise ValueError(f'rank must be in [0, num_gpus): got rank={rank}, num_gpus={num_gpus}')
        if max_items is not None and int(max_items) < 1:
            raise ValueError(f'max_items must be a positive integer or None: got {max_items}')
        self.G              = G
        self.G_kwargs       = dnnlib.EasyDict(G_kwargs)
        self.dataset_kwargs = dnnlib.EasyDict(dataset_kwargs)
        self.num_gpus       = num_gpus
        self.rank           = rank
        self.device         = torch.device(device) if device is not None else torch.device('cpu')
        self.progress       = progress.sub() if progress is not None and rank == 0 else ProgressMonitor()
        self.cache          = cache
        self.max_items      = None if max_items is None else int(max_items)

    # Apply the max_items cap to an item count (None = unlimited stays None unless capped).
    def cap(self, num_items):
        if self.max_items is None:
            return num_items
        return self.max_items if num_items is None else min(num_items, self.max_items)

#----------------------------------------------------------------------------
# Local file name of a detector URL or path, e.g. 'vgg16.pt'.

def get_feature_detector_name(url):
    return os.path.splitext(os.path.basename(urllib.parse.urlparse(url).path))[0]

#----------------------------------------------------------------------------
# The folder searched for detector files before the network: $DNNLIB_DETECTOR_DIR, else <cache>/detectors.

def get_detector_dir():
    return os.environ.get(DETECTOR_DIR_ENV) or dnnlib.make_cache_dir_path('detectors')

#----------------------------------------------------------------------------
# Local path of a detector: a local file, then the detector folder, then the download cache / network.

def resolve_feature_detector(url, verbose=False):
    if not dnnlib.util.is_url(url) and os.path.isfile(url):
        return url
    file_name = os.path.basename(urllib.parse.urlparse(url).path)
    detector_dir = get_detector_dir()
    candidate = os.path.join(detector_dir, file_name)
    if os.path.isfile(candidate):
        return candidate
    if not dnnlib.util.is_url(url):
        raise FileNotFoundError(f'Feature detector {url} not found; place {file_name} in {detector_dir} '
            f'(set {DETECTOR_DIR_ENV} to use another folder; calc_metrics.py and projector.py also take --detector-dir).')
    try:
        return dnnlib.util.open_url(url, return_filename=True, verbose=verbose)
    except OSError as e:
        raise FileNotFoundError(f'Feature detector {file_name} is not available offline and could not be '
            f'downloaded from {url} ({type(e).__name__}); place {file_name} in {detector_dir} '
            f'(set {DETECTOR_DIR_ENV} to use another folder; calc_metrics.py and projector.py also take --detector-dir).') from None

#----------------------------------------------------------------------------
# Load a TorchScript detector once per (url, device); rank 0 fetches first so ranks never race a download.

_feature_detector_cache = dict()

def get_feature_detector(url, device=torch.device('cpu'), num_gpus=1, rank=0, verbose=False):
    device = torch.device(device)
    key = (url, device)
    if key in _feature_detector_cache:
        return _feature_detector_cache[key]
    is_leader = (rank == 0)
    if not is_leader and num_gpus > 1:
        torch.distributed.barrier()
    try:
        path = resolve_feature_detector(url, verbose=(verbose and is_leader))
        with warnings.catch_warnings():
            # The published detectors are TorchScript files; torch.jit.load is the only way to read them.
            warnings.filterwarnings('ignore', message='.*torch.jit.load.*deprecated', category=DeprecationWarning)
            try:
                detector = torch.jit.load(path, map_location='cpu').eval().to(device)
            except (RuntimeError, ValueError) as err:
                reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise ValueError(f'{path} is not a TorchScript feature detector ({reason}); replace it with the published file') from None
        for param in detector.parameters():
            param.requires_grad = False # Shared by every caller: gradients only ever flow to the inputs.
    finally:
        if is_leader and num_gpus > 1:
            torch.distributed.barrier()
    _feature_detector_cache[key] = detector
    return detector

#----------------------------------------------------------------------------
# Forget loaded detectors (tests that swap detector files, or to free memory).

def clear_feature_detector_cache():
    _feature_detector_cache.clear()

#----------------------------------------------------------------------------
# Feed uint8 images [N, C, H, W] to a detector; 1-channel images are repeated to 3 channels.

def run_detector(detector, images, **detector_kwargs):
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f'Detector input must be [N, 1 or 3, H, W]: got {list(images.shape)}')
    if images.shape[1] == 1:
        images = images.repeat([1, 3, 1, 1])
    return detector(images, **detector_kwargs)

#----------------------------------------------------------------------------
# Running feature statistics: all features and/or raw first and second moments (float64).

class FeatureStats:
    def __init__(self,
        capture_all         = False,    # Keep every feature vector (KID, PR, IS).
        capture_mean_cov    = False,    # Accumulate sum and sum of outer products (FID).
        max_items           = None,     # Stop accepting items after this many; None = unlimited.
    ):
        self.capture_all = capture_all
        self.capture_mean_cov = capture_mean_cov
        self.max_items = max_items
        self.num_items = 0
        self.num_features = None
        self.all_features = None
        self.raw_mean = None
        self.raw_cov = None

    # Fix the feature width on the first append; later appends must match.
    def set_num_features(self, num_features):
        if self.num_features is not None:
            if num_features != self.num_features:
                raise ValueError(f'Feature width changed from {self.num_features} to {num_features}')
            return
        self.num_features = num_features
        self.all_features = []
        if self.capture_mean_cov:
            self.raw_mean = np.zeros([num_features], dtype=np.float64)
            self.raw_cov = np.zeros([num_features, num_features], dtype=np.float64)

    def is_full(self):
        return (self.max_items is not None) and (self.num_items >= self.max_items)

    # Add a batch of features [N, F] (numpy); items beyond max_items are dropped.
    def append(self, x):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f'Features must be [N, F]: got shape {list(x.shape)}')
        if self.max_items is not None and self.num_items + x.shape[0] > self.max_items:
            if self.num_items >= self.max_items:
                return
            x = x[:self.max_items - self.num_items]
        self.set_num_features(x.shape[1])
        self.num_items += x.shape[0]
        if self.capture_all:
            self.all_features.append(x)
        if self.capture_mean_cov:
            x64 = x.astype(np.float64)
            self.raw_mean += x64.sum(axis=0)
            self.raw_cov += x64.T @ x64

    # Add a batch computed by every rank: gather, interleave rank by rank (item i of rank r is item i*num_gpus+r).
    def append_torch(self, x, num_gpus=1, rank=0):
        if x.ndim != 2:
            raise ValueError(f'Features must be [N, F]: got shape {list(x.shape)}')
        if num_gpus > 1:
            parts = [torch.empty_like(x) for _ in range(num_gpus)]
            torch.distributed.all_gather(parts, x)
            x = torch.stack(parts, dim=1).flatten(0, 1) # [N*num_gpus, F]
        self.append(x.detach().cpu().numpy())

    def get_all(self):
        if not self.capture_all:
            raise RuntimeError('FeatureStats was created with capture_all=False')
        if not self.all_features:
            return np.zeros([0, self.num_features or 0], dtype=np.float32)
        return np.concatenate(self.all_features, axis=0)

    def get_all_torch(self):
        return torch.from_numpy(self.get_all())

    # Mean and population covariance (divide by N) of the features, from the raw moments.
    def get_mean_cov(self):
        if not self.capture_mean_cov:
            raise RuntimeError('FeatureStats was created with capture_mean_cov=False')
        if self.num_items == 0:
            raise RuntimeError('FeatureStats holds no items')
        mean = self.raw_mean / self.num_items
        cov = self.raw_cov / self.num_items - np.outer(mean, mean)
        return mean, cov

    # Plain arrays and numbers describing this object (None encoded as -1 / empty arrays).
    def to_arrays(self):
        F = self.num_features if self.num_features is not None else 0
        return dict(
            capture_all         = np.int64(self.capture_all),
            capture_mean_cov    = np.int64(self.capture_mean_cov),
            max_items           = np.int64(-1 if self.max_items is None else self.max_items),
            num_items           = np.int64(self.num_items),
            num_features        = np.int64(-1 if self.num_features is None else self.num_features),
            all_features        = self.get_all() if (self.capture_all and F) else np.zeros([0, F], np.float32),
            raw_mean            = self.raw_mean if self.raw_mean is not None else np.zeros([0]),
            raw_cov             = self.raw_cov if self.raw_cov is not None else np.zeros([0, 0]),
        )

    # Inverse of to_arrays().
    @staticmethod
    def from_arrays(arrays):
        a = {k: np.asarray(v) for k, v in arrays.items()}
        obj = FeatureStats(capture_all=bool(a['capture_all']), capture_mean_cov=bool(a['capture_mean_cov']),
            max_items=None if int(a['max_items']) < 0 else int(a['max_items']))
        if int(a['num_features']) >= 0:
            obj.set_num_features(int(a['num_features']))
            obj.num_items = int(a['num_items'])
            obj.all_features = [a['all_features'].astype(np.float32)] if obj.capture_all else []
            obj.raw_mean = a['raw_mean'].astype(np.float64) if obj.capture_mean_cov else obj.raw_mean
            obj.raw_cov = a['raw_cov'].astype(np.float64) if obj.capture_mean_cov else obj.raw_cov
        return obj

    # Save to a pickle of plain arrays ('.pkl') or an npz archive (any other name), atomically.
    def save(self, path):
        with dnnlib.util.atomic_write(path) as f:
            if path.endswith('.pkl'):
                pickle.dump(self.to_arrays(), f)
            else:
                np.savez(f, **self.to_arrays())

    @staticmethod
    def load(path):
        if path.endswith('.pkl'):
            with open(path, 'rb') as f:
                return FeatureStats.from_arrays(pickle.load(f))
        with np.load(path) as data:
            return FeatureStats.from_arrays({k: data[k] for k in data.files})

#----------------------------------------------------------------------------
# Progress reporting: prints a line per flush interval when verbose, calls progress_fn(cur, total) if given.

class ProgressMonitor:
    def __init__(self,
        tag             = None,     # Label printed at the start of each line.
        num_items       = None,     # Expected total; None = unknown.
        flush_interval  = 1000,     # Items between two reports.
        verbose         = False,    # Print progress lines to stdout.
        progress_fn     = None,     # Callback progress_fn(cur, total) in pfn units; None = none.
        pfn_lo          = 0,        # progress_fn value at 0 items.
        pfn_hi          = 1000,     # progress_fn value at num_items items.
        pfn_total       = 1000,     # Total passed to progress_fn.
    ):
        self.tag = tag
        self.num_items = num_items
        self.flush_interval = flush_interval
        self.verbose = verbose
        self.progress_fn = progress_fn
        self.pfn_lo = pfn_lo
        self.pfn_hi = pfn_hi
        self.pfn_total = pfn_total
        self.start_time = time.time()
        self.batch_time = self.start_time
        self.batch_items = 0
        if self.progress_fn is not None:
            self.progress_fn(self.pfn_lo, self.pfn_total)

    # Report cur_items done (reports at most once per flush_interval, always at the end).
    def update(self, cur_items):
        if cur_items < self.batch_items + self.flush_interval and (self.num_items is None or cur_items < self.num_items):
            return
        cur_time = time.time()
        total_time = cur_time - self.start_time
        time_per_item = (cur_time - self.batch_time) / max(cur_items - self.batch_items, 1)
        if self.verbose and self.tag is not None:
            print(f'{self.tag:<19s} items {cur_items:<7d} time {dnnlib.util.format_time(total_time):<12s} ms/item {time_per_item * 1e3:.2f}', flush=True)
        self.batch_time = cur_time
        self.batch_items = cur_items
        if self.progress_fn is not None and self.num_items is not None:
            self.progress_fn(self.pfn_lo + (self.pfn_hi - self.pfn_lo) * (cur_items / self.num_items), self.pfn_total)

    # A monitor for a sub-task covering [rel_lo, rel_hi] of this one's progress_fn range.
    def sub(self, tag=None, num_items=None, flush_interval=1000, rel_lo=0, rel_hi=1):
        return ProgressMonitor(
            tag             = tag,
            num_items       = num_items,
            flush_interval  = flush_interval,
            verbose         = self.verbose,
            progress_fn     = self.progress_fn,
            pfn_lo          = self.pfn_lo + (self.pfn_hi - self.pfn_lo) * rel_lo,
            pfn_hi          = self.pfn_lo + (self.pfn_hi - self.pfn_lo) * rel_hi,
            pfn_total       = self.pfn_total,
        )

#----------------------------------------------------------------------------
# The dataset of opts.dataset_kwargs; a missing path is one clear error.

def construct_dataset(opts):
    if not opts.dataset_kwargs:
        raise ValueError('This metric needs a dataset: MetricOptions.dataset_kwargs is empty')
    path = opts.dataset_kwargs.get('path', None)
    if isinstance(path, str) and not os.path.exists(path):
        raise FileNotFoundError(f'Dataset not found: {path}')
    return dnnlib.util.construct_class_by_name(**opts.dataset_kwargs)

#----------------------------------------------------------------------------
# Cache key of dataset statistics: md5 over the options and the dataset file's size and mtime.

def dataset_stats_cache_key(dataset_kwargs, detector_url, detector_kwargs, stats_kwargs):
    path = dataset_kwargs.get('path', None)
    file_id = None
    if isinstance(path, str) and os.path.exists(path):
        st = os.stat(path)
        file_id = (st.st_size, st.st_mtime_ns)
    args = dict(dataset_kwargs=dict(dataset_kwargs), detector_url=detector_url, detector_kwargs=dict(detector_kwargs),
        stats_kwargs=dict(stats_kwargs), file_id=file_id)
    return hashlib.md5(repr(sorted(args.items())).encode('utf-8')).hexdigest()

#----------------------------------------------------------------------------
# Whether rank 0 says yes (all ranks get the same answer).

def _broadcast_flag(flag, opts):
    if opts.num_gpus == 1:
        return flag
    t = torch.as_tensor(float(flag), dtype=torch.float32, device=opts.device)
    torch.distributed.broadcast(t, src=0)
    return bool(t.item() != 0)

#----------------------------------------------------------------------------
# Detector features of the dataset's images; rank r takes items r, r + num_gpus, ...
# Cached on disk under <cache>/gan-metrics/ when opts.cache.

def compute_feature_stats_for_dataset(opts, detector_url, detector_kwargs, rel_lo=0, rel_hi=1, batch_size=64,
        data_loader_kwargs=None, max_items=None, **stats_kwargs):
    dataset = construct_dataset(opts)
    if data_loader_kwargs is None:
        use_cuda = (opts.device.type == 'cuda')
        data_loader_kwargs = dict(pin_memory=use_cuda, num_workers=(3 if use_cuda else 0)) # CPU: decoding workers would compete with the detector.

    # Look in the cache (rank 0 decides for everyone).
    cache_file = None
    if opts.cache:
        key = dataset_stats_cache_key(opts.dataset_kwargs, detector_url, detector_kwargs, dict(stats_kwargs, max_items=max_items))
        cache_tag = f'{getattr(dataset, "name", "dataset")}-{get_feature_detector_name(detector_url)}-{key}'
        cache_file = dnnlib.make_cache_dir_path('gan-metrics', cache_tag + '.pkl')
        if _broadcast_flag(opts.rank == 0 and os.path.isfile(cache_file), opts):
            return FeatureStats.load(cache_file)

    # Feed every item to the detector.
    num_items = len(dataset) if max_items is None else min(len(dataset), max_items)
    if num_items == 0:
        raise ValueError(f'Dataset {opts.dataset_kwargs.get("path", "")!s} holds no images')
    stats = FeatureStats(max_items=num_items, **stats_kwargs)
    progress = opts.progress.sub(tag='dataset features', num_items=num_items, rel_lo=rel_lo, rel_hi=rel_hi)
    detector = get_feature_detector(detector_url, device=opts.device, num_gpus=opts.num_gpus, rank=opts.rank, verbose=progress.verbose)
    num_per_rank = (num_items - 1) // opts.num_gpus + 1
    item_subset = [(i * opts.num_gpus + opts.rank) % num_items for i in range(num_per_rank)]
    loader = torch.utils.data.DataLoader(dataset=dataset, sampler=item_subset, batch_size=batch_size, **data_loader_kwargs)
    with torch.no_grad():
        for images, _labels in loader:
            features = run_detector(detector, images.to(opts.device), **detector_kwargs)
            stats.append_torch(features, num_gpus=opts.num_gpus, rank=opts.rank)
            progress.update(stats.num_items)

    # Store in the cache.
    if cache_file is not None and opts.rank == 0:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        stats.save(cache_file)
    return stats

#----------------------------------------------------------------------------
# Random streams of one rank: a CPU torch.Generator and a numpy RandomState, seeded from the
# global torch RNG and the rank, so processes that share a global seed still draw different latents.

class RankRandom:
    def __init__(self, opts):
        seed = int(torch.randint(0, 2**31 - 1, [1]).item()) * opts.num_gpus + opts.rank
        self.torch = torch.Generator().manual_seed(seed)
        self.numpy = np.random.RandomState(seed % 2**32)
        self.device = opts.device

    # torch.randn / torch.rand of the given shape on the device.
    def randn(self, shape):
        return torch.randn(shape, generator=self.torch).to(self.device)

    def rand(self, shape):
        return torch.rand(shape, generator=self.torch).to(self.device)

#----------------------------------------------------------------------------
# Random conditioning labels drawn from the dataset, [batch, c_dim] float32.

def sample_labels(dataset, batch_size, c_dim, device, rnd=np.random):
    if c_dim == 0:
        return torch.zeros([batch_size, 0], device=device)
    indices = rnd.randint(len(dataset), size=batch_size)
    get_label = getattr(dataset, 'get_label', None)
    labels = [get_label(i) if get_label is not None else dataset[i][1] for i in indices]
    return torch.from_numpy(np.stack(labels).astype(np.float32)).to(device)

#----------------------------------------------------------------------------
# Generated images as uint8 [N, C, H, W]: G's output in [-1, 1] mapped to [0, 255].

def generate_images(G, z, c, G_kwargs):
    img = G(z=z, c=c, **G_kwargs)
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)

#----------------------------------------------------------------------------
# Detector features of generated images, batch_gen images per G call; each rank generates its own share.

def compute_feature_stats_for_generator(opts, detector_url, detector_kwargs, rel_lo=0, rel_hi=1, batch_size=64,
        batch_gen=None, **stats_kwargs):
    if opts.G is None:
        raise ValueError('This metric needs a generator: MetricOptions.G is None')
    batch_gen = min(batch_size, 4) if batch_gen is None else batch_gen
    if batch_size % batch_gen != 0:
        raise ValueError(f'batch_size ({batch_size}) must be a multiple of batch_gen ({batch_gen})')
    G = copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)
    dataset = construct_dataset(opts) if G.c_dim > 0 else None

    stats = FeatureStats(**stats_kwargs)
    if stats.max_items is None:
        raise ValueError('compute_feature_stats_for_generator needs max_items')
    per_rank = -(-stats.max_items // opts.num_gpus)
    batch_size = min(batch_size, -(-per_rank // batch_gen) * batch_gen)
    progress = opts.progress.sub(tag='generator features', num_items=stats.max_items, rel_lo=rel_lo, rel_hi=rel_hi)
    detector = get_feature_detector(detector_url, device=opts.device, num_gpus=opts.num_gpus, rank=opts.rank, verbose=progress.verbose)
    rnd = RankRandom(opts)
    with torch.no_grad():
        while not stats.is_full():
            images = []
            for _ in range(batch_size // batch_gen):
                z = rnd.randn([batch_gen, G.z_dim])
                c = sample_labels(dataset, batch_gen, G.c_dim, opts.device, rnd.numpy)
                images.append(generate_images(G, z, c, opts.G_kwargs))
            features = run_detector(detector, torch.cat(images), **detector_kwargs)
            stats.append_torch(features, num_gpus=opts.num_gpus, rank=opts.rank)
            progress.update(stats.num_items)
    return stats

#----------------------------------------------------------------------------
# Features of the dataset (cached) and of the generator with one detector: the pair that FID,
# KID and precision/recall compare. Progress: dataset 0-0 (cached), generator 0-1.

def compute_real_and_generated_stats(opts, detector_url, max_real, num_gen, **stats_kwargs):
    """(dataset FeatureStats, generator FeatureStats), each item count capped by opts.cap."""
    detector_kwargs = dict(return_features=True)
    real = compute_feature_stats_for_dataset(opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs,
        rel_lo=0, rel_hi=0, max_items=opts.cap(max_real), **stats_kwargs)
    gen = compute_feature_stats_for_generator(opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs,
        rel_lo=0, rel_hi=1, max_items=opts.cap(num_gen), **stats_kwargs)
    return real, gen

#----------------------------------------------------------------------------
