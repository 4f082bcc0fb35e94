# Training configurations by name (`train.py --cfg`): the published StyleGAN2-ADA hyper-parameters,
# a small preset for CPU runs, and the BigGAN presets. Each preset turns the user's options and the
# dataset's facts into the keyword arguments of training.training_loop.training_loop.

import dataclasses

import dnnlib

#----------------------------------------------------------------------------
# Hyper-parameters of one StyleGAN2 preset (Karras et al. 2020, ADA paper, Appendix A / train.py).

@dataclasses.dataclass(frozen=True)
class StyleGAN2Spec:
    ref_gpus:   int         # Number of GPUs the batch was published for (batch_gpu = mb // ref_gpus).
    kimg:       int         # Training length in thousands of real images.
    mb:         int         # Total batch size.
    mbstd:      int         # Minibatch-stddev group size.
    fmaps:      float       # Channel multiplier: channel_base = fmaps * 32768.
    lrate:      float       # Adam learning rate of G and D.
    gamma:      float       # R1 weight.
    ema:        float       # G_ema half-life in kimg.
    ramp:       float       # EMA ramp-up (None = off).
    map:        int         # Mapping network depth.
    cmax:       int = 512   # Channel maximum.

# `auto` depends on the data: its numbers are filled in by _auto_spec.
stylegan2_specs = {
    'auto':      StyleGAN2Spec(ref_gpus=-1, kimg=25000,  mb=-1, mbstd=-1, fmaps=-1,  lrate=-1,     gamma=-1,   ema=-1,  ramp=0.05, map=2),
    'stylegan2': StyleGAN2Spec(ref_gpus=8,  kimg=25000,  mb=32, mbstd=4,  fmaps=1,   lrate=0.002,  gamma=10,   ema=10,  ramp=None, map=8),
    'paper256':  StyleGAN2Spec(ref_gpus=8,  kimg=25000,  mb=64, mbstd=8,  fmaps=0.5, lrate=0.0025, gamma=1,    ema=20,  ramp=None, map=8),
    'paper512':  StyleGAN2Spec(ref_gpus=8,  kimg=25000,  mb=64, mbstd=8,  fmaps=1,   lrate=0.0025, gamma=0.5,  ema=20,  ramp=None, map=8),
    'paper1024': StyleGAN2Spec(ref_gpus=8,  kimg=25000,  mb=32, mbstd=4,  fmaps=1,   lrate=0.002,  gamma=2,    ema=10,  ramp=None, map=8),
    'cifar':     StyleGAN2Spec(ref_gpus=2,  kimg=100000, mb=64, mbstd=32, fmaps=1,   lrate=0.0025, gamma=0.01, ema=500, ramp=0.05, map=2),
    # Small networks for CPU runs and demos (32-64 px): 128 channels at most, short EMA.
    'small':     StyleGAN2Spec(ref_gpus=1,  kimg=200,    mb=32, mbstd=4,  fmaps=0.125, lrate=0.0025, gamma=0.05, ema=2, ramp=0.05, map=2, cmax=128),
}

# The `auto` rules of the original: batch, group size, width, learning rate and gamma from the resolution.
def _auto_spec(resolution, gpus):
    mb = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
    return StyleGAN2Spec(ref_gpus=gpus, kimg=25000, mb=mb, mbstd=min(mb // gpus, 4),
        fmaps=(1 if resolution >= 512 else 0.5), lrate=(0.002 if resolution >= 1024 else 0.0025),
        gamma=0.0002 * resolution ** 2 / mb, ema=mb * 10 / 32, ramp=0.05, map=2)

#----------------------------------------------------------------------------
# The StyleGAN2 family of presets: networks, optimisers and loss of training.networks / training.loss.

def stylegan2_config(cfg, resolution, gpus):
    spec = _auto_spec(resolution, gpus) if cfg == 'auto' else stylegan2_specs[cfg]
    channel_base = int(spec.fmaps * 32768)
    c = dnnlib.EasyDict()
    c.G_kwargs = dnnlib.EasyDict(class_name='training.networks.Generator', z_dim=512, w_dim=512,
        mapping_kwargs=dnnlib.EasyDict(num_layers=spec.map),
        synthesis_kwargs=dnnlib.EasyDict(channel_base=channel_base, channel_max=spec.cmax, num_fp16_res=4, conv_clamp=256))
    c.D_kwargs = dnnlib.EasyDict(class_name='training.networks.Discriminator', channel_base=channel_base,
        channel_max=spec.cmax, num_fp16_res=4, conv_clamp=256,
        block_kwargs=dnnlib.EasyDict(), mapping_kwargs=dnnlib.EasyDict(),
        epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=spec.mbstd))
    c.G_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=spec.lrate, betas=[0.0, 0.99], eps=1e-8)
    c.D_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=spec.lrate, betas=[0.0, 0.99], eps=1e-8)
    c.loss_kwargs = dnnlib.EasyDict(class_name='training.loss.StyleGAN2Loss', r1_gamma=spec.gamma)
    c.total_kimg = spec.kimg
    c.batch_size = spec.mb
    c.batch_gpu = max(spec.mb // max(spec.ref_gpus, 1), 1)
    c.ema_kimg = spec.ema
    c.ema_rampup = spec.ramp
    if cfg == 'cifar':
        c.loss_kwargs.pl_weight = 0
        c.loss_kwargs.style_mixing_prob = 0
        c.D_kwargs.architecture = 'orig'
    if cfg == 'small':
        c.G_kwargs.z_dim = c.G_kwargs.w_dim = 128
        c.loss_kwargs.pl_weight = 0
    return c

#----------------------------------------------------------------------------
# The BigGAN presets (Brock et al. 2019): SN everywhere, ccbn in G, hinge loss, 2 D steps per G step,
# Adam(0, 0.999) with lr 1e-4 (G) and 4e-4 (D), G_ema with standing statistics.

biggan_specs = {
    # name: (channel width multiplier ch, batch, total kimg, attention resolutions)
    'biggan':   dict(ch=64, mb=256, kimg=100000, attn_res=[64]),
    'biggan32': dict(ch=32, mb=64, kimg=5000, attn_res=[]),
}

def biggan_config(cfg, resolution, gpus):
    spec = biggan_specs[cfg]
    c = dnnlib.EasyDict()
    c.G_kwargs = dnnlib.EasyDict(class_name='training.networks_biggan.Generator', z_dim=120 if cfg == 'biggan' else 128,
        ch=spec['ch'], attn_res=list(spec['attn_res']), mybn=True)
    c.D_kwargs = dnnlib.EasyDict(class_name='training.networks_biggan.Discriminator', ch=spec['ch'],
        attn_res=list(spec['attn_res']))
    c.G_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=1e-4, betas=[0.0, 0.999], eps=1e-6)
    c.D_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=4e-4, betas=[0.0, 0.999], eps=1e-6)
    c.loss_kwargs = dnnlib.EasyDict(class_name='training.loss.HingeLoss', r1_gamma=0)
    c.total_kimg = spec['kimg']
    c.batch_size = max(spec['mb'], gpus)
    c.batch_gpu = max(spec['mb'] // gpus, 1)
    c.ema_kimg = 10
    c.ema_rampup = 0.05
    c.G_reg_interval = None
    c.D_reg_interval = None
    c.D_steps_per_G = 2
    c.standing_stats_batches = 16
    return c

#----------------------------------------------------------------------------
# Every name `--cfg` accepts, with the function that builds it.

configs = {name: stylegan2_config for name in stylegan2_specs}
configs.update({name: biggan_config for name in biggan_specs})

def build_config(cfg, resolution, gpus):
    """Preset part of the training options for `cfg` at this resolution and process count."""
    if cfg not in configs:
        raise ValueError(f'Unknown --cfg {cfg!r}; valid: {", ".join(configs)}.')
    return configs[cfg](cfg, resolution, gpus)

def is_biggan(cfg):
    return cfg in biggan_specs

#----------------------------------------------------------------------------
