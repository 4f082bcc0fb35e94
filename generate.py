# Generate images from a trained network: one PNG per seed (or per projected w).
# See docs/generate.md.

import os

import click
import numpy as np
import torch
import tqdm

from training.inference import DEVICE_CHOICES, TRUST_CODE_HELP, IntRangeList, is_stylegan, load_generator, make_labels
from training.inference import biggan_truncation, resolve_device, run_generator, save_png, seeds_to_z, to_uint8

#----------------------------------------------------------------------------
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
        z = torch.from_numpy(seeds_to_z(batch_seeds, G.z_dim, truncate=biggan_truncation(G, truncation_psi))).to(device)
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
@click.option('--trust-code', is_flag=True, help=TRUST_CODE_HELP)
def generate_images_cmd(network_pkl, seeds, truncation_psi, class_idx, noise_mode, projected_w, outdir, device, batch_size, standing_stats, trust_code):
    """Generate images using a pretrained network.

    \b
    python generate.py --outdir=out --seeds=0-3 --trunc=0.7 --network=ffhq.pkl
    python generate.py --outdir=out --seeds=0-7 --class=1 --network=cifar10.pkl
    python generate.py --outdir=out --projected-w=projected_w.npz --network=ffhq.pkl
    """
    if (seeds is None) == (projected_w is None):
        raise click.UsageError('Give either --seeds or --projected-w (exactly one of them).')
    device = resolve_device(device)
    G = load_generator(network_pkl, device, trust_code=trust_code)

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
