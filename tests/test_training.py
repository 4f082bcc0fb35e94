# Tiny end-to-end training runs on the CPU: the run directory, exact resume (split runs, interrupted
# runs, kill -9), transfer learning from a pickle, NaN stops, several processes, BigGAN.

import copy
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types

import click.testing
import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib
import legacy
import train
from torch_utils import training_stats
from training import launch
from training import loss as loss_module
from training import step_timer
from training import training_loop
from training import training_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tiny StyleGAN2 networks at 16x16 with 4-image batches.
TINY = ['--cfg=small', '--device=cpu', '--batch=4', '--workers=0', '--cbase=256', '--cmax=16', '--map=1', '--tick=0.004', '--snap=1',
    '--metrics=none']

#----------------------------------------------------------------------------
# A folder of random PNGs with class labels in dataset.json.

def make_dataset(path, num_images=16, resolution=16, num_classes=3):
    os.makedirs(path, exist_ok=True)
    rnd = np.random.RandomState(123)
    labels = []
    for i in range(num_images):
        img = rnd.randint(0, 256, size=[resolution, resolution, 3], dtype=np.uint8)
        PIL.Image.fromarray(img).save(os.path.join(path, f'img{i:03d}.png'))
        labels.append([f'img{i:03d}.png', i % num_classes])
    with open(os.path.join(path, 'dataset.json'), 'w') as f:
        json.dump(dict(labels=labels), f)
    return str(path)

# 16 labelled 16x16 images, shared by the tests of this file.
@pytest.fixture(scope='module')
def data16(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp('data') / 'd16')

#----------------------------------------------------------------------------
# Running train.py in this process or in a subprocess.

def run_main(args):
    """train.py in this process; returns the run directories of --outdir, oldest first."""
    train.main.main(args=[str(a) for a in args], standalone_mode=False)
    outdir = [a for a in args if str(a).startswith('--outdir=')][0].split('=', 1)[1]
    return run_dirs(outdir)

# Run directories of an --outdir, oldest first.
def run_dirs(outdir):
    return sorted(glob.glob(os.path.join(outdir, '[0-9]*-*')))

def dry_run_options(args):
    """The resolved options (the `c` of train.py) that --dry-run prints."""
    result = subprocess_train(list(args) + ['--dry-run'])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout, object_hook=dnnlib.EasyDict)

# train.py (or the module `module`, e.g. torchrun) in a fresh process.
def subprocess_train(args, module=None, timeout=300):
    cmd = [sys.executable] + (['-m', module] if module else []) + ['train.py' if module is None else None]
    cmd = [x for x in cmd if x is not None]
    return subprocess.run(cmd + [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)

# A deep copy of resolved options, as EasyDicts.
def copy_options(c):
    return json.loads(json.dumps(c), object_hook=dnnlib.EasyDict)

# Launch a run from resolved options, as train.py does; abort_fn can stop it early.
def launch_options(c, outdir, abort_fn=None, run_dir=None):
    c = copy_options(c)
    lock = launch.make_run_dir(outdir, 'test', c, run_dir)
    try:
        launch.launch_training(dnnlib.EasyDict(c, abort_fn=abort_fn), lock.run_dir)
    finally:
        lock.release()
    return lock.run_dir

# The latest training state of a run directory.
def final_state(run_dir):
    return torch.load(launch.latest_training_state(run_dir), map_location='cpu', weights_only=True)

# Bit-identical networks, optimizer moments, ADA p and sign statistics.
def assert_states_equal(a, b):
    assert a['cur_nimg'] == b['cur_nimg']
    for key in ('G', 'D', 'G_ema'):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f'{key}.{name} differs'
    assert torch.equal(a['augment_pipe']['p'], b['augment_pipe']['p'])
    assert torch.equal(a['loss']['real_sign_stats'], b['loss']['real_sign_stats'])
    for key in ('G_opt', 'D_opt'):
        for idx, sa in a[key]['state'].items():
            for name, value in sa.items():
                assert torch.equal(value, b[key]['state'][idx][name]), f'{key} {idx} {name} differs'

#----------------------------------------------------------------------------
# One process: every file of the run directory, readable.

@pytest.mark.slow
def test_run_directory(tmp_path, data16):
    (run_dir,) = run_main([f'--outdir={tmp_path}', f'--data={data16}', '--cond=1', '--kimg=0.008'] + TINY)
    names = set(os.listdir(run_dir))
    assert {'training_options.json', 'log.txt', 'stats.jsonl', 'reals.png', 'fakes_init.png',
        'fakes000000.png', 'network-snapshot-000000.pkl', 'training-state-000000.pt'} <= names
    assert not [n for n in names if 'tmp' in n]
    with open(os.path.join(run_dir, 'training_options.json')) as f:
        options = json.load(f)
    assert options['total_kimg'] == 0.008 and options['training_set_kwargs']['use_labels'] is True
    with open(os.path.join(run_dir, 'stats.jsonl')) as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == 2 and 'Loss/G/loss' in lines[-1] and lines[-1]['Progress/kimg']['mean'] == 0.008
    with open(os.path.join(run_dir, 'log.txt')) as f:
        log = f.read()
    assert log.count('Training options:') == 1 and 'tick 1' in log and 'Exiting' in log
    data = legacy.load_network_pkl(os.path.join(run_dir, 'network-snapshot-000000.pkl'))
    assert set(data) >= {'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}
    assert data['training_set_kwargs']['path'] == data16
    state = final_state(run_dir)
    assert state['cur_nimg'] == 8 and state['batch_idx'] == 2
    for name, value in state['G_ema'].items():
        assert torch.equal(value, data['G_ema'].state_dict()[name])
    with PIL.Image.open(os.path.join(run_dir, 'fakes_init.png')) as img:
        assert img.size == (16 * 32, 16 * 3) # 32 columns, one row per class.

def test_failing_metric_is_logged_and_training_continues(tmp_path, data16, monkeypatch):
    # A damaged detector file makes fid50k_full fail at once, without touching the network; the check
    # at start (which would stop the run) is skipped, so the failure comes at the snapshot.
    from metrics import metric_main
    monkeypatch.setattr(metric_main, 'load_metric_detectors', lambda *args, **kwargs: None)
    detectors = tmp_path / 'detectors'
    detectors.mkdir()
    (detectors / 'inception-2015-12-05.pt').write_bytes(b'not a torchscript file')
    monkeypatch.setenv('DNNLIB_DETECTOR_DIR', str(detectors))
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    (run_dir,) = run_main([f'--outdir={tmp_path / "runs"}', f'--data={data16}', '--kimg=0.008'] + TINY + ['--metrics=fid50k_full'])
    with open(os.path.join(run_dir, 'log.txt')) as f:
        log = f.read()
    assert 'Metric fid50k_full failed' in log and 'Exiting' in log
    assert os.path.exists(os.path.join(run_dir, 'training-state-000000.pt'))
    assert not os.path.exists(os.path.join(run_dir, 'metric-fid50k_full.jsonl'))

#----------------------------------------------------------------------------
# Exact resume: a run to A continued to B equals a straight run to B, with ADA moving p every step.

SPLIT_KIMG, TOTAL_KIMG = 0.012, 0.024

# ADA raising p by 0.2 every 2 minibatches (the target is below any sign mean; the sign statistics
# span the split), and path-length regularisation (its running mean is part of the state). The straight
# run's class groups start at 8 images: the continued runs below resume after (12) and before (4) the start.
def fast_ada(c):
    return dnnlib.EasyDict(c, ada_target=-2, ada_interval=2, ada_kimg=0.04,
        loss_kwargs=dict(c.loss_kwargs, pl_weight=2))

# The reference: a straight run to TOTAL_KIMG.
@pytest.fixture(scope='module')
def straight_run(tmp_path_factory, data16):
    outdir = tmp_path_factory.mktemp('straight')
    c = fast_ada(dry_run_options([f'--outdir={outdir}', f'--data={data16}', '--cond=1', f'--kimg={TOTAL_KIMG}',
        '--class-group-kimg=0.008'] + TINY))
    assert (c.class_group_size, c.class_group_kimg) == (4, 0.008)
    return c, launch_options(c, outdir)

@pytest.mark.slow
def test_exact_resume(tmp_path, data16, straight_run):
    c, straight_dir = straight_run
    run_dir = launch_options(dnnlib.EasyDict(c, total_kimg=SPLIT_KIMG), tmp_path)
    assert final_state(run_dir)['cur_nimg'] == SPLIT_KIMG * 1000
    run_main([f'--outdir={tmp_path}', f'--resume={run_dir}', f'--kimg={TOTAL_KIMG}'])
    assert run_dirs(tmp_path) == [run_dir]
    a, b = final_state(run_dir), final_state(straight_dir)
    assert float(a['augment_pipe']['p']) == pytest.approx(0.6)
    assert float(a['loss']['pl_mean']) > 0
    assert_states_equal(a, b)

# An interrupted run (here with 2 DataLoader workers) is found again by its options and continued exactly.
@pytest.mark.slow
def test_interrupted_run_continues(tmp_path, straight_run):
    c, straight_dir = straight_run
    c = dnnlib.EasyDict(c, data_loader_kwargs=dict(c.data_loader_kwargs, num_workers=2))
    run_dir = launch_options(c, tmp_path, abort_fn=lambda: True)
    assert final_state(run_dir)['cur_nimg'] == 4
    again = copy_options(c)
    assert launch.find_unfinished_run(str(tmp_path), again) == run_dir
    assert again.resume_state == launch.latest_training_state(run_dir)
    launch_options(again, tmp_path, run_dir=run_dir)
    assert_states_equal(final_state(run_dir), final_state(straight_dir))
    assert launch.find_unfinished_run(str(tmp_path), copy_options(c)) is None

# train.py itself looks for the unfinished run: re-running the same command resumes it.
@pytest.mark.slow
def test_same_command_resumes(tmp_path, data16, capsys):
    args = [f'--outdir={tmp_path}', f'--data={data16}', '--kimg=0.012'] + TINY
    c = dry_run_options(args)
    assert c.resume_state is None
    run_dir = launch_options(c, tmp_path, abort_fn=lambda: True)
    assert dry_run_options(args).resume_state == launch.latest_training_state(run_dir)
    capsys.readouterr()
    assert run_main(args) == [run_dir]
    first_line = [line for line in capsys.readouterr().out.splitlines() if line.strip()][0]
    assert first_line == f'Continuing {run_dir} from training-state-000000.pt at 0.004 kimg.'
    assert final_state(run_dir)['cur_nimg'] == 12

#----------------------------------------------------------------------------
# kill -9 in the middle of a run: --resume=<run dir> finishes it; every file left is complete.

@pytest.mark.slow
def test_kill_and_resume(tmp_path, data16):
    args = [f'--outdir={tmp_path}', f'--data={data16}', '--kimg=1'] + TINY
    proc = subprocess.Popen([sys.executable, 'train.py'] + args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not glob.glob(os.path.join(tmp_path, '*', 'training-state-*.pt')) and time.time() < deadline:
            assert proc.poll() is None, 'training ended before it was killed'
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (run_dir,) = run_dirs(tmp_path)
    killed_nimg = final_state(run_dir)['cur_nimg']
    result = subprocess_train([f'--outdir={tmp_path}', f'--resume={run_dir}', f'--kimg={(killed_nimg + 8) / 1000}'])
    assert result.returncode == 0, result.stderr
    assert final_state(run_dir)['cur_nimg'] == killed_nimg + 8
    for name in os.listdir(run_dir):
        path = os.path.join(run_dir, name)
        assert not name.startswith('.') and not name.endswith('.tmp') and '.tmp.' not in name, name
        if name.endswith('.pkl'):
            legacy.load_network_pkl(path)
        if name.endswith('.pt'):
            training_state.load_training_state(path)
        if name.endswith('.jsonl'):
            with open(path) as f:
                [json.loads(line) for line in f]

#----------------------------------------------------------------------------
# --resume=<pkl>: a new run from those weights. With zero learning rates G and D never change, and
# G_ema takes one EMA step from the pickle's G_ema toward G.

@pytest.mark.slow
def test_resume_from_pickle(tmp_path, straight_run):
    _c, straight_dir = straight_run
    pkl = glob.glob(os.path.join(straight_dir, 'network-snapshot-*.pkl'))[0]
    source = legacy.load_network_pkl(pkl)
    c = dry_run_options([f'--outdir={tmp_path}', f'--data={source["training_set_kwargs"]["path"]}', '--cond=1',
        f'--resume={pkl}', '--glr=0', '--dlr=0', '--kimg=0.004'] + TINY)
    assert c.resume_pkl == pkl and c.resume_state is None and c.ema_rampup is None
    run_dir = launch_options(c, tmp_path)
    state = final_state(run_dir)
    assert state['cur_nimg'] == 4
    for key in ('G', 'D'):
        for name, param in source[key].named_parameters():
            assert torch.equal(state[key][name], param), f'{key}.{name} differs from the pickle'
    beta = 0.5 ** (c.batch_size / (c.ema_kimg * 1000))
    G_ema = dict(source['G_ema'].named_parameters())
    for name, param in source['G'].named_parameters():
        assert torch.equal(state['G_ema'][name], param.lerp(G_ema[name], beta)), name

#----------------------------------------------------------------------------
# A NaN/Inf loss stops the run: one message naming the phase and the tick, nonzero exit.

@pytest.mark.slow
@pytest.mark.parametrize('gpus', [1, 2])
def test_nan_stops(tmp_path, data16, gpus):
    result = subprocess_train([f'--outdir={tmp_path}', f'--data={data16}', '--kimg=0.04', '--dlr=1e30', '--aug=noaug',
        f'--gpus={gpus}'] + TINY)
    assert result.returncode == launch.DIVERGED_EXIT_CODE
    output = result.stdout + result.stderr # log.txt's Logger sends both streams to stdout.
    assert 'Traceback' not in output
    assert 'Error: Loss of phase Dreg became NaN or Inf in tick 0 (at 0.004 kimg)' in output
    (run_dir,) = run_dirs(tmp_path)
    with open(os.path.join(run_dir, 'log.txt')) as f:
        assert 'became NaN or Inf' in f.read()

#----------------------------------------------------------------------------
# Two CPU processes (spawned, gloo): a run to A continued to B equals a straight 2-process run to B.

@pytest.mark.slow
def test_two_processes_exact_resume(tmp_path, data16):
    args = [f'--data={data16}', '--gpus=2', '--cond=1'] + TINY
    result = subprocess_train([f'--outdir={tmp_path / "straight"}', '--kimg=0.016'] + args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    result = subprocess_train([f'--outdir={tmp_path / "split"}', '--kimg=0.008'] + args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path / 'split')
    result = subprocess_train([f'--outdir={tmp_path / "split"}', f'--resume={run_dir}', '--kimg=0.016'])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (straight_dir,) = run_dirs(tmp_path / 'straight')
    a, b = final_state(run_dir), final_state(straight_dir)
    assert len(a['rng']) == 2 and not torch.equal(a['rng'][0]['torch_cpu'], a['rng'][1]['torch_cpu'])
    assert_states_equal(a, b)

# Several CPU processes on one machine share its threads; an explicit OMP_NUM_THREADS and CUDA runs are left alone.
def test_cpu_processes_share_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
        launch.share_cpu_threads('cuda', 2)
        launch.share_cpu_threads('cpu', 1)
        assert torch.get_num_threads() == 4
        launch.share_cpu_threads('cpu', 2)
        assert torch.get_num_threads() == 2
        launch.share_cpu_threads('cpu', 3)
        assert torch.get_num_threads() == 1 # Never fewer than one.
        torch.set_num_threads(4)
        monkeypatch.setenv('OMP_NUM_THREADS', '3')
        launch.share_cpu_threads('cpu', 2)
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)

# torchrun with 2 CPU processes: one run directory, written by rank 0 alone.
@pytest.mark.slow
def test_torchrun(tmp_path, data16):
    result = subprocess_train(['--standalone', '--nproc_per_node=2', 'train.py', f'--outdir={tmp_path}',
        f'--data={data16}', '--kimg=0.008'] + TINY, module='torch.distributed.run')
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    assert sorted(os.listdir(run_dir)) == sorted(['training_options.json', 'command.json', 'log.txt', 'stats.jsonl', 'reals.png',
        'fakes_init.png', 'fakes000000.png', 'network-snapshot-000000.pkl', 'training-state-000000.pt'])
    with open(os.path.join(run_dir, 'stats.jsonl')) as f:
        assert len(f.readlines()) == 2 # One line per tick, not per rank.
    with open(os.path.join(run_dir, 'log.txt')) as f:
        log = f.read()
    assert log.count('Training options:') == 1 and log.count('tick 1 ') == 1
    state = final_state(run_dir)
    assert state['cur_nimg'] == 8 and len(state['rng']) == 2
    with open(os.path.join(run_dir, 'training_options.json')) as f:
        assert json.load(f)['num_gpus'] == 2

#----------------------------------------------------------------------------
# BigGAN: hinge loss, 2 D steps per G step, G_ema with standing statistics in the snapshot.

@pytest.fixture(scope='module')
def biggan_run(tmp_path_factory, data16):
    outdir = tmp_path_factory.mktemp('biggan')
    (run_dir,) = run_main([f'--outdir={outdir}', f'--data={data16}', '--cond=1', '--cfg=biggan32', '--ch=4',
        '--device=cpu', '--batch=4', '--workers=0', '--kimg=0.012', '--tick=0.004', '--snap=1', '--metrics=none'])
    return run_dir

@pytest.mark.slow
def test_biggan_training(biggan_run):
    with open(os.path.join(biggan_run, 'training_options.json')) as f:
        options = json.load(f)
    assert options['G_kwargs']['class_name'] == 'training.networks_biggan.Generator'
    assert options['loss_kwargs']['class_name'] == 'training.loss.HingeLoss'
    assert options['D_steps_per_G'] == 2 and options['snapshot_hooks'][0]['num_batches'] == 16
    with open(os.path.join(biggan_run, 'stats.jsonl')) as f:
        stats = [json.loads(line) for line in f]
    assert all(np.isfinite(s['Loss/D/loss']['mean']) for s in stats)
    data = legacy.load_network_pkl(os.path.join(biggan_run, 'network-snapshot-000000.pkl'))
    G = data['G_ema']
    assert not G.training and G.c_dim == 3 and G.img_resolution == 16
    standing = [m for m in G.modules() if hasattr(m, 'accumulate_standing')]
    assert standing and all(m.accumulate_standing and float(m.accumulation_counter) == 16 for m in standing)
    z = torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        imgs = [G(z, torch.nn.functional.one_hot(torch.tensor([k, k]), 3).float()) for k in range(3)]
    assert all(img.shape == (2, 3, 16, 16) and torch.isfinite(img).all() for img in imgs)
    assert not torch.equal(imgs[0], imgs[1])

# generate.py on a BigGAN snapshot: one image per seed, of the requested class.
@pytest.mark.slow
def test_biggan_generate(tmp_path, biggan_run):
    pkl = os.path.join(biggan_run, 'network-snapshot-000000.pkl')
    result = subprocess.run([sys.executable, 'generate.py', f'--network={pkl}', '--seeds=0-1', '--class=2',
        f'--outdir={tmp_path}', '--device=cpu'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(glob.glob(os.path.join(tmp_path, '*.png'))) == 2
    # Standing statistics can be re-accumulated at generation time; other classes give other images.
    result = subprocess.run([sys.executable, 'generate.py', f'--network={pkl}', '--seeds=0', '--class=1', '--standing-stats=2',
        f'--outdir={tmp_path}/other', '--device=cpu'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    a = np.asarray(PIL.Image.open(os.path.join(tmp_path, 'seed0000.png')), dtype=np.float32)
    b = np.asarray(PIL.Image.open(os.path.join(tmp_path, 'other', 'seed0000.png')), dtype=np.float32)
    assert np.abs(a - b).mean() > 0.5

#----------------------------------------------------------------------------
# Gradients are cleaned before every optimizer step, as in the original: NaN -> 0, +-Inf -> +-1e5,
# and the non-finite elements are counted.

def test_clean_gradients():
    module = torch.nn.Linear(3, 2)
    module.weight.grad = torch.tensor([[1.0, float('nan'), float('inf')], [-float('inf'), 2.0, 3.0]])
    module.bias.grad = torch.tensor([float('nan'), 0.5])
    assert int(training_loop._clean_and_sync_gradients(module, num_gpus=1)) == 4
    assert module.weight.grad.tolist() == [[1, 0, 1e5], [-1e5, 2, 3]] and module.bias.grad.tolist() == [0, 0.5]

# One overflow in an R1 backward (an Inf and a NaN in D's gradient) leaves the weights finite and is reported.
@pytest.mark.slow
def test_overflowing_gradient_does_not_poison_weights(tmp_path, data16, monkeypatch):
    accumulate = loss_module.StyleGAN2Loss.accumulate_gradients
    def overflowing(self, phase, **kwargs):
        value = accumulate(self, phase=phase, **kwargs)
        if phase == 'Dreg':
            grad = next(self.D.parameters()).grad.view(-1)
            grad[0], grad[1] = float('inf'), float('nan')
        return value
    monkeypatch.setattr(loss_module.StyleGAN2Loss, 'accumulate_gradients', overflowing)
    (run_dir,) = run_main([f'--outdir={tmp_path}', f'--data={data16}', '--kimg=0.008', '--gamma=1'] + TINY)
    state = final_state(run_dir)
    assert state['cur_nimg'] == 8
    assert all(torch.isfinite(value).all() for value in state['D'].values() if value.is_floating_point())
    with open(os.path.join(run_dir, 'stats.jsonl')) as f:
        first = json.loads(f.readline())
    assert first['Gradients/Dreg/nonfinite']['mean'] == 2 and first['Gradients/Dmain/nonfinite']['mean'] == 0

#----------------------------------------------------------------------------
# The loop's optimizers update all tensors at once (foreach) and G_ema in a few multi-tensor calls; both
# give the numbers of the one-tensor-at-a-time updates (torch's default Adam on the CPU, the original's
# per-parameter lerp), bit for bit.

def _reference_ema(G, G_ema, beta):
    with torch.no_grad():
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.copy_(p.lerp(p_ema, beta))
        for b_ema, b in zip(G_ema.buffers(), G.buffers()):
            b_ema.copy_(b)

def test_multi_tensor_updates_are_bit_identical():
    torch.manual_seed(0)
    shapes = [[16, 8, 3, 3], [16], [32, 32], [1]]
    params = [[torch.randn(shape).requires_grad_(True) for shape in shapes] for _ in range(2)]
    for a, b in zip(*params):
        b.data.copy_(a.data)
    kwargs = dict(class_name='torch.optim.Adam', lr=0.0025 * 16 / 17, betas=(0.0, 0.99 ** (16 / 17)), eps=1e-8)
    loop_opt = training_loop._construct_optimizer(params[0], kwargs)
    reference_opt = torch.optim.Adam(params[1], lr=kwargs['lr'], betas=kwargs['betas'], eps=1e-8, foreach=False)
    assert loop_opt.param_groups[0]['foreach'] is True
    for _step in range(20):
        for a, b in zip(*params):
            a.grad = torch.randn(a.shape)
            b.grad = a.grad.clone()
        loop_opt.step()
        reference_opt.step()
    assert all(torch.equal(a, b) for a, b in zip(*params))

    G = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    G(torch.randn([2, 3, 5, 5])) # Moves the running statistics and num_batches_tracked (an integer buffer).
    ema_loop, ema_reference = copy.deepcopy(G), copy.deepcopy(G)
    with torch.no_grad():
        for module in (ema_loop, ema_reference):
            for p in module.parameters():
                p.mul_(0.5)
    training_loop._update_ema(G, ema_loop, cur_nimg=1000, batch_size=8, ema_kimg=2, ema_rampup=0.05)
    _reference_ema(G, ema_reference, 0.5 ** (8 / 50))
    assert all(torch.equal(a, b) for a, b in zip(ema_loop.state_dict().values(), ema_reference.state_dict().values()))

#----------------------------------------------------------------------------
# Disk stays bounded: the newest `keep` training-state files stay; the state restores what was saved.

def test_keep_newest_training_states(tmp_path):
    torch.manual_seed(0)
    G, D = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    loss = loss_module.HingeLoss('cpu', G, D)
    run = training_state.RunState(G, D, copy.deepcopy(G), None, loss, dict(G=torch.optim.Adam(G.parameters()), D=torch.optim.Adam(D.parameters())))
    rng = training_state.capture_rng_state(torch.device('cpu'))
    for kimg in range(5):
        run.cur_nimg, run.batch_idx = kimg * 1000 + 8, kimg
        loss.real_sign_stats.fill_(kimg)
        run.save(str(tmp_path / training_state.state_file_name(run.cur_nimg)), rng, keep=2)
    assert sorted(os.listdir(tmp_path)) == ['training-state-000003.pt', 'training-state-000004.pt']
    other = training_state.RunState(G, D, copy.deepcopy(G), None, loss_module.HingeLoss('cpu', G, D), run.optimizers)
    other.load(launch.latest_training_state(str(tmp_path)))
    assert (other.cur_nimg, other.cur_tick, other.batch_idx) == (4008, 1, 4) and other.loss.real_sign_stats.tolist() == [4, 4]
    run.save(str(tmp_path / 'training-state-000009.pt'), rng, keep=None)
    assert len(os.listdir(tmp_path)) == 3

#----------------------------------------------------------------------------
# --resume=<run dir> with the original command line continues; a real change is refused, naming the
# option and both values; a run directory in use by a live process is refused with one line.

def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('Error: '), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]

@pytest.mark.slow
def test_continue_with_original_command(tmp_path, data16, capsys):
    args = [f'--outdir={tmp_path}', f'--data={data16}', '--cond=1', '--gamma=1'] + TINY
    (run_dir,) = run_main(args + ['--kimg=0.004'])
    capsys.readouterr()
    assert run_main(args + [f'--resume={run_dir}', '--kimg=0.008']) == [run_dir]
    first_line = [line for line in capsys.readouterr().out.splitlines() if line.strip()][0]
    assert first_line == f'Continuing {run_dir} from training-state-000000.pt at 0.004 kimg.'
    assert final_state(run_dir)['cur_nimg'] == 8
    runner = click.testing.CliRunner()
    result = runner.invoke(train.main, args + [f'--resume={run_dir}', '--gamma=3'])
    assert_one_line_error(result, '--gamma cannot change', 'stored 1.0, new 3.0', '--kimg')
    result = runner.invoke(train.main, args + [f'--resume={run_dir}', '--cfg=auto'])
    assert_one_line_error(result, '--cfg cannot change', 'stored "small", new "auto"')
    lock = launch.RunDirLock(run_dir) # This live process holds the run.
    try:
        result = runner.invoke(train.main, args + [f'--resume={run_dir}', '--kimg=0.012'])
        assert_one_line_error(result, f'{run_dir} is in use by process {os.getpid()}')
    finally:
        lock.release()
    assert final_state(run_dir)['cur_nimg'] == 8 and not os.path.exists(lock.path)

def test_run_directory_lock(tmp_path):
    lock = launch.make_run_dir(str(tmp_path), 'x', dnnlib.EasyDict())
    with open(lock.path) as f:
        assert f.read().split() == [str(os.getpid()), socket.gethostname()]
    with pytest.raises(ValueError, match=f'is in use by process {os.getpid()} on'):
        launch.make_run_dir(str(tmp_path), 'x', dnnlib.EasyDict(), lock.run_dir)
    lock.release()
    assert not os.path.exists(lock.path)
    # The lock of a process that is gone (killed) is taken over.
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True).stdout.strip()
    with open(lock.path, 'w') as f:
        f.write(f'{dead} {socket.gethostname()}\n')
    again = launch.make_run_dir(str(tmp_path), 'x', dnnlib.EasyDict(), lock.run_dir)
    with open(again.path) as f:
        assert f.read().split()[0] == str(os.getpid())
    again.release()
    assert sorted(os.listdir(lock.run_dir)) == ['training_options.json']

#----------------------------------------------------------------------------
# Monitoring: per-phase timing, data and augment time, total hours/days, and metric results as
# Metrics/<name> in stats.jsonl and TensorBoard (a stand-in metric: the real ones need the detectors).

class _FakeSummaryWriter:
    scalars = []
    def __init__(self, log_dir):
        self.log_dir = log_dir
    def add_scalar(self, name, value, global_step, walltime):
        self.scalars.append((name, value, global_step))
    def flush(self):
        pass
    def close(self):
        pass

@pytest.mark.slow
def test_monitoring_statistics(tmp_path, data16, monkeypatch):
    from metrics import metric_main
    monkeypatch.setattr(metric_main, 'load_metric_detectors', lambda *args, **kwargs: None)
    monkeypatch.setattr(metric_main, 'calc_metric', lambda metric, **kwargs: dnnlib.EasyDict(metric=metric,
        results=dnnlib.EasyDict(fid50k_full=12.5), total_time=0, total_time_str='0s', num_gpus=1))
    fake_tensorboard = types.ModuleType('torch.utils.tensorboard')
    fake_tensorboard.SummaryWriter = _FakeSummaryWriter
    monkeypatch.setitem(sys.modules, 'torch.utils.tensorboard', fake_tensorboard)
    monkeypatch.setattr(torch.utils, 'tensorboard', fake_tensorboard, raising=False)
    _FakeSummaryWriter.scalars.clear()
    (run_dir,) = run_main([f'--outdir={tmp_path}', f'--data={data16}', '--kimg=0.008', '--aug=fixed', '--p=0.5'] + TINY +
        ['--metrics=fid50k_full'])
    with open(os.path.join(run_dir, 'stats.jsonl')) as f:
        first, last = [json.loads(line) for line in f]
    for name in ('Gmain', 'Greg', 'Dmain', 'Dreg', 'data', 'augment'):
        assert first[f'Timing/{name}']['num'] == 1 and first[f'Timing/{name}']['mean'] > 0, name
    # Augmentation runs inside the phases that call D, so its time is part of theirs (the last tick is one step,
    # every figure of it a sum over that step). Not below Dmain's alone: Gmain's share of it can exceed the rest of Dmain.
    assert last['Timing/augment']['num'] == 1
    assert last['Timing/augment']['mean'] < sum(last[f'Timing/{name}']['mean'] for name in ('Gmain', 'Greg', 'Dmain', 'Dreg'))
    assert last['Timing/total_days']['mean'] == pytest.approx(last['Timing/total_hours']['mean'] / 24)
    assert last['Metrics/fid50k_full'] == dict(num=1, mean=12.5, std=0)
    assert ('Metrics/fid50k_full', 12.5, 0) in _FakeSummaryWriter.scalars
    assert any(name == 'Timing/data' for name, _value, _step in _FakeSummaryWriter.scalars)

# StepTimer: seconds per step, summed over a name's calls within one step; TimedCall passes attributes through.
def test_step_timer(monkeypatch):
    clock = iter([0.0, 1.0, 1.0, 1.5, 2.0, 4.0])
    monkeypatch.setattr(step_timer.time, 'perf_counter', lambda: next(clock))
    collector = training_stats.Collector(regex='Timing/test_part')
    timer = step_timer.StepTimer('cpu')
    timed = step_timer.TimedCall(lambda x: x + 1, timer, 'test_part')
    timed.extra = None # Set on the wrapper itself.
    assert timed(1) == 2
    with timer('test_part'):
        pass
    timer.next_step()
    with timer('test_part'):
        pass
    timer.report()
    collector.update()
    assert collector.num('Timing/test_part') == 2 and collector.mean('Timing/test_part') == 1.75
    pipe = torch.nn.Linear(1, 1)
    assert step_timer.TimedCall(pipe, timer, 'augment').weight is pipe.weight

#----------------------------------------------------------------------------
