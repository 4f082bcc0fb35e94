# Generate images from a trained network: one PNG per seed (or per projected w).
# See docs/generate.md.

import os
import re

import click
import numpy as np
import PIL.Image
import torch
import tqdm

import dnnlib
import legacy
from torch_utils import misc

#----------------------------------------------------------------------------
# Click type for lists of non-negative integers and ranges: '0-3,7' -> [0, 1, 2, 3, 7].

class IntRangeList(click.ParamType):
    name = 'list'

    def __init__(self, max_value=2**32 - 1):
        self.max_value = max_value

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        result = []
        for part in str(value).split(','):
            match = re.fullmatch(r'\s*(\d+)\s*(?:-\s*(\d+)\s*)?', part)
            if match is None:
                self.fail(f'{value!r} is not a list of integers and ranges such as 0-3,7', param, ctx)
            lo = int(match.group(1))
            hi = int(match.group(2)) if match.group(2) is not None else lo
            if hi < lo:
                self.fail(f'range {part.strip()!r} is empty (end before start)', param, ctx)
            if hi > self.max_value:
                self.fail(f'{hi} is larger than the maximum {self.max_value}', param, ctx)
            result.extend(range(lo, hi + 1))
        return result

#----------------------------------------------------------------------------
# Resolve --device: auto = cuda if available, else mps if available, else cpu.

DEVICE_CHOICES = ('auto', 'cpu', 'cuda', 'mps')

def resolve_device(name):
    try:
        return misc.resolve_device(name)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint='--device') from None

#----------------------------------------------------------------------------
# Load G_ema from a network file for inference, turning load errors into one-line CLI errors.

def load_generator(network, device):
    try:
        data = legacy.load_network_pkl(network)
    except legacy.NetworkLoadError as err:
        raise click.ClickException(str(err)) from err
    G = data['G_ema']
    for attr in ('z_dim', 'c_dim', 'img_channels'):
        if not hasattr(G, attr):
            raise click.ClickException(f'{network}: G_ema is a {type(G).__name__} without {attr}, not a generator')
    return G.eval().requires_grad_(False).to(device)

#----------------------------------------------------------------------------
# StyleGAN2 generators (mapping + synthesis) take noise_mode; BigGAN generators take z, c and psi only.

def is_stylegan(G):
    return hasattr(G, 'mapping') and hasattr(G, 'synthesis')

def run_generator(G, z, c, truncation_psi, noise_mode):
    if is_stylegan(G):
        return G(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode)
    return G(z, c, truncation_psi=truncation_psi)

# BigGAN: re-accumulate the standing BatchNorm statistics over `num_batches` batches (0 = keep the snapshot's).
def refresh_standing_stats(G, num_batches, batch_size, device, seed=0):
    if num_batches == 0:
        return
    if is_stylegan(G):
        raise click.BadParameter('only BigGAN generators have standing statistics', param_hint='--standing-stats')
    from training import networks_biggan
    try:
        networks_biggan.accumulate_standing_stats(G, num_batches, batch_size, device, seed=seed)
    except (ValueError, RuntimeError) as err:
        raise click.BadParameter(str(err), param_hint='--standing-stats') from err

#----------------------------------------------------------------------------
# One-hot label rows for --class, checked against the network's c_dim.

def make_labels(G, class_idx, batch_size, device):
    if G.c_dim == 0:
        if class_idx is not None:
            raise click.BadParameter('this network is unconditional; leave out --class', param_hint='--class')
        return torch.zeros([batch_size, 0], device=device)
    if class_idx is None:
        raise click.BadParameter(f'this network is conditional; give --class (0 to {G.c_dim - 1})', param_hint='--class')
    if not 0 <= class_idx < G.c_dim:
        raise click.BadParameter(f'{class_idx} is out of range for this network (0 to {G.c_dim - 1})', param_hint='--class')
    c = torch.zeros([batch_size, G.c_dim], device=device)
    c[:, class_idx] = 1
    return c

#----------------------------------------------------------------------------
# Latents of the original convention: z = RandomState(seed).randn(1, z_dim), one row per seed.

def seeds_to_z(seeds, z_dim):
    return np.concatenate([np.random.RandomState(seed).randn(1, z_dim) for seed in seeds])

#----------------------------------------------------------------------------
# Generator output in [-1, 1], NCHW -> uint8 NHWC numpy array.

def to_uint8(img):
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()

#----------------------------------------------------------------------------
# Write one HWC uint8 image as PNG atomically (grayscale for 1 channel, RGB for 3).

def save_png(array, path):
    if array.shape[2] == 1:
        image = PIL.Image.fromarray(array[:, :, 0], 'L')
    elif array.shape[2] == 3:
        image = PIL.Image.fromarray(array, 'RGB')
    else:
        raise click.ClickException(f'Cannot write a {array.shape[2]}-channel image as PNG (1 or 3 channels supported)')
    with dnnlib.util.atomic_write(path) as f:
        image.save(f, format='PNG')

#----------------------------------------------------------------------------
# Read --projected-w: an .npz with key 'w' of shape [N, num_ws, w_dim].

def load_projected_w(path, G):
    try:
        npz = np.load(path)
    except (OSError, ValueError, EOFError) as err:
        raise click.BadParameter(f'cannot read {path} as .npz: {err}', param_hint='--projected-w') from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise click.BadParameter(f'{path} is a .npy array, not an .npz archive with an array named "w"', param_hint='--projected-w')
    with npz:
        if 'w' not in npz.files:
            raise click.BadParameter(f'{path} has no array named "w" (found: {", ".join(npz.files) or "none"})', param_hint='--projected-w')
        ws = npz['w']
    expected = (G.mapping.num_ws, G.w_dim)
    if ws.ndim != 3 or tuple(ws.shape[1:]) != expected:
        raise click.BadParameter(f'w has shape {list(ws.shape)}, expected [N, {expected[0]}, {expected[1]}]', param_hint='--projected-w')
    return torch.from_numpy(ws.astype(np.float32))

#----------------------------------------------------------------------------
# Generate one image per seed in batches; returns the written paths.

def generate_images(G, seeds, outdir, truncation_psi=1, class_idx=None, noise_mode='const', batch_size=8, device=torch.device('cpu')):
    c_all = make_labels(G, class_idx, batch_size, device)
    paths = []
    for start in tqdm.tqdm(range(0, len(seeds), batch_size), desc='Generating', unit='batch', leave=False):
        batch_seeds = seeds[start : start + batch_size]
        z = torch.from_numpy(seeds_to_z(batch_seeds, G.z_dim)).to(device)
        img = run_generator(G, z.to(torch.float32), c_all[:len(batch_seeds)], truncation_psi, noise_mode)
        for seed, array in zip(batch_seeds, to_uint8(img)):
            paths.append(os.path.join(outdir, f'seed{seed:04d}.png'))
            save_png(array, paths[-1])
    return paths

#----------------------------------------------------------------------------
# Synthesize one image per projected w; returns the written paths.

def generate_from_ws(G, ws, outdir, noise_mode='const', batch_size=8, device=torch.device('cpu')):
    paths = []
    for start in tqdm.tqdm(range(0, len(ws), batch_size), desc='Generating', unit='batch', leave=False):
        img = G.synthesis(ws[start : start + batch_size].to(device), noise_mode=noise_mode)
        for idx, array in enumerate(to_uint8(img)):
            paths.append(os.path.join(outdir, f'proj{start + idx:02d}.png'))
            save_png(array, paths[-1])
    return paths

#----------------------------------------------------------------------------

@click.command()
@click.option('--network', 'network_pkl', help='Network pickle or .safetensors: path or URL', required=True, metavar='PATH')
@click.option('--seeds', type=IntRangeList(), help='Seeds, e.g. 0-3,7')
@click.option('--trunc', 'truncation_psi', type=float, help='Truncation psi', default=1, show_default=True)
@click.option('--class', 'class_idx', type=click.IntRange(min=0), help='Class index (conditional networks only)')
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True, help='Per-pixel noise')
@click.option('--projected-w', type=click.Path(exists=True, dir_okay=False), help='Synthesize from the ws in this .npz instead of seeds')
@click.option('--outdir', type=click.Path(file_okay=False), help='Where to save the output images', required=True, metavar='DIR')
@click.option('--device', type=click.Choice(DEVICE_CHOICES), default='auto', show_default=True, help='Where to run')
@click.option('--batch', 'batch_size', type=click.IntRange(min=1), default=8, show_default=True, help='Images per forward pass')
@click.option('--standing-stats', 'standing_stats', type=click.IntRange(min=0), default=0, show_default=True, help='BigGAN: batches of standing BatchNorm statistics to accumulate first (0 = use the snapshot\'s)')
def generate_images_cmd(network_pkl, seeds, truncation_psi, class_idx, noise_mode, projected_w, outdir, device, batch_size, standing_stats):
    """Generate images using a pretrained network.

    \b
    python generate.py --outdir=out --seeds=0-3 --trunc=0.7 --network=ffhq.pkl
    python generate.py --outdir=out --seeds=0-7 --class=1 --network=cifar10.pkl
    python generate.py --outdir=out --projected-w=projected_w.npz --network=ffhq.pkl
    """
    if (seeds is None) == (projected_w is None):
        raise click.UsageError('Give either --seeds or --projected-w (exactly one of them).')
    device = resolve_device(device)
    G = load_generator(network_pkl, device)

    # Check every argument against the network before writing anything.
    if projected_w is not None and not is_stylegan(G):
        raise click.BadParameter('needs a StyleGAN2 generator (this one has no mapping/synthesis split)', param_hint='--projected-w')
    ws = load_projected_w(projected_w, G) if projected_w is not None else None
    if ws is None:
        make_labels(G, class_idx, 1, device)
    refresh_standing_stats(G, standing_stats, batch_size, device)
    os.makedirs(outdir, exist_ok=True)

    with torch.no_grad():
        if ws is not None:
            paths = generate_from_ws(G, ws, outdir, noise_mode=noise_mode, batch_size=batch_size, device=device)
        else:
            paths = generate_images(G, seeds, outdir, truncation_psi=truncation_psi, class_idx=class_idx,
                noise_mode=noise_mode, batch_size=batch_size, device=device)
    click.echo(f'Wrote {len(paths)} images to {outdir}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    generate_images_cmd() # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
