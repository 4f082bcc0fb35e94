# Project an image into the latent space of a trained generator: optimise one w (broadcast to
# every layer) and the per-pixel noise maps so that the generated image matches the target
# under the LPIPS-style VGG16 distance (StyleGAN2 paper, appendix D). See docs/projector.md.

import copy
import math
import os

import click
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from metrics import metric_utils
from training import network_files
from training.inference import resolve_device

#----------------------------------------------------------------------------
# Learning rate at progress t in [0, 1]: cosine ramp-down over the last rampdown fraction, linear ramp-up over the first rampup.

def learning_rate_schedule(t, initial_learning_rate=0.1, lr_rampdown_length=0.25, lr_rampup_length=0.05):
    ramp = min(1.0, (1.0 - t) / lr_rampdown_length)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / lr_rampup_length)
    return initial_learning_rate * ramp

#----------------------------------------------------------------------------
# Noise regulariser: squared autocorrelation at a 1-pixel shift in x and y, at every scale down to 8x8.

def noise_regularization(noise_bufs):
    """Args: iterable of noise maps [H, W]. Returns: sum over maps and scales (each halved by 2x2
    average pooling while larger than 8x8) of mean(n * roll_x(n))^2 + mean(n * roll_y(n))^2."""
    reg_loss = 0.0
    for buf in noise_bufs:
        noise = buf[None, None, :, :] # [NCHW]
        while True:
            reg_loss += (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
            reg_loss += (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return reg_loss

#----------------------------------------------------------------------------
# LPIPS embedding of images in [0, 255] (float [N, C, H, W]); larger than 256 pixels is area-downsampled to 256.

def lpips_features(vgg16, images):
    if images.shape[2] > 256:
        images = F.interpolate(images, size=(256, 256), mode='area')
    if images.shape[1] == 1:
        images = images.repeat([1, 3, 1, 1])
    return vgg16(images, resize_images=False, return_lpips=True)

#----------------------------------------------------------------------------
# Mean and spread of W: w_avg [1, 1, w_dim] and the scalar w_std = sqrt(E|w - w_avg|^2) over random z.

def compute_w_stats(G, w_avg_samples, device):
    if not hasattr(G, 'mapping'):
        raise ValueError(f'The projector optimises a W latent; this {type(G).__module__}.{type(G).__name__} has no mapping '
            'network (StyleGAN2 and StyleGAN3 generators have one)')
    if G.c_dim != 0:
        raise ValueError(f'The projector works with unconditional networks; this one takes {G.c_dim}-dimensional labels')
    z_samples = np.random.RandomState(123).randn(w_avg_samples, G.z_dim)
    z = torch.from_numpy(z_samples).to(device=device, dtype=torch.float32)
    w_samples = G.mapping(z, torch.zeros([w_avg_samples, 0], device=device))[:, :1, :] # [N1C]
    w_samples = w_samples.to(torch.float64)
    w_avg = w_samples.mean(dim=0, keepdim=True) # [11C]
    w_std = ((w_samples - w_avg).square().sum() / w_avg_samples).sqrt().item()
    return w_avg.to(torch.float32), w_std

#----------------------------------------------------------------------------
# Optimise w and the noise maps to reproduce target (uint8 [C, H, W] at G's resolution).
# Returns ws [num_steps, num_ws, w_dim]: the broadcast w after each step.

def project(
    G,                                  # Generator with mapping, synthesis and noise_const buffers.
    target,                             # uint8 tensor [C, H, W], H = W = G.img_resolution.
    *,
    num_steps               = 1000,     # Optimisation steps.
    w_avg_samples           = 10000,    # z samples used for w_avg and w_std.
    initial_learning_rate   = 0.1,      # Peak Adam learning rate.
    initial_noise_factor    = 0.05,     # Initial w noise, relative to w_std.
    lr_rampdown_length      = 0.25,     # Fraction of steps of the cosine learning-rate ramp-down.
    lr_rampup_length        = 0.05,     # Fraction of steps of the linear learning-rate ramp-up.
    noise_ramp_length       = 0.75,     # Fraction of steps over which the w noise decays to zero.
    regularize_noise_weight = 1e5,      # Weight of the noise autocorrelation penalty.
    verbose                 = False,    # Print the distance and loss of every step.
    device                  = torch.device('cpu'),
    vgg16_url               = metric_utils.VGG16_URL, # LPIPS detector (URL, path or file name in the detector folder).
    step_fn                 = None,     # Called as step_fn(step, dist, loss) after every step; None = none.
):
    expected = (G.img_channels, G.img_resolution, G.img_resolution)
    if tuple(target.shape) != expected:
        raise ValueError(f'Target must be {list(expected)}: got {list(target.shape)}')
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    w_avg, w_std = compute_w_stats(G, w_avg_samples, device)
    noise_bufs = {name: buf for name, buf in G.synthesis.named_buffers() if 'noise_const' in name}

    # Target features.
    vgg16 = metric_utils.get_feature_detector(vgg16_url, device=device)
    with torch.no_grad():
        target_features = lpips_features(vgg16, target.unsqueeze(0).to(device=device, dtype=torch.float32))

    # Optimised variables: one w, and the noise maps (initialised at random).
    w_opt = w_avg.clone().detach().requires_grad_(True)
    w_out = torch.zeros([num_steps] + list(w_opt.shape[1:]), dtype=torch.float32, device=device)
    optimizer = torch.optim.Adam([w_opt] + list(noise_bufs.values()), betas=(0.9, 0.999), lr=initial_learning_rate)
    for buf in noise_bufs.values():
        buf[:] = torch.randn_like(buf)
        buf.requires_grad = True

    for step in range(num_steps):
        # Schedules.
        t = step / num_steps
        w_noise_scale = w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2
        lr = learning_rate_schedule(t, initial_learning_rate, lr_rampdown_length, lr_rampup_length)
        for param_group in optimizer.param_groups:
            param_group['lr'] = lr

        # Synthesise from the noisy w and measure the distance to the target.
        w_noise = torch.randn_like(w_opt) * w_noise_scale
        ws = (w_opt + w_noise).repeat([1, G.mapping.num_ws, 1])
        synth_images = (G.synthesis(ws, noise_mode='const') + 1) * (255 / 2)
        synth_features = lpips_features(vgg16, synth_images)
        dist = (target_features - synth_features).square().sum()
        loss = dist + noise_regularization(noise_bufs.values()) * regularize_noise_weight

        # Step, then renormalise the noise maps to zero mean and unit variance.
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for buf in noise_bufs.values():
                buf -= buf.mean()
                buf *= buf.square().mean().rsqrt()
        w_out[step] = w_opt.detach()[0]
        dist, loss = dist.item(), loss.item()
        if verbose:
            print(f'step {step + 1:>4d}/{num_steps}: dist {dist:<8.4g} loss {loss:<8.4g}', flush=True)
        if step_fn is not None:
            step_fn(step, dist, loss)

    return w_out.repeat([1, G.mapping.num_ws, 1])

#----------------------------------------------------------------------------
# Load an image of any size: centre-crop to a square, Lanczos-resize to the resolution; uint8 [H, W, C].

def load_target(path, resolution, channels):
    try:
        image = PIL.Image.open(path)
        image = image.convert('L' if channels == 1 else 'RGB')
    except (OSError, ValueError) as err:
        raise click.BadParameter(f'cannot read {path} as an image: {err}', param_hint='--target') from err
    w, h = image.size
    s = min(w, h)
    image = image.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2))
    image = image.resize((resolution, resolution), PIL.Image.LANCZOS)
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, np.newaxis] if array.ndim == 2 else array

#----------------------------------------------------------------------------
# uint8 [H, W, C] array -> PIL image (grayscale or RGB).

def to_pil(array):
    return PIL.Image.fromarray(array[:, :, 0], 'L') if array.shape[2] == 1 else PIL.Image.fromarray(array, 'RGB')

#----------------------------------------------------------------------------
# Generator output for ws [N, num_ws, w_dim] as uint8 [N, H, W, C].

def synthesize_uint8(G, ws):
    img = G.synthesis(ws, noise_mode='const')
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()

#----------------------------------------------------------------------------
# proj.mp4: target and projection side by side for every step; needs imageio + imageio-ffmpeg.

def write_video(path, G, target_uint8, projected_w_steps):
    try:
        import imageio # pylint: disable=import-outside-toplevel
        video = imageio.get_writer(path, mode='I', fps=10, codec='libx264', bitrate='16M')
    except (ImportError, ValueError, RuntimeError) as err:
        print(f'Note: no video written ({type(err).__name__}: {err}); install imageio and imageio-ffmpeg for --save-video.')
        return False
    print(f'Saving optimization progress video "{path}"')
    for projected_w in projected_w_steps:
        synth = synthesize_uint8(G, projected_w.unsqueeze(0))[0]
        frame = np.concatenate([target_uint8, synth], axis=1)
        video.append_data(frame.repeat(3, axis=2) if frame.shape[2] == 1 else frame)
    video.close()
    return True

#----------------------------------------------------------------------------

@click.command()
@click.option('--network', 'network_pkl', help='Network pickle, .safetensors file or URL', metavar='PATH', required=True)
@click.option('--target', 'target_fname', help='Target image (any size: centre-cropped and resized)', metavar='FILE', required=True)
@click.option('--num-steps', help='Number of optimization steps', type=click.IntRange(min=1), default=1000, show_default=True)
@click.option('--seed', help='Random seed', type=int, default=303, show_default=True)
@click.option('--save-video', help='Save an mp4 video of the optimization progress', type=bool, default=True, show_default=True)
@click.option('--outdir', help='Where to save the output images', metavar='DIR', required=True)
@click.option('--w-avg-samples', help='Number of z samples for the mean and spread of W', type=click.IntRange(min=2), default=10000, show_default=True)
@click.option('--device', help='Device', type=click.Choice(['auto', 'cpu', 'cuda', 'mps']), default='auto', show_default=True)
@click.option('--detector-dir', help=f'Folder holding vgg16.pt (sets ${metric_utils.DETECTOR_DIR_ENV})', metavar='DIR')
@click.option('--trust-code', help='Load a pickle by running the code stored in it (only for files from authors you trust; see docs/pickles.md)', is_flag=True)
def run_projection(network_pkl, target_fname, num_steps, seed, save_video, outdir, w_avg_samples, device, detector_dir, trust_code):
    """Project an image into the W latent space of a pretrained network.

    \b
    python projector.py --outdir=out --target=~/mytargetimg.png --network=ffhq.pkl
    """
    np.random.seed(seed)
    torch.manual_seed(seed)
    device = resolve_device(device)
    if detector_dir is not None:
        if not os.path.isdir(detector_dir):
            raise click.BadParameter(f'not a folder: {detector_dir}', param_hint='--detector-dir')
        os.environ[metric_utils.DETECTOR_DIR_ENV] = os.path.abspath(detector_dir)

    # Load the network and the target.
    print(f'Loading networks from "{network_pkl}"...')
    try:
        G = network_files.load_network_pkl(network_pkl, trust_code=trust_code, log=print)['G_ema'].requires_grad_(False).to(device)
    except (network_files.NetworkLoadError, OSError) as err:
        raise click.ClickException(str(err)) from err
    target_uint8 = load_target(target_fname, G.img_resolution, G.img_channels)

    # Optimise.
    try:
        projected_w_steps = project(G, torch.from_numpy(target_uint8.transpose(2, 0, 1).copy()), num_steps=num_steps,
            w_avg_samples=w_avg_samples, device=device, verbose=True)
    except (FileNotFoundError, ValueError) as err: # Missing detector, conditional network, ...
        raise click.ClickException(str(err)) from err

    # Save the target, the result and its w (and the video).
    os.makedirs(outdir, exist_ok=True)
    if save_video:
        with torch.no_grad():
            write_video(os.path.join(outdir, 'proj.mp4'), G, target_uint8, projected_w_steps)
    to_pil(target_uint8).save(os.path.join(outdir, 'target.png'))
    projected_w = projected_w_steps[-1]
    with torch.no_grad():
        to_pil(synthesize_uint8(G, projected_w.unsqueeze(0))[0]).save(os.path.join(outdir, 'proj.png'))
    np.savez(os.path.join(outdir, 'projected_w.npz'), w=projected_w.unsqueeze(0).cpu().numpy())

#----------------------------------------------------------------------------

if __name__ == '__main__':
    run_projection() # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
