# The metric registry: names a user types (--metrics=fid50k_full) mapped to the functions
# that compute them, plus calc_metric() and report_metric() for tools and the training loop.

import json
import os
import time

import torch

import dnnlib

from . import metric_utils
from . import frechet_inception_distance
from . import kernel_inception_distance
from . import precision_recall
from . import inception_score
from . import perceptual_path_length
from . import equivariance
from . import custom_features

#----------------------------------------------------------------------------
# Registry: metric name -> fn(opts) returning a dict of results.

_metric_dict = dict()

#----------------------------------------------------------------------------
# Decorator: register fn under its own name.

def register_metric(fn):
    if not callable(fn):
        raise TypeError(f'register_metric expects a function: got {fn!r}')
    _metric_dict[fn.__name__] = fn
    return fn

#----------------------------------------------------------------------------
# Whether a name is registered.

def is_valid_metric(metric):
    return metric in _metric_dict

#----------------------------------------------------------------------------
# Registered names, in registration order.

def list_valid_metrics():
    return list(_metric_dict.keys())

#----------------------------------------------------------------------------
# Compute one metric. kwargs: see metric_utils.MetricOptions (G, G_kwargs, dataset_kwargs, num_gpus, rank, device, progress, cache, max_items).

def calc_metric(metric, **kwargs):
    if not is_valid_metric(metric):
        raise ValueError(f'Unknown metric {metric!r}; valid metrics: {", ".join(list_valid_metrics())}')
    opts = metric_utils.MetricOptions(**kwargs)

    # Compute on every rank.
    start_time = time.time()
    results = _metric_dict[metric](opts)
    total_time = time.time() - start_time

    # Rank 0 holds the values; share them so every rank returns the same thing.
    for key, value in list(results.items()):
        if opts.num_gpus > 1:
            value = torch.as_tensor(value, dtype=torch.float64, device=opts.device)
            torch.distributed.broadcast(tensor=value, src=0)
            value = float(value.cpu())
        results[key] = value

    result_dict = dnnlib.EasyDict(
        results         = dnnlib.EasyDict(results),
        metric          = metric,
        total_time      = total_time,
        total_time_str  = dnnlib.util.format_time(total_time),
        num_gpus        = opts.num_gpus,
    )
    if opts.max_items is not None:
        result_dict.max_items = opts.max_items # Scaled-down run: not comparable to published numbers.
    return result_dict

#----------------------------------------------------------------------------
# Print a result as one JSON line and append it to <run_dir>/metric-<name>.jsonl.

def report_metric(result_dict, run_dir=None, snapshot_pkl=None):
    metric = result_dict['metric']
    if not is_valid_metric(metric):
        raise ValueError(f'Unknown metric {metric!r}; valid metrics: {", ".join(list_valid_metrics())}')
    if run_dir is not None and snapshot_pkl is not None:
        snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)
    line = json.dumps(dict(result_dict, snapshot_pkl=snapshot_pkl, timestamp=time.time()))
    print(line)
    if run_dir is not None:
        if not os.path.isdir(run_dir):
            raise FileNotFoundError(f'Run directory not found: {run_dir}')
        with open(os.path.join(run_dir, f'metric-{metric}.jsonl'), 'at') as f:
            f.write(line + '\n')

#----------------------------------------------------------------------------
# The published feature detectors each metric loads, so that a training run can load them when it
# starts: a machine without them then stops at once instead of failing at the first snapshot.

_metric_detectors = dict(
    fid50k_full=[metric_utils.INCEPTION_URL], kid50k_full=[metric_utils.INCEPTION_URL], is50k=[metric_utils.INCEPTION_URL],
    fid50k=[metric_utils.INCEPTION_URL], kid50k=[metric_utils.INCEPTION_URL],
    pr50k3_full=[metric_utils.VGG16_URL], pr50k3=[metric_utils.VGG16_URL], ppl2_wend=[metric_utils.VGG16_URL],
    ppl_zfull=[metric_utils.VGG16_URL], ppl_wfull=[metric_utils.VGG16_URL], ppl_zend=[metric_utils.VGG16_URL],
    ppl_wend=[metric_utils.VGG16_URL],
)

def load_metric_detectors(metrics, device='cpu', num_gpus=1, rank=0):
    """Load every published detector the named metrics use (get_feature_detector: cached, one-line errors)."""
    for metric in metrics:
        for url in _metric_detectors.get(metric, []):
            metric_utils.get_feature_detector(url, device=device, num_gpus=num_gpus, rank=rank)

#----------------------------------------------------------------------------
# Recommended metrics (StyleGAN2-ADA, sec. 5): the whole dataset against 50k generated images.

@register_metric
def fid50k_full(opts):
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    fid = frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=50000)
    return dict(fid50k_full=fid)

@register_metric
def kid50k_full(opts):
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    kid = kernel_inception_distance.compute_kid(opts, max_real=1000000, num_gen=50000, num_subsets=100, max_subset_size=1000)
    return dict(kid50k_full=kid)

@register_metric
def pr50k3_full(opts):
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    precision, recall = precision_recall.compute_pr(opts, max_real=200000, num_gen=50000, nhood_size=3, row_batch_size=10000, col_batch_size=10000)
    return dict(pr50k3_full_precision=precision, pr50k3_full_recall=recall)

@register_metric
def ppl2_wend(opts):
    ppl = perceptual_path_length.compute_ppl(opts, num_samples=50000, epsilon=1e-4, space='w', sampling='end', crop=False, batch_size=2)
    return dict(ppl2_wend=ppl)

@register_metric
def is50k(opts):
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    mean, std = inception_score.compute_is(opts, num_gen=50000, num_splits=10)
    return dict(is50k_mean=mean, is50k_std=std)

#----------------------------------------------------------------------------
# Legacy metrics (StyleGAN / StyleGAN2 papers): 50k real images, the dataset as configured (xflip included).

@register_metric
def fid50k(opts):
    opts.dataset_kwargs.update(max_size=None)
    fid = frechet_inception_distance.compute_fid(opts, max_real=50000, num_gen=50000)
    return dict(fid50k=fid)

@register_metric
def kid50k(opts):
    opts.dataset_kwargs.update(max_size=None)
    kid = kernel_inception_distance.compute_kid(opts, max_real=50000, num_gen=50000, num_subsets=100, max_subset_size=1000)
    return dict(kid50k=kid)

@register_metric
def pr50k3(opts):
    opts.dataset_kwargs.update(max_size=None)
    precision, recall = precision_recall.compute_pr(opts, max_real=50000, num_gen=50000, nhood_size=3, row_batch_size=10000, col_batch_size=10000)
    return dict(pr50k3_precision=precision, pr50k3_recall=recall)

@register_metric
def ppl_zfull(opts):
    ppl = perceptual_path_length.compute_ppl(opts, num_samples=50000, epsilon=1e-4, space='z', sampling='full', crop=True, batch_size=2)
    return dict(ppl_zfull=ppl)

@register_metric
def ppl_wfull(opts):
    ppl = perceptual_path_length.compute_ppl(opts, num_samples=50000, epsilon=1e-4, space='w', sampling='full', crop=True, batch_size=2)
    return dict(ppl_wfull=ppl)

@register_metric
def ppl_zend(opts):
    ppl = perceptual_path_length.compute_ppl(opts, num_samples=50000, epsilon=1e-4, space='z', sampling='end', crop=True, batch_size=2)
    return dict(ppl_zend=ppl)

@register_metric
def ppl_wend(opts):
    ppl = perceptual_path_length.compute_ppl(opts, num_samples=50000, epsilon=1e-4, space='w', sampling='end', crop=True, batch_size=2)
    return dict(ppl_wend=ppl)

#----------------------------------------------------------------------------
# Metrics on the features of the user's own TorchScript network (calc_metrics.py --detector, see
# metrics/custom_features.py): generated images against one half of the dataset, and the other
# half against it (the *_real values: the floor a perfect generator would score at this size).

@register_metric
def fd_custom(opts):
    fd, floor = custom_features.compute_fd(opts)
    return dict(fd_custom=fd, fd_custom_real=floor)

@register_metric
def pr_custom(opts):
    precision, recall, real_precision, real_recall = custom_features.compute_pr(opts, nhood_size=3)
    return dict(pr_custom_precision=precision, pr_custom_recall=recall,
        pr_custom_real_precision=real_precision, pr_custom_real_recall=real_recall)

@register_metric
def acc_custom(opts):
    acc, real_acc = custom_features.compute_acc(opts)
    return dict(acc_custom=acc, acc_custom_real=real_acc)

#----------------------------------------------------------------------------
# StyleGAN3's equivariance metrics (Karras et al. 2021, sec. 4): PSNR in dB between transformed outputs
# and transformed inputs' outputs, over 50k latents; StyleGAN3 generators only (metrics/equivariance.py).

@register_metric
def eqt50k_int(opts):
    psnr = equivariance.compute_equivariance_metrics(opts, num_samples=50000, batch_size=4, compute_eqt_int=True)
    return dict(eqt50k_int=psnr['eqt_int'])

@register_metric
def eqt50k_frac(opts):
    psnr = equivariance.compute_equivariance_metrics(opts, num_samples=50000, batch_size=4, compute_eqt_frac=True)
    return dict(eqt50k_frac=psnr['eqt_frac'])

@register_metric
def eqr50k(opts):
    psnr = equivariance.compute_equivariance_metrics(opts, num_samples=50000, batch_size=4, compute_eqr=True)
    return dict(eqr50k=psnr['eqr'])
