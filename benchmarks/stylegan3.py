# Cost of the StyleGAN3 generators (training.networks_stylegan3.Generator, configs T and R) next to
# StyleGAN2's (training.networks_stylegan2.Generator) of the same width, at 64x64, float32, one
# thread: CPU seconds (process_time) and wall seconds per image of G(z) without gradients and of
# forward + backward, interleaved round by round so that both see the same machine load.
# The numbers in docs/stylegan3.md come from this script.
#
#   python benchmarks/stylegan3.py [--cbase 8192] [--cmax 128] [--batch 2] [--rounds 2] [--device cpu]

import os
import sys
import time

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from training import networks_stylegan2, networks_stylegan3  # noqa: E402

#----------------------------------------------------------------------------
# The three generators at one width (R doubles the channels, as its preset).

def make_generators(cbase, cmax, res, device):
    torch.manual_seed(0)
    common = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3)
    sg3 = dict(num_fp16_res=0, conv_clamp=None)
    return {
        f'StyleGAN3-T ({cbase}/{cmax})': networks_stylegan3.Generator(**common, channel_base=cbase, channel_max=cmax, **sg3),
        f'StyleGAN3-R ({2 * cbase}/{2 * cmax})': networks_stylegan3.Generator(**common, channel_base=2 * cbase,
            channel_max=2 * cmax, conv_kernel=1, use_radial_filters=True, **sg3),
        f'StyleGAN2 ({cbase}/{cmax})': networks_stylegan2.Generator(**common, mapping_kwargs=dict(num_layers=8),
            synthesis_kwargs=dict(channel_base=cbase, channel_max=cmax)),
    }

#----------------------------------------------------------------------------
# (CPU s, wall s) per image of one forward (no gradients) or forward + backward.

def measure(G, z, backward):
    cpu, wall = time.process_time(), time.perf_counter()
    with torch.set_grad_enabled(backward):
        img = G(z, None)
        if backward:
            img.square().mean().backward()
    if z.device.type == 'cuda':
        torch.cuda.synchronize()
    return (time.process_time() - cpu) / z.shape[0], (time.perf_counter() - wall) / z.shape[0]

#----------------------------------------------------------------------------

@click.command()
@click.option('--cbase', help='Channel base of T and StyleGAN2 (R: twice)', type=int, default=8192, show_default=True)
@click.option('--cmax', help='Channel max of T and StyleGAN2 (R: twice)', type=int, default=128, show_default=True)
@click.option('--res', help='Resolution', type=int, default=64, show_default=True)
@click.option('--batch', help='Images per call', type=int, default=2, show_default=True)
@click.option('--rounds', help='Measured rounds (after one warm-up)', type=int, default=2, show_default=True)
@click.option('--device', help='Where to run', type=click.Choice(['cpu', 'cuda']), default='cpu', show_default=True)
def main(cbase, cmax, res, batch, rounds, device):
    """Per-image cost of StyleGAN3-T/-R vs StyleGAN2 generators."""
    torch.set_num_threads(1)
    nets = {name: G.to(device) for name, G in make_generators(cbase, cmax, res, device).items()}
    z = torch.randn([batch, 512], device=device)
    results = {(name, bwd): [] for name in nets for bwd in (False, True)}
    for round_idx in range(rounds + 1):
        for name, G in nets.items():
            for bwd in (False, True):
                value = measure(G, z, bwd)
                if round_idx > 0:
                    results[(name, bwd)].append(value)
    print(f'{res}x{res}, batch {batch}, {rounds} rounds, {device}, 1 thread; median CPU s / wall s per image')
    for name in nets:
        row = [sorted(results[(name, bwd)])[len(results[(name, bwd)]) // 2] for bwd in (False, True)]
        print(f'  {name:28s} forward {row[0][0]:7.3f} / {row[0][1]:7.3f}   forward+backward {row[1][0]:7.3f} / {row[1][1]:7.3f}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
