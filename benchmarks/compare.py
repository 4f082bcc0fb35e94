# Speed of this tree against a baseline commit, measured side by side: the baseline is checked out
# into a temporary git worktree, and both trees run the same measures on the same weights and inputs,
# alternating A (baseline) and B (this tree) in separate processes so that load on a shared machine
# hits both sides alike. Reports min and median seconds per side, the speed-up (A / B) and the
# geometric mean of the speed-ups.
#
# Measures (the networks are built from each tree's own `train.py --dry-run` configuration, so each
# side runs what its trainer would run on this device, e.g. mixed precision or not):
#   g_fwd      G(z) in eval mode without gradients, noise_mode='const' (generation, metrics);
#              64x64 RGB, --cfg=auto --cbase=8192 --cmax=256, batch 8.
#   g_fwdbwd   G(z) in training mode plus the backward pass to every parameter.
#   d_fwdbwd   D(img) in training mode plus the backward pass to every parameter.
#   d_r1       D's R1 penalty: input gradient with create_graph inside no_weight_gradients(),
#              then the backward pass of the squared gradient norm (double backward).
#   demo_step  One training step of the demo configuration (demo.py: --cfg=small --cond=1 --cmax=32
#              --gamma=1 --aug=noaug, 32x32 greyscale, 10 classes) at batch 32 on both sides: the loss
#              phases with their optimizer steps (each tree's own optimizer construction), lazy
#              regularisation amortised (a 16-step cycle, per step). The batch is fixed because the
#              small preset's changed (32 at 9dd6ba4, 8 since): steps of different batches do
#              different amounts of work.
#
#   python benchmarks/compare.py --baseline=9dd6ba4 [--rounds 3] [--repeat 3] [--measures ...] [--fp32]

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import click

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEASURES = ('g_fwd', 'g_fwdbwd', 'd_fwdbwd', 'd_r1', 'demo_step')
NET_BATCH = 8
DEMO_CYCLE = 16         # Steps per timed demo cycle: the lazy-regularisation intervals (4, 16) both fit.
DEMO_BATCH = 32         # Images per demo step on both sides (the small preset's batch at 9dd6ba4).

#----------------------------------------------------------------------------
# Small random datasets for the dry runs: 64x64 RGB (benchmark networks) and 32x32 greyscale with
# 10 classes (demo). Only their shape and labels matter.

def make_datasets(workdir):
    import numpy as np
    import PIL.Image
    rnd = np.random.RandomState(0)
    paths = {}
    for name, res, mode, labelled in [('rgb64', 64, 'RGB', False), ('gray32', 32, 'L', True)]:
        path = os.path.join(workdir, name)
        os.makedirs(path)
        labels = []
        for i in range(20):
            shape = [res, res, 3] if mode == 'RGB' else [res, res]
            PIL.Image.fromarray(rnd.randint(0, 256, size=shape, dtype=np.uint8), mode).save(os.path.join(path, f'{i:04d}.png'))
            labels.append([f'{i:04d}.png', i % 10])
        if labelled:
            with open(os.path.join(path, 'dataset.json'), 'w') as f:
                json.dump(dict(labels=labels), f)
        paths[name] = path
    return paths

#----------------------------------------------------------------------------
# Child side: the resolved training options of the tree this process imports from.

def dry_run_config(kind, datasets, fp32):
    import click.testing
    import train
    if kind == 'nets':
        args = [f'--data={datasets["rgb64"]}', '--cfg=auto', '--cbase=8192', '--cmax=256', f'--batch={NET_BATCH}', '--aug=noaug']
    else:
        args = [f'--data={datasets["gray32"]}', '--cfg=small', '--cond=1', '--aug=noaug', '--cmax=32', '--gamma=1', f'--batch={DEMO_BATCH}']
    args += ['--outdir=' + os.path.join(datasets['workdir'], 'runs'), '--device=cpu', '--workers=1', '--metrics=none', '--dry-run']
    if fp32:
        args.append('--fp32=1')
    result = click.testing.CliRunner().invoke(train.main, args)
    if result.exit_code != 0:
        raise RuntimeError(f'train.py --dry-run failed: {result.output.strip()[-500:]} {result.exception!r}')
    return json.loads(result.output)

#----------------------------------------------------------------------------
# Child side: G and D of a resolved configuration, with the shared weights when a file is given.
# A parameter whose shape differs from the baseline's (a changed architecture, e.g. a preset's
# minibatch-stddev features), or of a layer the baseline does not have (e.g. small's auxiliary
# classifier), keeps this tree's seeded initial values and is named in `notes`.

def build_networks(c, weights=None, notes=None):
    import torch
    import dnnlib
    training_set = dnnlib.util.construct_class_by_name(**c['training_set_kwargs'])
    common = dict(c_dim=training_set.label_dim, img_resolution=training_set.resolution, img_channels=training_set.num_channels)
    torch.manual_seed(0)
    G = dnnlib.util.construct_class_by_name(**c['G_kwargs'], **common).train().requires_grad_(False)
    D = dnnlib.util.construct_class_by_name(**c['D_kwargs'], **common).train().requires_grad_(False)
    if weights is not None:
        for name, module in (('G', G), ('D', D)):
            own = module.state_dict()
            state = {k: v for k, v in weights[name].items() if k not in own or own[k].shape == v.shape}
            module.load_state_dict(state, strict=False)
            params = {n for n, _ in module.named_parameters()}
            reshaped = sorted(params & (set(weights[name]) - set(state)))
            baseline_modules = {k.rsplit('.', 1)[0] for k in weights[name]}
            added = sorted(k for k in params - set(weights[name]) if k.rsplit('.', 1)[0] not in baseline_modules)
            if not params - set(added) <= set(weights[name]):
                raise RuntimeError(f'{name}: parameters differ from the shared weights: {sorted(params ^ set(weights[name]))[:5]}')
            if notes is not None:
                notes += [f'{name}.{k} {list(own[k].shape)} (baseline {list(weights[name][k].shape)})' for k in reshaped]
                notes += [f'{name}.{k} {list(own[k].shape)} (not in the baseline)' for k in added]
    return G, D, common

#----------------------------------------------------------------------------
# Child side: seconds of each of `repeat` calls of fn after one warm-up call.

def time_calls(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times

#----------------------------------------------------------------------------
# Child side: the four network measures.

def measure_nets(c, weights, inputs, repeat, names, notes):
    import torch
    from torch_utils.ops import conv2d_gradfix
    G, D, _common = build_networks(c, weights, notes)
    z, img, r = inputs['z'], inputs['img'], inputs['r']
    cz = torch.zeros([z.shape[0], 0])

    def g_fwd():
        G.eval()
        with torch.no_grad():
            G(z, cz, noise_mode='const')
        G.train()

    def g_fwdbwd():
        G.requires_grad_(True)
        torch.manual_seed(1)
        (G(z, cz) * r).sum().backward()
        G.requires_grad_(False)

    def d_fwdbwd():
        D.requires_grad_(True)
        D(img, cz).sum().backward()
        D.requires_grad_(False)

    def d_r1():
        D.requires_grad_(True)
        x = img.detach().requires_grad_(True)
        logits = D(x, cz)
        with conv2d_gradfix.no_weight_gradients():
            grad, = torch.autograd.grad(logits.sum(), [x], create_graph=True)
        grad.square().sum(dim=[1, 2, 3]).mean().backward()
        D.requires_grad_(False)

    funcs = dict(g_fwd=g_fwd, g_fwdbwd=g_fwdbwd, d_fwdbwd=d_fwdbwd, d_r1=d_r1)
    return {name: time_calls(funcs[name], repeat) for name in names if name in funcs}

#----------------------------------------------------------------------------
# Child side: the demo's training step, as the training loop runs it (phases, lazy regularisation
# with the interval-scaled Adam settings, optimizer steps), timed per 16-step cycle.

def measure_demo(c, weights, inputs, repeat, notes):
    return [t / DEMO_CYCLE for t in time_calls(demo_cycle(c, weights, inputs, notes), repeat)]

# The demo's training steps as one function: DEMO_CYCLE steps, every phase due at each step.
def demo_cycle(c, weights, inputs, notes):
    import torch
    import dnnlib
    G, D, common = build_networks(c, weights, notes)
    loss = dnnlib.util.construct_class_by_name(device=torch.device('cpu'), G=G, D=D, augment_pipe=None, **c['loss_kwargs'])
    from training import training_loop # The tree's own optimizer construction where it has one (e.g. multi-tensor Adam).
    construct = getattr(training_loop, '_construct_optimizer', lambda params, kwargs: dnnlib.util.construct_class_by_name(params=params, **kwargs))
    phases = []
    for name, module, opt_kwargs, interval in [('G', G, c['G_opt_kwargs'], c.get('G_reg_interval')),
                                               ('D', D, c['D_opt_kwargs'], c.get('D_reg_interval'))]:
        opt_kwargs = dict(opt_kwargs)
        if interval is None:
            phases.append((name + 'both', module, construct(module.parameters(), opt_kwargs), 1))
            continue
        ratio = interval / (interval + 1)
        opt_kwargs.update(lr=opt_kwargs['lr'] * ratio, betas=[beta ** ratio for beta in opt_kwargs['betas']])
        opt = construct(module.parameters(), opt_kwargs)
        phases += [(name + 'main', module, opt, 1), (name + 'reg', module, opt, interval)]

    batch = c['batch_size']
    real_img, real_c, gen_c = inputs['demo_img'][:batch], inputs['demo_c'][:batch], inputs['demo_gen_c'][:batch]
    def cycle():
        torch.manual_seed(2)
        for step in range(DEMO_CYCLE):
            for name, module, opt, interval in phases:
                if step % interval != 0:
                    continue
                opt.zero_grad(set_to_none=True)
                module.requires_grad_(True)
                loss.accumulate_gradients(phase=name, real_img=real_img, real_c=real_c,
                    gen_z=torch.randn([batch, G.z_dim]), gen_c=gen_c, gain=interval, cur_nimg=0)
                module.requires_grad_(False)
                opt.step()
    return cycle

#----------------------------------------------------------------------------
# Child side: the shared weights and inputs, made once by the baseline tree.

def make_inputs(datasets, path):
    import torch
    out = {}
    for kind in ('nets', 'demo'):
        G, D, common = build_networks(dry_run_config(kind, datasets, fp32=True))
        out[kind] = dict(G=G.state_dict(), D=D.state_dict())
        gen = torch.Generator().manual_seed(123)
        res, ch = common['img_resolution'], common['img_channels']
        if kind == 'nets':
            out.update(z=torch.randn([NET_BATCH, G.z_dim], generator=gen),
                img=torch.rand([NET_BATCH, ch, res, res], generator=gen) * 2 - 1,
                r=torch.randn([NET_BATCH, ch, res, res], generator=gen))
        else:
            n, c_dim = 64, common['c_dim']
            out.update(demo_img=torch.rand([n, ch, res, res], generator=gen) * 2 - 1,
                demo_c=torch.eye(c_dim)[torch.randint(c_dim, [n], generator=gen)],
                demo_gen_c=torch.eye(c_dim)[torch.randint(c_dim, [n], generator=gen)])
    torch.save(out, path)

#----------------------------------------------------------------------------
# Child entry point: runs in the tree given by --tree and prints one RESULT line.

def child_main(tree, job, workdir, repeat, names, fp32, threads):
    sys.path.insert(0, tree)
    os.chdir(tree)
    import torch
    if threads:
        torch.set_num_threads(threads)
    _set_up_like_the_trainer(tree)
    with open(os.path.join(workdir, 'datasets.json')) as f:
        datasets = json.load(f)
    inputs_path = os.path.join(workdir, 'inputs.pt')
    if job == 'init':
        make_inputs(datasets, inputs_path)
        print('RESULT ' + json.dumps(dict(times={}, notes=[])))
        return
    inputs = torch.load(inputs_path, weights_only=True)
    c = dry_run_config(job, datasets, fp32)
    notes = []
    if job == 'nets':
        result = measure_nets(c, inputs['nets'], inputs, repeat, names, notes)
    else:
        result = dict(demo_step=measure_demo(c, inputs['demo'], inputs, repeat, notes))
    print('RESULT ' + json.dumps(dict(times=result, notes=notes)))

# The process settings the tree's training loop makes on the CPU, where the tree has them (trees before
# torch_utils.host_memory keep glibc's allocator as it is; DNNLIB_KEEP_FREED_MEMORY=0 turns it off here too).
# Only the tree's own file counts: an editable install of this project would otherwise serve a baseline
# tree the module it lacks.
def _set_up_like_the_trainer(tree):
    if not os.path.isfile(os.path.join(tree, 'torch_utils', 'host_memory.py')):
        return
    from torch_utils import host_memory # pylint: disable=import-outside-toplevel
    host_memory.keep_freed_memory()

#----------------------------------------------------------------------------
# Parent side: run one child and return its parsed result.

def run_child(tree, job, workdir, repeat, names, fp32, threads):
    cmd = [sys.executable, os.path.abspath(__file__), f'--child={job}', f'--tree={tree}', f'--workdir={workdir}',
        f'--repeat={repeat}', f'--measures={",".join(names)}', f'--threads={threads}'] + (['--fp32'] if fp32 else [])
    env = dict(os.environ, PYTHONPATH=tree)
    out = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith('RESULT ')]
    if out.returncode != 0 or not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()[-15:]
        raise click.ClickException(f'{job} run in {tree} failed:\n' + '\n'.join(tail))
    return json.loads(lines[-1][len('RESULT '):])

#----------------------------------------------------------------------------
# Parent side: the baseline commit checked out into a temporary worktree, removed afterwards.

def resolve_rev(rev):
    out = subprocess.run(['git', 'rev-parse', '--verify', '--quiet', rev + '^{commit}'], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise click.BadParameter(f'{rev!r} is not a commit of the repository at {ROOT}', param_hint='--baseline')
    return out.stdout.strip()

def add_worktree(commit, path):
    out = subprocess.run(['git', 'worktree', 'add', '--detach', path, commit], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise click.ClickException(f'git worktree add failed: {out.stderr.strip()}')

def remove_worktree(path):
    subprocess.run(['git', 'worktree', 'remove', '--force', path], cwd=ROOT, capture_output=True)
    subprocess.run(['git', 'worktree', 'prune'], cwd=ROOT, capture_output=True)

#----------------------------------------------------------------------------
# Parent side: the table of results.

def report(times, names, baseline, current):
    print(f'A = baseline {baseline}, B = this tree {current}; seconds per call; speed-up = A / B (median; min in brackets)')
    print()
    print('| measure | A median (min) s | B median (min) s | speed-up |')
    print('|---|---:|---:|---:|')
    ratios = []
    for name in names:
        a, b = times['A'][name], times['B'][name]
        ratio, ratio_min = statistics.median(a) / statistics.median(b), min(a) / min(b)
        ratios.append(ratio)
        print(f'| {name} | {statistics.median(a):.4f} ({min(a):.4f}) | {statistics.median(b):.4f} ({min(b):.4f}) | '
            f'{ratio:.2f}x ({ratio_min:.2f}x) |')
    geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f'| geometric mean | | | {geomean:.2f}x |')

#----------------------------------------------------------------------------

@click.command()
@click.option('--baseline', help='Git revision to compare against', metavar='REV', required=True, default='9dd6ba4', show_default=True)
@click.option('--rounds', help='A/B process pairs per measure group', type=click.IntRange(min=1), default=3, show_default=True)
@click.option('--repeat', help='Timed calls per process (after one warm-up call)', type=click.IntRange(min=1), default=3, show_default=True)
@click.option('--measures', help='Comma-separated subset of ' + ','.join(MEASURES), default=','.join(MEASURES), show_default=True)
@click.option('--fp32', help='Ask this tree for float32 (train.py --fp32) instead of its default precision', is_flag=True)
@click.option('--threads', help='torch threads per process; 0 = torch default', type=click.IntRange(min=0), default=0, show_default=True)
@click.option('--child', hidden=True)
@click.option('--tree', hidden=True)
@click.option('--workdir', hidden=True)
def main(baseline, rounds, repeat, measures, fp32, threads, child, tree, workdir):
    """Time this tree against a baseline commit, A/B interleaved in separate processes."""
    names = [n for n in measures.split(',') if n]
    if child is not None:
        child_main(tree, child, workdir, repeat, names, fp32, threads)
        return
    unknown = sorted(set(names) - set(MEASURES))
    if unknown or not names:
        raise click.BadParameter(f'unknown measure(s) {", ".join(unknown)}; valid: {", ".join(MEASURES)}', param_hint='--measures')
    commit = resolve_rev(baseline)
    workdir = tempfile.mkdtemp(prefix='compare-')
    base_tree = os.path.join(workdir, 'baseline')
    try:
        add_worktree(commit, base_tree)
        datasets = make_datasets(workdir)
        datasets['workdir'] = workdir
        with open(os.path.join(workdir, 'datasets.json'), 'w') as f:
            json.dump(datasets, f)
        run_child(base_tree, 'init', workdir, repeat, names, False, threads)
        times = {'A': {n: [] for n in names}, 'B': {n: [] for n in names}}
        notes = {'A': set(), 'B': set()}
        jobs = [job for job in ('nets', 'demo') if any((n == 'demo_step') == (job == 'demo') for n in names)]
        for r in range(rounds):
            for job in jobs:
                order = [('A', base_tree), ('B', ROOT)] if r % 2 == 0 else [('B', ROOT), ('A', base_tree)]
                for side, path in order:
                    out = run_child(path, job, workdir, repeat, names, fp32 and side == 'B', threads)
                    result = out['times']
                    notes[side].update(f'{job}: {note}' for note in out['notes'])
                    for name, values in result.items():
                        times[side][name] += values
                    print(f'round {r + 1}/{rounds} {job} {side}: ' + ', '.join(f'{k} {min(v):.3f}s' for k, v in result.items()), flush=True)
        current = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        print()
        report(times, names, commit[:7], current + ('+changes' if dirty else '') + (' (--fp32)' if fp32 else ''))
        for side in ('A', 'B'):
            if notes[side]:
                print(f'\n{side}: parameters shaped differently from the baseline\'s (own seeded initial values): ' + '; '.join(sorted(notes[side])))
    finally:
        remove_worktree(base_tree)
        shutil.rmtree(workdir, ignore_errors=True)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main() # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
