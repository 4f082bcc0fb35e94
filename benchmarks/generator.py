# Throughput of the StyleGAN2 generator (training.networks_stylegan2.Generator): images per second of
# G(z, c) in eval mode without gradients (fused modconv, noise_mode='const'), batch 8, at
# 64x64 (channel_base 16384, as the original 'auto' config below 512 px) and 256x256
# (channel_base 32768), channel_max 512, z_dim = w_dim = 512, 8 mapping layers. Also eval
# with fused_modconv=False (faster on the CPU) and the training-mode forward + backward
# (non-fused modconv). CPU, and CUDA when present.
#
#   python benchmarks/generator.py [--device cpu|cuda|all] [--seconds 3] [--res 64,256]

import os
import sys
import time

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from training.networks_stylegan2 import Generator  # noqa: E402

#----------------------------------------------------------------------------
# Generator of the measured configuration for a resolution.

CHANNEL_BASE = {64: 16384, 256: 32768}

def make_generator(res, device):
    torch.manual_seed(0)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
        mapping_kwargs=dict(num_layers=8), synthesis_kwargs=dict(channel_base=CHANNEL_BASE.get(res, 32768), channel_max=512))
    return G.to(device)

#----------------------------------------------------------------------------
# Images per second of one step, repeated for at least `seconds` after a warm-up step.

def measure(G, batch_size, seconds, train, fused_modconv=None):
    device = next(G.parameters()).device
    z = torch.randn([batch_size, G.z_dim], device=device)
    G.train(train).requires_grad_(train)

    def step():
        with torch.set_grad_enabled(train):
            img = G(z, None, noise_mode='const', fused_modconv=fused_modconv)
            if train:
                img.square().mean().backward()
        if device.type == 'cuda':
            torch.cuda.synchronize()

    step()
    count, start = 0, time.perf_counter()
    while True:
        step()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count * batch_size / elapsed

#----------------------------------------------------------------------------

@click.command()
@click.option('--device', type=click.Choice(['cpu', 'cuda', 'all']), default='all', show_default=True, help='all = CPU, and CUDA when present')
@click.option('--seconds', type=click.FloatRange(min=0), default=3, show_default=True, help='Measuring time per case')
@click.option('--res', 'resolutions', default='64,256', show_default=True, help='Comma-separated resolutions')
@click.option('--batch', 'batch_size', type=click.IntRange(min=1), default=8, show_default=True, help='Batch size')
def main(device, seconds, resolutions, batch_size):
    """Images/s of the StyleGAN2 generator."""
    devices = ['cpu', 'cuda'] if device == 'all' else [device]
    if 'cuda' in devices and not torch.cuda.is_available():
        if device == 'cuda':
            raise click.ClickException('CUDA is not available')
        devices.remove('cuda')
    try:
        res_list = [int(r) for r in resolutions.split(',')]
    except ValueError as err:
        raise click.BadParameter(f'{resolutions!r} is not a comma-separated list of integers', param_hint='--res') from err

    print(f'torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batch {batch_size}')
    print(f'{"device":<6} {"res":>4} {"params":>8} {"eval img/s":>11} {"eval unfused":>13} {"train img/s":>12}')
    for dev in devices:
        for res in res_list:
            G = make_generator(res, torch.device(dev))
            num_params = sum(p.numel() for p in G.parameters())
            infer = measure(G, batch_size, seconds, train=False)
            unfused = measure(G, batch_size, seconds, train=False, fused_modconv=False)
            train = measure(G, batch_size, seconds, train=True)
            print(f'{dev:<6} {res:>4} {num_params / 1e6:>7.1f}M {infer:>11.2f} {unfused:>13.2f} {train:>12.2f}', flush=True)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main() # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
