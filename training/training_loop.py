# The training loop: G, D and G_ema trained by phases with lazy regularisation, ADA, ticks,
# snapshots (network pickles + training state for exact resume), metrics and statistics.
# One call per process; torch.distributed is initialised by the caller when num_gpus > 1.

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
import legacy
from torch_utils import misc
from torch_utils import training_stats
from training import training_state

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

def save_image_grid(img, path, drange, grid_size):
    lo, hi = drange
    img = np.asarray(img, dtype=np.float32)
    img = np.rint((img - lo) * (255 / (hi - lo))).clip(0, 255).astype(np.uint8)
    gw, gh = grid_size
    _N, C, H, W = img.shape
    img = img.reshape(gh, gw, C, H, W).transpose(0, 3, 1, 4, 2).reshape(gh * H, gw * W, C) # [hHwWC] -> [HWC]
    image = PIL.Image.fromarray(img[:, :, 0], 'L') if C == 1 else PIL.Image.fromarray(img, 'RGB')
    tmp = path + '.tmp.png'
    image.save(tmp)
    os.replace(tmp, path)

#----------------------------------------------------------------------------
# Small helpers of the loop.

def _resolve_device(name):
    if name == 'cuda':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device(name)

def _broadcast_module(module):
    for tensor in misc.params_and_buffers(module):
        torch.distributed.broadcast(tensor, src=0)

def _sync_gradients(module, num_gpus):
    params = [p for p in module.parameters() if p.grad is not None]
    if num_gpus > 1 and len(params) > 0:
        flat = torch.cat([p.grad.flatten() for p in params])
        torch.distributed.all_reduce(flat)
        flat /= num_gpus
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad.copy_(g.reshape(p.shape))

def _update_ema(G, G_ema, cur_nimg, batch_size, ema_kimg, ema_rampup, ema_start_kimg=0):
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    ema_beta = 0.5 ** (batch_size / max(ema_nimg, 1e-8))
    if cur_nimg < ema_start_kimg * 1000:
        ema_beta = 0 # Before ema_start (BigGAN), G_ema is a copy of G.
    with torch.no_grad():
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.copy_(p.lerp(p_ema, ema_beta))
        for b_ema, b in zip(G_ema.buffers(), G.buffers()):
            b_ema.copy_(b)

def _make_phases(G, D, G_opt_kwargs, D_opt_kwargs, G_reg_interval, D_reg_interval, D_steps_per_G):
    # Lazy regularisation (StyleGAN2 Sec. 3.1): a reg phase every `interval` minibatches, with the
    # optimizer's lr and betas rescaled so the main+reg pair behaves like one step.
    phases = []
    for name, module, opt_kwargs, reg_interval, every in [('G', G, G_opt_kwargs, G_reg_interval, D_steps_per_G),
                                                          ('D', D, D_opt_kwargs, D_reg_interval, 1)]:
        opt_kwargs = dnnlib.EasyDict(opt_kwargs)
        if 'betas' in opt_kwargs:
            opt_kwargs.betas = tuple(float(beta) for beta in opt_kwargs.betas) # Adam rejects mixed int/float.
        if reg_interval is None:
            opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
            phases.append(dnnlib.EasyDict(name=name + 'both', module=module, opt=opt, interval=every))
            continue
        mb_ratio = reg_interval / (reg_interval + 1)
        opt_kwargs.lr = opt_kwargs.lr * mb_ratio
        if 'betas' in opt_kwargs:
            opt_kwargs.betas = tuple(beta ** mb_ratio for beta in opt_kwargs.betas)
        opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
        phases.append(dnnlib.EasyDict(name=name + 'main', module=module, opt=opt, interval=every))
        phases.append(dnnlib.EasyDict(name=name + 'reg', module=module, opt=opt, interval=reg_interval * every))
    return phases

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

def _status_line(fields):
    return ' '.join(f'{name} {value}' for name, value in fields)

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
    metrics                 = [],       # Metric names evaluated at each network snapshot.
    random_seed             = 0,        # Global seed; rank r seeds with random_seed * num_gpus + r.
    num_gpus                = 1,        # Number of processes.
    rank                    = 0,        # Rank of this process.
    device                  = 'cuda',   # 'cuda' | 'cpu' | 'mps'; with cuda the current CUDA device is used.
    batch_size              = 4,        # Total batch over all processes.
    batch_gpu               = 4,        # Images per process per step (accumulation when batch_size > batch_gpu * num_gpus).
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
    resume_pkl              = None,     # Network file to start from (transfer learning; counters start at 0).
    resume_state            = None,     # Training-state file to continue exactly.
    image_grid_kwargs       = {},       # Keyword arguments of G_ema's call for the image grids (e.g. noise_mode).
    snapshot_hooks          = [],       # Functions run on the G_ema copy before a snapshot: dicts of func_name + kwargs,
                                        # called as func(module, batch_size=, device=, seed=, **kwargs).
    cudnn_benchmark         = True,     # cuDNN autotuning on CUDA.
    allow_tf32              = False,    # TF32 matmul and convolutions on CUDA.
    abort_fn                = None,     # Callable returning True to stop early.
    progress_fn             = None,     # Callable(cur_nimg, total_nimg) for progress reports.
):
    # Initialise: devices, seeds, numerics.
    start_time = time.time()
    device = _resolve_device(device)
    np.random.seed(random_seed * num_gpus + rank)
    torch.manual_seed(random_seed * num_gpus + rank)
    random.seed(random_seed * num_gpus + rank)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
        torch.backends.cudnn.allow_tf32 = allow_tf32
    if batch_size % (batch_gpu * num_gpus) != 0:
        raise ValueError(f'batch_size={batch_size} must be a multiple of batch_gpu={batch_gpu} x num_gpus={num_gpus}.')
    batch_per_rank = batch_size // num_gpus
    log = print if rank == 0 else (lambda *args, **kwargs: None)

    # Data.
    training_set = dnnlib.util.construct_class_by_name(**training_set_kwargs)
    sampler = misc.InfiniteSampler(dataset=training_set, rank=rank, num_replicas=num_gpus, seed=random_seed)
    log(f'Dataset: {len(training_set)} images, shape {training_set.image_shape}, label shape {training_set.label_shape}')

    # Networks, augmentation, loss, optimizers.
    common_kwargs = dict(c_dim=training_set.label_dim, img_resolution=training_set.resolution, img_channels=training_set.num_channels)
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    if resume_pkl is not None and resume_state is None:
        log(f'Starting from the weights of "{resume_pkl}"')
        resume_data = legacy.load_network_pkl(resume_pkl)
        for name, module in [('G', G), ('D', D), ('G_ema', G_ema)]:
            if resume_data.get(name) is not None:
                misc.copy_params_and_buffers(resume_data[name], module, require_all=False)
    augment_pipe = None
    if augment_kwargs is not None and (augment_p > 0 or ada_target is not None):
        augment_pipe = dnnlib.util.construct_class_by_name(**augment_kwargs).train().requires_grad_(False).to(device)
        augment_pipe.p.copy_(torch.as_tensor(augment_p))
    if num_gpus > 1:
        for module in [G, D, G_ema, augment_pipe]:
            if module is not None:
                _broadcast_module(module)
    loss = dnnlib.util.construct_class_by_name(device=device, G=G, D=D, augment_pipe=augment_pipe, **loss_kwargs)
    phases = _make_phases(G, D, G_opt_kwargs, D_opt_kwargs, G_reg_interval, D_reg_interval, D_steps_per_G)
    if rank == 0:
        _print_summaries(G, D, batch_gpu, device)

    # Counters, possibly from the training state.
    cur_nimg, cur_tick, batch_idx = 0, 0, 0
    if resume_state is not None:
        state = training_state.load_training_state(resume_state)
        log(f'Continuing from "{resume_state}" at {state["cur_nimg"] / 1000:.1f} kimg')
        for name, module in [('G', G), ('D', D), ('G_ema', G_ema)]:
            module.load_state_dict(state[name])
        for phase in phases:
            phase.opt.load_state_dict(state[phase.name[0] + '_opt'])
        if augment_pipe is not None and state.get('augment_pipe') is not None:
            augment_pipe.load_state_dict(state['augment_pipe'])
        loss.pl_mean.copy_(state['loss']['pl_mean'])
        loss.real_sign_stats.copy_(state['loss']['real_sign_stats'])
        cur_nimg, cur_tick, batch_idx = int(state['cur_nimg']), int(state['cur_tick']), int(state['batch_idx'])
        training_state.restore_rng_state(state['rng'][rank], device)
        del state
    sampler.set_position(batch_idx * batch_size) # Global position: items consumed by all ranks.
    loader_kwargs = dict(data_loader_kwargs)
    if loader_kwargs.get('num_workers', 0) == 0:
        loader_kwargs.pop('prefetch_factor', None) # Only meaningful with worker processes.
    loader_generator = torch.Generator().manual_seed(random_seed * num_gpus + rank) # Keeps the global RNG untouched.
    training_set_iterator = iter(torch.utils.data.DataLoader(dataset=training_set, sampler=sampler,
        batch_size=batch_per_rank, generator=loader_generator, **loader_kwargs))

    # Reals and the initial fakes.
    grid_size, grid_z, grid_c = None, None, None
    if rank == 0:
        grid_size, images, labels = setup_snapshot_image_grid(training_set, random_seed)
        if resume_state is None:
            save_image_grid(images, os.path.join(run_dir, 'reals.png'), drange=[0, 255], grid_size=grid_size)
        grid_z = torch.randn([labels.shape[0], G.z_dim], generator=torch.Generator().manual_seed(random_seed)).to(device)
        grid_c = torch.from_numpy(labels).to(device)
        if resume_state is None:
            with training_state.preserved_rng(device):
                _save_fakes(G_ema, grid_z, grid_c, batch_gpu, os.path.join(run_dir, 'fakes_init.png'), grid_size, image_grid_kwargs)

    # Train.
    log(f'Training for {total_kimg} kimg...')
    log()
    stats_collector = training_stats.Collector(regex='.*')
    stats_jsonl, stats_tfevents = _open_stats(run_dir, rank)
    nonfinite = {phase.name: torch.zeros([], dtype=torch.bool, device=device) for phase in phases}
    total_nimg = round(total_kimg * 1000) # Whole images: 0.012 kimg is 12 images, not 12.000000000000002.
    tick_nimg = round(kimg_per_tick * 1000)
    tick_start_nimg = cur_nimg
    tick_start_time = time.time()
    maintenance_time = tick_start_time - start_time
    if progress_fn is not None:
        progress_fn(cur_nimg, total_nimg)
    done = cur_nimg >= total_nimg
    while not done:

        # Fetch this step's data: reals from the loader, latents and labels for each phase.
        real_img, real_c = next(training_set_iterator)
        real_img = (real_img.to(device).to(torch.float32) / 127.5 - 1).split(batch_gpu)
        real_c = real_c.to(device).split(batch_gpu)
        gen_z = [torch.randn([batch_per_rank, G.z_dim], device=device).split(batch_gpu) for _ in phases]
        gen_c = [training_set.get_label(np.random.randint(len(training_set))) for _ in range(len(phases) * batch_per_rank)]
        gen_c = torch.from_numpy(np.stack(gen_c)).pin_memory() if device.type == 'cuda' else torch.from_numpy(np.stack(gen_c))
        gen_c = [phase_c.split(batch_gpu) for phase_c in gen_c.to(device).split(batch_per_rank)]

        # Run each phase that is due at this step.
        for phase, phase_z, phase_c in zip(phases, gen_z, gen_c):
            if batch_idx % phase.interval != 0:
                continue
            phase.opt.zero_grad(set_to_none=True)
            phase.module.requires_grad_(True)
            for round_img, round_c, round_z, round_gc in zip(real_img, real_c, phase_z, phase_c):
                value = loss.accumulate_gradients(phase=phase.name, real_img=round_img, real_c=round_c,
                    gen_z=round_z, gen_c=round_gc, gain=phase.interval, cur_nimg=cur_nimg)
                nonfinite[phase.name] |= ~torch.isfinite(value)
            phase.module.requires_grad_(False)
            _sync_gradients(phase.module, num_gpus)
            phase.opt.step()

        # G_ema, counters, ADA.
        _update_ema(G, G_ema, cur_nimg, batch_size, ema_kimg, ema_rampup, ema_start_kimg)
        cur_nimg += batch_size
        batch_idx += 1
        if augment_pipe is not None and ada_target is not None and batch_idx % ada_interval == 0:
            _adjust_augment_p(augment_pipe, loss, ada_target, batch_size * ada_interval / (ada_kimg * 1000), num_gpus)

        # Continue until the tick ends.
        done = cur_nimg >= total_nimg
        if not done and cur_tick != 0 and cur_nimg < tick_start_nimg + tick_nimg:
            continue

        # Tick: stop on divergence, print the status line.
        _check_finite(nonfinite, cur_tick, cur_nimg, num_gpus)
        tick_end_time = time.time()
        fields = [
            ('tick', f'{training_stats.report0("Progress/tick", cur_tick):<5d}'),
            ('kimg', f'{training_stats.report0("Progress/kimg", cur_nimg / 1e3):<8.1f}'),
            ('time', f'{dnnlib.util.format_time(training_stats.report0("Timing/total_sec", tick_end_time - start_time)):<12s}'),
            ('sec/tick', f'{training_stats.report0("Timing/sec_per_tick", tick_end_time - tick_start_time):<7.1f}'),
            ('sec/kimg', f'{training_stats.report0("Timing/sec_per_kimg", (tick_end_time - tick_start_time) / max(cur_nimg - tick_start_nimg, 1) * 1e3):<7.2f}'),
            ('maintenance', f'{training_stats.report0("Timing/maintenance_sec", maintenance_time):<6.1f}'),
            ('cpumem', f'{training_stats.report0("Resources/cpu_mem_gb", psutil.Process(os.getpid()).memory_info().rss / 2**30):<6.2f}'),
            ('gpumem', f'{training_stats.report0("Resources/peak_gpu_mem_gb", (torch.cuda.max_memory_allocated(device) / 2**30) if device.type == "cuda" else 0):<6.2f}'),
            ('augment', f'{training_stats.report0("Progress/augment", float(augment_pipe.p) if augment_pipe is not None else 0):.3f}'),
        ]
        log(_status_line(fields))
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        if abort_fn is not None and abort_fn():
            done = True
            log('\nAborting...')

        # Maintenance: images, snapshot, training state, metrics, statistics. None of it moves the training RNGs.
        with training_state.preserved_rng(device) as rng_state:
            if rank == 0 and image_snapshot_ticks is not None and (done or cur_tick % image_snapshot_ticks == 0):
                _save_fakes(G_ema, grid_z, grid_c, batch_gpu, os.path.join(run_dir, f'fakes{cur_nimg // 1000:06d}.png'), grid_size, image_grid_kwargs)
            if network_snapshot_ticks is not None and (done or cur_tick % network_snapshot_ticks == 0):
                snapshot_pkl, snapshot_G = _save_snapshot(run_dir, G, D, G_ema, augment_pipe, training_set_kwargs,
                    cur_nimg, rank, num_gpus, snapshot_hooks, batch_gpu, device, random_seed)
                _save_state(run_dir, G, D, G_ema, phases, augment_pipe, loss, cur_nimg, cur_tick, batch_idx, rank, num_gpus, rng_state)
                _run_metrics(metrics, snapshot_G, snapshot_pkl, training_set_kwargs, run_dir, num_gpus, rank, device, log)
                del snapshot_G
            _write_stats(stats_collector, stats_jsonl, stats_tfevents, cur_nimg, start_time)

        # Next tick.
        if progress_fn is not None:
            progress_fn(cur_nimg, total_nimg)
        cur_tick += 1
        tick_start_nimg = cur_nimg
        tick_start_time = time.time()
        maintenance_time = tick_start_time - tick_end_time

    # Done.
    if stats_jsonl is not None:
        os.close(stats_jsonl)
    if stats_tfevents is not None:
        stats_tfevents.close()
    log()
    log('Exiting...')

#----------------------------------------------------------------------------
# Stages of the loop.

def _adjust_augment_p(augment_pipe, loss, ada_target, step, num_gpus):
    # p moves by +-step toward making mean(sign(D(real))) equal ada_target (ADA Sec. 3), kept in [0, 1].
    stats = loss.real_sign_stats.clone()
    if num_gpus > 1:
        torch.distributed.all_reduce(stats)
    loss.real_sign_stats.zero_()
    if stats[0] > 0:
        mean_sign = float(stats[1] / stats[0])
        augment_pipe.adjust_p(np.sign(mean_sign - ada_target) * step)

def _check_finite(nonfinite, cur_tick, cur_nimg, num_gpus):
    flags = torch.stack(list(nonfinite.values())).to(torch.int32)
    if num_gpus > 1:
        torch.distributed.all_reduce(flags)
    bad = [name for name, flag in zip(nonfinite, flags.tolist()) if flag]
    if bad:
        raise TrainingDivergedError(f'Loss of phase {bad[0]} became NaN or Inf in tick {cur_tick} '
            f'(at {cur_nimg / 1000:g} kimg); lower the learning rate or raise --gamma, '
            'then continue from the last training state with --resume=<run dir>.')

# Grid of G_ema's images, called with the config's image_grid_kwargs. Batches hold up to 2^18 pixels
# (at least batch_gpu images): few calls for small images.
def _save_fakes(G_ema, grid_z, grid_c, batch_gpu, path, grid_size, kwargs):
    chunk = max(batch_gpu, 2**18 // G_ema.img_resolution ** 2)
    with torch.no_grad():
        images = [G_ema(z, c, **kwargs).cpu() for z, c in zip(grid_z.split(chunk), grid_c.split(chunk))]
    save_image_grid(torch.cat(images).numpy(), path, drange=[-1, 1], grid_size=grid_size)

# Buffers that legitimately differ between ranks: averages over each rank's own batches.
_RANK_LOCAL_BUFFERS = r'.*\.(w_avg|[^.]*running_\w+|num_batches_tracked|[^.]*stored_\w+|[^.]*accumulat\w+|ref_\w+|has_reference|[^.]*standing_\w+)'

# A copy for the snapshot, after the config's snapshot hooks (e.g. BigGAN's standing statistics).
def _snapshot_copy(module, hooks=(), batch_gpu=1, device=None, seed=0):
    if module is None:
        return None
    module = copy.deepcopy(module).eval().requires_grad_(False)
    for hook in hooks:
        dnnlib.util.call_func_by_name(module, batch_size=max(batch_gpu, 2), device=device, seed=seed, **hook)
    return module.cpu()

def _save_snapshot(run_dir, G, D, G_ema, augment_pipe, training_set_kwargs, cur_nimg, rank, num_gpus,
                   snapshot_hooks, batch_gpu, device, random_seed):
    if num_gpus > 1:
        for module in (G, D, G_ema):
            misc.check_ddp_consistency(module, ignore_regex=_RANK_LOCAL_BUFFERS)
    snapshot = dict(G=_snapshot_copy(G), D=_snapshot_copy(D),
        G_ema=_snapshot_copy(G_ema, snapshot_hooks, batch_gpu, device, seed=random_seed),
        augment_pipe=_snapshot_copy(augment_pipe), training_set_kwargs=dict(training_set_kwargs))
    path = os.path.join(run_dir, f'network-snapshot-{cur_nimg // 1000:06d}.pkl')
    if rank == 0:
        legacy.save_network_pkl(path, snapshot)
    return path, snapshot['G_ema']

# Training state for exact resume; `rng` is this rank's RNG state as training left it (before maintenance).
def _save_state(run_dir, G, D, G_ema, phases, augment_pipe, loss, cur_nimg, cur_tick, batch_idx, rank, num_gpus, rng):
    if num_gpus > 1:
        all_rng = [None] * num_gpus
        torch.distributed.all_gather_object(all_rng, rng)
    else:
        all_rng = [rng]
    if rank != 0:
        return
    opts = {phase.name[0] + '_opt': phase.opt.state_dict() for phase in phases}
    state = dict(G=G.state_dict(), D=D.state_dict(), G_ema=G_ema.state_dict(), **opts,
        augment_pipe=(augment_pipe.state_dict() if augment_pipe is not None else None),
        loss=dict(pl_mean=loss.pl_mean.cpu(), real_sign_stats=loss.real_sign_stats.cpu()),
        cur_nimg=cur_nimg, cur_tick=cur_tick + 1, batch_idx=batch_idx, rng=all_rng)
    training_state.save_training_state(os.path.join(run_dir, training_state.state_file_name(cur_nimg)), state)

def _run_metrics(metrics, G, snapshot_pkl, training_set_kwargs, run_dir, num_gpus, rank, device, log):
    if len(metrics) == 0:
        return
    from metrics import metric_main
    log('Evaluating metrics...')
    for metric in metrics:
        try:
            result_dict = metric_main.calc_metric(metric=metric, G=G, dataset_kwargs=training_set_kwargs,
                num_gpus=num_gpus, rank=rank, device=device)
        except Exception as e: # A failing metric is reported; training goes on.
            log(f'Metric {metric} failed: {type(e).__name__}: {e}')
            continue
        if rank == 0:
            metric_main.report_metric(result_dict, run_dir=run_dir, snapshot_pkl=snapshot_pkl)

def _open_stats(run_dir, rank):
    if rank != 0:
        return None, None
    stats_jsonl = os.open(os.path.join(run_dir, 'stats.jsonl'), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        import torch.utils.tensorboard as tensorboard
        stats_tfevents = tensorboard.SummaryWriter(run_dir)
    except ImportError:
        stats_tfevents = None
    return stats_jsonl, stats_tfevents

def _write_stats(collector, stats_jsonl, stats_tfevents, cur_nimg, start_time):
    collector.update()
    stats = collector.as_dict()
    timestamp = time.time()
    if stats_jsonl is not None:
        os.write(stats_jsonl, (json.dumps(dict(stats, timestamp=timestamp)) + '\n').encode()) # One write: no partial lines.
    if stats_tfevents is not None:
        global_step = int(cur_nimg / 1e3)
        walltime = timestamp - start_time
        for name, value in stats.items():
            stats_tfevents.add_scalar(name, value.mean, global_step=global_step, walltime=walltime)
        stats_tfevents.flush()

#----------------------------------------------------------------------------
