"""Train a GAN: StyleGAN2 (with ADA) or BigGAN, on one or more GPUs, on CPU, or under torchrun.

Examples:

\b
  # Small class-conditional run on the CPU.
  python train.py --outdir=training-runs --data=datasets/mnist32.zip --cfg=small --cond=1 --device=cpu --kimg=100
\b
  # The ADA paper's setup on 8 GPUs.
  python train.py --outdir=training-runs --data=datasets/ffhq256.zip --cfg=paper256 --gpus=8 --mirror=1
\b
  # Continue an interrupted run exactly, or train longer.
  python train.py --outdir=training-runs --resume=training-runs/00003-mnist32-cond-small --kimg=200
"""

import copy
import inspect
import json
import os
import re

import click

import dnnlib
from torch_utils import misc
from training import augment
from training import launch
from training import network_files
from training import presets
from training import presets_biggan

#----------------------------------------------------------------------------
# Option types.

class CommaSeparatedList(click.ParamType):
    name = 'list'

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        if value is None or value.lower() in ('none', ''):
            return []
        return [v.strip() for v in value.split(',') if v.strip()]

def _metric_names():
    from metrics import metric_main
    return metric_main.list_valid_metrics()

#----------------------------------------------------------------------------
# Options a continued run (--resume=<run dir>) may change; every other option comes from the run.

CONTINUE_OPTIONS = {'outdir', 'resume', 'kimg', 'tick', 'snap', 'metrics', 'keep_states', 'workers', 'dry_run', 'nobench', 'allow_tf32', 'trust_code'}

def _explicit_options(ctx):
    return {name for name in ctx.params if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}

#----------------------------------------------------------------------------

# --list-classes: every class a config can name, then exit.
def _list_classes(ctx, _param, value):
    if not value or ctx.resilient_parsing:
        return
    for name in dnnlib.util.list_named_objects(['training', 'metrics', 'torch_utils', 'dnnlib']):
        click.echo(name)
    ctx.exit()

@click.command(context_settings=dict(max_content_width=100, terminal_width=100))

# Required.
@click.option('--outdir',       help='Where to make the run directory', metavar='DIR', required=True)
@click.option('--data',         help='Training data (zip or folder)', metavar='[ZIP|DIR]')
@click.option('--cfg',          help=f'Base configuration: {", ".join(presets.configs)} (see docs/training.md)', metavar='NAME', type=click.Choice(list(presets.configs)), default='auto', show_default=True)

# Optional features.
@click.option('--cond',         help='Train a class-conditional model', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--mirror',       help='Add x-flipped copies of the data', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--subset',       help='Train on this many images (random subset drawn with --seed)', metavar='INT', type=click.IntRange(min=1))
@click.option('--aug',          help='Augmentation mode', type=click.Choice(['noaug', 'ada', 'fixed']), default='ada', show_default=True)
@click.option('--p',            help='Augmentation probability for --aug=fixed', metavar='FLOAT', type=click.FloatRange(min=0, max=1))
@click.option('--target',       help='ADA target value for --aug=ada', metavar='FLOAT', type=click.FloatRange(min=0, max=1), default=0.6, show_default=True)
@click.option('--augpipe',      help='Augmentation pipeline (see docs/augment.md)', type=click.Choice(list(augment.augpipe_specs)), default='bgc', show_default=True)
@click.option('--resume',       help='Run directory to continue, or network (pkl, safetensors, URL) to start from', metavar='[DIR|PKL|URL]')
@click.option('--trust-code',   help='--resume=PKL: load it by running the code stored in it (only for files you trust; see docs/pickles.md)', is_flag=True)

# Misc hyperparameters (default: from --cfg).
@click.option('--batch',        help='Total batch size', metavar='INT', type=click.IntRange(min=1))
@click.option('--batch-gpu',    help='Batch per process per step [default: batch/gpus]', metavar='INT', type=click.IntRange(min=1))
@click.option('--kimg',         help='Training length in thousands of images', metavar='KIMG', type=click.FloatRange(min=0))
@click.option('--gamma',        help='R1 weight', metavar='FLOAT', type=click.FloatRange(min=0))
@click.option('--glr',          help='G learning rate', metavar='FLOAT', type=click.FloatRange(min=0))
@click.option('--dlr',          help='D learning rate', metavar='FLOAT', type=click.FloatRange(min=0))
@click.option('--ema',          help='G_ema half-life', metavar='KIMG', type=click.FloatRange(min=0))

# Options of one network family (an error with the configs of another).
@click.option('--cbase',        help='StyleGAN2: channel base', metavar='INT', type=click.IntRange(min=1))
@click.option('--cmax',         help='StyleGAN2: maximum channels', metavar='INT', type=click.IntRange(min=1))
@click.option('--map',          help='StyleGAN2: mapping network depth', metavar='INT', type=click.IntRange(min=1))
@click.option('--mbstd-ch',     help='StyleGAN2: minibatch-stddev features of D, 0 = one per channel [default: from --cfg]', metavar='INT', type=click.IntRange(min=0))
@click.option('--class-group-kimg', help='StyleGAN2, conditional --cfg=small: stddev groups hold one class from this kimg on [default: from --cfg]', metavar='KIMG', type=click.FloatRange(min=0))
@click.option('--aux',          help='StyleGAN2, conditional: weight of an auxiliary classifier in D (AC-GAN), 0 = off [default: from --cfg]', metavar='FLOAT', type=click.FloatRange(min=0))
@click.option('--reuse-fakes',  help="StyleGAN2: D scores the fakes of G's step (made before G's update) instead of new ones: one G pass less per step [default: off]", metavar='BOOL', type=bool)
@click.option('--freeze-d', '--freezed', 'freeze_d', help='StyleGAN2: freeze the first N layers of D', metavar='INT', type=click.IntRange(min=0), default=0, show_default=True)
@click.option('--nhwc',         help='StyleGAN2: NHWC memory format with fp16', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--bf16',         help='StyleGAN2: bfloat16 instead of float16 on CUDA (CPUs with bfloat16 use it always)', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--ch',           help='BigGAN: channel multiplier (G_ch = D_ch)', metavar='INT', type=click.IntRange(min=1))

# BigGAN options (an error with other configs; default: from --cfg; see docs/biggan.md).
@click.option('--G-param', 'g_param', help='BigGAN: G layers, spectral norm or plain', type=click.Choice(presets_biggan.layer_params))
@click.option('--D-param', 'd_param', help='BigGAN: D layers, spectral norm or plain', type=click.Choice(presets_biggan.layer_params))
@click.option('--G-shared', 'g_shared', help='BigGAN: shared class embedding in G (else the one-hot label)', metavar='BOOL', type=bool)
@click.option('--hier',         help='BigGAN: hierarchical z (a z chunk per G block)', metavar='BOOL', type=bool)
@click.option('--shared-dim',   help='BigGAN: size of the shared class embedding', metavar='INT', type=click.IntRange(min=1))
@click.option('--G-attn', 'g_attn', help='BigGAN: G self-attention resolutions, 0 = none', metavar='[RES|A,B|0]', type=CommaSeparatedList())
@click.option('--D-attn', 'd_attn', help='BigGAN: D self-attention resolutions, 0 = none', metavar='[RES|A,B|0]', type=CommaSeparatedList())
@click.option('--num-D-steps', 'num_d_steps', help='BigGAN: D steps per G step', metavar='INT', type=click.IntRange(min=1))
@click.option('--ema-start',    help='BigGAN: G_ema copies G until this point', metavar='KIMG', type=click.FloatRange(min=0))
@click.option('--num-standing-accumulations', help='BigGAN: batches of standing statistics for G_ema at snapshots, 0 = off', metavar='INT', type=click.IntRange(min=0))

# Misc settings.
@click.option('--gpus',         help='Number of processes (GPUs, or CPU processes)', metavar='INT', type=click.IntRange(min=1), default=1, show_default=True)
@click.option('--device',       help='Where to train', type=click.Choice(['auto', 'cuda', 'cpu', 'mps']), default='auto', show_default=True)
@click.option('--metrics',      help='Metrics at snapshots, comma-separated or none', metavar='[NAME|A,B,C|none]', type=CommaSeparatedList(), default='fid50k_full', show_default=True)
@click.option('--tick',         help='Progress line every this many kimg', metavar='KIMG', type=click.FloatRange(min=0, min_open=True), default=4, show_default=True)
@click.option('--snap',         help='Snapshot every this many ticks', metavar='TICKS', type=click.IntRange(min=1), default=50, show_default=True)
@click.option('--keep-states',  help='Newest training-state files kept, 0 = all', metavar='INT', type=click.IntRange(min=0), default=2, show_default=True)
@click.option('--seed',         help='Random seed', metavar='INT', type=click.IntRange(min=0), default=0, show_default=True)
@click.option('--fp32',         help='Disable mixed precision', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--nobench',      help='Disable cuDNN benchmarking', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--allow-tf32',   help='Allow TF32 for matmul and convolutions', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--workers',      help='DataLoader worker processes', metavar='INT', type=click.IntRange(min=0), default=3, show_default=True)
@click.option('--dry-run',      help='Print the resolved options as JSON and exit', is_flag=True)
@click.option('--list-classes', help='List every class a config can name, and exit', is_flag=True, expose_value=False, is_eager=True, callback=_list_classes)
@click.pass_context
def main(ctx, **opts):
    """Train a GAN (StyleGAN2 with ADA, or BigGAN) on a dataset made by dataset_tool.py.

    \b
    python train.py --outdir=runs --data=mnist32.zip --cfg=small --cond=1 --device=cpu --kimg=100
    python train.py --outdir=runs --data=ffhq256.zip --cfg=paper256 --gpus=8 --mirror=1
    python train.py --outdir=runs --resume=runs/00003-mnist32-small-gpus1-batch32-cond --kimg=200
    torchrun --nproc_per_node=8 train.py --outdir=runs --data=ffhq256.zip --cfg=paper256

    See docs/training.md for the configurations and every option.
    """
    opts = dnnlib.EasyDict(opts)
    explicit = _explicit_options(ctx)
    torchrun = launch.torchrun_env()
    desc = None
    try:
        if torchrun is not None:
            if 'gpus' in explicit and opts.gpus != torchrun[2]:
                raise ValueError(f'--gpus={opts.gpus}, but torchrun started {torchrun[2]} processes; leave --gpus out under torchrun.')
            opts.gpus = torchrun[2]
        if opts.resume is not None and os.path.isdir(opts.resume):
            c, run_dir = continue_run(opts, explicit)
        else:
            c, desc = resolve_options(opts, explicit)
            run_dir = launch.find_unfinished_run(opts.outdir, c)
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None

    if opts.dry_run:
        click.echo(json.dumps(c, indent=2))
        return
    _check_metric_detectors(c.metrics)
    command = dict(options={name: value for name, value in opts.items() if name != 'dry_run'}, explicit=sorted(explicit))
    if torchrun is None:
        lock = _claim_run_dir(opts.outdir, desc, c, run_dir, command)
        try:
            launch.launch_training(c, lock.run_dir)
        finally:
            lock.release()
        return

    # Under torchrun every process runs this script; rank 0 decides the options and the run directory.
    rank, local_rank, _world_size = launch.init_torchrun(c.device)
    lock, error = None, None
    if rank == 0:
        try:
            lock = _claim_run_dir(opts.outdir, desc, c, run_dir, command)
        except click.ClickException as e:
            error = e.message
    c, error = launch.broadcast_object((c, error) if rank == 0 else None, rank)
    try:
        if error is not None:
            raise click.ClickException(error)
        launch.run_torchrun_rank(c, rank, local_rank)
    finally:
        if lock is not None:
            lock.release()
    launch.exit_finished_process()

# The run directory, locked for this process; the first console line says when a run continues.
def _claim_run_dir(outdir, desc, c, run_dir, command):
    try:
        lock = launch.make_run_dir(outdir, desc, c, run_dir, command=command)
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None
    if c.resume_state is not None:
        click.echo(f'Continuing {lock.run_dir} from {os.path.basename(c.resume_state)} '
            f'at {launch.state_nimg(c.resume_state) / 1000:g} kimg.')
    return lock

# The metrics' feature detectors, loaded before anything is written: an offline machine without them
# stops here, not at the first snapshot.
def _check_metric_detectors(metrics):
    if not metrics:
        return
    from metrics import metric_main
    try:
        metric_main.load_metric_detectors(metrics)
    except (OSError, ValueError) as e:
        raise click.ClickException(f'--metrics={",".join(metrics)}: {str(e).rstrip(".")}; or pass --metrics=none to train without metrics.') from None

#----------------------------------------------------------------------------
# Options of a new run: preset, then the user's overrides, then the dataset's facts.

def resolve_options(opts, explicit):
    if opts.data is None:
        raise ValueError('--data is required (a dataset zip or folder; see docs/datasets.md).')
    from training import dataset as dataset_module
    data_kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=opts.data,
        use_labels=bool(opts.cond), max_size=opts.subset, xflip=bool(opts.mirror), random_seed=opts.seed)
    try:
        data = dnnlib.util.construct_class_by_name(**dict(data_kwargs, use_labels=False))
    except dataset_module.DatasetError as e:
        raise ValueError(f'--data: {e}') from None
    if opts.cond:
        try:
            data = dnnlib.util.construct_class_by_name(**data_kwargs)
        except dataset_module.DatasetError as e:
            raise ValueError(f'--cond=1 needs labels: {e}') from None
    data_kwargs.resolution = data.resolution
    data_kwargs.max_size = len(data) // (2 if opts.mirror else 1)

    device = launch.resolve_device(opts.device)
    preset = presets.get(opts.cfg)
    c = preset.config(data.resolution, opts.gpus)
    c.training_set_kwargs = data_kwargs
    c.data_loader_kwargs = dnnlib.EasyDict(pin_memory=(device == 'cuda'), num_workers=opts.workers, prefetch_factor=2)
    c.num_gpus = opts.gpus
    c.device = device
    c.random_seed = opts.seed
    c.kimg_per_tick = opts.tick
    c.image_snapshot_ticks = c.network_snapshot_ticks = opts.snap
    c.keep_states = opts.keep_states
    c.metrics = _check_metrics(opts.metrics)
    c.cudnn_benchmark = not opts.nobench
    c.allow_tf32 = bool(opts.allow_tf32)
    _apply_overrides(c, opts)
    _check_family_options(preset, explicit)
    preset.apply_options(c, opts, device)
    _apply_augmentation(c, opts)
    _apply_resume_pkl(c, opts, data)
    _fill_loop_defaults(c)
    return c, launch.describe(data.name, opts, c)

# Every other argument of training_loop at its default, so that training_options.json is complete.
def _fill_loop_defaults(c):
    from training import training_loop
    for name, param in inspect.signature(training_loop.training_loop).parameters.items():
        if name not in ('rank', 'abort_fn', 'progress_fn') and name not in c:
            c[name] = copy.deepcopy(param.default)

def _check_metrics(names):
    valid = _metric_names()
    bad = [m for m in names if m not in valid]
    if bad:
        raise ValueError(f'--metrics: unknown metric {bad[0]!r}; valid: {", ".join(valid)}.')
    return list(names)

# Overrides every family shares; constraints across options are one-line errors.
def _apply_overrides(c, opts):
    if opts.batch is not None:
        c.batch_size = opts.batch
        c.batch_gpu = opts.batch // opts.gpus
    if c.batch_size % opts.gpus != 0:
        raise ValueError(f'--batch={c.batch_size} must be divisible by --gpus={opts.gpus}.')
    if opts.batch_gpu is not None:
        c.batch_gpu = opts.batch_gpu
    c.batch_gpu = min(c.batch_gpu, c.batch_size // opts.gpus)
    if c.batch_size % (c.batch_gpu * opts.gpus) != 0:
        raise ValueError(f'--batch={c.batch_size} must be a multiple of --batch-gpu={c.batch_gpu} times --gpus={opts.gpus}.')
    if opts.kimg is not None:
        c.total_kimg = opts.kimg
    if opts.gamma is not None:
        c.loss_kwargs.r1_gamma = opts.gamma
    if opts.glr is not None:
        c.G_opt_kwargs.lr = opts.glr
    if opts.dlr is not None:
        c.D_opt_kwargs.lr = opts.dlr
    if opts.ema is not None:
        c.ema_kimg = opts.ema

# An option of another network family, given on the command line, is an error naming the families it belongs to.
def _check_family_options(preset, explicit):
    for name, families in presets.family_options().items():
        if name in explicit and name not in preset.family.options:
            own = ', '.join(_flag(o) for o in preset.family.options) or 'none'
            raise ValueError(f'{_flag(name)} applies to the {" and ".join(families)} configs, '
                f'not --cfg={preset.name} ({preset.family.name}; its own options: {own}).')

# The command-line spelling of an option (e.g. --G-attn for g_attn).
def _flag(name):
    return next((param.opts[0] for param in main.params if param.name == name), '--' + name.replace('_', '-'))

# ADA: adaptive (target), fixed p, or none.
def _apply_augmentation(c, opts):
    if opts.p is not None and opts.aug != 'fixed':
        raise ValueError('--p applies only with --aug=fixed.')
    if opts.aug == 'fixed' and opts.p is None:
        raise ValueError('--aug=fixed needs --p.')
    c.augment_kwargs = None
    c.augment_p = 0
    c.ada_target = None
    if opts.aug != 'noaug':
        c.augment_kwargs = dnnlib.EasyDict(class_name='training.augment.AugmentPipe', **augment.augpipe_specs[opts.augpipe])
        if opts.aug == 'ada':
            c.ada_target = opts.target
        else:
            c.augment_p = opts.p

# --resume=<network>: transfer learning from those weights, with ADA reacting faster and no EMA ramp-up.
def _apply_resume_pkl(c, opts, data):
    c.resume_pkl = None
    c.resume_state = None
    if opts.resume is None:
        return
    if not dnnlib.util.is_url(opts.resume) and not os.path.isfile(opts.resume):
        raise ValueError(f'--resume: {opts.resume} is neither a run directory, a network file nor a URL.')
    c.resume_pkl = opts.resume
    c.resume_trust_code = opts.trust_code
    if re.fullmatch(r'training-state-\d+\.pt', os.path.basename(opts.resume)):
        raise ValueError(f'--resume: {opts.resume} is a training state; to continue its run, pass the run directory '
            f'(--resume={os.path.dirname(opts.resume) or "."}).')
    try: # Refused, broken or unfitting files stop here, before a run directory exists.
        resume_data = network_files.load_network_pkl(opts.resume, trust_code=opts.trust_code)
    except network_files.NetworkLoadError as err:
        raise ValueError(f'--resume: {err}') from None
    _check_resume_fits(c, opts, data, resume_data)
    c.ada_kimg = 100
    c.ema_rampup = None

# The file's G and D fit the configured ones as the loop copies them (misc.copy_params_and_buffers: tensors
# of the same name, equal shapes), and share at least one tensor name (else nothing would be copied).
def _check_resume_fits(c, opts, data, resume_data):
    common = dict(c_dim=data.label_dim, img_resolution=data.resolution, img_channels=data.num_channels)
    for name, kwargs in (('G', c.G_kwargs), ('D', c.D_kwargs)):
        if resume_data.get(name) is None:
            continue
        net = dnnlib.util.construct_class_by_name(**kwargs, **common)
        src_names = {n for n, _ in misc.named_params_and_buffers(resume_data[name])}
        if not src_names & {n for n, _ in misc.named_params_and_buffers(net)}:
            raise ValueError(f'--resume: the {name} in {opts.resume} shares no weights '
                f'with --cfg={opts.cfg}\'s {kwargs.class_name} (it is a {type(resume_data[name]).__module__}.{type(resume_data[name]).__name__}); pick the --cfg of the network family it was trained with.')
        try:
            misc.copy_params_and_buffers(resume_data[name], net, require_all=False)
        except ValueError as err:
            raise ValueError(f'--resume: the {name} in {opts.resume} does not fit this configuration ({err}); '
                'give the --cfg and size options (--cbase, --cmax, --mbstd-ch, --ch, ...) it was trained with.') from None

#----------------------------------------------------------------------------
# --resume=<run dir>: the run's own options, its latest training state, and the few changeable options.

def continue_run(opts, explicit):
    run_dir = opts.resume
    options_path = os.path.join(run_dir, 'training_options.json')
    if not os.path.isfile(options_path):
        raise ValueError(f'--resume: {run_dir} has no training_options.json; is it a run directory?')
    _check_unchanged(opts, explicit, run_dir)
    with open(options_path) as f:
        c = _upgrade_options(json.load(f, object_hook=dnnlib.EasyDict))
    state = launch.latest_training_state(run_dir)
    if state is None:
        raise ValueError(f'--resume: {run_dir} has no training-state-*.pt yet; start it again instead.')
    c.resume_state = state
    c.resume_pkl = None
    for name, key in (('kimg', 'total_kimg'), ('tick', 'kimg_per_tick'), ('keep_states', 'keep_states'), ('metrics', 'metrics')):
        if name in explicit:
            c[key] = opts[name] if name != 'metrics' else _check_metrics(opts.metrics)
    if launch.state_nimg(state) >= round(c.total_kimg * 1000):
        raise ValueError(f'--resume: {run_dir} has already trained {launch.state_nimg(state) / 1000:g} of its {c.total_kimg:g} kimg; '
            'pass a larger --kimg to train longer.')
    if 'snap' in explicit:
        c.image_snapshot_ticks = c.network_snapshot_ticks = opts.snap
    if 'workers' in explicit:
        c.data_loader_kwargs.num_workers = opts.workers
    if 'nobench' in explicit:
        c.cudnn_benchmark = not opts.nobench
    if 'allow_tf32' in explicit:
        c.allow_tf32 = bool(opts.allow_tf32)
    return c, run_dir

# The run's own options may be repeated (the original command line works); a real change is refused,
# naming the option, its stored value and the new one. Runs without command.json refuse every one.
def _check_unchanged(opts, explicit, run_dir):
    changeable = ', '.join('--' + o.replace('_', '-') for o in sorted(CONTINUE_OPTIONS - {'outdir', 'resume', 'dry_run'}))
    command = launch.read_command(run_dir)
    for name in sorted(explicit - CONTINUE_OPTIONS):
        flag = '--' + name.replace('_', '-')
        if command is None:
            raise ValueError(f'{flag} cannot change when continuing {run_dir} (it has no command.json to compare with); '
                f'only {changeable} can.')
        stored, new = command['options'].get(name), json.loads(json.dumps(opts[name]))
        if stored != new:
            show = lambda value: 'unset' if value is None else json.dumps(value)
            raise ValueError(f'{flag} cannot change when continuing {run_dir}: stored {show(stored)}, new {show(new)}; '
                f'only {changeable} can.')

# Options written by earlier versions, in today's terms: standing statistics became a snapshot hook,
# and StyleGAN2's constant-noise image grids a keyword of the grid call.
def _upgrade_options(c):
    batches = c.pop('standing_stats_batches', None)
    if 'snapshot_hooks' not in c:
        c.snapshot_hooks = [dnnlib.EasyDict(func_name='training.networks_biggan.accumulate_standing_stats',
            num_batches=batches)] if batches else []
    if 'image_grid_kwargs' not in c:
        stylegan2 = c.G_kwargs.get('class_name', '').startswith('training.networks.')
        c.image_grid_kwargs = dnnlib.EasyDict(noise_mode='const') if stylegan2 else dnnlib.EasyDict()
    return c

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
