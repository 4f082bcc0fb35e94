# Throughput of every named ADA pipeline (training.augment.augpipe_specs) at a given p (default 1:
# every op fires): images per second, forward only and forward + backward, at 32x32 (batch 16) and
# 256x256 (batch 4), RGB or greyscale, on the CPU and on CUDA when present.
#
#   python benchmarks/augment.py [--device cpu|cuda|all] [--seconds 1.0] [--pipes bg,bgc] [--p 1] [--channels 3]

import os
import sys
import time

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from training.augment import AugmentPipe, augpipe_specs  # noqa: E402

#----------------------------------------------------------------------------
# Image sizes and batch sizes measured.

CASES = [(32, 16), (256, 4)]

#----------------------------------------------------------------------------
# Images per second of pipe on one batch, repeated for at least `seconds`.

def measure(pipe, images, seconds, backward):
    def step():
        x = images.detach().requires_grad_(backward)
        y = pipe(x)
        if backward:
            y.sum().backward()
        if images.is_cuda:
            torch.cuda.synchronize()

    step()                                                   # Warm-up.
    count, start = 0, time.perf_counter()
    while True:
        step()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count * images.shape[0] / elapsed

#----------------------------------------------------------------------------
# One table per device.

def run_device(device, pipes, seconds, p, channels):
    torch.manual_seed(0)
    print(f'\n{device}: images/s at p = {p:g}, {channels} channel(s) (forward / forward+backward)')
    header = ['pipe'] + [f'{s}x{s} b{b}' for s, b in CASES]
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for name in pipes:
        pipe = AugmentPipe(**augpipe_specs[name]).to(device)
        pipe.p.fill_(p)
        row = [name]
        for size, batch in CASES:
            images = torch.rand([batch, channels, size, size], device=device) * 2 - 1
            fwd = measure(pipe, images, seconds, backward=False)
            bwd = measure(pipe, images, seconds, backward=True)
            row.append(f'{fwd:.0f} / {bwd:.0f}')
        print('| ' + ' | '.join(row) + ' |', flush=True)

#----------------------------------------------------------------------------

@click.command()
@click.option('--device', type=click.Choice(['cpu', 'cuda', 'all']), default='all', show_default=True, help='Where to run (all = CPU, then CUDA if present).')
@click.option('--seconds', type=click.FloatRange(min=0.01), default=1.0, show_default=True, help='Minimum time per measurement.')
@click.option('--pipes', type=str, default=','.join(augpipe_specs), show_default=True, help='Comma-separated pipeline names.')
@click.option('--threads', type=click.IntRange(min=1), default=None, help='torch CPU threads (default: torch decides).')
@click.option('--p', 'p', type=click.FloatRange(min=0, max=1, min_open=True), default=1.0, show_default=True, help='Augmentation probability.')
@click.option('--channels', type=click.Choice(['1', '3']), default='3', show_default=True, help='Image channels (1 = greyscale).')
def main(device, seconds, pipes, threads, p, channels):
    """Benchmark the ADA augmentation pipelines."""
    pipes = [name for name in pipes.split(",") if name]
    unknown = [name for name in pipes if name not in augpipe_specs]
    if unknown:
        raise click.BadParameter(f'unknown pipeline(s) {unknown}; choose from {sorted(augpipe_specs)}', param_hint='--pipes')
    if threads is not None:
        torch.set_num_threads(threads)
    devices = ['cpu', 'cuda'] if device == 'all' else [device]
    if 'cuda' in devices and not torch.cuda.is_available():
        if device == 'cuda':
            raise click.ClickException('CUDA is not available')
        devices.remove('cuda')
    for d in devices:
        run_device(torch.device(d), pipes, seconds, p, int(channels))

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()
