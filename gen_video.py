# Latent-interpolation videos: a grid of images whose latents pass through one keyframe per seed
# and loop smoothly (a periodic cubic spline in W space). Writes a video (optional `video` extra:
# imageio + imageio-ffmpeg) or a folder of PNG frames. See docs/tools-video-spectra.md.

import os
import re

import click
import numpy as np
import scipy.interpolate
import torch
import tqdm

import dnnlib
from training import networks_biggan
from training.inference import DEVICE_CHOICES, TRUST_CODE_HELP, IntRangeList, is_stylegan, load_generator, make_labels
from training.inference import resolve_device, save_png, seeds_to_z, to_uint8

VIDEO_HINT = 'writing a video needs imageio and imageio-ffmpeg: pip install .[video] (or write PNG frames with --png-frames)'

#----------------------------------------------------------------------------
# Click callback for --grid: 'WxH' (or 'W,H') -> (W, H), both at least 1.

def parse_grid(ctx, param, value):
    if isinstance(value, tuple):
        return value
    match = re.fullmatch(r'\s*(\d+)\s*[x,]\s*(\d+)\s*', str(value))
    if match is None or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise click.BadParameter(f'{value!r} is not a grid size such as 4x2 (columns x rows, both at least 1)', ctx, param)
    return int(match.group(1)), int(match.group(2))

#----------------------------------------------------------------------------
# Keyframe seeds as in StyleGAN3's tool: the seed list is cycled to fill every keyframe of every
# cell, optionally shuffled, and laid out [grid_h, grid_w, num_keyframes] (keyframes vary fastest).

def layout_seeds(seeds, grid_w, grid_h, num_keyframes, shuffle_seed=None):
    count = grid_w * grid_h * num_keyframes
    all_seeds = np.array([seeds[idx % len(seeds)] for idx in range(count)], dtype=np.int64)
    if shuffle_seed is not None:
        np.random.RandomState(shuffle_seed).shuffle(all_seeds)
    return all_seeds.reshape(grid_h, grid_w, num_keyframes)

#----------------------------------------------------------------------------
# Keyframe latents [grid_h, grid_w, K, ...] as float64 numpy: ws = mapping(z, c, psi) for generators
# with a mapping/synthesis split; for the others (BigGAN) z itself, truncated once per keyframe.

def keyframe_latents(G, seed_grid, c, truncation_psi, device):
    z = torch.from_numpy(seeds_to_z(seed_grid.reshape(-1), G.z_dim)).to(device=device, dtype=torch.float32)
    c = c[:1].expand(z.shape[0], -1)
    if is_stylegan(G):
        latents = G.mapping(z, c, truncation_psi=truncation_psi)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed_grid.reshape(-1)[0])) # Redraws of out-of-range z are reproducible.
            try:
                latents = networks_biggan.truncate_z(z.cpu(), truncation_psi)
            except ValueError as err:
                raise click.BadParameter(str(err), param_hint='--trunc') from None
    return latents.cpu().numpy().astype(np.float64).reshape(*seed_grid.shape, *latents.shape[1:])

#----------------------------------------------------------------------------
# Periodic cubic spline through the keyframes along axis 2: time in keyframe units, keyframe j
# exactly at t = j, period K; twice continuously differentiable everywhere, the loop included.

def periodic_spline(keyframes):
    num_keyframes = keyframes.shape[2]
    values = np.concatenate([keyframes, keyframes[:, :, :1]], axis=2)
    return scipy.interpolate.CubicSpline(np.arange(num_keyframes + 1), values, axis=2, bc_type='periodic', extrapolate='periodic')

#----------------------------------------------------------------------------
# One frame: the latents of every cell at time t rendered in batches and tiled into [gh*H, gw*W, C] uint8.

def render_frame(G, spline, t, c, noise_mode, batch_size, device):
    latents = spline(t) # [gh, gw, ...]
    grid_h, grid_w = latents.shape[:2]
    latents = torch.from_numpy(latents.reshape(grid_h * grid_w, *latents.shape[2:])).to(device=device, dtype=torch.float32)
    images = []
    for start in range(0, latents.shape[0], batch_size):
        chunk = latents[start : start + batch_size]
        if is_stylegan(G):
            images.append(G.synthesis(chunk, noise_mode=noise_mode))
        else:
            images.append(G(chunk, c[:1].expand(chunk.shape[0], -1), truncation_psi=1))
    images = to_uint8(torch.cat(images)) # [NHWC]
    _, height, width, channels = images.shape
    grid = images.reshape(grid_h, grid_w, height, width, channels).transpose(0, 2, 1, 3, 4)
    return grid.reshape(grid_h * height, grid_w * width, channels)

#----------------------------------------------------------------------------
# All frames in order: num_keyframes * w_frames of them, frame i at time i / w_frames.

def iter_frames(G, spline, num_frames, w_frames, c, noise_mode, batch_size, device):
    for frame_idx in tqdm.tqdm(range(num_frames), desc='Rendering', unit='frame', leave=False):
        yield render_frame(G, spline, frame_idx / w_frames, c, noise_mode, batch_size, device)

#----------------------------------------------------------------------------
# The imageio module when the `video` extra is installed, else a one-line error.

def require_video_writer():
    try:
        import imageio
        import imageio_ffmpeg # noqa: F401 (the ffmpeg plugin imageio uses)
    except ImportError:
        raise click.ClickException(VIDEO_HINT) from None
    return imageio

#----------------------------------------------------------------------------
# Write frames as an H.264 video through a hidden temporary file beside `path`, renamed on success.

def write_video(frames, path, fps, imageio):
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f'.{name}.{os.getpid()}.tmp{os.path.splitext(name)[1]}')
    try:
        writer = imageio.get_writer(tmp, mode='I', fps=fps, codec='libx264', bitrate='12M', macro_block_size=1)
        with writer:
            for frame in frames:
                writer.append_data(np.repeat(frame, 3, axis=2) if frame.shape[2] == 1 else frame)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise

# Write frames as frame000000.png, ... into a folder that appears complete in one rename.
def write_png_frames(frames, folder):
    with dnnlib.util.atomic_folder(folder) as tmp:
        for frame_idx, frame in enumerate(frames):
            save_png(frame, os.path.join(tmp, f'frame{frame_idx:06d}.png'))

#----------------------------------------------------------------------------
# Check the output path for the chosen mode before any work is done.

def check_output(output, png_frames):
    if png_frames:
        if os.path.isfile(output) or (os.path.isdir(output) and os.listdir(output)):
            raise click.BadParameter(f'{output} exists and is not an empty folder; PNG frames go into a new folder', param_hint='--output')
        return None
    if os.path.isdir(output):
        raise click.BadParameter(f'{output} is a folder; give a video file name such as lerp.mp4, or add --png-frames', param_hint='--output')
    if not os.path.splitext(output)[1]:
        raise click.BadParameter(f'{output} has no extension; give a video file name such as lerp.mp4', param_hint='--output')
    return require_video_writer()

#----------------------------------------------------------------------------
# Number of keyframes: given, or len(seeds) / cells when the seeds fill the grid evenly.

def resolve_num_keyframes(num_keyframes, seeds, grid_w, grid_h):
    if num_keyframes is not None:
        return num_keyframes
    if len(seeds) % (grid_w * grid_h) != 0:
        raise click.BadParameter(f'{len(seeds)} seeds do not fill a {grid_w}x{grid_h} grid evenly; give a multiple of '
            f'{grid_w * grid_h} seeds or set --num-keyframes', param_hint='--seeds')
    return len(seeds) // (grid_w * grid_h)

#----------------------------------------------------------------------------

@click.command()
@click.option('--network', 'network_pkl', help='Network pickle or .safetensors: path or URL', required=True, metavar='PATH')
@click.option('--seeds', type=IntRangeList(), help='Keyframe seeds, e.g. 0-31', required=True)
@click.option('--shuffle-seed', type=click.IntRange(min=0, max=2**32 - 1), help='Shuffle the keyframe seeds with this seed')
@click.option('--grid', type=click.UNPROCESSED, callback=parse_grid, default='1x1', show_default=True, help='Grid size, columns x rows', metavar='WxH')
@click.option('--num-keyframes', type=click.IntRange(min=1), help='Keyframes per cell [default: seeds / cells]')
@click.option('--w-frames', type=click.IntRange(min=1), default=120, show_default=True, help='Frames from one keyframe to the next')
@click.option('--trunc', 'truncation_psi', type=float, default=1, show_default=True, help='Truncation psi')
@click.option('--class', 'class_idx', type=click.IntRange(min=0), help='Class index (conditional networks only)')
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True, help='Per-pixel noise (StyleGAN2)')
@click.option('--output', help='Video file (.mp4, ...), or the folder for --png-frames', required=True, metavar='PATH')
@click.option('--png-frames', is_flag=True, help='Write frame000000.png, ... into the --output folder instead of a video')
@click.option('--fps', type=click.IntRange(min=1), default=60, show_default=True, help='Video frame rate')
@click.option('--device', type=click.Choice(DEVICE_CHOICES), default='auto', show_default=True, help='Where to run')
@click.option('--batch', 'batch_size', type=click.IntRange(min=1), default=8, show_default=True, help='Images per forward pass')
@click.option('--trust-code', is_flag=True, help=TRUST_CODE_HELP)
def generate_video_cmd(network_pkl, seeds, shuffle_seed, grid, num_keyframes, w_frames, truncation_psi, class_idx,
        noise_mode, output, png_frames, fps, device, batch_size, trust_code):
    """Render a latent-interpolation video: each grid cell moves through one keyframe per seed and loops.

    \b
    python gen_video.py --output=lerp.mp4 --trunc=1 --seeds=0-31 --grid=4x2 --network=stylegan3-r.pkl
    python gen_video.py --output=frames --png-frames --seeds=0-2 --w-frames=30 --network=snapshot.pkl
    """
    grid_w, grid_h = grid
    num_keyframes = resolve_num_keyframes(num_keyframes, seeds, grid_w, grid_h)
    imageio = check_output(output, png_frames)
    device = resolve_device(device)
    G = load_generator(network_pkl, device, trust_code=trust_code)
    c = make_labels(G, class_idx, 1, device)

    with torch.no_grad():
        seed_grid = layout_seeds(seeds, grid_w, grid_h, num_keyframes, shuffle_seed)
        spline = periodic_spline(keyframe_latents(G, seed_grid, c, truncation_psi, device))
        num_frames = num_keyframes * w_frames
        frames = iter_frames(G, spline, num_frames, w_frames, c, noise_mode, batch_size, device)
        if png_frames:
            write_png_frames(frames, output)
        else:
            write_video(frames, output, fps, imageio)
    click.echo(f'Wrote {num_frames} frames to {output}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    generate_video_cmd() # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
