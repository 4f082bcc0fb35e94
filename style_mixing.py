# Style mixing: the styles of column seeds copied into the ws of row seeds at chosen
# layers, written as a grid and as individual images. See docs/generate.md.

import os

import click
import numpy as np
import PIL.Image
import torch
import tqdm

from training import inference

#----------------------------------------------------------------------------
# Truncated w of every seed: {seed: [num_ws, w_dim]}.

def compute_ws(G, seeds, truncation_psi, c):
    z = torch.from_numpy(inference.seeds_to_z(seeds, G.z_dim)).to(c.device)
    ws = G.mapping(z, c[:1].repeat([len(seeds), 1]))
    w_avg = G.mapping.w_avg
    ws = w_avg + (ws - w_avg) * truncation_psi
    return dict(zip(seeds, ws))

#----------------------------------------------------------------------------
# Images of the mixed ws: {(row_seed, col_seed): HWC uint8}; (s, s) is seed s unmixed.

def mix_images(G, row_seeds, col_seeds, col_styles, truncation_psi, c, noise_mode):
    all_seeds = sorted(set(row_seeds + col_seeds))
    w_dict = compute_ws(G, all_seeds, truncation_psi, c)
    images = {}
    for seed in all_seeds:
        images[(seed, seed)] = inference.to_uint8(G.synthesis(w_dict[seed].unsqueeze(0), noise_mode=noise_mode))[0]
    for row_seed in tqdm.tqdm(row_seeds, desc='Mixing', unit='row', leave=False):
        for col_seed in col_seeds:
            w = w_dict[row_seed].clone()
            w[col_styles] = w_dict[col_seed][col_styles]
            images[(row_seed, col_seed)] = inference.to_uint8(G.synthesis(w.unsqueeze(0), noise_mode=noise_mode))[0]
    return images

#----------------------------------------------------------------------------
# Grid: first row the column sources, first column the row sources, top-left empty.

def make_grid(images, row_seeds, col_seeds, resolution, channels):
    mode = 'L' if channels == 1 else 'RGB'
    canvas = PIL.Image.new(mode, (resolution * (len(col_seeds) + 1), resolution * (len(row_seeds) + 1)), 'black')
    for row_idx, row_seed in enumerate([None] + row_seeds):
        for col_idx, col_seed in enumerate([None] + col_seeds):
            if row_seed is None and col_seed is None:
                continue
            key = (col_seed, col_seed) if row_seed is None else (row_seed, row_seed) if col_seed is None else (row_seed, col_seed)
            array = images[key]
            tile = PIL.Image.fromarray(array[:, :, 0], 'L') if channels == 1 else PIL.Image.fromarray(array, 'RGB')
            canvas.paste(tile, (resolution * col_idx, resolution * row_idx))
    return canvas

#----------------------------------------------------------------------------

@click.command()
@click.option('--network', 'network_pkl', help='Network pickle or .safetensors: path or URL', required=True, metavar='PATH')
@click.option('--rows', 'row_seeds', type=inference.IntRangeList(), help='Seeds of the rows (receive styles), e.g. 0-3', required=True)
@click.option('--cols', 'col_seeds', type=inference.IntRangeList(), help='Seeds of the columns (give styles), e.g. 4,5', required=True)
@click.option('--styles', 'col_styles', type=inference.IntRangeList(), help='Layers (w indices) taken from the columns', default='0-6', show_default=True)
@click.option('--trunc', 'truncation_psi', type=float, help='Truncation psi', default=1, show_default=True)
@click.option('--class', 'class_idx', type=click.IntRange(min=0), help='Class index (conditional networks only)')
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True, help='Per-pixel noise')
@click.option('--outdir', type=click.Path(file_okay=False), help='Where to save the output images', required=True, metavar='DIR')
@click.option('--device', type=click.Choice(inference.DEVICE_CHOICES), default='auto', show_default=True, help='Where to run')
@click.option('--trust-code', is_flag=True, help=inference.TRUST_CODE_HELP)
def generate_style_mix(network_pkl, row_seeds, col_seeds, col_styles, truncation_psi, class_idx, noise_mode, outdir, device, trust_code):
    """Generate a style-mixing grid using a pretrained network.

    \b
    python style_mixing.py --outdir=out --rows=85,100,75 --cols=55,821 --styles=0-6 --network=ffhq.pkl
    """
    device = inference.resolve_device(device)
    G = inference.load_generator(network_pkl, device, trust_code=trust_code)
    if not hasattr(G, 'mapping'):
        raise click.ClickException(f'Style mixing swaps W latents between seeds; this {type(G).__name__} has no mapping '
            'network (a BigGAN?). Use generate.py for it.')
    num_ws = G.mapping.num_ws
    if max(col_styles) >= num_ws:
        raise click.BadParameter(f'layer {max(col_styles)} is out of range: this network has {num_ws} ws (0 to {num_ws - 1})', param_hint='--styles')
    c = inference.make_labels(G, class_idx, 1, device)
    if G.img_channels not in (1, 3):
        raise click.ClickException(f'Cannot write {G.img_channels}-channel images as PNG (1 or 3 channels supported)')

    with torch.no_grad():
        images = mix_images(G, row_seeds, col_seeds, col_styles, truncation_psi, c, noise_mode)
    os.makedirs(outdir, exist_ok=True)
    for (row_seed, col_seed), array in images.items():
        inference.save_png(array, os.path.join(outdir, f'{row_seed}-{col_seed}.png'))
    grid = make_grid(images, row_seeds, col_seeds, G.img_resolution, G.img_channels)
    inference.save_png(np.asarray(grid).reshape(grid.height, grid.width, -1), os.path.join(outdir, 'grid.png'))
    click.echo(f'Wrote grid.png and {len(images)} images to {outdir}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    generate_style_mix() # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
