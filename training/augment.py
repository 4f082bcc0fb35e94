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
# Decomposition lowpass filters h of two orthogonal wavelets (PyWavelets' `dec_lo`, as in the
# original ADA code). Orthonormality: sum(h) = sqrt(2), sum(h^2) = 1 and
# sum_k h[k] h[k + 2n] = 0 for n != 0; tests/test_augment.py checks these and the vanishing
# moments of the derived highpass, so a mistyped digit fails.

SYM2_LOWPASS = (
    -0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025,
)

SYM6_LOWPASS = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)

# Share of a natural image's power (about 1/f spectrum) in each band of the filter bank,
# low to high; the band gains are normalised with it (the original's weights).

BAND_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)

#----------------------------------------------------------------------------
# Insert k - 1 zeros between the taps of a 1-D filter (f(z) -> f(z^k)).

def _dilate(f, k):
    out = np.zeros((len(f) - 1) * k + 1)
    out[::k] = f
    return out

#----------------------------------------------------------------------------
# Image-space filter bank: num_bands zero-phase 1-D bands from an orthogonal wavelet lowpass
# h, low to high. With the halfband pair lo(w) = |H(w)|^2 / 2 and hi(w) = |H(w + pi)|^2 / 2
# (lo + hi = 1 because h is orthogonal), band b counted from the top is
# hi(2^b w) * prod_{k<b} lo(2^k w) and the lowest band is the product of all the lowpasses:
# roughly [pi/2, pi], [pi/4, pi/2], [pi/8, pi/4], [0, pi/8] for 4 bands. The bands sum to a
# unit impulse. Returns [num_bands, taps] (43 taps for sym2 and 4 bands).

def design_filter_bank(h=SYM2_LOWPASS, num_bands=4):
    h = np.asarray(h, dtype=np.float64)
    h_mod = h * (-1.0) ** np.arange(len(h))           # H(w + pi).
    lo = np.convolve(h, h[::-1]) / 2
    hi = np.convolve(h_mod, h_mod[::-1]) / 2
    bands, low = [], np.ones(1)
    for level in range(num_bands - 1):
        bands.append(np.convolve(low, _dilate(hi, 2 ** level)))
        low = np.convolve(low, _dilate(lo, 2 ** level))
    bands.append(low)
    size = len(low)
    return np.stack([np.pad(f, (size - len(f)) // 2) for f in bands[::-1]])

#----------------------------------------------------------------------------
# Batched matrices from per-image entries: rows of python numbers or [N] tensors.

def _matrix(rows, ref):
    constants = {} # One [N] tensor per distinct constant (most entries are 0 or 1).
    def entry(x):
        if isinstance(x, torch.Tensor):
            return x
        if x not in constants:
            constants[x] = torch.full_like(ref, x)
        return constants[x]
    elems = [entry(x) for row in rows for x in row]
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
        self.n, self.device, self.q = n, torch.device(device), debug_percentile

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

    # Whether an op applies to any image: False lets the caller leave out its identity matrix (after
    # its random draws, so the random stream stays the original's). Always True on CUDA, where
    # reading the flag would wait for the GPU.
    def fired(self, gate):
        return self.device.type != 'cpu' or bool(gate.any())

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
# orthogonal wavelet lowpass f (convolution), bilinear grid_sample in the upsampled space,
# filter with the flipped f (correlation) and downsample 2x. Up then down is the identity
# (sum_k f[k] f[k + 2n] = delta[n] / 2), so G = identity returns the image exactly. sym6 is
# not symmetric: its centre (DC group delay, 5.10 taps rather than 5.5) places the fine
# samples, so that rotations and scalings turn about the true image centre.

def resample_images(images, G, f):
    """Args:
        images: [N, C, H, W] float tensor.
        G:      [N, 3, 3] float32 inverse transforms (output -> input pixel, centred coordinates).
        f:      1-D even-length orthogonal lowpass normalised to sum 1, e.g. sym6 / sqrt(2)
                (float32 tensor); up-sampling convolves with it, down-sampling correlates.

    Returns:
        [N, C, H, W] tensor, differentiable w.r.t. images (and G).
    """
    N, C, H, W = images.shape
    L = f.shape[0]
    m = L // 2 - 1                                  # Extra fine samples per side for the downsampling filter.
    taps = f.detach().double().cpu()
    shift = m - float((torch.arange(L, dtype=torch.float64) * taps).sum() / taps.sum())  # -0.5 if symmetric.

    # Sampling positions: fine output sample j at pixel coordinate (j + shift) / 2, centred
    # (float64, so that the identity hits the fine samples to float32 precision).
    cx = (torch.arange(-m, 2 * W + m, device=images.device, dtype=torch.float64) + shift) / 2 - (W - 1) / 2
    cy = (torch.arange(-m, 2 * H + m, device=images.device, dtype=torch.float64) + shift) / 2 - (H - 1) / 2
    cy, cx = torch.meshgrid(cy, cx, indexing='ij')
    pts = torch.stack([cx.reshape(-1), cy.reshape(-1), torch.ones_like(cx).reshape(-1)])  # [3, P]
    src = G[:, :2, :].double() @ pts                # [N, 2, P], centred source coordinates.

    # Reflect-pad enough that every sample (plus the upsampling filter support) is inside.
    reach = src.detach().abs().amax(dim=(0, 2)).cpu()
    px = max(int(math.ceil(reach[0].item() - (W - 1) / 2 + L / 4 + 1)), 0)
    py = max(int(math.ceil(reach[1].item() - (H - 1) / 2 + L / 4 + 1)), 0)
    x = upfirdn2d.upsample2d(_reflect_pad(images, px, py), f)

    # Source pixel (u) in the upsampled padded image, then grid_sample's [-1, 1] convention.
    ux = 2 * (src[:, 0] + (W - 1) / 2 + px) - shift
    uy = 2 * (src[:, 1] + (H - 1) / 2 + py) - shift
    grid = torch.stack([(2 * ux + 1) / x.shape[3] - 1, (2 * uy + 1) / x.shape[2] - 1], dim=2)
    grid = grid.reshape(N, 2 * H + 2 * m, 2 * W + 2 * m, 2)
    x = grid_sample_gradfix.grid_sample(x, grid.to(x.dtype))
    return upfirdn2d.upfirdn2d(x, f, down=2, flip_filter=True)

#----------------------------------------------------------------------------
# Band gains of image-space filtering from per-band amplifications t [N, band] (1 where a
# band did not fire), as in the original: each band's gain vector (t_i at band i, 1
# elsewhere) is divided by its expected power sqrt(sum_j w_j v_j^2) under the band powers
# w [band] (sum 1), and these vectors are multiplied: g = t / prod_i sqrt(1 + w_i (t_i^2 - 1)).

def band_gains(t, w):
    return t / (1 + w * (t.square() - 1)).sqrt().prod(dim=-1, keepdim=True)

#----------------------------------------------------------------------------
# Image-space filtering: per-image zero-phase separable filter taps [N, K] applied along x
# then y, with reflect padding.

def filter_images(images, taps):
    """Args:
        images: [N, C, H, W] float tensor.
        taps:   [N, K] symmetric taps per image, K odd (any K: the padding reflects repeatedly).

    Returns:
        [N, C, H, W] tensor: images filtered by taps along x, then along y.
    """
    N, C, H, W = images.shape
    K = taps.shape[1]
    x = _reflect_pad(images, K // 2, K // 2).reshape(1, N * C, H + K - 1, W + K - 1)
    w = taps.to(images.dtype).repeat_interleave(C, dim=0)          # [NC, K]
    x = conv2d_gradfix.conv2d(input=x, weight=w[:, None, None, :], groups=N * C)
    x = conv2d_gradfix.conv2d(input=x, weight=w[:, None, :, None], groups=N * C)
    return x.reshape(N, C, H, W)

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
        geom_filter = np.asarray(SYM6_LOWPASS) / math.sqrt(2)     # Sum 1.
        self.register_buffer('geom_filter', torch.tensor(geom_filter, dtype=torch.float32), persistent=False)
        self.register_buffer('band_filters', torch.tensor(design_filter_bank(), dtype=torch.float32), persistent=False)
        self.register_buffer('band_power', torch.tensor(BAND_POWER, dtype=torch.float32), persistent=False)

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
        # Greyscale resampling on the CPU: native kernels, 3-10x faster than oneDNN's for one channel, whose
        # image subsets and paddings change shape with every batch (see conv2d_gradfix.native_cpu_kernels).
        with conv2d_gradfix.native_cpu_kernels():
            return self._augment(images, p, _Sampler(N, images.device, debug_percentile))

    # The enabled groups of operations in the original's order.
    def _augment(self, images, p, s):
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

    # Inverse transform [N, 3, 3] of the pixel blits (integer entries), or None when no blit op is on or fired.
    def _blit_matrix(self, p, s, H, W):
        if max(self.xflip, self.rotate90, self.xint) == 0:
            return None
        ref = torch.zeros([s.n], device=s.device)
        G = torch.eye(3, device=s.device).expand(s.n, 3, 3)
        fired = False
        if self.xflip > 0:
            gate, i = s.gate(self.xflip * p), s.choice(2)
            if s.fired(gate):
                G, fired = G @ _scale2d(1 - 2 * torch.where(gate, i, ref), 1, ref), True
        if self.rotate90 > 0:
            if H != W:
                raise ValueError(f'rotate90 needs square images, got {H}x{W}')
            gate, k = s.gate(self.rotate90 * p), s.choice(4)
            if s.fired(gate):
                k = torch.where(gate, k, ref).long()
                cos = misc.constant([1.0, 0.0, -1.0, 0.0], device=s.device)[k]
                sin = misc.constant([0.0, 1.0, 0.0, -1.0], device=s.device)[k]
                G, fired = G @ _rotate2d(cos, sin, ref), True
        if self.xint > 0:
            t = s.uniform(-self.xint_max, self.xint_max, cols=2)
            gate = s.gate(self.xint * p)
            if s.fired(gate):
                t = torch.where(gate[:, None], t, torch.zeros_like(t))
                G, fired = G @ _translate2d(torch.round(t[:, 0] * W), torch.round(t[:, 1] * H), ref), True
        return G if fired else None

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
            if op == 'xfrac':
                draw = s.normal(self.xfrac_std, cols=2)
            else:
                draw = s.uniform(-math.pi, math.pi) if op == 'rotate' else s.normal(getattr(self, op + '_std'))
            if not s.fired(gate):
                continue
            active = active | gate
            if op == 'scale':
                v = torch.where(gate, torch.exp2(draw), one)
                G = G @ _scale2d(1 / v, 1 / v, ref)
            elif op == 'rotate':
                theta = torch.where(gate, draw * self.rotate_max, ref)
                G = G @ _rotate2d(torch.cos(-theta), torch.sin(-theta), ref)
            elif op == 'aniso':
                v = torch.where(gate, torch.exp2(draw), one)
                G = G @ _scale2d(1 / v, v, ref)
            else:
                t = torch.where(gate[:, None], draw, torch.zeros_like(draw))
                G = G @ _translate2d(-t[:, 0] * W, -t[:, 1] * H, ref)
        return G, active

    # Pixel blitting (exact), then the general geometric ops: out(x) = in(G_blit G_gen x). Each
    # image is resampled at most once, only if a general op fired for it.
    def _geometric(self, images, p, s):
        N, C, H, W = images.shape
        G_blit = self._blit_matrix(p, s, H, W)
        G_gen, active = self._general_matrix(p, s, H, W)
        out = images if G_blit is None else blit_images(images, G_blit)
        if G_gen is not None:
            idx = active.nonzero()[:, 0]
            if idx.numel() > 0:
                resampled = resample_images(out[idx], G_gen[idx], self.geom_filter)
                out = out.index_copy(0, idx, resampled.to(out.dtype))
        return out

    # Colour matrix [N, 4, 4] (brightness, contrast, then for RGB lumaflip, hue, saturation), or None when no op fired.
    def _color_matrix(self, p, s, C):
        ref = torch.zeros([s.n], device=s.device)
        one = torch.ones_like(ref)
        M = torch.eye(4, device=s.device).expand(s.n, 4, 4)
        fired = False
        for op, enabled, draw, identity in (
                ('brightness', self.brightness > 0, lambda: s.normal(self.brightness_std), ref),
                ('contrast', self.contrast > 0, lambda: torch.exp2(s.normal(self.contrast_std)), one),
                ('lumaflip', C == 3 and self.lumaflip > 0, lambda: s.choice(2), ref),
                ('hue', C == 3 and self.hue > 0, lambda: s.uniform(-math.pi, math.pi) * self.hue_max, ref),
                ('saturation', C == 3 and self.saturation > 0, lambda: torch.exp2(s.normal(self.saturation_std)), one)):
            if not enabled:
                continue
            gate = s.gate(getattr(self, op) * p)
            value = draw()
            if not s.fired(gate):
                continue
            value, fired = torch.where(gate, value, identity), True
            if op == 'brightness':
                M = _translate3d(value, ref) @ M
            elif op == 'contrast':
                M = _scale3d(value, ref) @ M
            elif op == 'lumaflip':
                M = _luma_chroma(1 - 2 * value, one, ref) @ M
            elif op == 'hue':
                M = _rotate_luma(value, ref) @ M
            else:
                M = _luma_chroma(one, value, ref) @ M
        return M if fired else None

    # Colour transforms, composed into one matrix and applied once.
    def _color(self, images, p, s):
        N, C, H, W = images.shape
        M = self._color_matrix(p, s, C)
        if M is None: # No colour op fired: the identity.
            return images
        M = M.to(images.dtype)
        x = images.reshape(N, C, H * W)
        if C == 3:
            x = M[:, :3, :3] @ x + M[:, :3, 3:]
        else:
            x = x * M[:, :3, :3].sum(dim=2).mean(dim=1)[:, None, None] + M[:, :3, 3].mean(dim=1)[:, None, None]
        return x.reshape(N, C, H, W)

    # Image-space filtering: amplify each of the 4 bands by t_i = 2^N(0, imgfilter_std^2), then
    # normalise the gains as the original (band_gains).
    def _filter(self, images, p, s):
        gains, gates = [], []
        for band_multiplier in self.imgfilter_bands:
            gate = s.gate(self.imgfilter * band_multiplier * p)
            gains.append(torch.where(gate, torch.exp2(s.normal(self.imgfilter_std)), torch.ones([s.n], device=s.device)))
            gates.append(gate)
        if not torch.stack(gates).any():
            return images
        g = band_gains(torch.stack(gains, dim=1), self.band_power)   # [N, band]
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
