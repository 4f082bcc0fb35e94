# Perceptual Path Length (PPL) from "A Style-Based Generator Architecture for Generative
# Adversarial Networks", Karras et al. 2019, sec. 4.2: the LPIPS distance between images at
# interpolation parameters t and t + epsilon, divided by epsilon^2, averaged after dropping
# the values below the 1st and above the 99th percentile.

import copy

import numpy as np
import torch

from torch_utils import misc

from . import metric_utils

#----------------------------------------------------------------------------
# Spherical interpolation between the directions of a and b (z space: the Gaussian's mass sits on a sphere).

def slerp(a, b, t):
    """Args: a, b [..., D]; t broadcastable to [..., 1].
    Returns: the unit vector at angle t * angle(a, b) from a/|a| in the plane of a and b."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    cos_omega = (a * b).sum(dim=-1, keepdim=True).clamp(-1, 1)
    ortho = b - cos_omega * a # Component of b orthogonal to a.
    ortho = ortho / ortho.norm(dim=-1, keepdim=True)
    angle = t * torch.acos(cos_omega)
    out = a * torch.cos(angle) + ortho * torch.sin(angle)
    return out / out.norm(dim=-1, keepdim=True)

#----------------------------------------------------------------------------
# Mean of the values between the lower 1st and upper 99th percentiles (inclusive).

def filtered_mean(dist, lo_pct=1, hi_pct=99):
    """Args: dist [N] values. Returns: mean of the values in [percentile(lo, 'lower'), percentile(hi, 'higher')]."""
    dist = np.asarray(dist, np.float64)
    lo = np.percentile(dist, lo_pct, method='lower')
    hi = np.percentile(dist, hi_pct, method='higher')
    return float(dist[(dist >= lo) & (dist <= hi)].mean())

#----------------------------------------------------------------------------
# One batch of scaled LPIPS distances between images at t and t + epsilon.

class PPLSampler(torch.nn.Module):
    def __init__(self,
        G,                      # Generator with mapping, synthesis, z_dim, img_resolution, img_channels.
        G_kwargs,               # Extra synthesis arguments (noise_mode and force_fp32 are set here).
        epsilon,                # Interpolation step.
        space,                  # 'z' (slerp, then mapping) or 'w' (mapping, then lerp).
        sampling,               # 'full' (t ~ U(0, 1)) or 'end' (t = 0).
        crop,                   # Crop to the central face region (rows 3/8..7/8, columns 2/8..6/8).
        vgg16,                  # LPIPS-capable VGG16 detector.
    ):
        if space not in ('z', 'w'):
            raise ValueError(f"space must be 'z' or 'w': got {space!r}")
        if sampling not in ('full', 'end'):
            raise ValueError(f"sampling must be 'full' or 'end': got {sampling!r}")
        super().__init__()
        self.G = copy.deepcopy(G)
        self.G_kwargs = {k: v for k, v in G_kwargs.items() if k not in ('noise_mode', 'force_fp32')}
        self.epsilon = epsilon
        self.space = space
        self.sampling = sampling
        self.crop = crop
        self.vgg16 = vgg16

    # Latents at t and t + epsilon as ws [2B, num_ws, w_dim] (the t ones first).
    def interpolated_ws(self, c, rnd):
        G, B = self.G, c.shape[0]
        t = rnd.rand([B]) * (self.sampling == 'full')
        z0, z1 = rnd.randn([B * 2, G.z_dim]).chunk(2)
        if self.space == 'w':
            w0, w1 = G.mapping(z=torch.cat([z0, z1]), c=torch.cat([c, c])).chunk(2)
            wt0 = w0.lerp(w1, t[:, None, None])
            wt1 = w0.lerp(w1, t[:, None, None] + self.epsilon)
            return torch.cat([wt0, wt1])
        zt0 = slerp(z0, z1, t[:, None])
        zt1 = slerp(z0, z1, t[:, None] + self.epsilon)
        return G.mapping(z=torch.cat([zt0, zt1]), c=torch.cat([c, c]))

    # Scaled LPIPS distances [B] for labels c [B, c_dim]; rnd: metric_utils.RankRandom.
    def forward(self, c, rnd):
        G = self.G
        misc.assert_shape(c, [None, G.c_dim])
        ws = self.interpolated_ws(c, rnd)

        # Both images of a pair share one random draw of the per-pixel noise.
        for name, buf in G.named_buffers():
            if name.endswith('.noise_const'):
                buf.copy_(rnd.randn(buf.shape))
        img = G.synthesis(ws=ws, noise_mode='const', force_fp32=True, **self.G_kwargs)

        # Crop, downsample to at most 256 by area averaging, scale to [0, 255].
        if self.crop:
            s = img.shape[2] // 8
            img = img[:, :, s * 3 : s * 7, s * 2 : s * 6]
        factor = G.img_resolution // 256
        if factor > 1:
            img = img.reshape([-1, img.shape[1], img.shape[2] // factor, factor, img.shape[3] // factor, factor]).mean([3, 5])
        img = (img + 1) * (255 / 2)
        if G.img_channels == 1:
            img = img.repeat([1, 3, 1, 1])

        # LPIPS distance between the two halves.
        lpips_t0, lpips_t1 = self.vgg16(img, resize_images=False, return_lpips=True).chunk(2)
        return (lpips_t0 - lpips_t1).square().sum(1) / self.epsilon ** 2

#----------------------------------------------------------------------------
# PPL of opts.G over num_samples pairs, batch_size pairs per step and rank.

def compute_ppl(opts, num_samples, epsilon, space, sampling, crop, batch_size):
    if opts.G is None:
        raise ValueError('PPL needs a generator: MetricOptions.G is None')
    num_samples = opts.cap(num_samples)
    vgg16 = metric_utils.get_feature_detector(metric_utils.VGG16_URL, device=opts.device, num_gpus=opts.num_gpus,
        rank=opts.rank, verbose=opts.progress.verbose)
    G = opts.G
    sampler = PPLSampler(G=G, G_kwargs=opts.G_kwargs, epsilon=epsilon, space=space, sampling=sampling,
        crop=crop, vgg16=vgg16).eval().requires_grad_(False).to(opts.device)
    dataset = metric_utils.construct_dataset(opts) if G.c_dim > 0 else None

    # Sample distances; every rank does batch_size pairs per step.
    dist = []
    rnd = metric_utils.RankRandom(opts)
    progress = opts.progress.sub(tag='ppl sampling', num_items=num_samples)
    with torch.no_grad():
        for batch_start in range(0, num_samples, batch_size * opts.num_gpus):
            progress.update(batch_start)
            c = metric_utils.sample_labels(dataset, batch_size, G.c_dim, opts.device, rnd.numpy)
            x = sampler(c, rnd)
            for src in range(opts.num_gpus):
                y = x.clone()
                if opts.num_gpus > 1:
                    torch.distributed.broadcast(y, src=src)
                dist.append(y)
    progress.update(num_samples)

    if opts.rank != 0:
        return float('nan')
    dist = torch.cat(dist)[:num_samples].cpu().numpy()
    return filtered_mean(dist)
