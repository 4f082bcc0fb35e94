# Training speed and memory: sec/kimg and peak memory of the real training loop (train.py's resolved
# options, run through training.training_loop) at 32x32 and 64x64, for the `small` and `auto`
# configs, on the CPU and on CUDA when present. Each case runs in a fresh process on random data;
# sec/kimg is the loop's own figure for the ticks after the first (warm-up) step, without snapshots.
# Peak memory is the process's peak RSS on the CPU (psutil, sampled) and
# torch.cuda.max_memory_allocated on CUDA.
#
#   python benchmarks/train_step.py [--device cpu|cuda|all] [--cfgs small,auto] [--res 32,64]

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import click
import numpy as np
import PIL.Image
import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Batch and training length per config: the preset batch for `small`, a shorter one for `auto`
# (512 channels) so that a CPU case takes about a minute.
CASE_BATCH = {'small': 32, 'auto': 8}
CASE_STEPS = 4

#----------------------------------------------------------------------------
# A folder of random RGB images.

def make_dataset(path, resolution, num_images=64):
    os.makedirs(path, exist_ok=True)
    rnd = np.random.RandomState(0)
    for i in range(num_images):
        img = rnd.randint(0, 256, size=[resolution, resolution, 3], dtype=np.uint8)
        PIL.Image.fromarray(img).save(os.path.join(path, f'{i:04d}.png'))
    return path

#----------------------------------------------------------------------------
# Peak RSS of this process, sampled every 20 ms on a background thread.

class PeakRSS:
    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        process = psutil.Process(os.getpid())
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

#----------------------------------------------------------------------------
# One case in this process: resolve the options as train.py does, run the loop, read its stats.

def run_case(cfg, res, device, workdir):
    import click.testing
    import torch
    import train
    from training import training_loop
    data = make_dataset(os.path.join(workdir, f'data{res}'), res)
    batch = CASE_BATCH[cfg]
    args = [f'--outdir={workdir}', f'--data={data}', f'--cfg={cfg}', f'--device={device}', f'--batch={batch}',
        '--workers=1', '--metrics=none', '--dry-run']
    result = click.testing.CliRunner().invoke(train.main, args)
    if result.exit_code != 0:
        raise RuntimeError(result.output)
    c = json.loads(result.output)
    run_dir = os.path.join(workdir, 'run')
    os.makedirs(run_dir)
    c.update(run_dir=run_dir, total_kimg=batch * CASE_STEPS / 1000, kimg_per_tick=batch * (CASE_STEPS - 1) / 1000,
        image_snapshot_ticks=None, network_snapshot_ticks=None)
    with PeakRSS() as rss:
        training_loop.training_loop(rank=0, **c)
    with open(os.path.join(run_dir, 'stats.jsonl')) as f:
        last = json.loads(f.readlines()[-1])
    peak_gpu = torch.cuda.max_memory_allocated() if device == 'cuda' else 0
    return dict(cfg=cfg, res=res, device=device, batch=batch, sec_per_kimg=last['Timing/sec_per_kimg']['mean'],
        peak_rss_gb=rss.peak / 2**30, peak_gpu_gb=peak_gpu / 2**30, threads=torch.get_num_threads())

#----------------------------------------------------------------------------

@click.command()
@click.option('--device', type=click.Choice(['cpu', 'cuda', 'all']), default='all', show_default=True, help='Devices to measure')
@click.option('--cfgs', default='small,auto', show_default=True, help='Configs, comma-separated')
@click.option('--res', 'resolutions', default='32,64', show_default=True, help='Resolutions, comma-separated')
@click.option('--case', hidden=True, help='Internal: run one case (cfg:res:device) and print JSON')
def main(device, cfgs, resolutions, case):
    """Measure sec/kimg and peak memory of training steps."""
    if case is not None:
        cfg, res, dev = case.split(':')
        with tempfile.TemporaryDirectory() as workdir:
            print('RESULT ' + json.dumps(run_case(cfg, int(res), dev, workdir)))
        return
    import torch
    devices = ['cpu', 'cuda'] if device == 'all' else [device]
    devices = [d for d in devices if d == 'cpu' or torch.cuda.is_available()]
    print('| device | cfg | resolution | batch | sec/kimg | peak RSS (GB) | peak CUDA memory (GB) |')
    print('|---|---|---|---|---|---|---|')
    for dev in devices:
        for cfg in cfgs.split(','):
            for res in resolutions.split(','):
                out = subprocess.run([sys.executable, os.path.abspath(__file__), f'--case={cfg}:{res}:{dev}'],
                    cwd=ROOT, capture_output=True, text=True)
                lines = [line for line in out.stdout.splitlines() if line.startswith('RESULT ')]
                if out.returncode != 0 or not lines:
                    print(f'| {dev} | {cfg} | {res} | failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]} |')
                    continue
                r = json.loads(lines[-1][len('RESULT '):])
                gpu = f'{r["peak_gpu_gb"]:.2f}' if dev == 'cuda' else '-'
                print(f'| {dev} ({r["threads"]} threads) | {cfg} | {res}x{res} | {r["batch"]} | {r["sec_per_kimg"]:.1f} | '
                    f'{r["peak_rss_gb"]:.2f} | {gpu} |', flush=True)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
