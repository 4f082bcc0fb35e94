# The StyleGAN3 presets (Karras et al. 2021, "Alias-Free Generative Adversarial Networks", appendix D
# and the StyleGAN3 release's train.py): `stylegan3-t` (translation equivariant), `stylegan3-r`
# (translation and rotation equivariant) and `stylegan2-sg3` (the StyleGAN3 release's `stylegan2`
# baseline; named so because our `stylegan2` is the StyleGAN2-ADA config F). The discriminator is
# StyleGAN2's. As in the original, R1's gamma has no default: --gamma is required.
# Registered in training.presets on import. See docs/stylegan3.md.

import dataclasses

import dnnlib
from training import presets

#----------------------------------------------------------------------------
# Hyper-parameters of one preset (the release's defaults for --cbase, --cmax, --map, --glr, --dlr,
# --mbstd-group, with the config's own changes).

@dataclasses.dataclass(frozen=True)
class StyleGAN3Spec:
    G_class:        str     # Generator class name.
    cbase:          int     # Channel base of G and D (R doubles G's: 65536).
    cmax:           int     # Channel maximum of G and D (R doubles G's: 1024).
    map:            int     # Mapping network depth.
    glr:            float   # G learning rate.
    dlr:            float   # D learning rate.
    mbstd:          int     # Minibatch-stddev group size.
    conv_kernel:    int     # Synthesis conv kernel (R: 1x1); None for the StyleGAN2 generator.
    radial:         bool    # Radially symmetric down-sampling filters (R).
    blur_sigma:     float   # Initial blur of D's input (R: 10 px), faded out over blur_kimg_per_32 * batch / 32 kimg.
    blur_kimg_per_32: float # Blur fade length in kimg per 32 images of batch.

stylegan3_specs = {
    'stylegan3-t':   StyleGAN3Spec(G_class='training.networks_stylegan3.Generator', cbase=32768, cmax=512, map=2, glr=0.0025, dlr=0.002,
        mbstd=4, conv_kernel=3, radial=False, blur_sigma=0, blur_kimg_per_32=0),
    'stylegan3-r':   StyleGAN3Spec(G_class='training.networks_stylegan3.Generator', cbase=65536, cmax=1024, map=2, glr=0.0025, dlr=0.002,
        mbstd=4, conv_kernel=1, radial=True, blur_sigma=10, blur_kimg_per_32=200),
    'stylegan2-sg3': StyleGAN3Spec(G_class='training.networks_stylegan2.Generator', cbase=32768, cmax=512, map=8, glr=0.002, dlr=0.002,
        mbstd=4, conv_kernel=None, radial=False, blur_sigma=0, blur_kimg_per_32=0),
}

stylegan3_descriptions = {
    'stylegan3-t':   'StyleGAN3-T (alias-free, translation equivariant); needs --gamma.',
    'stylegan3-r':   'StyleGAN3-R (alias-free, translation and rotation equivariant: 1x1 convs, radial filters); needs --gamma.',
    'stylegan2-sg3': 'StyleGAN2 as configured by the StyleGAN3 release (lr 0.002, mapping 8, no path-length weight gradients); needs --gamma.',
}

BATCH = 32          # The release has no default batch; its published configurations mostly used 32.
KIMG = 25000        # Training length of the release's default --kimg.

#----------------------------------------------------------------------------
# The StyleGAN3 family: G from training.networks_stylegan3 (or networks_stylegan2 for the baseline),
# D training.networks_stylegan2.Discriminator, loss training.loss.StyleGAN2Loss.

class StyleGAN3Preset(presets.Preset):
    family = presets.Family('StyleGAN3', options=('cbase', 'cmax', 'map', 'freeze_d'))

    def __init__(self, name, description, spec):
        super().__init__(name, description)
        self.spec = spec

    def config(self, resolution, gpus):
        spec = self.spec
        c = dnnlib.EasyDict()
        c.G_kwargs = dnnlib.EasyDict(class_name=spec.G_class, z_dim=512, w_dim=512,
            mapping_kwargs=dnnlib.EasyDict(num_layers=spec.map))
        g_size = dict(channel_base=spec.cbase, channel_max=spec.cmax, num_fp16_res=4, conv_clamp=256)
        if spec.conv_kernel is None:
            c.G_kwargs.synthesis_kwargs = dnnlib.EasyDict(g_size)
        else:
            c.G_kwargs.update(g_size, conv_kernel=spec.conv_kernel, use_radial_filters=spec.radial)
        d_base, d_max = (spec.cbase // 2, spec.cmax // 2) if spec.radial else (spec.cbase, spec.cmax) # R doubles G only.
        c.D_kwargs = dnnlib.EasyDict(class_name='training.networks_stylegan2.Discriminator', architecture='resnet',
            channel_base=d_base, channel_max=d_max, num_fp16_res=4, conv_clamp=256,
            block_kwargs=dnnlib.EasyDict(), mapping_kwargs=dnnlib.EasyDict(),
            epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=spec.mbstd))
        c.G_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=spec.glr, betas=[0.0, 0.99], eps=1e-8)
        c.D_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=spec.dlr, betas=[0.0, 0.99], eps=1e-8)
        c.loss_kwargs = dnnlib.EasyDict(class_name='training.loss.StyleGAN2Loss', r1_gamma=None, pl_weight=0, style_mixing_prob=0)
        if spec.conv_kernel is None:
            c.loss_kwargs.update(pl_weight=2, style_mixing_prob=0.9, pl_no_weight_grad=True) # The StyleGAN2 baseline keeps them.
        c.total_kimg = KIMG
        c.batch_size = BATCH
        c.batch_gpu = max(BATCH // gpus, 1)
        c.ema_rampup = 0.05
        c.G_reg_interval = 4 if spec.conv_kernel is None else None # StyleGAN3 has no G regularisation.
        c.D_reg_interval = 16
        c.image_grid_kwargs = dnnlib.EasyDict(noise_mode='const')
        return c

    def apply_options(self, c, opts, device):
        if opts.get('gamma') is None:
            raise ValueError(f'--cfg={self.name} needs --gamma (R1 weight; the StyleGAN3 release trains AFHQv2 512 '
                'with 8.2 and fine-tunes MetFaces-U 1024 with 6.6; it grows with the resolution).')
        self._apply_sizes(c, opts)
        if opts.get('freeze_d'):
            c.D_kwargs.block_kwargs.freeze_layers = opts.freeze_d
        c.D_kwargs.epilogue_kwargs.mbstd_group_size = min(c.D_kwargs.epilogue_kwargs.mbstd_group_size, c.batch_gpu)

        # Values that follow the final batch size.
        if opts.get('ema') is None:
            c.ema_kimg = c.batch_size * 10 / 32 # G_ema half-life 10 kimg per 32 images of batch.
        if self.spec.conv_kernel is not None:
            c.G_kwargs.magnitude_ema_beta = 0.5 ** (c.batch_size / (20 * 1e3)) # Magnitude EMA half-life 20k images.
        if self.spec.blur_sigma > 0:
            c.loss_kwargs.blur_init_sigma = self.spec.blur_sigma # Blur the images D sees at first...
            c.loss_kwargs.blur_fade_kimg = c.batch_size * self.spec.blur_kimg_per_32 / 32 # ...fading out over these kimg.

        # float16 only pays on CUDA.
        if opts.get('fp32') or device != 'cuda':
            synthesis = c.G_kwargs.synthesis_kwargs if 'synthesis_kwargs' in c.G_kwargs else c.G_kwargs
            for kwargs in (synthesis, c.D_kwargs):
                kwargs.num_fp16_res = 0
                kwargs.conv_clamp = None

    # --cbase / --cmax (R doubles them for G, as the release) and --map.
    def _apply_sizes(self, c, opts):
        synthesis = c.G_kwargs.synthesis_kwargs if 'synthesis_kwargs' in c.G_kwargs else c.G_kwargs
        factor = 2 if self.spec.radial else 1
        if opts.get('cbase') is not None:
            synthesis.channel_base, c.D_kwargs.channel_base = opts.cbase * factor, opts.cbase
        if opts.get('cmax') is not None:
            synthesis.channel_max, c.D_kwargs.channel_max = opts.cmax * factor, opts.cmax
        if opts.get('map') is not None:
            c.G_kwargs.mapping_kwargs.num_layers = opts.map

#----------------------------------------------------------------------------

presets.register(*[StyleGAN3Preset(name, stylegan3_descriptions[name], spec) for name, spec in stylegan3_specs.items()])

#----------------------------------------------------------------------------
