# The BigGAN presets (Brock et al. 2019): ccbn in G, hinge loss, Adam with beta1 = 0, G_ema with
# standing statistics before each snapshot. `biggan` takes its architecture and training settings
# from the dataset's resolution (BigGAN-PyTorch's tables and launch scripts for 32 ... 512 px);
# `biggan32` is the fixed small preset of earlier versions, usable at any resolution.
# Registered in training.presets on import. See docs/biggan.md.

import dataclasses
import math

import dnnlib
from training import networks_biggan
from training import presets

#----------------------------------------------------------------------------
# Hyper-parameters of one BigGAN preset row. The channel multipliers per block are the networks'
# own tables (networks_biggan.generator_arch / discriminator_arch), chosen by the resolution.

@dataclasses.dataclass(frozen=True)
class BigGANSpec:
    ch:         int     # Channel width multiplier (G_ch = D_ch).
    mb:         int     # Total batch size.
    kimg:       int     # Training length in thousands of real images.
    z_dim:      int     # Latent size; with hier, split into len(blocks) + 1 chunks.
    hier:       bool    # Hierarchical z.
    G_shared:   bool    # Shared class embedding feeding every block's ccbn.
    attn:       tuple   # Self-attention at these block output resolutions, in G and D (where the network has them).
    D_steps:    int     # D steps per G step.
    glr:        float   # G learning rate.
    dlr:        float   # D learning rate.
    init:       str     # Weight initialisation of G and D ('ortho', 'N02', 'xavier').
    adam_eps:   float   # Adam epsilon.
    ema_start:  float   # G_ema copies G until this many kimg (BigGAN's ema_start iterations x batch).

# `biggan` by dataset resolution. 32: BigGAN-PyTorch's CIFAR script (batch 50, 4 D steps, lr 2e-4,
# N02 init, no attention, no shared embedding or hierarchical z, ema_start 1000 iterations).
# 64 ... 512: the ImageNet settings (hierarchical z with a shared embedding, attention at 64, lr
# 1e-4 / 4e-4, 2 D steps, orthogonal init, ema_start 20000 iterations); z_dim divides into the chunks.
biggan_resolutions = {
    32:  BigGANSpec(ch=64, mb=50,  kimg=25000,  z_dim=128, hier=False, G_shared=False, attn=(),    D_steps=4, glr=2e-4, dlr=2e-4, init='N02',   adam_eps=1e-8, ema_start=50),
    64:  BigGANSpec(ch=64, mb=256, kimg=100000, z_dim=120, hier=True,  G_shared=True,  attn=(64,), D_steps=2, glr=1e-4, dlr=4e-4, init='ortho', adam_eps=1e-6, ema_start=5120),
    128: BigGANSpec(ch=64, mb=256, kimg=100000, z_dim=120, hier=True,  G_shared=True,  attn=(64,), D_steps=2, glr=1e-4, dlr=4e-4, init='ortho', adam_eps=1e-6, ema_start=5120),
    256: BigGANSpec(ch=64, mb=256, kimg=100000, z_dim=140, hier=True,  G_shared=True,  attn=(64,), D_steps=2, glr=1e-4, dlr=4e-4, init='ortho', adam_eps=1e-6, ema_start=5120),
    512: BigGANSpec(ch=64, mb=256, kimg=100000, z_dim=128, hier=True,  G_shared=True,  attn=(64,), D_steps=2, glr=1e-4, dlr=4e-4, init='ortho', adam_eps=1e-6, ema_start=5120),
}

# `biggan32`: the earlier fixed preset (any resolution), kept so its runs and snapshots resume.
biggan32_spec = BigGANSpec(ch=32, mb=64, kimg=5000, z_dim=128, hier=True, G_shared=True, attn=(), D_steps=2,
    glr=1e-4, dlr=4e-4, init='ortho', adam_eps=1e-6, ema_start=0)

# Choices of --G-param / --D-param.
layer_params = list(networks_biggan.layer_params)

# Batches of standing statistics accumulated into G_ema's snapshot copy (--num-standing-accumulations).
STANDING_BATCHES = 16

#----------------------------------------------------------------------------
# The BigGAN family: networks of training.networks_biggan, loss training.loss.HingeLoss.

class BigGANPreset(presets.Preset):
    family = presets.Family('BigGAN', options=('ch', 'g_param', 'd_param', 'g_shared', 'hier', 'shared_dim', 'g_attn',
        'd_attn', 'num_d_steps', 'ema_start', 'num_standing_accumulations'))

    def __init__(self, name, description, spec=None):
        super().__init__(name, description)
        self._spec = spec

    # The row of this preset at this resolution: BigGAN's own for 32 ... 512 px, else the nearest one
    # (16 px uses the 32 px settings, 1024 px the 512 px ones; the networks' tables cover every size).
    def spec(self, resolution):
        if self._spec is not None:
            return self._spec
        return biggan_resolutions[min(biggan_resolutions, key=lambda res: abs(math.log2(res / resolution)))]

    # The loop keyword arguments of the row (see presets.Preset.config).
    def config(self, resolution, gpus):
        spec = self.spec(resolution)
        c = dnnlib.EasyDict()
        c.G_kwargs = dnnlib.EasyDict(class_name='training.networks_biggan.Generator', z_dim=spec.z_dim, ch=spec.ch,
            attn_res=_present(spec.attn, _G_resolutions(resolution)), hier=spec.hier, G_shared=spec.G_shared,
            G_init=spec.init, mybn=True)
        c.D_kwargs = dnnlib.EasyDict(class_name='training.networks_biggan.Discriminator', ch=spec.ch,
            attn_res=_present(spec.attn, _D_resolutions(resolution)), D_init=spec.init)
        c.G_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=spec.glr, betas=[0.0, 0.999], eps=spec.adam_eps)
        c.D_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=spec.dlr, betas=[0.0, 0.999], eps=spec.adam_eps)
        c.loss_kwargs = dnnlib.EasyDict(class_name='training.loss.HingeLoss', r1_gamma=0)
        c.total_kimg = spec.kimg
        c.batch_gpu = max(spec.mb // gpus, 1)
        c.batch_size = c.batch_gpu * gpus # The row's batch, rounded to a multiple of the process count.
        c.ema_kimg = 10
        c.ema_rampup = 0.05
        c.ema_start_kimg = spec.ema_start
        c.G_reg_interval = None # No lazy regularisation: one phase per network.
        c.D_reg_interval = None
        c.D_steps_per_G = spec.D_steps
        # G_ema's BatchNorm uses standing statistics, accumulated into the snapshot's copy.
        c.snapshot_hooks = [dnnlib.EasyDict(func_name='training.networks_biggan.accumulate_standing_stats', num_batches=STANDING_BATCHES)]
        return c

    # The BigGAN options of train.py, each checked against the data (see presets.Preset.apply_options).
    def apply_options(self, c, opts, device):
        resolution = c.training_set_kwargs.resolution
        if opts.get('ch') is not None:
            c.G_kwargs.ch = c.D_kwargs.ch = opts.ch
        for option, key in (('g_param', 'G_param'), ('g_shared', 'G_shared'), ('hier', 'hier'), ('shared_dim', 'shared_dim')):
            if opts.get(option) is not None:
                c.G_kwargs[key] = opts[option]
        if opts.get('d_param') is not None:
            c.D_kwargs.D_param = opts.d_param
        if opts.get('g_attn') is not None:
            c.G_kwargs.attn_res = _check_attention('--G-attn', opts.g_attn, _G_resolutions(resolution))
        if opts.get('d_attn') is not None:
            c.D_kwargs.attn_res = _check_attention('--D-attn', opts.d_attn, _D_resolutions(resolution))
        if opts.get('num_d_steps') is not None:
            c.D_steps_per_G = opts.num_d_steps
        if opts.get('ema_start') is not None:
            c.ema_start_kimg = opts.ema_start
        if opts.get('num_standing_accumulations') is not None:
            c.snapshot_hooks = [hook for hook in c.snapshot_hooks if not hook.func_name.endswith('.accumulate_standing_stats')]
            if opts.num_standing_accumulations > 0:
                c.snapshot_hooks.append(dnnlib.EasyDict(func_name='training.networks_biggan.accumulate_standing_stats',
                    num_batches=opts.num_standing_accumulations))
        _check_conditioning(c, opts)

#----------------------------------------------------------------------------
# Block output resolutions of G and D at a dataset resolution (where attention can go).

def _G_resolutions(resolution):
    return [res for _i, _o, res in networks_biggan.generator_arch(resolution, 1)]

def _D_resolutions(resolution):
    return sorted({res for _i, _o, _d, res in networks_biggan.discriminator_arch(resolution, 1, 3)})

# The attention resolutions of a row that this network has (BigGAN: attention '64' at 64 px puts none in D).
def _present(attn, block_resolutions):
    return [res for res in attn if res in block_resolutions]

# --G-attn / --D-attn: resolutions (e.g. 64 or 32,64), or 0 / none for no attention.
def _check_attention(option, values, block_resolutions):
    try:
        resolutions = sorted({int(v) for v in values if v not in ('0', 'none')})
    except ValueError:
        raise ValueError(f'{option}: expected resolutions such as 64 or 32,64 (0 = none), got {",".join(values)}.') from None
    bad = [res for res in resolutions if res not in block_resolutions]
    if bad:
        raise ValueError(f'{option}={bad[0]}: at this dataset resolution the blocks output {", ".join(map(str, block_resolutions))} px; '
            'choose among those (0 = no attention).')
    return resolutions

# The class-embedding options need labels; --shared-dim needs the shared embedding.
def _check_conditioning(c, opts):
    for name, option in (('g_shared', '--G-shared'), ('shared_dim', '--shared-dim')):
        if opts.get(name) is not None and not opts.get('cond'):
            raise ValueError(f'{option} applies to class-conditional training (--cond=1).')
    if opts.get('shared_dim') is not None and not c.G_kwargs.G_shared:
        raise ValueError('--shared-dim applies with the shared class embedding (--G-shared=1).')

#----------------------------------------------------------------------------

presets.register(
    BigGANPreset('biggan', 'BigGAN (Brock et al. 2019): architecture and settings from the resolution (tables for 32-512 px).'),
    BigGANPreset('biggan32', 'Small fixed BigGAN (ch 32, no attention, 2 D steps) at any resolution.', biggan32_spec),
)

#----------------------------------------------------------------------------
