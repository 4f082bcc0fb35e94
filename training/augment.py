# Adaptive discriminator augmentation (ADA): the augmentation pipeline of Karras et al. 2020,
# "Training Generative Adversarial Networks with Limited Data", Appendix B.
#
# Every operation fires independently per image with probability (op multiplier) * p, where
# p is the adaptive augmentation strength held in the buffer `AugmentPipe.p`. The whole
# pipeline is differentiable with respect to the images, so G can be trained through it.
# See docs/augment.md.

import math

import numpy as np
import torch

from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import conv2d_gradfix
from torch_utils.ops import grid_sample_gradfix
from torch_utils.ops import upfirdn2d

#----------------------------------------------------------------------------
# Named pipelines (the values of train.py --augpipe): constructor keywords of AugmentPipe.

_blit   = dict(xflip=1, rotate90=1, xint=1)
_geom   = dict(scale=1, rotate=1, aniso=1, xfrac=1)
_color  = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
_filter = dict(imgfilter=1)
_noise  = dict(noise=1)
_cutout = dict(cutout=1)

augpipe_specs = {
    'blit':   dict(_blit),
    'geom':   dict(_geom),
    'color':  dict(_color),
    'filter': dict(_filter),
    'noise':  dict(_noise),
    'cutout': dict(_cutout),
    'bg':     dict(_blit, **_geom),
    'bgc':    dict(_blit, **_geom, **_color),
    'bgcf':   dict(_blit, **_geom, **_color, **_filter),
    'bgcfn':  dict(_blit, **_geom, **_color, **_filter, **_noise),
    'bgcfnc': dict(_blit, **_geom, **_color, **_filter, **_noise, **_cutout),
}

#----------------------------------------------------------------------------
# 2x resampling lowpass: a 12-tap Kaiser-windowed half-band sinc (cutoff pi/2 of the fine
# grid). Each polyphase component is normalised to sum 1/2, so 2x up- and down-sampling
# keep a constant image exactly constant.

def design_resampling_filter(num_taps=12, beta=6.0):
    t = np.arange(num_taps) - (num_taps - 1) / 2   # Tap positions on the fine grid (half-integers).
    taps = np.sinc(t / 2) * np.kaiser(num_taps, beta)
    taps[0::2] *= 0.5 / taps[0::2].sum()
    taps[1::2] *= 0.5 / taps[1::2].sum()
    return taps

#----------------------------------------------------------------------------
# Filter bank for image-space filtering: four zero-phase 1-D bands built by the a-trous
# scheme from the symmetric pair lowpass h = [1, 2, 1] / 4, highpass delta - h. With the
# lowpasses L1 = h, L2 = L1 * up2(h), L3 = L2 * up4(h) (half-amplitude cutoffs pi/2, pi/4,
# pi/8) the bands are L3, L2 - L3, L1 - L2, delta - L1, i.e. [0, pi/8], [pi/8, pi/4],
# [pi/4, pi/2], [pi/2, pi]. They sum to delta (perfect reconstruction). Returns [4, 15].

def design_filter_bank():
    h = np.array([1, 2, 1]) / 4
    lowpass = [np.array([1.0])]
    for level in range(3):
        h_up = np.zeros(2 * 2 ** level + 1)
        h_up[::2 ** level] = h                      # h with 2^level - 1 zeros between taps.
        lowpass.append(np.convolve(lowpass[-1], h_up))
    size = len(lowpass[-1])
    centred = [np.pad(f, ((size - len(f)) // 2, (size - len(f)) // 2)) for f in lowpass]
    return np.stack([centred[3], centred[2] - centred[3], centred[1] - centred[2], centred[0] - centred[1]])

#----------------------------------------------------------------------------
# Band cross-energy matrix A (normalised so that sum(A) = 1) of the filter bank under the
# power spectrum s(w) = 1/w per axis (natural images) sampled at the nonzero frequencies
# w_k = 2 pi k / size of a size-pixel image. For band gains g the separable 2-D filter
# Hg(wx) Hg(wy), Hg = sum_i g_i B_i, multiplies the energy of such an image (mean removed)
# by (g^T A g)^2, so dividing g by sqrt(g^T A g) keeps it.

def filter_bank_energy(bank, size=256):
    w = 2 * np.pi * np.arange(1, size // 2 + 1) / size
    m = np.arange(bank.shape[1]) - bank.shape[1] // 2
    response = bank @ np.cos(m[:, None] * w[None, :])   # [band, freq], real (zero phase).
    energy = (response[:, None, :] * response[None, :, :] / w).sum(axis=2)
    return energy / energy.sum()

#----------------------------------------------------------------------------
# Batched matrices from per-image entries: rows of python numbers or [N] tensors.

def _matrix(rows, ref):
    elems = [x if isinstance(x, torch.Tensor) else torch.full_like(ref, x) for row in rows for x in row]
    return torch.stack(elems, dim=-1).reshape(ref.shape + (len(rows), len(rows[0])))

# 2-D translation.

def _translate2d(tx, ty, ref):
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], ref)

# 2-D scaling.

def _scale2d(sx, sy, ref):
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], ref)

# 2-D rotation from its cosine and sine.

def _rotate2d(cos, sin, ref):
    return _matrix([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], ref)

# Colour offset t added to all three channels.

def _translate3d(t, ref):
    return _matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], ref)

# Colour scaling by s (about 0).

def _scale3d(s, ref):
    return _matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], ref)

#----------------------------------------------------------------------------
# 4x4 colour matrices acting on the luma axis v = [1, 1, 1] / sqrt(3): rotation about it
# by theta (Rodrigues), and the linear map a * v v^T + b * (I - v v^T).

# Hue rotation by theta about v.

def _rotate_luma(theta, ref):
    c, s = torch.cos(theta), torch.sin(theta)
    d, o = c + (1 - c) / 3, (1 - c) / 3          # Diagonal and symmetric off-diagonal parts.
    k = s / math.sqrt(3)                          # Skew part: sin(theta) * [v]x.
    return _matrix([[d, o - k, o + k, 0], [o + k, d, o - k, 0], [o - k, o + k, d, 0], [0, 0, 0, 1]], ref)

# Luma scaled by a, chroma by b.

def _luma_chroma(a, b, ref):
    d, o = (a + 2 * b) / 3, (a - b) / 3
    return _matrix([[d, o, o, 0], [o, d, o, 0], [o, o, d, 0], [0, 0, 0, 1]], ref)

#----------------------------------------------------------------------------
# Reflect an integer index tensor into [0, size) with period 2 * (size - 1) (the edge pixel
# is not repeated, as in numpy's and torch's 'reflect' padding), for any distance outside.

def _reflect_index(i, size):
    period = 2 * (size - 1)
    i = i.remainder(period)
    return torch.where(i >= size, period - i, i)

#----------------------------------------------------------------------------
# Reflect-pad [N, C, H, W] images by px columns and py rows on each side (any amount).

def _reflect_pad(images, px, py):
    _, _, H, W = images.shape
    iy = _reflect_index(torch.arange(-py, H + py, device=images.device), H)
    ix = _reflect_index(torch.arange(-px, W + px, device=images.device), W)
    return images.index_select(2, iy).index_select(3, ix)

#----------------------------------------------------------------------------
# Random draws for one batch. With debug_percentile = q in [0, 1] every draw is replaced by
# its q-quantile and every op with a nonzero probability fires (for visualisation).

class _Sampler:
    # n images on device; debug_percentile None or q in [0, 1].
    def __init__(self, n, device, debug_percentile=None):
        self.n, self.device, self.q = n, device, debug_percentile

    # Bool [N]: which images apply an op of the given probability.
    def gate(self, prob):
        if self.q is not None:
            return torch.full([self.n], prob > 0, device=self.device)
        return torch.rand([self.n], device=self.device) < prob

    # Uniform in [lo, hi), shape [N] or [N, cols].
    def uniform(self, lo, hi, cols=None):
        shape = [self.n] if cols is None else [self.n, cols]
        if self.q is not None:
            return torch.full(shape, lo + (hi - lo) * self.q, device=self.device)
        return torch.rand(shape, device=self.device) * (hi - lo) + lo

    # Normal with mean 0 and the given std, shape [N] or [N, cols].
    def normal(self, std, cols=None):
        shape = [self.n] if cols is None else [self.n, cols]
        if self.q is not None:
            q = min(max(self.q, 1e-6), 1 - 1e-6)
            return torch.full(shape, std * math.sqrt(2) * torch.erfinv(torch.tensor(2 * q - 1)).item(), device=self.device)
        return torch.randn(shape, device=self.device) * std

    # Integer in {0, ..., k - 1}, shape [N], as float.
    def choice(self, k):
        return torch.floor(self.uniform(0, k)).clamp(max=k - 1)

#----------------------------------------------------------------------------
# Exact pixel blit: out(x) = in(G x) for an inverse transform G [N, 3, 3] whose 2x2 part
# is a signed permutation and whose translation is integer, in centred pixel coordinates
# (x-flip, 90-degree rotations, integer translations); outside pixels are reflected.
# A pure gather, no resampling.

def blit_images(images, G):
    """Args:
        images: [N, C, H, W] tensor.
        G:      [N, 3, 3] inverse transforms (output -> input pixel, centred coordinates).

    Returns:
        [N, C, H, W] tensor of pixels copied from `images`.
    """
    N, C, H, W = images.shape
    x2 = torch.arange(W, device=images.device, dtype=torch.float32) * 2 - (W - 1)  # Doubled centred coordinates.
    y2 = torch.arange(H, device=images.device, dtype=torch.float32) * 2 - (H - 1)

    # Source index along one axis: each depends on the output x or the output y only.
    def source(row, size):
        t = G[:, row, 2:3] * 2 + (size - 1)
        from_x = _reflect_index(((G[:, row, 0:1] * x2 + t) / 2).round().long(), size)  # [N, W]
        from_y = _reflect_index(((G[:, row, 1:2] * y2 + t) / 2).round().long(), size)  # [N, H]
        return torch.where(G[:, row, 0, None, None] != 0, from_x[:, None, :], from_y[:, :, None])  # [N, H, W]

    index = (source(1, H) * W + source(0, W)).reshape(N, 1, H * W).expand(N, C, H * W)
    return images.reshape(N, C, H * W).gather(2, index).reshape(N, C, H, W)

#----------------------------------------------------------------------------
# Geometric resampling out(x) = in(G x) for a general inverse transform G [N, 3, 3] in
# centred pixel coordinates, anti-aliased as in ADA: reflect-pad, upsample 2x with the
# lowpass f, bilinear grid_sample in the upsampled space, filter and downsample 2x.

def resample_images(images, G, f):
    """Args:
        images: [N, C, H, W] float tensor.
        G:      [N, 3, 3] float32 inverse transforms (output -> input pixel, centred coordinates).
        f:      1-D even-length lowpass taps for the 2x up- and down-sampling (float32 tensor).

    Returns:
        [N, C, H, W] tensor, differentiable w.r.t. images (and G).
    """
    N, C, H, W = images.shape
    L = f.shape[0]
    m = L // 2 - 1                                  # Extra fine samples per side for the downsampling filter.

    # Sampling positions: fine output samples j at pixel coordinate j / 2 - 1 / 4, centred.
    cx = (torch.arange(-m, 2 * W + m, device=images.device, dtype=torch.float32) / 2 - 0.25) - (W - 1) / 2
    cy = (torch.arange(-m, 2 * H + m, device=images.device, dtype=torch.float32) / 2 - 0.25) - (H - 1) / 2
    cy, cx = torch.meshgrid(cy, cx, indexing='ij')
    pts = torch.stack([cx.reshape(-1), cy.reshape(-1), torch.ones_like(cx).reshape(-1)])  # [3, P]
    src = G[:, :2, :] @ pts                         # [N, 2, P], centred source coordinates.

    # Reflect-pad enough that every sample (plus the upsampling filter support) is inside.
    reach = src.detach().abs().amax(dim=(0, 2)).cpu()
    px = max(int(math.ceil(reach[0].item() - (W - 1) / 2 + L / 4 + 1)), 0)
    py = max(int(math.ceil(reach[1].item() - (H - 1) / 2 + L / 4 + 1)), 0)
    x = upfirdn2d.upsample2d(_reflect_pad(images, px, py), f)

    # Source pixel (u) in the upsampled padded image, then grid_sample's [-1, 1] convention.
    ux = 2 * (src[:, 0] + (W - 1) / 2 + px) + 0.5
    uy = 2 * (src[:, 1] + (H - 1) / 2 + py) + 0.5
    grid = torch.stack([(2 * ux + 1) / x.shape[3] - 1, (2 * uy + 1) / x.shape[2] - 1], dim=2)
    grid = grid.reshape(N, 2 * H + 2 * m, 2 * W + 2 * m, 2)
    x = grid_sample_gradfix.grid_sample(x, grid.to(x.dtype))
    return upfirdn2d.upfirdn2d(x, f, down=2)

#----------------------------------------------------------------------------
# Image-space filtering: per-image zero-phase separable filter taps [N, K] applied to each
# image's deviation from its per-channel mean (the mean is kept), with reflect padding.

def filter_images(images, taps):
    """Args:
        images: [N, C, H, W] float tensor.
        taps:   [N, K] symmetric taps per image, K odd (any K: the padding reflects repeatedly).

    Returns:
        [N, C, H, W] tensor: mean + taps (along x then y) applied to (images - mean).
    """
    N, C, H, W = images.shape
    K = taps.shape[1]
    mean = images.mean(dim=(2, 3), keepdim=True)
    x = _reflect_pad(images - mean, K // 2, K // 2).reshape(1, N * C, H + K - 1, W + K - 1)
    w = taps.to(images.dtype).repeat_interleave(C, dim=0)          # [NC, K]
    x = conv2d_gradfix.conv2d(input=x, weight=w[:, None, None, :], groups=N * C)
    x = conv2d_gradfix.conv2d(input=x, weight=w[:, None, :, None], groups=N * C)
    return x.reshape(N, C, H, W) + mean

#----------------------------------------------------------------------------
# Step of the adaptive p after one adjustment interval (ADA, Section 3): rt = E[sign(D(real))]
# over the interval; p moves by num_images / (ada_kimg * 1000) toward keeping rt at target,
# so p can go from 0 to 1 in ada_kimg thousand images.

def ada_p_delta(rt, target=0.6, num_images=1, ada_kimg=500):
    """Args:
        rt:         Mean of sign(D(real)) over the interval, in [-1, 1].
        target:     Target value of rt (train.py --target).
        num_images: Real images seen since the previous adjustment.
        ada_kimg:   Thousands of images over which p can move by 1.

    Returns:
        float step for AugmentPipe.adjust_p().
    """
    return float(np.sign(rt - target)) * num_images / (ada_kimg * 1000)

#----------------------------------------------------------------------------
# The ADA augmentation pipeline. Each op's value is a probability multiplier (the op fires
# per image with probability value * p); the *_std / *_max values set its strength.

@persistence.persistent_class
class AugmentPipe(torch.nn.Module):
    def __init__(self,
        xflip           = 0,            # Probability multiplier for x-flip.
        rotate90        = 0,            # Probability multiplier for rotations by multiples of 90 degrees.
        xint            = 0,            # Probability multiplier for integer translation.
        xint_max        = 0.125,        # Range of integer translation, relative to image size.
        scale           = 0,            # Probability multiplier for isotropic scaling.
        rotate          = 0,            # Probability multiplier for arbitrary rotation (applied twice).
        aniso           = 0,            # Probability multiplier for anisotropic scaling.
        xfrac           = 0,            # Probability multiplier for fractional translation.
        scale_std       = 0.2,          # Log2 standard deviation of isotropic scaling.
        rotate_max      = 1,            # Range of arbitrary rotation, 1 = full circle.
        aniso_std       = 0.2,          # Log2 standard deviation of anisotropic scaling.
        xfrac_std       = 0.125,        # Standard deviation of fractional translation, relative to image size.
        brightness      = 0,            # Probability multiplier for brightness.
        contrast        = 0,            # Probability multiplier for contrast.
        lumaflip        = 0,            # Probability multiplier for luma flip (RGB only).
        hue             = 0,            # Probability multiplier for hue rotation (RGB only).
        saturation      = 0,            # Probability multiplier for saturation (RGB only).
        brightness_std  = 0.2,          # Standard deviation of brightness offset.
        contrast_std    = 0.5,          # Log2 standard deviation of contrast.
        hue_max         = 1,            # Range of hue rotation, 1 = full circle.
        saturation_std  = 1,            # Log2 standard deviation of saturation.
        imgfilter       = 0,            # Probability multiplier for image-space filtering.
        imgfilter_bands = [1, 1, 1, 1], # Probability multipliers of the 4 frequency bands, low to high.
        imgfilter_std   = 1,            # Log2 standard deviation of band amplification.
        noise           = 0,            # Probability multiplier for additive RGB noise.
        cutout          = 0,            # Probability multiplier for cutout.
        noise_std       = 0.1,          # Standard deviation of the noise sigma (half-normal).
        cutout_size     = 0.5,          # Side of the cutout square, relative to image size.
    ):
        super().__init__()
        args = {k: v for k, v in locals().items() if k not in ('self', '__class__', 'imgfilter_bands')}
        for name, value in args.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise ValueError(f'AugmentPipe: {name} must be a finite number >= 0, got {value!r}')
        bands = list(imgfilter_bands)
        if len(bands) != 4 or any(not isinstance(b, (int, float)) or b < 0 for b in bands):
            raise ValueError(f'AugmentPipe: imgfilter_bands must be 4 numbers >= 0, got {imgfilter_bands!r}')
        for name, value in args.items():
            setattr(self, name, float(value))
        self.imgfilter_bands = [float(b) for b in bands]
        self.register_buffer('p', torch.zeros([]))  # Augmentation probability, saved in pickles.
        self.register_buffer('geom_filter', torch.tensor(design_resampling_filter(), dtype=torch.float32), persistent=False)
        bank = design_filter_bank()
        self.register_buffer('band_filters', torch.tensor(bank, dtype=torch.float32), persistent=False)
        self.register_buffer('band_energy', torch.tensor(filter_bank_energy(bank), dtype=torch.float32), persistent=False)

    # Move p by delta, clamped to [0, 1]; returns the new p.
    @torch.no_grad()
    def adjust_p(self, delta):
        self.p.copy_((self.p + float(delta)).clamp(0, 1))
        return float(self.p)

    # Augment [N, C, H, W] images (C = 1 or 3). At p = 0 the input is returned as is.
    def forward(self, images, debug_percentile=None):
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
            raise ValueError(f'AugmentPipe expects a float tensor [N, C, H, W], got {getattr(images, "shape", type(images))}')
        N, C, H, W = images.shape
        if C not in (1, 3):
            raise ValueError(f'AugmentPipe supports 1 or 3 channels, got {C}')
        if H < 2 or W < 2:
            raise ValueError(f'AugmentPipe needs images of at least 2x2 pixels, got {H}x{W}')
        if debug_percentile is not None and not 0 <= debug_percentile <= 1:
            raise ValueError(f'debug_percentile must be in [0, 1], got {debug_percentile}')
        p = min(max(float(self.p), 0.0), 1.0)
        if p == 0:
            return images
        s = _Sampler(N, images.device, debug_percentile)
        if max(self.xflip, self.rotate90, self.xint, self.scale, self.rotate, self.aniso, self.xfrac) > 0:
            images = self._geometric(images, p, s)
        if max(self.brightness, self.contrast, self.lumaflip, self.hue, self.saturation) > 0:
            images = self._color(images, p, s)
        if self.imgfilter > 0:
            images = self._filter(images, p, s)
        if self.noise > 0:
            images = self._noise(images, p, s)
        if self.cutout > 0:
            images = self._cutout(images, p, s)
        return images

    # Inverse transform [N, 3, 3] of the pixel blits (integer entries), or None.
    def _blit_matrix(self, p, s, H, W):
        if max(self.xflip, self.rotate90, self.xint) == 0:
            return None
        ref = torch.zeros([s.n], device=s.device)
        G = torch.eye(3, device=s.device).expand(s.n, 3, 3)
        if self.xflip > 0:
            i = torch.where(s.gate(self.xflip * p), s.choice(2), ref)
            G = G @ _scale2d(1 - 2 * i, 1, ref)
        if self.rotate90 > 0:
            if H != W:
                raise ValueError(f'rotate90 needs square images, got {H}x{W}')
            k = torch.where(s.gate(self.rotate90 * p), s.choice(4), ref).long()
            cos = misc.constant([1.0, 0.0, -1.0, 0.0], device=s.device)[k]
            sin = misc.constant([0.0, 1.0, 0.0, -1.0], device=s.device)[k]
            G = G @ _rotate2d(cos, sin, ref)
        if self.xint > 0:
            t = s.uniform(-self.xint_max, self.xint_max, cols=2)
            t = torch.where(s.gate(self.xint * p)[:, None], t, torch.zeros_like(t))
            G = G @ _translate2d(torch.round(t[:, 0] * W), torch.round(t[:, 1] * H), ref)
        return G

    # Inverse transform [N, 3, 3] of the general geometric ops and which images use it, or None.
    def _general_matrix(self, p, s, H, W):
        if max(self.scale, self.rotate, self.aniso, self.xfrac) == 0:
            return None, None
        ref = torch.zeros([s.n], device=s.device)
        one = torch.ones_like(ref)
        G = torch.eye(3, device=s.device).expand(s.n, 3, 3)
        active = torch.zeros([s.n], dtype=torch.bool, device=s.device)
        p_rot = 1 - math.sqrt(1 - min(self.rotate * p, 1.0))  # Two rotations: P(any) = rotate * p.
        for op in ('scale', 'rotate', 'aniso', 'rotate', 'xfrac'):
            if getattr(self, op) == 0:
                continue
            gate = s.gate(p_rot if op == 'rotate' else getattr(self, op) * p)
            active = active | gate
            if op == 'scale':
                v = torch.where(gate, torch.exp2(s.normal(self.scale_std)), one)
                G = G @ _scale2d(1 / v, 1 / v, ref)
            elif op == 'rotate':
                theta = torch.where(gate, s.uniform(-math.pi, math.pi) * self.rotate_max, ref)
                G = G @ _rotate2d(torch.cos(-theta), torch.sin(-theta), ref)
            elif op == 'aniso':
                v = torch.where(gate, torch.exp2(s.normal(self.aniso_std)), one)
                G = G @ _scale2d(1 / v, v, ref)
            else:
                t = s.normal(self.xfrac_std, cols=2)
                t = torch.where(gate[:, None], t, torch.zeros_like(t))
                G = G @ _translate2d(-t[:, 0] * W, -t[:, 1] * H, ref)
        return G, active

    # Pixel blitting and general geometric ops; each image is resampled at most once.
    def _geometric(self, images, p, s):
        N, C, H, W = images.shape
        G_blit = self._blit_matrix(p, s, H, W)
        G_gen, active = self._general_matrix(p, s, H, W)
        out = images if G_blit is None else blit_images(images, G_blit)
        if G_gen is not None:
            idx = active.nonzero()[:, 0]
            if idx.numel() > 0:
                G = G_gen if G_blit is None else G_blit @ G_gen
                resampled = resample_images(images[idx], G[idx], self.geom_filter)
                out = out.index_copy(0, idx, resampled.to(out.dtype))
        return out

    # Colour matrix [N, 4, 4] (brightness, contrast, then for RGB lumaflip, hue, saturation).
    def _color_matrix(self, p, s, C):
        ref = torch.zeros([s.n], device=s.device)
        one = torch.ones_like(ref)
        M = torch.eye(4, device=s.device).expand(s.n, 4, 4)
        if self.brightness > 0:
            b = torch.where(s.gate(self.brightness * p), s.normal(self.brightness_std), ref)
            M = _translate3d(b, ref) @ M
        if self.contrast > 0:
            c = torch.where(s.gate(self.contrast * p), torch.exp2(s.normal(self.contrast_std)), one)
            M = _scale3d(c, ref) @ M
        if C == 3 and self.lumaflip > 0:
            i = torch.where(s.gate(self.lumaflip * p), s.choice(2), ref)
            M = _luma_chroma(1 - 2 * i, one, ref) @ M
        if C == 3 and self.hue > 0:
            theta = torch.where(s.gate(self.hue * p), s.uniform(-math.pi, math.pi) * self.hue_max, ref)
            M = _rotate_luma(theta, ref) @ M
        if C == 3 and self.saturation > 0:
            v = torch.where(s.gate(self.saturation * p), torch.exp2(s.normal(self.saturation_std)), one)
            M = _luma_chroma(one, v, ref) @ M
        return M

    # Colour transforms, composed into one matrix and applied once.
    def _color(self, images, p, s):
        N, C, H, W = images.shape
        M = self._color_matrix(p, s, C).to(images.dtype)
        x = images.reshape(N, C, H * W)
        if C == 3:
            x = M[:, :3, :3] @ x + M[:, :3, 3:]
        else:
            x = x * M[:, :3, :3].sum(dim=2).mean(dim=1)[:, None, None] + M[:, :3, 3].mean(dim=1)[:, None, None]
        return x.reshape(N, C, H, W)

    # Image-space filtering: amplify each of the 4 bands by 2^N(0, imgfilter_std^2), keep energy.
    def _filter(self, images, p, s):
        gains, gates = [], []
        for band_multiplier in self.imgfilter_bands:
            gate = s.gate(self.imgfilter * band_multiplier * p)
            gains.append(torch.where(gate, torch.exp2(s.normal(self.imgfilter_std)), torch.ones([s.n], device=s.device)))
            gates.append(gate)
        if not torch.stack(gates).any():
            return images
        g = torch.stack(gains, dim=1)                                # [N, band]
        g = g / torch.einsum('ni,ij,nj->n', g, self.band_energy, g).sqrt()[:, None]
        return filter_images(images, g @ self.band_filters)

    # Additive Gaussian noise with per-image sigma = |N(0, noise_std^2)|.
    def _noise(self, images, p, s):
        sigma = torch.where(s.gate(self.noise * p), s.normal(self.noise_std).abs(), torch.zeros([s.n], device=s.device))
        return images + torch.randn_like(images) * sigma.to(images.dtype)[:, None, None, None]

    # Cutout: zero a square of side cutout_size (relative) centred uniformly in the image.
    def _cutout(self, images, p, s):
        N, C, H, W = images.shape
        gate = s.gate(self.cutout * p)
        centre = s.uniform(0, 1, cols=2)
        cx = (torch.arange(W, device=images.device) + 0.5) / W
        cy = (torch.arange(H, device=images.device) + 0.5) / H
        outside_x = (cx[None, :] - centre[:, 0:1]).abs() >= self.cutout_size / 2   # [N, W]
        outside_y = (cy[None, :] - centre[:, 1:2]).abs() >= self.cutout_size / 2   # [N, H]
        keep = outside_y[:, :, None] | outside_x[:, None, :] | ~gate[:, None, None]
        return images * keep[:, None, :, :].to(images.dtype)

#----------------------------------------------------------------------------
