# The training loop: G, D and G_ema trained by phases with lazy regularisation, ADA, ticks,
# snapshots (network pickles + training state for exact resume), metrics and statistics.
# It knows no network family: classes come by name from the config, family-specific steps are
# config-named hooks (snapshot_hooks, image_grid_kwargs), and modules declare their own
# rank-local buffers. One call per process; torch.distributed is initialised by the caller.

import copy
import json
import os
import random
import time

import numpy as np
import PIL.Image
import psutil
import torch

import dnnlib
from torch_utils import host_memory
from torch_utils import misc
from torch_utils import training_stats
from training import augment
from training import network_files
from training import training_state
from training.step_timer import StepTimer, TimedCall

record_function = torch.autograd.profiler.record_function # Labels for the profiler.

#----------------------------------------------------------------------------
# A loss that is NaN or Inf: the run stops, naming the phase and tick.

class TrainingDivergedError(RuntimeError):
    pass

#----------------------------------------------------------------------------
# Snapshot image grid: a 7680x4320-pixel screen of images, at most 32x32 of them, with no more rows
# than a small dataset fills; with labels, one class per row.

def setup_snapshot_image_grid(training_set, random_seed=0, max_w=32, max_h=32):
    rnd = np.random.RandomState(random_seed)
    gw = int(np.clip(7680 // training_set.image_shape[2], 4, max_w))
    gh = int(np.clip(4320 // training_set.image_shape[1], 2, max_h))
    if not training_set.has_labels:
        gh = min(gh, max(2, -(-len(training_set) // gw)))
        indices = rnd.permutation(len(training_set))
        indices = [indices[i % len(indices)] for i in range(gw * gh)]
    else:
        by_label = {}
        for idx in range(len(training_set)):
            key = tuple(training_set.get_details(idx).raw_label.flat[::-1])
            by_label.setdefault(key, []).append(idx)
        keys = sorted(by_label)
        gh = min(gh, len(keys)) if len(keys) <= max_h else gh
        indices = []
        for y in range(gh):
            members = by_label[keys[y % len(keys)]]
            rnd.shuffle(members)
            indices += [members[x % len(members)] for x in range(gw)]
    images, labels = zip(*[training_set[i] for i in indices])
    return (gw, gh), np.stack(images), np.stack(labels)

# Write images [N, C, H, W] in drange as one PNG grid, atomically.
def save_image_grid(img, path, drange, grid_size):
    lo, hi = drange
    img = np.asarray(img, dtype=np.float32)
    img = np.rint((img - lo) * (255 / (hi - lo))).clip(0, 255).astype(np.uint8)
    gw, gh = grid_size
    _N, C, H, W = img.shape
    img = img.reshape(gh, gw, C, H, W).transpose(0, 3, 1, 4, 2).reshape(gh * H, gw * W, C) # [hHwWC] -> [HWC]
    image = PIL.Image.fromarray(img[:, :, 0], 'L') if C == 1 else PIL.Image.fromarray(img, 'RGB')
    with dnnlib.util.atomic_write(path) as f:
        image.save(f, format='PNG')

#----------------------------------------------------------------------------

def training_loop(
    run_dir                 = '.',      # Output directory.
    training_set_kwargs     = {},       # Dataset: class_name + kwargs (path, use_labels, max_size, xflip, resolution).
    data_loader_kwargs      = {},       # torch DataLoader kwargs: pin_memory, num_workers, prefetch_factor.
    G_kwargs                = {},       # Generator: class_name + kwargs; c_dim/img_resolution/img_channels come from the data.
    D_kwargs                = {},       # Discriminator: likewise.
    G_opt_kwargs            = {},       # G optimizer: class_name + kwargs (lr, betas, eps).
    D_opt_kwargs            = {},       # D optimizer: likewise.
    augment_kwargs          = None,     # AugmentPipe: class_name + op strengths; None = no augmentation.
    loss_kwargs             = {},       # Loss: class_name + kwargs.
    metrics                 = [],       # Metric names evaluated at each network snapshot (detectors loaded at start).
    random_seed             = 0,        # Global seed; rank r seeds with random_seed * num_gpus + r.
    num_gpus                = 1,        # Number of processes.
    rank                    = 0,        # Rank of this process.
    device                  = 'cuda',   # 'cuda' | 'cpu' | 'mps'; with cuda the current CUDA device is used.
    batch_size              = 4,        # Total batch over all processes.
    batch_gpu               = 4,        # Images per process per step (accumulation when batch_size > batch_gpu * num_gpus).
    class_group_size        = 0,        # > 0: reals and fakes come in groups of this many images of one class, laid out
                                        # like D's minibatch-stddev groups (misc.ClassGroupedSampler); needs labels.
    class_group_kimg        = 0,        # The class groups start after this many kimg (mixed-class groups before); 0 = from the start.
    ema_kimg                = 10,       # Half-life of the G_ema weights, in kimg.
    ema_rampup              = 0.05,     # EMA ramp-up ratio: half-life <= cur_nimg * ema_rampup; None = off.
    ema_start_kimg          = 0,        # G_ema copies G until this many kimg (BigGAN's ema_start); 0 = averaging from the start.
    G_reg_interval          = 4,        # Lazy G regularisation interval (minibatches); None = Gboth.
    D_reg_interval          = 16,       # Lazy D regularisation interval; None = Dboth.
    D_steps_per_G           = 1,        # D steps per G step.
    augment_p               = 0,        # Initial (or fixed) augmentation probability.
    ada_target              = None,     # ADA target for the mean of sign(D(real)); None = fixed p.
    ada_interval            = 4,        # Adjust p every this many minibatches.
    ada_kimg                = 500,      # p can go from 0 to 1 in this many kimg.
    total_kimg              = 25000,    # Training length in thousands of real images.
    kimg_per_tick           = 4,        # Status line and statistics every this many kimg.
    image_snapshot_ticks    = 50,       # fakesNNNNNN.png every this many ticks; None = never.
    network_snapshot_ticks  = 50,       # Network pickle, training state and metrics every this many ticks; None = never.
    keep_states             = 2,        # Newest training-state files kept in run_dir; None or 0 = all.
    resume_pkl              = None,     # Network file to start from (transfer learning; counters start at 0).
    resume_state            = None,     # Training-state file to continue exactly.
    resume_trust_code       = False,    # Load resume_pkl by running the code stored in it (see docs/pickles.md).
    image_grid_kwargs       = {},       # Keyword arguments of G_ema's call for the image grids (e.g. noise_mode).
    snapshot_hooks          = [],       # Functions run on the G_ema copy before a snapshot: dicts of func_name + kwargs,
                                        # called as func(module, batch_size=, device=, seed=, **kwargs).
    cudnn_benchmark         = True,     # cuDNN autotuning on CUDA.
    allow_tf32              = False,    # TF32 matmul and convolutions on CUDA.
    abort_fn                = None,     # Callable returning True to stop early.
    progress_fn             = None,     # Callable(cur_nimg, total_nimg) for progress reports.
):
    # Initialise this process: device, seeds, numerics.
    start_time = time.time()
    device = _init_process(device, random_seed * num_gpus + rank, cudnn_benchmark, allow_tf32)
    if batch_size % (batch_gpu * num_gpus) != 0:
        raise ValueError(f'batch_size={batch_size} must be a multiple of batch_gpu={batch_gpu} x num_gpus={num_gpus}.')
    batch_per_rank = batch_size // num_gpus
    log = print if rank == 0 else (lambda *args, **kwargs: None)
    process = dnnlib.EasyDict(rank=rank, num_gpus=num_gpus, device=device, log=log) # For the snapshot helpers.
    timer = StepTimer(device)

    # Data.
    training_set = dnnlib.util.construct_class_by_name(**training_set_kwargs)
    log(f'Dataset: {len(training_set)} images, shape {training_set.image_shape}, label shape {training_set.label_shape}')
    _check_class_groups(class_group_size, batch_gpu, training_set)

    # The run's state: networks (from resume_pkl's weights if given), augmentation, loss, optimizers.
    common_kwargs = dict(c_dim=training_set.label_dim, img_resolution=training_set.resolution, img_channels=training_set.num_channels)
    G, D, G_ema = _build_networks(G_kwargs, D_kwargs, common_kwargs, resume_pkl, resume_state, resume_trust_code, device, log)
    augment_pipe = _build_augment_pipe(augment_kwargs, augment_p, ada_target, device)
    if num_gpus > 1:
        for module in [G, D, G_ema, augment_pipe]:
            if module is not None:
                _broadcast_module(module)
    timed_augment = TimedCall(augment_pipe, timer, 'augment') if augment_pipe is not None else None
    loss = dnnlib.util.construct_class_by_name(device=device, G=G, D=D, augment_pipe=timed_augment, **loss_kwargs)
    phases, optimizers = _make_phases(dict(G=G, D=D), dict(G=G_opt_kwargs, D=D_opt_kwargs),
        dict(G=G_reg_interval, D=D_reg_interval), dict(G=D_steps_per_G, D=1))
    run = training_state.RunState(G, D, G_ema, augment_pipe, loss, optimizers)
    if rank == 0:
        _print_summaries(G, D, batch_gpu, device)

    # Continue exactly from a training state: weights, optimizers, loss, counters, RNGs.
    if resume_state is not None:
        run.load(resume_state, rank, device)
        log(f'Continuing from "{resume_state}" at {run.cur_nimg / 1000:.1f} kimg')

    # Metric detectors, loaded now: a machine without them stops before training, not at the first snapshot.
    if metrics:
        from metrics import metric_main
        with training_state.preserved_rng(device):
            metric_main.load_metric_detectors(metrics, device=device, num_gpus=num_gpus, rank=rank)

    # Data loader at the run's position.
    reals = _Reals(training_set, data_loader_kwargs, rank, num_gpus, random_seed, batch_per_rank, batch_gpu,
        class_group_size, class_group_kimg)

    # Image grid: reals and the initial fakes (rank 0).
    grid = None
    if rank == 0:
        grid = _setup_grid(training_set, G.z_dim, random_seed, device)
        if resume_state is None:
            save_image_grid(grid.images, os.path.join(run_dir, 'reals.png'), drange=[0, 255], grid_size=grid.size)
            with training_state.preserved_rng(device):
                _save_fakes(G_ema, grid, batch_gpu, os.path.join(run_dir, 'fakes_init.png'), image_grid_kwargs)

    # Train: steps until the tick ends, then the tick's report and maintenance.
    log(f'Training for {total_kimg} kimg...')
    log()
    stats = _StatsWriter(run_dir, rank, start_time)
    nonfinite = {phase.name: torch.zeros([], dtype=torch.bool, device=device) for phase in phases}
    total_nimg = round(total_kimg * 1000) # Whole images: 0.012 kimg is 12 images, not 12.000000000000002.
    tick_nimg = round(kimg_per_tick * 1000)
    tick = dnnlib.EasyDict(start_nimg=run.cur_nimg, start_time=time.time(), maintenance_sec=time.time() - start_time)
    if progress_fn is not None:
        progress_fn(run.cur_nimg, total_nimg)
    done = run.cur_nimg >= total_nimg
    while not done:

        # One step: this step's data, each due phase, G_ema, counters, ADA.
        with record_function('data'), timer('data'):
            group_size = reals.group_size(run.cur_nimg)
            batch = _fetch_step_data(reals.iterator(run.cur_nimg, run.batch_idx * batch_size), training_set, len(phases),
                batch_per_rank, batch_gpu, G.z_dim, device, group_size)
        _run_phases(run, phases, batch, nonfinite, timer, num_gpus)
        with record_function('G_ema'):
            _update_ema(G, G_ema, run.cur_nimg, batch_size, ema_kimg, ema_rampup, ema_start_kimg)
        run.cur_nimg += batch_size
        run.batch_idx += 1
        if augment_pipe is not None and ada_target is not None and run.batch_idx % ada_interval == 0:
            _adjust_augment_p(run, ada_target, batch_size * ada_interval, ada_kimg, num_gpus)
        timer.next_step()

        # Continue until the tick ends.
        done = run.cur_nimg >= total_nimg
        if not done and run.cur_tick != 0 and run.cur_nimg < tick.start_nimg + tick_nimg:
            continue

        # Tick: stop on divergence, report timings, print the status line.
        _check_finite(nonfinite, run.cur_tick, run.cur_nimg, num_gpus)
        tick.end_time = time.time()
        timer.report()
        log(_status_line(run, tick, start_time, device))
        if abort_fn is not None and abort_fn():
            done = True
            log('\nAborting...')

        # Maintenance: image grid, snapshot, training state, metrics, statistics; none of it moves the training RNGs.
        with record_function('maintenance'), training_state.preserved_rng(device) as rng_state:
            metric_results = {}
            if rank == 0 and image_snapshot_ticks is not None and (done or run.cur_tick % image_snapshot_ticks == 0):
                _save_fakes(G_ema, grid, batch_gpu, os.path.join(run_dir, f'fakes{run.cur_nimg // 1000:06d}.png'), image_grid_kwargs)
            if network_snapshot_ticks is not None and (done or run.cur_tick % network_snapshot_ticks == 0):
                hook_kwargs = dict(hooks=snapshot_hooks, batch_gpu=batch_gpu, seed=random_seed)
                snapshot_pkl, snapshot_G = _save_snapshot(run, run_dir, training_set_kwargs, hook_kwargs, process)
                run.save(os.path.join(run_dir, training_state.state_file_name(run.cur_nimg)), rng_state,
                    rank=rank, num_gpus=num_gpus, keep=keep_states)
                metric_results = _run_metrics(metrics, snapshot_G, snapshot_pkl, training_set_kwargs, run_dir, process)
                del snapshot_G
            stats.write(run.cur_nimg, metric_results)

        # Next tick.
        if progress_fn is not None:
            progress_fn(run.cur_nimg, total_nimg)
        run.cur_tick += 1
        tick = dnnlib.EasyDict(start_nimg=run.cur_nimg, start_time=time.time(), maintenance_sec=time.time() - tick.end_time)

    # Done.
    stats.close()
    log()
    log('Exiting...')

#----------------------------------------------------------------------------
# Set-up stages.

# The torch device; every RNG seeded; cuDNN settings.
def _init_process(device, seed, cudnn_benchmark, allow_tf32):
    device = torch.device('cuda', torch.cuda.current_device()) if device == 'cuda' else torch.device(device)
    np.random.seed(seed)
    torch.manual_seed(seed)
    random.seed(seed)
    if device.type == 'cpu':
        host_memory.keep_freed_memory() # 5-20% faster CPU steps: no page faults on re-allocated activations.
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
        torch.backends.cudnn.allow_tf32 = allow_tf32
    return device

# G, D (training mode, no gradients until their phase) and G_ema; weights from resume_pkl for a new run.
def _build_networks(G_kwargs, D_kwargs, common_kwargs, resume_pkl, resume_state, resume_trust_code, device, log):
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    if resume_pkl is not None and resume_state is None:
        log(f'Starting from the weights of "{resume_pkl}"')
        resume_data = network_files.load_network_pkl(resume_pkl, trust_code=resume_trust_code, log=log)
        for name, module in [('G', G), ('D', D), ('G_ema', G_ema)]:
            if resume_data.get(name) is not None:
                misc.copy_params_and_buffers(resume_data[name], module, require_all=False)
    return G, D, G_ema

def _build_augment_pipe(augment_kwargs, augment_p, ada_target, device):
    if augment_kwargs is None or (augment_p == 0 and ada_target is None):
        return None
    augment_pipe = dnnlib.util.construct_class_by_name(**augment_kwargs).train().requires_grad_(False).to(device)
    augment_pipe.p.copy_(torch.as_tensor(augment_p))
    return augment_pipe

def _broadcast_module(module):
    for tensor in misc.params_and_buffers(module):
        torch.distributed.broadcast(tensor, src=0)

# An optimizer from its class_name + kwargs. torch.optim.Adam without `foreach` updates one tensor at a time
# on the CPU; the multi-tensor form does the same arithmetic (bit-identical, tests/test_training.py) in a few
# calls per step instead of several per parameter, which matters for small networks.
def _construct_optimizer(params, kwargs):
    kwargs = dnnlib.EasyDict(kwargs)
    if kwargs.class_name == 'torch.optim.Adam' and 'foreach' not in kwargs and not kwargs.get('fused', False):
        kwargs.foreach = True
    return dnnlib.util.construct_class_by_name(params=params, **kwargs)

# Phases and one optimizer per network. Lazy regularisation (StyleGAN2 Sec. 3.1): a reg phase every
# `interval` minibatches, with the optimizer's lr and betas rescaled so the main+reg pair behaves like
# one step; reg_interval None = one phase doing both. `every`: run the network's phases every N steps.
def _make_phases(modules, opt_kwargs, reg_intervals, every):
    phases, optimizers = [], {}
    for name, module in modules.items():
        kwargs = dnnlib.EasyDict(opt_kwargs[name])
        if 'betas' in kwargs:
            kwargs.betas = tuple(float(beta) for beta in kwargs.betas) # Adam rejects mixed int/float.
        reg_interval = reg_intervals[name]
        if reg_interval is not None:
            mb_ratio = reg_interval / (reg_interval + 1)
            kwargs.lr = kwargs.lr * mb_ratio
            if 'betas' in kwargs:
                kwargs.betas = tuple(beta ** mb_ratio for beta in kwargs.betas)
        params = list(module.parameters())
        optimizers[name] = opt = _construct_optimizer(params, kwargs)
        if reg_interval is None:
            phases.append(dnnlib.EasyDict(name=name + 'both', module=module, params=params, opt=opt, interval=every[name]))
        else:
            phases.append(dnnlib.EasyDict(name=name + 'main', module=module, params=params, opt=opt, interval=every[name]))
            phases.append(dnnlib.EasyDict(name=name + 'reg', module=module, params=params, opt=opt, interval=reg_interval * every[name]))
    return phases, optimizers

# Layer tables of G and D, from a pass in eval mode on zeros: no running statistic (w_avg, BatchNorm,
# spectral-norm vectors) and no RNG stream moves, so printing them does not change the run.
def _print_summaries(G, D, batch_gpu, device):
    z = torch.zeros([batch_gpu, G.z_dim], device=device)
    c = torch.zeros([batch_gpu, G.c_dim], device=device)
    G.eval()
    D.eval()
    with training_state.preserved_rng(device), torch.no_grad():
        img = misc.print_module_summary(G, [z, c])
        misc.print_module_summary(D, [img, c])
    G.train()
    D.train()

# Endless batches of (images, labels) for this rank, starting at global item `start`.
# groups = (class_group_size, batch_gpu): with a group size, every round of batch_gpu reals comes in class groups.
def _data_iterator(training_set, data_loader_kwargs, rank, num_gpus, random_seed, batch_per_rank, start, groups=(0, 1)):
    if groups[0]:
        sampler = misc.ClassGroupedSampler(training_set.raw_labels(), group_size=groups[0], round_size=groups[1], rank=rank, num_replicas=num_gpus,
            seed=random_seed, start_index=start)
    else:
        sampler = misc.InfiniteSampler(dataset=training_set, rank=rank, num_replicas=num_gpus, seed=random_seed)
        sampler.set_position(start) # Global position: items consumed by all ranks.
    loader_kwargs = dict(data_loader_kwargs)
    if loader_kwargs.get('num_workers', 0) == 0:
        loader_kwargs.pop('prefetch_factor', None) # Only meaningful with worker processes.
    loader_generator = torch.Generator().manual_seed(random_seed * num_gpus + rank) # Keeps the global RNG untouched.
    return iter(torch.utils.data.DataLoader(dataset=training_set, sampler=sampler, batch_size=batch_per_rank,
        generator=loader_generator, **loader_kwargs))

# The reals of each step for this rank: the shuffled order, and from class_group_kimg on the class groups.
# Both orders are functions of the global item index, so a continued run draws what the uninterrupted one drew.
class _Reals:
    def __init__(self, training_set, loader_kwargs, rank, num_gpus, seed, batch_per_rank, batch_gpu, group_size, group_kimg):
        self._args = (training_set, loader_kwargs, rank, num_gpus, seed, batch_per_rank)
        self._batch_gpu = batch_gpu
        self._group_size = group_size
        self._group_nimg = round(group_kimg * 1000)
        self._iterator = None
        self._size = None # Group size of the current iterator.

    # The class-group size in force at cur_nimg (0 = none).
    def group_size(self, cur_nimg):
        return self._group_size if cur_nimg >= self._group_nimg else 0

    # The iterator for the step at cur_nimg, whose first item has the global index `start`.
    def iterator(self, cur_nimg, start):
        size = self.group_size(cur_nimg)
        if self._iterator is None or size != self._size:
            self._iterator = _data_iterator(*self._args, start=start, groups=(size, self._batch_gpu))
            self._size = size
        return self._iterator

# Fixed latents and labels of the image grid, with the reals it shows.
def _setup_grid(training_set, z_dim, random_seed, device):
    grid_size, images, labels = setup_snapshot_image_grid(training_set, random_seed)
    z = torch.randn([labels.shape[0], z_dim], generator=torch.Generator().manual_seed(random_seed)).to(device)
    return dnnlib.EasyDict(size=grid_size, images=images, z=z, c=torch.from_numpy(labels).to(device))

#----------------------------------------------------------------------------
# Stages of a step.

# Reals from the loader, split into rounds of batch_gpu; latents and labels for each phase.
def _fetch_step_data(iterator, training_set, num_phases, batch_per_rank, batch_gpu, z_dim, device, class_group_size=0):
    real_img, real_c = next(iterator)
    real_img = (real_img.to(device).to(torch.float32) / 127.5 - 1).split(batch_gpu)
    real_c = real_c.to(device).split(batch_gpu)
    gen_z = [torch.randn([batch_per_rank, z_dim], device=device).split(batch_gpu) for _ in range(num_phases)]
    gen_c = torch.from_numpy(np.stack(_fake_labels(training_set, num_phases * batch_per_rank, batch_gpu, class_group_size)))
    gen_c = gen_c.pin_memory() if device.type == 'cuda' else gen_c
    gen_c = [phase_c.split(batch_gpu) for phase_c in gen_c.to(device).split(batch_per_rank)]
    return dnnlib.EasyDict(real_img=real_img, real_c=real_c, gen_z=gen_z, gen_c=gen_c)

# Labels of `count` fakes drawn from the dataset; with class groups, one label per slot of each round of
# round_size, repeated over the slot's group (item g * slots + k has slot k, as in misc.ClassGroupedSampler).
def _fake_labels(training_set, count, round_size, class_group_size):
    labels = [training_set.get_label(np.random.randint(len(training_set))) for _ in range(count // max(class_group_size, 1))]
    if not class_group_size:
        return labels
    slots = round_size // class_group_size
    return [labels[(i // round_size) * slots + i % slots] for i in range(count)]

# The class groups need labels and whole groups in every round.
def _check_class_groups(class_group_size, batch_gpu, training_set):
    if class_group_size and not training_set.has_labels:
        raise ValueError('class_group_size needs a dataset with labels (--cond=1).')
    if class_group_size and batch_gpu % class_group_size != 0:
        raise ValueError(f'class_group_size={class_group_size} must divide batch_gpu={batch_gpu}.')

# Each phase due at this step: accumulate gradients over the rounds, clean and average them, step.
def _run_phases(run, phases, batch, nonfinite, timer, num_gpus):
    for phase, phase_z, phase_c in zip(phases, batch.gen_z, batch.gen_c):
        if run.batch_idx % phase.interval != 0:
            continue
        with record_function(phase.name), timer(phase.name):
            phase.opt.zero_grad(set_to_none=True)
            _set_requires_grad(phase.params, True)
            for round_img, round_c, round_z, round_gc in zip(batch.real_img, batch.real_c, phase_z, phase_c):
                value = run.loss.accumulate_gradients(phase=phase.name, real_img=round_img, real_c=round_c,
                    gen_z=round_z, gen_c=round_gc, gain=phase.interval, cur_nimg=run.cur_nimg)
                nonfinite[phase.name] |= ~torch.isfinite(value)
            _set_requires_grad(phase.params, False)
            with record_function(phase.name + '_opt'):
                count = _clean_and_sync_gradients(phase.module, num_gpus)
                training_stats.report(f'Gradients/{phase.name}/nonfinite', count)
                phase.opt.step()

# module.requires_grad_(flag) on a phase's parameter list (listed once: walking the modules costs every step).
def _set_requires_grad(params, flag):
    for param in params:
        param.requires_grad_(flag)

# Average the gradients over the processes and clean them as the original does: NaN -> 0, +-Inf -> +-1e5,
# so one overflow (e.g. in a float16 R1 backward) cannot turn the weights into NaN. Returns the number
# of non-finite elements.
def _clean_and_sync_gradients(module, num_gpus):
    params = [p for p in module.parameters() if p.grad is not None]
    if len(params) == 0:
        return torch.zeros([])
    flat = torch.cat([p.grad.flatten() for p in params])
    if num_gpus > 1:
        torch.distributed.all_reduce(flat)
        flat /= num_gpus
    count = (~torch.isfinite(flat)).sum()
    torch.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad.copy_(g.reshape(p.shape))
    return count

# G_ema's weights: an exponential moving average of G's (half-life ema_kimg, ramped up); buffers copied.
def _update_ema(G, G_ema, cur_nimg, batch_size, ema_kimg, ema_rampup, ema_start_kimg=0):
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    ema_beta = 0.5 ** (batch_size / max(ema_nimg, 1e-8))
    if cur_nimg < ema_start_kimg * 1000:
        ema_beta = 0 # Before ema_start (BigGAN), G_ema is a copy of G.
    with torch.no_grad():
        params_ema = list(G_ema.parameters())
        torch._foreach_copy_(params_ema, torch._foreach_lerp(list(G.parameters()), params_ema, ema_beta)) # p.lerp(p_ema, beta) each.
        buffers_ema = list(G_ema.buffers())
        if buffers_ema:
            torch._foreach_copy_(buffers_ema, list(G.buffers()))

# ADA (Sec. 3): p moves by augment.ada_p_delta toward making mean(sign(D(real))) equal ada_target.
def _adjust_augment_p(run, ada_target, num_images, ada_kimg, num_gpus):
    stats = run.loss.real_sign_stats.clone()
    if num_gpus > 1:
        torch.distributed.all_reduce(stats)
    run.loss.real_sign_stats.zero_()
    if stats[0] > 0:
        rt = float(stats[1] / stats[0])
        run.augment_pipe.adjust_p(augment.ada_p_delta(rt, target=ada_target, num_images=num_images, ada_kimg=ada_kimg))

#----------------------------------------------------------------------------
# Stages of a tick.

def _check_finite(nonfinite, cur_tick, cur_nimg, num_gpus):
    flags = torch.stack(list(nonfinite.values())).to(torch.int32)
    if num_gpus > 1:
        torch.distributed.all_reduce(flags)
    bad = [name for name, flag in zip(nonfinite, flags.tolist()) if flag]
    if bad:
        raise TrainingDivergedError(f'Loss of phase {bad[0]} became NaN or Inf in tick {cur_tick} '
            f'(at {cur_nimg / 1000:g} kimg); lower the learning rate or raise --gamma, '
            'then continue from the last training state with --resume=<run dir>.')

# The tick's status line; every value is also a statistic.
def _status_line(run, tick, start_time, device):
    total_sec = tick.end_time - start_time
    tick_sec = tick.end_time - tick.start_time
    training_stats.report0('Timing/total_hours', total_sec / 3600)
    training_stats.report0('Timing/total_days', total_sec / 86400)
    gpu_mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == 'cuda' else 0
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    fields = [
        ('tick', f'{training_stats.report0("Progress/tick", run.cur_tick):<5d}'),
        ('kimg', f'{training_stats.report0("Progress/kimg", run.cur_nimg / 1e3):<8.1f}'),
        ('time', f'{dnnlib.util.format_time(training_stats.report0("Timing/total_sec", total_sec)):<12s}'),
        ('sec/tick', f'{training_stats.report0("Timing/sec_per_tick", tick_sec):<7.1f}'),
        ('sec/kimg', f'{training_stats.report0("Timing/sec_per_kimg", tick_sec / max(run.cur_nimg - tick.start_nimg, 1) * 1e3):<7.2f}'),
        ('maintenance', f'{training_stats.report0("Timing/maintenance_sec", tick.maintenance_sec):<6.1f}'),
        ('cpumem', f'{training_stats.report0("Resources/cpu_mem_gb", psutil.Process(os.getpid()).memory_info().rss / 2**30):<6.2f}'),
        ('gpumem', f'{training_stats.report0("Resources/peak_gpu_mem_gb", gpu_mem):<6.2f}'),
        ('augment', f'{training_stats.report0("Progress/augment", float(run.augment_pipe.p) if run.augment_pipe is not None else 0):.3f}'),
    ]
    return ' '.join(f'{name} {value}' for name, value in fields)

# Grid of G_ema's images, called with the config's image_grid_kwargs. Batches hold up to 2^18 pixels
# (at least batch_gpu images): few calls for small images.
def _save_fakes(G_ema, grid, batch_gpu, path, kwargs):
    chunk = max(batch_gpu, 2**18 // G_ema.img_resolution ** 2)
    with torch.no_grad():
        images = [G_ema(z, c, **kwargs).cpu() for z, c in zip(grid.z.split(chunk), grid.c.split(chunk))]
    save_image_grid(torch.cat(images).numpy(), path, drange=[-1, 1], grid_size=grid.size)

# A copy for the snapshot, after the config's snapshot hooks (e.g. BigGAN's standing statistics).
def _snapshot_copy(module, hooks=(), batch_gpu=1, device=None, seed=0):
    if module is None:
        return None
    module = copy.deepcopy(module).eval().requires_grad_(False)
    for hook in hooks:
        dnnlib.util.call_func_by_name(module, batch_size=max(batch_gpu, 2), device=device, seed=seed, **hook)
    return module.cpu()

# network-snapshot-<kimg>.pkl (rank 0 writes); every rank returns the path and its G_ema copy for the metrics.
# hook_kwargs: the snapshot hooks for G_ema and their batch_gpu and seed; process: rank, num_gpus, device, log.
def _save_snapshot(run, run_dir, training_set_kwargs, hook_kwargs, process):
    if process.num_gpus > 1:
        for module in run.networks().values():
            misc.check_ddp_consistency(module, ignore_names=misc.rank_local_buffer_names(module))
    snapshot = dict(G=_snapshot_copy(run.G), D=_snapshot_copy(run.D),
        G_ema=_snapshot_copy(run.G_ema, device=process.device, **hook_kwargs),
        augment_pipe=_snapshot_copy(run.augment_pipe), training_set_kwargs=dict(training_set_kwargs))
    path = os.path.join(run_dir, f'network-snapshot-{run.cur_nimg // 1000:06d}.pkl')
    if process.rank == 0:
        network_files.save_network_pkl(path, snapshot)
    return path, snapshot['G_ema']

# Each metric on the snapshot; a failing one is logged and training goes on. Returns {result name: value}.
def _run_metrics(metrics, G, snapshot_pkl, training_set_kwargs, run_dir, process):
    results = {}
    if len(metrics) == 0:
        return results
    from metrics import metric_main
    process.log('Evaluating metrics...')
    for metric in metrics:
        try:
            result_dict = metric_main.calc_metric(metric=metric, G=G, dataset_kwargs=training_set_kwargs,
                num_gpus=process.num_gpus, rank=process.rank, device=process.device)
        except Exception as e: # A failing metric is reported; training goes on.
            process.log(f'Metric {metric} failed: {type(e).__name__}: {e}')
            continue
        if process.rank == 0:
            metric_main.report_metric(result_dict, run_dir=run_dir, snapshot_pkl=snapshot_pkl)
        results.update(result_dict.results)
    return results

#----------------------------------------------------------------------------
# Statistics of each tick: one line of stats.jsonl and TensorBoard scalars (rank 0), with the
# metric results of the tick as Metrics/<name>. update() is collective: every rank calls write().

class _StatsWriter:
    def __init__(self, run_dir, rank, start_time):
        self.collector = training_stats.Collector(regex='.*')
        self.start_time = start_time
        self.jsonl = None
        self.tfevents = None
        if rank != 0:
            return
        self.jsonl = os.open(os.path.join(run_dir, 'stats.jsonl'), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            import torch.utils.tensorboard as tensorboard
            self.tfevents = tensorboard.SummaryWriter(run_dir)
        except ImportError:
            self.tfevents = None

    def write(self, cur_nimg, metric_results):
        self.collector.update()
        if self.jsonl is None:
            return
        stats = self.collector.as_dict()
        for name, value in metric_results.items():
            stats[f'Metrics/{name}'] = dnnlib.EasyDict(num=1, mean=float(value), std=0.0)
        timestamp = time.time()
        os.write(self.jsonl, (json.dumps(dict(stats, timestamp=timestamp)) + '\n').encode()) # One write: no partial lines.
        if self.tfevents is not None:
            global_step = int(cur_nimg / 1e3)
            walltime = timestamp - self.start_time
            for name, value in stats.items():
                self.tfevents.add_scalar(name, value.mean, global_step=global_step, walltime=walltime)
            self.tfevents.flush()

    def close(self):
        if self.jsonl is not None:
            os.close(self.jsonl)
        if self.tfevents is not None:
            self.tfevents.close()

#----------------------------------------------------------------------------
