# Training configurations by name (`train.py --cfg`): the registry of presets, and the StyleGAN2
# family (the published StyleGAN2-ADA hyper-parameters and a small preset for CPU runs).
#
# A preset turns the dataset's facts and the user's options into the keyword arguments of
# training.training_loop.training_loop. Each network family keeps its presets in its own module
# (training/presets_<family>.py, listed in FAMILY_MODULES below), which registers them on import:
#
#   class MyPreset(presets.Preset):
#       family = presets.Family('MyGAN', options=('my_width',))  # train.py options only this family reads.
#       def config(self, resolution, gpus): ...                  # The preset's own loop kwargs.
#       def apply_options(self, c, opts, device): ...            # The family's options, precision, ...
#   presets.register(MyPreset('mygan', 'One-line description'))
#
# train.py applies the options every family shares (batch, kimg, gamma, learning rates, EMA,
# augmentation) and refuses, with one line, a family option given to a preset of another family.

import dataclasses
import importlib

import dnnlib
from torch_utils import precision

#----------------------------------------------------------------------------
# The family of a preset: its name in messages and the train.py options only its presets read.

@dataclasses.dataclass(frozen=True)
class Family:
    name:       str         # Shown to users: 'StyleGAN2', 'BigGAN'.
    options:    tuple = ()  # train.py parameter names (e.g. 'cbase', 'freeze_d') that only this family reads.

#----------------------------------------------------------------------------
# One `--cfg` entry.

class Preset:
    family = Family('generic')

    def __init__(self, name, description):
        self.name = name                # What `--cfg` accepts.
        self.description = description  # One line for docs and --help.

    # The preset's part of the loop keyword arguments at this dataset resolution and process count.
    # Must set at least G_kwargs, D_kwargs, G_opt_kwargs, D_opt_kwargs, loss_kwargs, total_kimg,
    # batch_size and batch_gpu.
    def config(self, resolution, gpus):
        raise NotImplementedError()

    # Apply the family's own options from `opts` (all of train.py's options by parameter name) after
    # the shared overrides, so c.batch_gpu is final; `device` is 'cuda', 'cpu' or 'mps'.
    def apply_options(self, c, opts, device):
        pass

#----------------------------------------------------------------------------
# The registry: every name `--cfg` accepts.

configs = {}

def register(*presets):
    """Add presets to the registry; a name may be registered once."""
    for preset in presets:
        if preset.name in configs:
            raise ValueError(f'Preset {preset.name!r} is registered twice.')
        configs[preset.name] = preset

def get(name):
    """The preset called `name`; a one-line error naming the valid ones otherwise."""
    if name not in configs:
        raise ValueError(f'Unknown --cfg {name!r}; valid: {", ".join(configs)}.')
    return configs[name]

def family_options():
    """{option name: [family names that read it]} over every registered family."""
    owners = {}
    for preset in configs.values():
        for option in preset.family.options:
            if preset.family.name not in owners.setdefault(option, []):
                owners[option].append(preset.family.name)
    return owners

#----------------------------------------------------------------------------
# Hyper-parameters of one StyleGAN2 preset (Karras et al. 2020, ADA paper, Appendix A / train.py).

@dataclasses.dataclass(frozen=True)
class StyleGAN2Spec:
    ref_gpus:   int     # Number of GPUs the batch was published for (batch_gpu = mb // ref_gpus).
    kimg:       int     # Training length in thousands of real images.
    mb:         int     # Total batch size.
    mbstd:      int     # Minibatch-stddev group size.
    fmaps:      float   # Channel multiplier: channel_base = fmaps * 32768.
    lrate:      float   # Adam learning rate of G (and of D unless dlrate is given).
    gamma:      float   # R1 weight.
    ema:        float   # G_ema half-life in kimg.
    ramp:       float   # EMA ramp-up (None = off).
    map:        int     # Mapping network depth.
    cmax:       int     # Channel maximum.
    zdim:       int     # Dimension of z and w.
    pl:         float   # Path-length regularisation weight.
    mix:        float   # Style-mixing probability.
    darch:      str     # Discriminator architecture: 'orig', 'skip' or 'resnet'.
    ada_kimg:   float = 500 # ADA speed: p can go from 0 to 1 in this many kimg.
    mbstd_ch:   int = 1     # Minibatch-stddev features: the original's 1, or 0 = one per channel of D's 4x4 block.
    class_groups: bool = False # Conditional runs: each minibatch-stddev group holds one class (reals and fakes).
    class_group_kimg: float = 0 # The class groups start after this many kimg (0 = from the start).
    dlrate:     float = None # Adam learning rate of D; None = lrate.
    d_joint:    bool = False # Dmain in one D pass over fakes and reals (StyleGAN2Loss d_joint_pass: same math, fewer calls).
    aux:        float = 0   # Conditional runs: weight of D's auxiliary classifier (AC-GAN cross-entropy; 0 = off).
    mb_per_process: bool = False # mb and the learning rates are for one process: --gpus=N trains N * mb, lr * sqrt(N).

stylegan2_specs = {
    'stylegan2': StyleGAN2Spec(ref_gpus=8, kimg=25000,  mb=32, mbstd=4,  fmaps=1,     lrate=0.002,  gamma=10,   ema=10,  ramp=None, map=8, cmax=512, zdim=512, pl=2, mix=0.9, darch='resnet'),
    'paper256':  StyleGAN2Spec(ref_gpus=8, kimg=25000,  mb=64, mbstd=8,  fmaps=0.5,   lrate=0.0025, gamma=1,    ema=20,  ramp=None, map=8, cmax=512, zdim=512, pl=2, mix=0.9, darch='resnet'),
    'paper512':  StyleGAN2Spec(ref_gpus=8, kimg=25000,  mb=64, mbstd=8,  fmaps=1,     lrate=0.0025, gamma=0.5,  ema=20,  ramp=None, map=8, cmax=512, zdim=512, pl=2, mix=0.9, darch='resnet'),
    'paper1024': StyleGAN2Spec(ref_gpus=8, kimg=25000,  mb=32, mbstd=4,  fmaps=1,     lrate=0.002,  gamma=2,    ema=10,  ramp=None, map=8, cmax=512, zdim=512, pl=2, mix=0.9, darch='resnet'),
    'cifar':     StyleGAN2Spec(ref_gpus=2, kimg=100000, mb=64, mbstd=32, fmaps=1,     lrate=0.0025, gamma=0.01, ema=500, ramp=0.05, map=2, cmax=512, zdim=512, pl=0, mix=0,   darch='orig'),
    # small: chosen by the demo's sweep (docs/demo.md): batch 8 per process (more steps per kimg), learning rates
    # G 0.0035 and D 0.006 (times sqrt(processes)), R1 gamma 1, ADA that reacts within 100 kimg, one minibatch-stddev
    # feature per channel, and in conditional runs stddev groups of one class each once the classes have separated
    # (after class_group_kimg) and D's auxiliary classifier (weight 0.5).
    'small':     StyleGAN2Spec(ref_gpus=1, kimg=200,    mb=8,  mbstd=4,  fmaps=0.125, lrate=0.0035, gamma=1,    ema=10,  ramp=0.05, map=2, cmax=32,  zdim=128, pl=0, mix=0.9, darch='resnet', ada_kimg=100, mbstd_ch=0, class_groups=True, class_group_kimg=30, dlrate=0.006, d_joint=True, aux=0.5, mb_per_process=True),
}

stylegan2_descriptions = {
    'auto':      'StyleGAN2, batch, width, lr and gamma chosen from the resolution and --gpus (ADA paper).',
    'stylegan2': 'StyleGAN2 config F (Karras et al. 2020).',
    'paper256':  'ADA paper, 256x256 datasets.',
    'paper512':  'ADA paper, 512x512 datasets.',
    'paper1024': 'ADA paper, 1024x1024 datasets.',
    'cifar':     'ADA paper, CIFAR-10.',
    'small':     'Narrow networks for CPU runs and demos at 16-64 px; batch 8 per process.',
}

#----------------------------------------------------------------------------
# The StyleGAN2 family: networks of training.networks_stylegan2, loss training.loss.StyleGAN2Loss.

class StyleGAN2Preset(Preset):
    family = Family('StyleGAN2', options=('cbase', 'cmax', 'map', 'mbstd_ch', 'class_group_kimg', 'aux', 'reuse_fakes', 'freeze_d', 'nhwc', 'bf16'))

    def __init__(self, name, description, spec):
        super().__init__(name, description)
        self._spec = spec

    # The hyper-parameters of this preset at this resolution and process count. A batch per process
    # grows with the processes, the learning rates by sqrt(N) (Adam's square-root scaling rule,
    # Malladi et al. 2022): on a CPU, where one process leaves most of a second core idle (small
    # ops), N processes train more images per second.
    def spec(self, resolution, gpus):
        s = self._spec
        if not s.mb_per_process:
            return s
        scale = gpus ** 0.5
        return dataclasses.replace(s, ref_gpus=gpus, mb=s.mb * gpus, lrate=s.lrate * scale,
            dlrate=(None if s.dlrate is None else s.dlrate * scale))

    def config(self, resolution, gpus):
        spec = self.spec(resolution, gpus)
        channel_base = int(spec.fmaps * 32768)
        c = dnnlib.EasyDict()
        c.G_kwargs = dnnlib.EasyDict(class_name='training.networks_stylegan2.Generator', z_dim=spec.zdim, w_dim=spec.zdim,
            mapping_kwargs=dnnlib.EasyDict(num_layers=spec.map),
            synthesis_kwargs=dnnlib.EasyDict(channel_base=channel_base, channel_max=spec.cmax, num_fp16_res=4, conv_clamp=256))
        c.D_kwargs = dnnlib.EasyDict(class_name='training.networks_stylegan2.Discriminator', architecture=spec.darch,
            channel_base=channel_base, channel_max=spec.cmax, num_fp16_res=4, conv_clamp=256,
            block_kwargs=dnnlib.EasyDict(), mapping_kwargs=dnnlib.EasyDict(),
            epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=spec.mbstd, mbstd_num_channels=spec.mbstd_ch))
        c.G_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=spec.lrate, betas=[0.0, 0.99], eps=1e-8)
        c.D_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=(spec.lrate if spec.dlrate is None else spec.dlrate), betas=[0.0, 0.99], eps=1e-8)
        c.loss_kwargs = dnnlib.EasyDict(class_name='training.loss.StyleGAN2Loss', r1_gamma=spec.gamma,
            pl_weight=spec.pl, style_mixing_prob=spec.mix)
        if spec.d_joint:
            c.loss_kwargs.d_joint_pass = True
        c.total_kimg = spec.kimg
        c.batch_size = spec.mb
        c.batch_gpu = max(spec.mb // spec.ref_gpus, 1)
        c.ema_kimg = spec.ema
        c.ema_rampup = spec.ramp
        c.ada_kimg = spec.ada_kimg
        if spec.aux:
            c.loss_kwargs.aux_weight = spec.aux # Conditional runs only: resolved with the data in apply_options.
        if spec.class_groups:
            c.class_group_size = spec.mbstd # Resolved with the data in apply_options.
            c.class_group_kimg = spec.class_group_kimg
        c.G_reg_interval = 4 # Lazy regularisation (StyleGAN2 Sec. 3.1).
        c.D_reg_interval = 16
        c.image_grid_kwargs = dnnlib.EasyDict(noise_mode='const') # Grids without per-pixel noise, comparable between snapshots.
        return c

    def apply_options(self, c, opts, device):
        if opts.get('cbase') is not None:
            c.G_kwargs.synthesis_kwargs.channel_base = c.D_kwargs.channel_base = opts.cbase
        if opts.get('cmax') is not None:
            c.G_kwargs.synthesis_kwargs.channel_max = c.D_kwargs.channel_max = opts.cmax
        if opts.get('map') is not None:
            c.G_kwargs.mapping_kwargs.num_layers = opts.map
        if opts.get('freeze_d'):
            c.D_kwargs.block_kwargs.freeze_layers = opts.freeze_d
        epilogue = c.D_kwargs.epilogue_kwargs
        if opts.get('mbstd_ch') is not None:
            epilogue.mbstd_num_channels = opts.mbstd_ch
        epilogue.mbstd_group_size = min(epilogue.mbstd_group_size, c.batch_gpu) # A group lies within one step's batch.
        channels = min(c.D_kwargs.channel_base // 4, c.D_kwargs.channel_max) # D's 4x4 block (after --cbase/--cmax).
        if epilogue.mbstd_num_channels == 0: # One feature per channel.
            epilogue.mbstd_num_channels = channels
        if channels % epilogue.mbstd_num_channels != 0:
            raise ValueError(f'--mbstd-ch={epilogue.mbstd_num_channels} must divide the {channels} channels of D\'s 4x4 block (or be 0: one per channel).')
        if c.get('class_group_size'): # Class groups are the stddev groups, and only where there are classes.
            c.class_group_size = epilogue.mbstd_group_size if c.get('training_set_kwargs', {}).get('use_labels') else 0
        if opts.get('class_group_kimg') is not None:
            if not c.get('class_group_size'):
                raise ValueError('--class-group-kimg needs class groups: a conditional run (--cond=1) of a config that has them (--cfg=small).')
            c.class_group_kimg = opts.class_group_kimg
        self._apply_aux(c, opts)
        if opts.get('reuse_fakes') is not None:
            c.loss_kwargs.reuse_fakes = opts.reuse_fakes
        mixed_dtype = precision.choose_mixed_dtype(device, fp32=opts.get('fp32'), bf16=opts.get('bf16'))
        if mixed_dtype is None: # float32 everywhere (--fp32, or a CPU without bfloat16), unclamped.
            for kwargs in (c.G_kwargs.synthesis_kwargs, c.D_kwargs):
                kwargs.num_fp16_res = 0
                kwargs.conv_clamp = None
        elif mixed_dtype == 'bfloat16': # The networks' default is float16 (CUDA).
            c.G_kwargs.synthesis_kwargs.mixed_dtype = c.D_kwargs.block_kwargs.mixed_dtype = 'bfloat16'
        if opts.get('nhwc') or (mixed_dtype == 'bfloat16' and device == 'cpu'): # CPU bfloat16 convolutions are faster in NHWC.
            c.D_kwargs.block_kwargs.fp16_channels_last = True
            c.G_kwargs.synthesis_kwargs.fp16_channels_last = True

    # The auxiliary classifier (--aux or the preset's weight) in conditional runs: D's class head and its loss term.
    @staticmethod
    def _apply_aux(c, opts):
        preset_weight = c.loss_kwargs.pop('aux_weight', 0)
        weight = opts.aux if opts.get('aux') is not None else preset_weight
        conditional = c.get('training_set_kwargs', {}).get('use_labels')
        if opts.get('aux') and not conditional:
            raise ValueError('--aux needs a conditional run (--cond=1): the auxiliary classifier learns the labels.')
        if weight and conditional:
            c.D_kwargs.aux_classifier = True
            c.loss_kwargs.aux_weight = weight

# `auto`: the original's rules for batch, group size, width, learning rate and gamma from the resolution.
class AutoStyleGAN2Preset(StyleGAN2Preset):
    def __init__(self, name, description):
        super().__init__(name, description, spec=None)

    def spec(self, resolution, gpus):
        mb = max(min(gpus * min(4096 // resolution, 32), 64), gpus) # At most 32 per GPU, at least 1.
        return StyleGAN2Spec(ref_gpus=gpus, kimg=25000, mb=mb, mbstd=min(mb // gpus, 4),
            fmaps=(1 if resolution >= 512 else 0.5), lrate=(0.002 if resolution >= 1024 else 0.0025),
            gamma=0.0002 * resolution ** 2 / mb, # Heuristic formula of the ADA paper.
            ema=mb * 10 / 32, ramp=0.05, map=2, cmax=512, zdim=512, pl=2, mix=0.9, darch='resnet')

register(AutoStyleGAN2Preset('auto', stylegan2_descriptions['auto']))
register(*[StyleGAN2Preset(name, stylegan2_descriptions[name], spec) for name, spec in stylegan2_specs.items()])

#----------------------------------------------------------------------------
# The other families: each module registers its presets when imported.

FAMILY_MODULES = [
    'training.presets_biggan',
    'training.presets_stylegan3',
]

for _module_name in FAMILY_MODULES:
    importlib.import_module(_module_name)

#----------------------------------------------------------------------------
