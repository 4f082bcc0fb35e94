# The BigGAN presets (Brock et al. 2019): SN everywhere, ccbn in G, hinge loss, 2 D steps per G step,
# Adam(0, 0.999) with lr 1e-4 (G) and 4e-4 (D), G_ema with standing statistics before each snapshot.
# Registered in training.presets on import.

import dnnlib
from training import presets

#----------------------------------------------------------------------------
# Hyper-parameters of each BigGAN preset.

biggan_specs = {
    # name: channel width multiplier ch, batch, total kimg, z dimension, attention resolutions.
    'biggan':   dict(ch=64, mb=256, kimg=100000, z_dim=120, attn_res=[64]),
    'biggan32': dict(ch=32, mb=64,  kimg=5000,   z_dim=128, attn_res=[]),
}

biggan_descriptions = {
    'biggan':   'BigGAN (Brock et al. 2019), ch 64, self-attention at 64x64.',
    'biggan32': 'BigGAN at 32x32 (CIFAR), ch 32, no self-attention.',
}

#----------------------------------------------------------------------------
# The BigGAN family: networks of training.networks_biggan, loss training.loss.HingeLoss.

class BigGANPreset(presets.Preset):
    family = presets.Family('BigGAN', options=('ch',))

    def __init__(self, name, description, spec):
        super().__init__(name, description)
        self.spec = spec

    def config(self, resolution, gpus):
        spec = self.spec
        c = dnnlib.EasyDict()
        c.G_kwargs = dnnlib.EasyDict(class_name='training.networks_biggan.Generator', z_dim=spec['z_dim'],
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
        c.G_reg_interval = None # No lazy regularisation: one phase per network.
        c.D_reg_interval = None
        c.D_steps_per_G = 2
        # G_ema's BatchNorm uses standing statistics, accumulated into the snapshot's copy.
        c.snapshot_hooks = [dnnlib.EasyDict(func_name='training.networks_biggan.accumulate_standing_stats', num_batches=16)]
        return c

    def apply_options(self, c, opts, device):
        if opts.get('ch') is not None:
            c.G_kwargs.ch = c.D_kwargs.ch = opts.ch

presets.register(*[BigGANPreset(name, biggan_descriptions[name], spec) for name, spec in biggan_specs.items()])

#----------------------------------------------------------------------------
