# Equivariance metrics of StyleGAN3 (Karras et al. 2021, "Alias-Free Generative Adversarial Networks",
# sec. 4 and appendix E): EQ-T and EQ-R, the PSNR in dB (peak-to-peak 2, images in [-1, 1]) between
#   - the generator's output with its input moved by a transform (G.synthesis.input.transform), and
#   - the untransformed output moved by the same transform afterwards,
# over the pixels where the second is defined. Integer translations move whole pixels (exact); fractional
# ones interpolate with a Lanczos-3 kernel; rotations go through a 4x Lanczos up-sampling, bilinear
# rotation and a 4x Lanczos down-sampling, and the generator's rotated output passes through the same
# up/down filters (rotation angle 0) so that both sides carry the same blur. See docs/stylegan3.md.

import copy

import numpy as np
import torch

from torch_utils.ops import upfirdn2d

#----------------------------------------------------------------------------
# Lanczos kernel sinc(u) sinc(u / a) on |u| < a (0 outside).

def lanczos(u, a=3):
    u = torch.as_tensor(u, dtype=torch.float64)
    return torch.where(u.abs() < a, torch.sinc(u) * torch.sinc(u / a), torch.zeros_like(u))

#----------------------------------------------------------------------------
# Shift along `dim` by an integer k (content moves toward higher indices), zeros coming in.

def _shift(x, k, dim):
    k = int(k)
    n = x.shape[dim]
    out = torch.zeros_like(x)
    if abs(k) >= n:
        return out
    src = x.narrow(dim, max(-k, 0), n - abs(k))
    out.narrow(dim, max(k, 0), n - abs(k)).copy_(src)
    return out

#----------------------------------------------------------------------------
# Images translated by whole pixels (tx_px along x, ty_px along y) and the mask of defined pixels.

def integer_translation(x, tx_px, ty_px):
    y = _shift(_shift(x, tx_px, 3), ty_px, 2)
    mask = _shift(_shift(torch.ones_like(x), tx_px, 3), ty_px, 2)
    return y, mask

#----------------------------------------------------------------------------
# Images translated by d pixels along `dim` with Lanczos-a interpolation (taps normalised to sum 1):
# y[i] = sum_j L(f + j) x[i - k + j], d = k + f, k = floor(d); returns (y, mask of pixels whose taps
# all lie inside).

def _fractional_shift(x, d, dim, a=3):
    k = int(np.floor(d))
    f = d - k
    js = torch.arange(-a, a, dtype=torch.float64)
    taps = lanczos(f + js, a)
    taps = (taps / taps.sum()).to(x.dtype)
    y = sum(t * _shift(x, k - int(j), dim) for t, j in zip(taps, js.tolist()))
    mask = torch.ones_like(x)
    for j in [-a, a - 1]:
        mask = mask * _shift(torch.ones_like(x), k - j, dim)
    return y, mask

#----------------------------------------------------------------------------
# Images translated by (tx_px, ty_px) fractional pixels (x then y) and the mask of defined pixels.

def fractional_translation(x, tx_px, ty_px, a=3):
    y, mask_x = _fractional_shift(x, tx_px, 3, a)
    y, mask_y = _fractional_shift(y, ty_px, 2, a)
    return y, mask_x * mask_y

#----------------------------------------------------------------------------
# Even-length Lanczos-a filter for resampling by `factor` with pixel centres aligned.

def _resampling_filter(factor, a=3, device='cpu'):
    k = torch.arange(2 * a * factor, dtype=torch.float64)
    f = lanczos((k - (2 * a * factor - 1) / 2) / factor, a)
    return (f / f.sum()).to(device=device, dtype=torch.float32)

#----------------------------------------------------------------------------
# Images rotated by `angle` radians about their centre (ref(p) = x(R(-angle) p), x and y in image
# units): up-sample 4x, rotate bilinearly, down-sample 4x, all with Lanczos-3 filters. angle 0 gives
# the same filtering without rotation.

def lanczos_rotation(x, angle, up=4, a=3):
    f = _resampling_filter(up, a, x.device)
    y = upfirdn2d.upsample2d(x, f, up=up)
    c, s = float(np.cos(-angle)), float(np.sin(-angle))
    theta = torch.tensor([[c, -s, 0], [s, c, 0]], dtype=y.dtype, device=y.device).unsqueeze(0)
    grid = torch.nn.functional.affine_grid(theta.expand(y.shape[0], 2, 3), list(y.shape), align_corners=False)
    y = torch.nn.functional.grid_sample(y, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
    return upfirdn2d.downsample2d(y, f, down=up)

#----------------------------------------------------------------------------
# Pixels whose rotated sampling position, and the pixel itself, lie at least `margin_px` inside the
# image (so no filter tap of either side reaches past the border).

def rotation_mask(shape, angle, margin_px, device='cpu'):
    _n, _c, h, w = shape
    py, px = torch.meshgrid((torch.arange(h, device=device) + 0.5) / h - 0.5, (torch.arange(w, device=device) + 0.5) / w - 0.5, indexing='ij')
    c, s = np.cos(-angle), np.sin(-angle)
    qx, qy = c * px - s * py, s * px + c * py
    limit_x, limit_y = 0.5 - margin_px / w, 0.5 - margin_px / h
    inside = (qx.abs() <= limit_x) & (qy.abs() <= limit_y) & (px.abs() <= limit_x) & (py.abs() <= limit_y)
    return inside.to(torch.float32).expand(shape)

#----------------------------------------------------------------------------
# The input transform that moves the output by (tx, ty) image units and rotates it by `angle`:
# it maps output coordinates to input coordinates, so it is the inverse motion.

def input_transform(tx=0.0, ty=0.0, angle=0.0):
    c, s = np.cos(-angle), np.sin(-angle)
    m = torch.eye(3, dtype=torch.float64)
    m[0, 0], m[0, 1], m[1, 0], m[1, 1] = c, -s, s, c
    m[0, 2], m[1, 2] = -tx, -ty
    return m.to(torch.float32)

#----------------------------------------------------------------------------
# PSNR in dB with peak-to-peak 2 from [sum of masked squared errors, number of masked values].

def psnr_from_sums(sums):
    mse = float(sums[0]) / max(float(sums[1]), 1e-30)
    return float(20 * np.log10(2) - 10 * np.log10(max(mse, 1e-30)))

#----------------------------------------------------------------------------
# EQ-T (integer or fractional) and EQ-R of opts.G over num_samples latents; {name: PSNR dB}.

def compute_equivariance_metrics(opts, num_samples, batch_size, translate_max=0.125, rotate_max=1.0,
        compute_eqt_int=False, compute_eqt_frac=False, compute_eqr=False):
    G = opts.G
    if G is None or not hasattr(getattr(getattr(G, 'synthesis', None), 'input', None), 'transform'):
        raise ValueError('The equivariance metrics (eqt50k_int, eqt50k_frac, eqr50k) need a StyleGAN3 generator, '
            'whose synthesis input has a transform (G.synthesis.input.transform).')
    G = copy.deepcopy(G).eval().requires_grad_(False).to(opts.device)
    num_samples = opts.cap(num_samples)
    names = [n for n, on in [('eqt_int', compute_eqt_int), ('eqt_frac', compute_eqt_frac), ('eqr', compute_eqr)] if on]
    sums = {n: torch.zeros([2], dtype=torch.float64, device=opts.device) for n in names}
    gen = torch.Generator().manual_seed(123 + opts.rank)
    res = G.img_resolution
    progress = opts.progress.sub(tag='eq sampling', num_items=num_samples)

    with torch.no_grad():
        for batch_start in range(0, num_samples, batch_size * opts.num_gpus):
            progress.update(batch_start)
            z = torch.randn([batch_size, G.z_dim], generator=gen).to(opts.device)
            c = _labels(G, batch_size, gen, opts.device)
            ws = G.mapping(z=z, c=c)
            G.synthesis.input.transform.copy_(torch.eye(3))
            orig = G.synthesis(ws, noise_mode='const').to(torch.float64)
            for name in names:
                img, ref, mask = _one_pair(G, ws, orig, name, res, translate_max, rotate_max, gen)
                sums[name] += torch.stack([((ref - img).square() * mask).sum(), mask.sum()])
    progress.update(num_samples)

    results = {}
    for name in names:
        if opts.num_gpus > 1:
            torch.distributed.all_reduce(sums[name])
        results[name] = psnr_from_sums(sums[name].cpu())
    return results

#----------------------------------------------------------------------------
# One transformed generation and the reference it is compared with: (img, ref, mask), float64.

def _one_pair(G, ws, orig, name, res, translate_max, rotate_max, gen):
    if name in ('eqt_int', 'eqt_frac'):
        t = (torch.rand([2], generator=gen, dtype=torch.float64) * 2 - 1) * translate_max
        if name == 'eqt_int':
            t = (t * res).round() / res
        G.synthesis.input.transform.copy_(input_transform(tx=float(t[0]), ty=float(t[1])))
        img = G.synthesis(ws, noise_mode='const').to(torch.float64)
        move = integer_translation if name == 'eqt_int' else fractional_translation
        ref, mask = move(orig, int(round(float(t[0]) * res)) if name == 'eqt_int' else float(t[0]) * res,
            int(round(float(t[1]) * res)) if name == 'eqt_int' else float(t[1]) * res)
        return img, ref, mask.to(torch.float64)
    angle = float((torch.rand([], generator=gen, dtype=torch.float64) * 2 - 1) * (rotate_max * np.pi))
    G.synthesis.input.transform.copy_(input_transform(angle=angle))
    img = lanczos_rotation(G.synthesis(ws, noise_mode='const').to(torch.float32), 0.0).to(torch.float64)
    ref = lanczos_rotation(orig.to(torch.float32), angle).to(torch.float64)
    mask = rotation_mask(orig.shape, angle, margin_px=4, device=orig.device).to(torch.float64)
    return img, ref, mask

#----------------------------------------------------------------------------
# Random one-hot labels for a conditional generator (zeros [N, 0] otherwise).

def _labels(G, batch_size, gen, device):
    if G.c_dim == 0:
        return torch.zeros([batch_size, 0], device=device)
    idx = torch.randint(G.c_dim, [batch_size], generator=gen)
    return torch.nn.functional.one_hot(idx, G.c_dim).to(device=device, dtype=torch.float32)

#----------------------------------------------------------------------------
