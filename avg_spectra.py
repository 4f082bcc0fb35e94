# Average power spectrum of a dataset's images or a generator's: `calc` saves it as .npz,
# `heatmap` draws it as a centred log-power PNG, `slices` plots its horizontal and diagonal
# profiles (several files on one plot). As in StyleGAN3's tool, each image and channel is
# multiplied by a separable Kaiser window of unit energy, zero-padded by `interp` and Fourier
# transformed, and |F|^2 is averaged over channels and images; images are mean-subtracted one by
# one, or whitened with the dataset's statistics as the original does (`stats`, --mean/--std).
# See docs/tools-video-spectra.md.

import os

import click
import numpy as np
import PIL.Image
import PIL.ImageDraw
import scipy.ndimage
import torch
import tqdm

import dnnlib
from training import dataset as dataset_module
from training.inference import (DEVICE_CHOICES, TRUST_CODE_HELP, biggan_truncation, load_generator, make_labels, resolve_device,
    run_generator, to_uint8, z_from_random_state)

NETWORK_SUFFIXES = ('.pkl', '.safetensors')

#----------------------------------------------------------------------------
# Separable Kaiser window [H, W] (symmetric, shape parameter beta) scaled to unit energy, so a white
# noise image of variance s^2 has expected power s^2 in every frequency bin.

def spectrum_window(height, width, beta, device='cpu'):
    wy = torch.kaiser_window(height, periodic=False, beta=beta, dtype=torch.float64, device=device)
    wx = torch.kaiser_window(width, periodic=False, beta=beta, dtype=torch.float64, device=device)
    return torch.outer(wy / wy.square().sum().sqrt(), wx / wx.square().sum().sqrt())

#----------------------------------------------------------------------------
# Running mean of the power spectra of float image batches [N, C, H, W].

class SpectrumAccumulator:
    def __init__(self,
        height,                 # Image height in pixels.
        width,                  # Image width in pixels.
        interp          = 4,    # Zero-padding factor: the spectrum has interp*H x interp*W bins.
        beta            = 8,    # Shape parameter of the Kaiser window.
        subtract_mean   = True, # Subtract each image's (and channel's) mean first; False = the caller whitened the data.
        device          = 'cpu', # Where the FFTs run.
    ):
        self.window = spectrum_window(height, width, beta, device)
        self.subtract_mean = subtract_mean
        self.size = [height * interp, width * interp]
        self.total = torch.zeros(self.size, dtype=torch.float64, device=device)
        self.num_images = 0

    # Add the spectra of one batch.
    def add(self, images):
        x = images.to(device=self.window.device, dtype=torch.float64)
        if self.subtract_mean:
            x = x - x.mean(dim=[2, 3], keepdim=True)
        x = x * self.window # [NCHW]
        power = torch.fft.fft2(x, s=self.size).abs().square() # [NCHW], H and W zero-padded
        self.total += power.mean(dim=1).sum(dim=0)
        self.num_images += x.shape[0]

    # Mean power spectrum [H*interp, W*interp], zero frequency at [0, 0] (FFT order).
    def result(self):
        return (self.total / max(self.num_images, 1)).cpu().numpy()

#----------------------------------------------------------------------------
# uint8 images [N, C, H, W] -> float64: v / 127.5 - 1 (the training convention), or StyleGAN3's
# whitening (v - mean) / std with the dataset's statistics when mean and std are given.

def to_float(images, mean=None, std=None):
    x = torch.as_tensor(images).to(torch.float64)
    return x / 127.5 - 1 if mean is None else (x - mean) / std

#----------------------------------------------------------------------------
# Batches of uint8 dataset images [N, C, H, W] (a seeded random subset of num images when num is given).

def open_dataset(path, num, seed):
    try:
        data = dataset_module.ImageFolderDataset(path=path, max_size=num, random_seed=seed)
    except dataset_module.DatasetError as err:
        raise click.ClickException(str(err)) from None
    if num is not None and len(data) < num:
        raise click.BadParameter(f'{path} holds only {len(data)} images, fewer than {num}', param_hint='--num')
    return data

# The dataset's images in order, batch_size at a time, decoded by `workers` background processes.
def dataset_batches(data, batch_size, workers):
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers)
    for images, _labels in loader:
        yield images.numpy()

# Batches of generated uint8 images for seeds seed ... seed+num-1, quantised as when saved, so generator
# and dataset spectra are measured alike. Conditional networks draw each seed's class from the same
# RandomState right after z (as StyleGAN3's tool) unless class_idx is given.
def generator_batches(G, num, seed, batch_size, truncation_psi, class_idx, noise_mode, device):
    for start in range(seed, seed + num, batch_size):
        rnds = [np.random.RandomState(s) for s in range(start, min(start + batch_size, seed + num))]
        truncate = biggan_truncation(G, truncation_psi) # Seeded redraws (training.inference.seeds_to_z).
        z = torch.from_numpy(np.concatenate([z_from_random_state(rnd, G.z_dim, truncate) for rnd in rnds])).to(device=device, dtype=torch.float32)
        if G.c_dim > 0 and class_idx is None:
            c = torch.eye(G.c_dim, device=device)[[rnd.randint(G.c_dim) for rnd in rnds]]
        else:
            c = make_labels(G, class_idx, len(rnds), device)
        try:
            images = run_generator(G, z, c, truncation_psi, noise_mode)
        except ValueError as err: # E.g. BigGAN's psi outside [0, 1].
            raise click.BadParameter(str(err), param_hint='--trunc') from None
        yield to_uint8(images).transpose(0, 3, 1, 2)

# Open --source: (height, width, iterator over uint8 batches); one-line errors before any work.
def open_source(source, num, seed, batch_size, workers, truncation_psi, class_idx, noise_mode, device, trust_code):
    if is_network_source(source):
        G = load_generator(source, device, trust_code=trust_code)
        if G.c_dim == 0 or class_idx is not None:
            make_labels(G, class_idx, 1, device) # Check --class against the network.
        num = 10000 if num is None else num
        return G.img_resolution, G.img_resolution, generator_batches(G, num, seed, batch_size, truncation_psi, class_idx, noise_mode, device)
    if not os.path.exists(source):
        raise click.BadParameter(f'{source} does not exist (a dataset folder or .zip, or a network .pkl)', param_hint='--source')
    data = open_dataset(source, num, seed)
    _, height, width = data.image_shape
    return height, width, dataset_batches(data, batch_size, workers)

#----------------------------------------------------------------------------
# Whether --source names a network file (pickle, safetensors, URL) rather than a dataset.

def is_network_source(source):
    return dnnlib.util.is_url(source) or source.lower().endswith(NETWORK_SUFFIXES)

#----------------------------------------------------------------------------
# Spectrum in dB (FFT order), optionally smoothed by a Gaussian of smooth_bins bins; the boundary
# wraps around, as the spectrum is periodic.

def spectrum_db(spectrum, smooth_bins=0):
    db = 10 * np.log10(np.maximum(spectrum, 1e-30))
    return scipy.ndimage.gaussian_filter(db, sigma=smooth_bins, mode='wrap') if smooth_bins > 0 else db

# Profiles of a square map in FFT order from zero frequency to Nyquist: along the horizontal axis
# (vertical frequency 0) and along the diagonal (equal frequencies); x in cycles per pixel of radial frequency.
def spectrum_slices(spectrum):
    size = spectrum.shape[0]
    half = np.arange(size // 2 + 1)
    return dict(
        horizontal = (half / size, spectrum[0, half]),
        diagonal   = (half * np.sqrt(2) / size, spectrum[half, half]),
    )

#----------------------------------------------------------------------------
# Read a spectrum .npz written by `calc` (or StyleGAN3's tool): (spectrum, interp); one-line errors
# for anything else. interp comes from the file, or from StyleGAN3's image_size, else 1.

def load_spectrum(path):
    try:
        npz = np.load(path)
    except (OSError, ValueError, EOFError) as err:
        reason = 'not an .npz archive' if isinstance(err, ValueError) else err
        raise click.ClickException(f'cannot read {path} as a spectrum .npz: {reason}') from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise click.ClickException(f'{path} is a .npy array, not an .npz archive written by: avg_spectra.py calc')
    with npz:
        if 'spectrum' not in npz.files:
            raise click.ClickException(f'{path} has no array named "spectrum"; write one with: avg_spectra.py calc')
        spectrum = npz['spectrum'].astype(np.float64)
        if 'interp' in npz.files:
            interp = float(npz['interp'])
        else:
            interp = spectrum.shape[0] / float(npz['image_size']) if 'image_size' in npz.files else 1.0
    if spectrum.ndim != 2 or min(spectrum.shape) < 2 or not np.all(np.isfinite(spectrum)):
        raise click.ClickException(f'{path}: "spectrum" must be a finite 2-D array, got shape {list(spectrum.shape)}')
    return spectrum, interp

#----------------------------------------------------------------------------
# Colour map for the heat map: black, blue, red, yellow, white at values 0, 0.25, 0.5, 0.75, 1.

HEAT_COLORS = np.array([[0, 0, 0], [30, 40, 160], [200, 30, 40], [250, 200, 40], [255, 255, 255]], dtype=np.float64)

def heat_colors(values):
    pos = np.clip(values, 0, 1) * (len(HEAT_COLORS) - 1)
    lo = np.minimum(np.floor(pos).astype(int), len(HEAT_COLORS) - 2)
    frac = (pos - lo)[..., None]
    return np.rint(HEAT_COLORS[lo] * (1 - frac) + HEAT_COLORS[lo + 1] * frac).astype(np.uint8)

#----------------------------------------------------------------------------
# Axes with ticks and labels, and one poly-line per series; box = (left, top, right, bottom).

PLOT_COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]

def draw_panel(draw, box, series, x_range, y_range, title):
    left, top, right, bottom = box
    to_px = lambda x, y: (left + (x - x_range[0]) / (x_range[1] - x_range[0]) * (right - left),
                          bottom - (y - y_range[0]) / (y_range[1] - y_range[0]) * (bottom - top))
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((left, top - 16), title, fill=(0, 0, 0))
    for x in np.linspace(x_range[0], x_range[1], 6):
        px, _ = to_px(x, y_range[0])
        draw.line([(px, bottom), (px, bottom + 4)], fill=(0, 0, 0))
        draw.text((px - 12, bottom + 6), f'{x:.2f}', fill=(0, 0, 0))
    for y in np.arange(np.ceil(y_range[0] / 20) * 20, y_range[1] + 1e-9, 20):
        _, py = to_px(x_range[0], y)
        draw.line([(left - 4, py), (left, py)], fill=(0, 0, 0))
        draw.text((left - 40, py - 6), f'{y:.0f}', fill=(0, 0, 0))
    for idx, (x, y) in enumerate(series):
        points = [to_px(a, np.clip(b, *y_range)) for a, b in zip(x, y)]
        draw.line(points, fill=PLOT_COLORS[idx % len(PLOT_COLORS)], width=2)

#----------------------------------------------------------------------------
# Slice plot of dB maps (FFT order): horizontal and diagonal panels side by side, one line per map, legend below.

def draw_slices(db_maps, labels, db_range=None):
    slices = [spectrum_slices(db) for db in db_maps]
    if db_range is None:
        top = max(max(y.max() for _, y in s.values()) for s in slices)
        db_range = (np.floor(top / 10) * 10 - 100, np.ceil(top / 10) * 10)
    image = PIL.Image.new('RGB', (900, 360 + 16 * len(labels)), (255, 255, 255))
    draw = PIL.ImageDraw.Draw(image)
    for col, (key, x_max) in enumerate([('horizontal', 0.5), ('diagonal', 0.5 * np.sqrt(2))]):
        series = [s[key] for s in slices]
        draw_panel(draw, (60 + col * 430, 30, 460 + col * 430, 300), series, (0, x_max), db_range, f'{key} slice: power (dB)')
        draw.text((200 + col * 430, 318), 'frequency (cycles/pixel)', fill=(0, 0, 0))
    for idx, label in enumerate(labels):
        color = PLOT_COLORS[idx % len(PLOT_COLORS)]
        draw.line([(60, 350 + 16 * idx), (90, 350 + 16 * idx)], fill=color, width=2)
        draw.text((96, 344 + 16 * idx), label, fill=(0, 0, 0))
    return image

#----------------------------------------------------------------------------
# Write a PIL image as PNG atomically.

def save_image(image, path):
    with dnnlib.util.atomic_write(path) as f:
        image.save(f, format='PNG')

#----------------------------------------------------------------------------

@click.group()
def main():
    """Average power spectra of datasets and generators (StyleGAN3 paper, Figure 4 style).

    \b
    python avg_spectra.py calc --source=datasets/ffhq-256x256.zip --dest=ffhq.npz
    python avg_spectra.py calc --source=stylegan3-r.pkl --dest=sg3r.npz --num=10000
    python avg_spectra.py heatmap ffhq.npz --output=ffhq-heatmap.png
    python avg_spectra.py slices ffhq.npz sg3r.npz --output=slices.png

    \b
    StyleGAN3's whitening instead of per-image mean subtraction (same numbers as the original tool):
    python avg_spectra.py stats --source=datasets/ffhq-256x256.zip     # prints --mean=... --std=...
    python avg_spectra.py calc --source=datasets/ffhq-256x256.zip --dest=ffhq.npz --mean=112.684 --std=69.509
    """

#----------------------------------------------------------------------------
# Options that pick the images, shared by `stats` and `calc`.

def source_options(func):
    options = [
        click.option('--source', help='Dataset (folder or .zip) or network (.pkl, .safetensors, URL)', required=True, metavar='PATH'),
        click.option('--num', type=click.IntRange(min=1), help='Number of images [default: whole dataset; 10000 generated]'),
        click.option('--seed', type=click.IntRange(min=0), default=0, show_default=True, help='First generator seed; dataset subset seed'),
        click.option('--trunc', 'truncation_psi', type=float, default=1, show_default=True, help='Generator: truncation psi'),
        click.option('--class', 'class_idx', type=click.IntRange(min=0), help='Generator: class index [default: a random class per seed]'),
        click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True, help='Generator: per-pixel noise'),
        click.option('--batch', 'batch_size', type=click.IntRange(min=1), default=32, show_default=True, help='Images per batch'),
        click.option('--workers', type=click.IntRange(min=0), default=2, show_default=True, help='Dataset: processes decoding images (0 = none)'),
        click.option('--device', type=click.Choice(DEVICE_CHOICES), default='auto', show_default=True, help='Where to run'),
        click.option('--trust-code', is_flag=True, help='Generator: ' + TRUST_CODE_HELP[:1].lower() + TRUST_CODE_HELP[1:]),
    ]
    for option in reversed(options):
        func = option(func)
    return func

#----------------------------------------------------------------------------

@main.command()
@source_options
def stats(source, num, seed, truncation_psi, class_idx, noise_mode, batch_size, workers, device, trust_code):
    """Print the mean and standard deviation of the 8-bit pixel values, for calc --mean/--std."""
    device = resolve_device(device)
    _, _, batches = open_source(source, num, seed, batch_size, workers, truncation_psi, class_idx, noise_mode, device, trust_code)
    moments = np.zeros(3)
    with torch.no_grad():
        for images in tqdm.tqdm(batches, desc='Stats', unit='batch', leave=False):
            x = images.astype(np.float64)
            moments += [x.size, x.sum(), np.square(x).sum()]
    mean = moments[1] / moments[0]
    click.echo(f'--mean={mean:g} --std={np.sqrt(max(moments[2] / moments[0] - mean**2, 0)):g}')

#----------------------------------------------------------------------------

@main.command()
@source_options
@click.option('--dest', help='Where to save the spectrum', required=True, metavar='NPZ')
@click.option('--interp', type=click.IntRange(min=1), default=4, show_default=True, help='Zero-padding factor of the FFT')
@click.option('--beta', type=click.FloatRange(min=0), default=8, show_default=True, help='Shape parameter of the Kaiser window')
@click.option('--mean', type=float, help='Whiten with this dataset mean (8-bit units, from `stats`) instead of per-image mean subtraction')
@click.option('--std', type=click.FloatRange(min=0, min_open=True), help='Whiten with this dataset standard deviation (with --mean)')
def calc(source, num, seed, truncation_psi, class_idx, noise_mode, batch_size, workers, device, trust_code, dest, interp, beta, mean, std):
    """Compute the average power spectrum of a dataset or a generator and save it as .npz."""
    if (mean is None) != (std is None):
        raise click.BadParameter('give both --mean and --std (from: avg_spectra.py stats), or neither', param_hint='--mean')
    if os.path.isdir(dest):
        raise click.BadParameter(f'{dest} is a folder; give a file name such as spectrum.npz', param_hint='--dest')
    device = resolve_device(device)
    height, width, batches = open_source(source, num, seed, batch_size, workers, truncation_psi, class_idx, noise_mode, device, trust_code)
    accumulator = SpectrumAccumulator(height, width, interp=interp, beta=beta, subtract_mean=(mean is None), device=device)
    with torch.no_grad():
        for images in tqdm.tqdm(batches, desc='Spectra', unit='batch', leave=False):
            accumulator.add(to_float(images, mean, std))
    extra = dict(image_size=height) if height == width else {} # The key StyleGAN3's tool reads.
    with dnnlib.util.atomic_write(dest) as f:
        np.savez(f, spectrum=accumulator.result(), image_shape=np.array([height, width]), num_images=accumulator.num_images,
            interp=interp, beta=beta, source=os.path.basename(source.rstrip('/')), **extra)
    click.echo(f'Averaged the spectra of {accumulator.num_images} images into {dest}')

#----------------------------------------------------------------------------

@main.command()
@click.argument('npz_file', metavar='NPZ')
@click.option('--output', help='PNG to write', required=True, metavar='PNG')
@click.option('--db-min', type=float, help='Power shown as black, in dB [default: maximum - 80]')
@click.option('--db-max', type=float, help='Power shown as white, in dB [default: maximum]')
@click.option('--scale', type=click.IntRange(min=1), default=1, show_default=True, help='Enlarge each bin to scale x scale pixels')
@click.option('--smooth', type=click.FloatRange(min=0), default=1.25, show_default=True, help='Gaussian smoothing, sigma in image-frequency bins (times interp)')
def heatmap(npz_file, output, db_min, db_max, scale, smooth):
    """Draw a spectrum as a centred heat map of log power (zero frequency in the middle)."""
    spectrum, interp = load_spectrum(npz_file)
    hmap = np.fft.fftshift(spectrum_db(spectrum, smooth * interp))
    db_max = float(hmap.max()) if db_max is None else db_max
    db_min = db_max - 80 if db_min is None else db_min
    if db_min >= db_max:
        raise click.BadParameter(f'--db-min ({db_min}) must lie below --db-max ({db_max})', param_hint='--db-min')
    image = PIL.Image.fromarray(heat_colors((hmap - db_min) / (db_max - db_min)), 'RGB')
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), PIL.Image.NEAREST)
    save_image(image, output)
    click.echo(f'Wrote {output}')

#----------------------------------------------------------------------------

@main.command()
@click.argument('npz_files', nargs=-1, required=True, metavar='NPZ...')
@click.option('--output', help='PNG to write', required=True, metavar='PNG')
@click.option('--db-min', type=float, help='Bottom of the power axis in dB [default: top - 100]')
@click.option('--db-max', type=float, help='Top of the power axis in dB [default: above the largest value]')
@click.option('--smooth', type=click.FloatRange(min=0), default=0, show_default=True, help='Gaussian smoothing, sigma in image-frequency bins (times interp)')
def slices(npz_files, output, db_min, db_max, smooth):
    """Plot the horizontal and diagonal profiles of one or more square spectra on one PNG."""
    loaded = [load_spectrum(path) for path in npz_files]
    for path, (spectrum, _interp) in zip(npz_files, loaded):
        if spectrum.shape[0] != spectrum.shape[1]:
            raise click.ClickException(f'{path}: slices need a square spectrum, got {spectrum.shape[1]}x{spectrum.shape[0]}')
    db_range = None
    if db_min is not None or db_max is not None:
        if db_min is None or db_max is None or db_min >= db_max:
            raise click.BadParameter('give both --db-min and --db-max, with --db-min below --db-max', param_hint='--db-min')
        db_range = (db_min, db_max)
    labels = [os.path.splitext(os.path.basename(path))[0] for path in npz_files]
    db_maps = [spectrum_db(spectrum, smooth * interp) for spectrum, interp in loaded]
    save_image(draw_slices(db_maps, labels, db_range), output)
    click.echo(f'Wrote {output}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main() # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
