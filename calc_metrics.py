# Compute quality metrics (FID, KID, precision/recall, IS, PPL) of a trained network.
# See docs/metrics.md.

import copy
import json
import os
import tempfile

import click
import torch

import dnnlib
from metrics import custom_features
from metrics import metric_main
from metrics import metric_utils
from training import launch
from training import network_files
from training.inference import resolve_device

#----------------------------------------------------------------------------
# One process: compute and report each metric (rank 0 reports). With several, each is spawned by
# launch.run_spawned_process, which joins and leaves the process group around it.

def subprocess_fn(rank, args):
    device = torch.device('cuda', rank) if args.device.type == 'cuda' else args.device
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    G = copy.deepcopy(args.G).eval().requires_grad_(False).to(device)
    for metric in args.metrics:
        if rank == 0 and args.verbose:
            print(f'Calculating {metric}...')
        progress = metric_utils.ProgressMonitor(verbose=args.verbose)
        result_dict = metric_main.calc_metric(metric=metric, G=G, dataset_kwargs=args.dataset_kwargs,
            num_gpus=args.num_gpus, rank=rank, device=device, progress=progress, max_items=args.max_items)
        if rank == 0:
            metric_main.report_metric(result_dict, run_dir=args.run_dir, snapshot_pkl=args.network_pkl)

#----------------------------------------------------------------------------
# Click callback: a comma-separated list of registered metric names.

def parse_metric_list(ctx, param, value):
    metrics = [m.strip() for m in value.split(',') if m.strip()]
    if not metrics:
        raise click.BadParameter('give at least one metric name', ctx=ctx, param=param)
    invalid = [m for m in metrics if not metric_main.is_valid_metric(m)]
    if invalid:
        raise click.BadParameter(f'unknown metric {", ".join(invalid)}; valid metrics: {", ".join(metric_main.list_valid_metrics())}', ctx=ctx, param=param)
    return metrics

#----------------------------------------------------------------------------
# The run directory of a snapshot: its folder when that holds training_options.json, else None.

def find_run_dir(network_pkl):
    if dnnlib.util.is_url(network_pkl) or not os.path.isfile(network_pkl):
        return None
    run_dir = os.path.dirname(os.path.abspath(network_pkl))
    return run_dir if os.path.isfile(os.path.join(run_dir, 'training_options.json')) else None

#----------------------------------------------------------------------------
# Dataset options: --data, else the run's training_options.json, else the pickle's training_set_kwargs.

def get_dataset_kwargs(data, run_dir, network_dict):
    if data is not None:
        if not os.path.exists(data):
            raise click.BadParameter(f'dataset not found: {data}', param_hint='--data')
        return dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=data)
    if run_dir is not None:
        with open(os.path.join(run_dir, 'training_options.json'), 'rt') as f:
            kwargs = json.load(f).get('training_set_kwargs')
        if kwargs:
            return dnnlib.EasyDict(kwargs)
    if network_dict.get('training_set_kwargs'):
        return dnnlib.EasyDict(network_dict['training_set_kwargs'])
    raise click.UsageError('Cannot find the dataset options in the run directory or the network file; give --data')

#----------------------------------------------------------------------------
# Build the dataset once here so that a bad path or a label mismatch is one clear error before any work.

def check_dataset(dataset_kwargs, G):
    path = dataset_kwargs.get('path')
    if isinstance(path, str) and not os.path.exists(path):
        raise click.UsageError(f'Dataset not found: {path} (give --data)')
    try:
        dataset = dnnlib.util.construct_class_by_name(**dataset_kwargs)
    except (ValueError, OSError, ImportError, TypeError) as err:
        raise click.UsageError(f'Cannot open the dataset: {err}') from err
    if G.c_dim != 0 and getattr(dataset, 'label_dim', G.c_dim) != G.c_dim:
        raise click.UsageError(f'The network takes {G.c_dim}-dimensional labels but the dataset has {dataset.label_dim}')
    return dataset

#----------------------------------------------------------------------------

@click.command()
@click.pass_context
@click.option('--network', 'network_pkl', help='Network pickle, .safetensors file or URL', metavar='PATH', required=True)
@click.option('--metrics', help='Comma-separated list of metrics (see docs/metrics.md)', metavar='LIST', default='fid50k_full', show_default=True, callback=parse_metric_list)
@click.option('--data', help='Dataset (folder or zip) [default: the run\'s training set]', metavar='PATH')
@click.option('--mirror', help='Add x-flipped copies of the dataset images [default: as trained]', type=bool, metavar='BOOL')
@click.option('--gpus', 'num_gpus', help='Number of processes (GPUs, or CPU workers with --device=cpu)', type=click.IntRange(min=1), default=1, show_default=True)
@click.option('--device', help='Device', type=click.Choice(['auto', 'cpu', 'cuda', 'mps']), default='auto', show_default=True)
@click.option('--verbose', help='Print progress', type=bool, default=True, metavar='BOOL', show_default=True)
@click.option('--detector-dir', help=f'Folder holding the detector files (sets ${metric_utils.DETECTOR_DIR_ENV})', metavar='DIR')
@click.option('--detector', help='TorchScript feature network of the *_custom metrics (sets $DNNLIB_CUSTOM_DETECTOR)', metavar='PATH')
@click.option('--max-items', help='Cap every item count (quick looks and tests only: numbers are not comparable to published ones)', type=click.IntRange(min=1), metavar='INT')
@click.option('--trust-code', help='Load a pickle by running the code stored in it (only for files from authors you trust; see docs/pickles.md)', is_flag=True)
def calc_metrics(ctx, network_pkl, metrics, data, mirror, num_gpus, device, verbose, detector_dir, detector, max_items, trust_code):
    """Calculate quality metrics of a trained network.

    \b
    # Metrics of a snapshot in a run directory (results appended to metric-*.jsonl there).
    python calc_metrics.py --metrics=fid50k_full,pr50k3_full --network=runs/00000-x/network-snapshot-000100.pkl

    \b
    # Any network against a dataset (results printed).
    python calc_metrics.py --metrics=fid50k_full --data=~/datasets/ffhq.zip --mirror=1 --network=ffhq.pkl

    \b
    # FD, precision/recall and class accuracy on your own feature network (no download needed).
    python calc_metrics.py --metrics=fd_custom,pr_custom,acc_custom --detector=demo-out/digit-features.pt \\
        --network=demo-out/runs/00000-mnist32-small-gpus1-batch8-cond-gamma1/network-snapshot-000070.pkl
    """
    args = dnnlib.EasyDict(metrics=metrics, num_gpus=num_gpus, verbose=verbose, max_items=max_items, network_pkl=network_pkl)
    args.device = resolve_device(device)
    if args.device.type == 'cuda' and num_gpus > torch.cuda.device_count():
        raise click.BadParameter(f'{num_gpus} processes but only {torch.cuda.device_count()} CUDA devices', param_hint='--gpus')
    if args.device.type == 'mps' and num_gpus > 1:
        raise click.BadParameter('MPS runs one process; use --gpus=1', param_hint='--gpus')
    if detector_dir is not None:
        if not os.path.isdir(detector_dir):
            raise click.BadParameter(f'not a folder: {detector_dir}', param_hint='--detector-dir')
        os.environ[metric_utils.DETECTOR_DIR_ENV] = os.path.abspath(detector_dir)
    if detector is not None:
        if not os.path.isfile(detector):
            raise click.BadParameter(f'file not found: {detector}', param_hint='--detector')
        os.environ[custom_features.CUSTOM_DETECTOR_ENV] = os.path.abspath(detector)
    elif any(m.endswith('_custom') for m in metrics) and not os.environ.get(custom_features.CUSTOM_DETECTOR_ENV):
        raise click.UsageError(f'{", ".join(m for m in metrics if m.endswith("_custom"))} need a feature network: give --detector=PATH (a TorchScript file)')

    # Load the network.
    if not dnnlib.util.is_url(network_pkl) and not os.path.isfile(network_pkl):
        raise click.BadParameter(f'file not found: {network_pkl}', param_hint='--network')
    if verbose:
        print(f'Loading network from "{network_pkl}"...')
    try:
        network_dict = network_files.load_network_pkl(network_pkl, trust_code=trust_code, log=print if verbose else None)
    except (network_files.NetworkLoadError, OSError) as err:
        raise click.ClickException(str(err)) from err
    args.G = network_dict['G_ema']

    # Dataset options and run directory.
    args.run_dir = find_run_dir(network_pkl)
    args.dataset_kwargs = get_dataset_kwargs(data, args.run_dir, network_dict)
    args.dataset_kwargs.resolution = args.G.img_resolution
    args.dataset_kwargs.use_labels = (args.G.c_dim != 0)
    if mirror is not None:
        args.dataset_kwargs.xflip = mirror
    check_dataset(args.dataset_kwargs, args.G)
    if verbose:
        print('Dataset options:')
        print(json.dumps(args.dataset_kwargs, indent=2))

    # Compute, in this process or in one spawned process per GPU / CPU worker.
    if verbose:
        print(f'Launching {num_gpus} process(es) on {args.device.type}...')
    with tempfile.TemporaryDirectory() as temp_dir:
        if num_gpus == 1:
            try:
                subprocess_fn(rank=0, args=args)
            except (FileNotFoundError, ValueError) as err: # Missing detector, empty dataset, ...
                raise click.ClickException(str(err)) from err
        else:
            init_file = os.path.abspath(os.path.join(temp_dir, '.torch_distributed_init'))
            torch.multiprocessing.spawn(fn=launch.run_spawned_process, args=(num_gpus, args.device.type, init_file, subprocess_fn, args),
                nprocs=num_gpus)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    calc_metrics() # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
