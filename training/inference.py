# Helpers shared by the image tools (generate.py, style_mixing.py, projector.py, ...): click
# types for seed lists and devices, loading G_ema for inference, latents from seeds, labels,
# running a generator of any family and writing PNGs. Library code: scripts import this
# module, never each other. See docs/architecture.md.

import re

import click
import numpy as np
import PIL.Image
import torch

import dnnlib
from torch_utils import host_memory
from torch_utils import misc
from training import network_files
from training import networks_biggan

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
# Resolve --device: auto = cuda if available, else mps if available, else cpu. Every command-line tool
# resolves its device once at start; on the CPU the process then keeps freed memory for reuse, as the
# training loop does (torch_utils.host_memory: 10-20% faster generation).

DEVICE_CHOICES = ('auto', 'cpu', 'cuda', 'mps')

def resolve_device(name):
    try:
        device = misc.resolve_device(name)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint='--device') from None
    if device.type == 'cpu':
        host_memory.keep_freed_memory()
    return device

#----------------------------------------------------------------------------
# Load G_ema from a network file for inference, turning load errors into one-line CLI errors;
# says on stderr how the file was loaded (which network family, or that its code ran).

TRUST_CODE_HELP = 'Load a pickle by running the code stored in it (only for files from authors you trust; see docs/pickles.md)'

def load_generator(network, device, trust_code=False):
    try:
        data = network_files.load_network_pkl(network, trust_code=trust_code, log=lambda msg: click.echo(msg, err=True))
    except network_files.NetworkLoadError as err:
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

# Images [N, C, H, W] in about [-1, 1] from latents z and labels c.
def run_generator(G, z, c, truncation_psi, noise_mode):
    if is_stylegan(G):
        return G(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode)
    return G(z, c, truncation_psi=truncation_psi)

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
# truncate=True (BigGAN with psi < 1, see biggan_truncation): each seed's elements beyond BigGAN's
# truncation threshold are redrawn from that seed's own RandomState until they lie inside. The network's
# truncation trick then has nothing left to redraw with torch's global generator, so a seed gives the
# same image in any batch and any run.

def seeds_to_z(seeds, z_dim, truncate=False):
    return np.concatenate([z_from_random_state(np.random.RandomState(seed), z_dim, truncate) for seed in seeds])

# One row [1, z_dim] from a seeded RandomState (see seeds_to_z).
def z_from_random_state(rnd, z_dim, truncate=False):
    z = rnd.randn(1, z_dim)
    while truncate and (outside := np.abs(z) > networks_biggan.TRUNCATION_THRESHOLD).any():
        z[outside] = rnd.randn(int(outside.sum()))
    return z

# Whether G's latents need the seeded truncation of seeds_to_z: BigGAN generators with psi < 1.
def biggan_truncation(G, truncation_psi):
    return not is_stylegan(G) and truncation_psi != 1

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
