# BigGAN generator and discriminator (Brock et al. 2019, "Large Scale GAN Training for High
# Fidelity Natural Image Synthesis") with the call interface of the StyleGAN2-ADA training
# loop: G(z, c) -> images in [-1, 1], D(img, c) -> [N, 1] logits, c a float one-hot label.
#
# Generator: shared class embedding, hierarchical z (one chunk for the first linear layer
# and one per block), residual up-sampling blocks with class-conditional BatchNorm
# conditioned on [shared(c), z chunk], optional self-attention (SAGAN, Zhang et al. 2019).
# Discriminator: residual down-sampling blocks, optional self-attention, ReLU, sum pooling,
# a linear output plus the projection term sum(embed(c) * h) (Miyato & Koyama 2018, "cGANs
# with Projection Discriminator").
# Every convolution, linear and embedding layer comes from the layer factories which_conv,
# which_linear, which_embedding chosen by G_param / D_param ('SN': spectral norm; 'none').
#
# Self-contained: this module imports only torch, numpy and torch_utils (whose layers are
# persistent classes too), so a pickle carries all the code its networks run.

import functools

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import misc
from torch_utils import norms
from torch_utils import persistence
from torch_utils import spectral_norm

#----------------------------------------------------------------------------
# Weight initialisations selectable by name (G_init / D_init). They apply to the weight of
# every Conv2d, Linear and Embedding (spectrally normalised or not); biases keep PyTorch's
# default initialisation.

weight_inits = {
    'ortho':    torch.nn.init.orthogonal_,
    'N02':      lambda w: torch.nn.init.normal_(w, mean=0.0, std=0.02),
    'xavier':   torch.nn.init.xavier_uniform_,
}

# Generator normalisations selectable by name (norm).
generator_norms = {
    'ccbn':     'class-conditional normalisation with the chosen norm_style',
    'vbn':      'class-conditional virtual batch normalisation against a fixed reference batch',
}

# Layer parameterisations selectable by name (G_param / D_param, as BigGAN's options).
layer_params = {
    'SN':       'spectral norm on every convolution, linear and embedding layer',
    'none':     'plain layers (an SN ablation)',
}

# Elements of z beyond this magnitude are redrawn by the truncation trick.
TRUNCATION_THRESHOLD = 2.0

#----------------------------------------------------------------------------
# Embedding table that also takes float one-hot (or soft) labels [..., num_embeddings]:
# those give input @ weight, integers look rows up. The plain which_embedding.

@persistence.persistent_class
class OneHotEmbedding(torch.nn.Embedding):
    def forward(self, x):
        if x.is_floating_point():
            if x.shape[-1] != self.num_embeddings:
                raise ValueError(f'OneHotEmbedding: floating-point input must end in {self.num_embeddings} (one-hot), got shape {list(x.shape)}')
            return x @ self.weight.to(x.dtype)
        return super().forward(x)

#----------------------------------------------------------------------------
# BigGAN's layer factories (which_conv, which_linear, which_embedding) for a parameterisation:
# spectrally normalised layers with sn_kwargs (num_svs, num_itrs, eps) for 'SN', plain ones for 'none'.

def layer_factories(param='SN', sn_kwargs=None):
    if param not in layer_params:
        raise ValueError(f'Unknown layer parameterisation {param!r}; choose one of {sorted(layer_params)}')
    if param == 'none':
        if sn_kwargs:
            raise ValueError(f"Spectral-norm settings {sorted(sn_kwargs)} given with param='none'")
        return torch.nn.Conv2d, torch.nn.Linear, OneHotEmbedding
    sn_kwargs = dict(sn_kwargs or {})
    return (functools.partial(spectral_norm.SpectralNormConv2d, **sn_kwargs),
        functools.partial(spectral_norm.SpectralNormLinear, **sn_kwargs),
        functools.partial(spectral_norm.SpectralNormEmbedding, **sn_kwargs))

#----------------------------------------------------------------------------
# Initialise the weights of all Conv2d, Linear and Embedding layers of a module.

def init_weights(module, init):
    if init not in weight_inits:
        raise ValueError(f'Unknown weight initialisation {init!r}; choose one of {sorted(weight_inits)}')
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding)):
                weight_inits[init](m.weight)

#----------------------------------------------------------------------------
# Output channel multipliers of the generator blocks (BigGAN's arch tables); a block
# doubles the resolution, from 4x4 up to img_resolution. Sizes above 512 add blocks of 1.

_G_OUT_MULTS = {
    16:  [4, 4],
    32:  [4, 4, 4],
    64:  [16, 8, 4, 2],
    128: [16, 8, 4, 2, 1],
    256: [16, 8, 8, 4, 2, 1],
    512: [16, 8, 8, 4, 2, 1, 1],
}

# Discriminator blocks (BigGAN's arch tables): (output channel multiplier, downsample).
_D_BLOCKS = {
    16:  [(4, True), (4, False), (4, False)],
    32:  [(4, True), (4, True), (4, False), (4, False)],
    64:  [(1, True), (2, True), (4, True), (8, True), (16, False)],
    128: [(1, True), (2, True), (4, True), (8, True), (16, True), (16, False)],
    256: [(1, True), (2, True), (4, True), (8, True), (8, True), (16, True), (16, False)],
    512: [(1, True), (1, True), (2, True), (4, True), (8, True), (8, True), (16, True), (16, False)],
}

#----------------------------------------------------------------------------
# Check that a resolution is a power of two >= 16; returns log2 of it.

def _check_resolution(img_resolution):
    res_log2 = int(np.round(np.log2(max(int(img_resolution), 1))))
    if img_resolution < 16 or 2 ** res_log2 != img_resolution:
        raise ValueError(f'BigGAN networks need img_resolution a power of two >= 16, got {img_resolution}')
    return res_log2

#----------------------------------------------------------------------------
# Generator architecture: list of (in_channels, out_channels, out_resolution) per block.

def generator_arch(img_resolution, ch):
    res_log2 = _check_resolution(img_resolution)
    out_mults = _G_OUT_MULTS[min(img_resolution, 512)] + [1] * max(res_log2 - 9, 0)
    in_mults = [out_mults[0]] + out_mults[:-1]
    return [(ch * i, ch * o, 2 ** (idx + 3)) for idx, (i, o) in enumerate(zip(in_mults, out_mults))]

#----------------------------------------------------------------------------
# Discriminator architecture: list of (in_channels, out_channels, downsample, out_resolution).

def discriminator_arch(img_resolution, ch, img_channels):
    res_log2 = _check_resolution(img_resolution)
    blocks = [(1, True)] * max(res_log2 - 9, 0) + _D_BLOCKS[min(img_resolution, 512)]
    arch, in_channels, res = [], img_channels, img_resolution
    for mult, down in blocks:
        res = res // 2 if down else res
        arch.append((in_channels, ch * mult, down, res))
        in_channels = ch * mult
    return arch

#----------------------------------------------------------------------------
# Resolve attn_res against the block output resolutions; None = (64,) if present, else ().

def _attention_resolutions(attn_res, block_resolutions):
    if attn_res is None:
        return (64,) if 64 in block_resolutions else ()
    attn_res = tuple(int(r) for r in attn_res)
    unknown = [r for r in attn_res if r not in block_resolutions]
    if unknown:
        raise ValueError(f'attn_res {unknown} not among the block output resolutions {sorted(set(block_resolutions))}')
    return attn_res

#----------------------------------------------------------------------------
# BigGAN's truncation trick: elements of z with |z| > 2 are redrawn from N(0, 1) until
# they lie within [-2, 2] (a truncated normal), then z is scaled by psi. psi = 1 returns z
# unchanged; psi = 0 gives z = 0. Redrawing uses torch's global generator.

def truncate_z(z, truncation_psi=1):
    psi = float(truncation_psi)
    if not 0 <= psi <= 1:
        raise ValueError(f'truncation_psi must lie in [0, 1], got {truncation_psi}')
    if psi == 1:
        return z
    z = z.clone()
    outside = z.abs() > TRUNCATION_THRESHOLD
    while bool(outside.any()):
        z[outside] = torch.randn(int(outside.sum()), dtype=z.dtype, device=z.device)
        outside = z.abs() > TRUNCATION_THRESHOLD
    return z * psi

#----------------------------------------------------------------------------
# Self-attention layer (SAGAN): 1x1 convolutions theta, phi, g, o (which_conv, no bias);
# phi and g are max-pooled 2x2; out = x + gamma * o(attention(g)), gamma learned from 0.

@persistence.persistent_class
class SelfAttention(torch.nn.Module):
    def __init__(self,
        channels,               # Number of input and output channels.
        sn_kwargs   = None,     # Keyword arguments of the spectral-norm layers; None = defaults.
        param       = 'SN',     # Layer parameterisation, one of layer_params.
    ):
        super().__init__()
        which_conv, _which_linear, _which_embedding = layer_factories(param, sn_kwargs)
        self.channels = int(channels)
        self.key_channels = max(self.channels // 8, 1)
        self.value_channels = max(self.channels // 2, 1)
        conv = lambda i, o: which_conv(i, o, kernel_size=1, bias=False)
        self.theta = conv(self.channels, self.key_channels)
        self.phi = conv(self.channels, self.key_channels)
        self.g = conv(self.channels, self.value_channels)
        self.o = conv(self.value_channels, self.channels)
        self.gamma = torch.nn.Parameter(torch.zeros([]))

    def forward(self, x):
        misc.assert_shape(x, [None, self.channels, None, None])
        N, _C, H, W = x.shape
        theta = self.theta(x).reshape(N, self.key_channels, H * W)                           # [NKP]
        phi = F.max_pool2d(self.phi(x), 2).reshape(N, self.key_channels, H * W // 4)         # [NKQ]
        g = F.max_pool2d(self.g(x), 2).reshape(N, self.value_channels, H * W // 4)           # [NVQ]
        beta = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)                            # [NPQ]
        o = (g @ beta.transpose(1, 2)).reshape(N, self.value_channels, H, W)                 # [NVHW]
        return x + self.gamma * self.o(o)

#----------------------------------------------------------------------------
# Normalisation layer of a generator block: ccbn when there is a conditioning vector (its
# gain and bias layers are which_linear without bias, given as plain data so the network's
# constructor arguments stay plain), otherwise the unconditional bn with learned gain and bias.

def _make_norm(channels, cond_size, norm_kwargs, sn_kwargs, param):
    if cond_size > 0:
        return norms.ConditionalBatchNorm2d(channels, cond_size, use_sn=(param == 'SN'), sn_kwargs=sn_kwargs, **norm_kwargs)
    return norms.UnconditionalBatchNorm2d(channels, **norm_kwargs)

#----------------------------------------------------------------------------
# Generator residual block: norm1(x, y), ReLU, 2x nearest up-sampling, 3x3 conv,
# norm2(., y), ReLU, 3x3 conv; plus the up-sampled input through a 1x1 conv.

@persistence.persistent_class
class GeneratorBlock(torch.nn.Module):
    def __init__(self,
        in_channels,            # Number of input channels.
        out_channels,           # Number of output channels.
        cond_size,              # Size of the conditioning vector y (0 = unconditional norms).
        norm_kwargs,            # Keyword arguments of the norm layers (see _make_norm).
        sn_kwargs   = None,     # Keyword arguments of the spectral-norm layers; None = defaults.
        param       = 'SN',     # Layer parameterisation, one of layer_params.
    ):
        super().__init__()
        which_conv, _which_linear, _which_embedding = layer_factories(param, sn_kwargs)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.cond_size = int(cond_size)
        self.norm1 = _make_norm(self.in_channels, self.cond_size, norm_kwargs, sn_kwargs, param)
        self.conv1 = which_conv(self.in_channels, self.out_channels, 3, padding=1)
        self.norm2 = _make_norm(self.out_channels, self.cond_size, norm_kwargs, sn_kwargs, param)
        self.conv2 = which_conv(self.out_channels, self.out_channels, 3, padding=1)
        self.conv_sc = which_conv(self.in_channels, self.out_channels, 1)

    def forward(self, x, y=None):
        misc.assert_shape(x, [None, self.in_channels, None, None])
        if self.cond_size > 0:
            misc.assert_shape(y, [x.shape[0], self.cond_size])
        h = F.relu(self.norm1(x, y))
        h = self.conv1(F.interpolate(h, scale_factor=2, mode='nearest'))
        h = self.conv2(F.relu(self.norm2(h, y)))
        return h + self.conv_sc(F.interpolate(x, scale_factor=2, mode='nearest'))

#----------------------------------------------------------------------------
# Discriminator residual block: [ReLU,] 3x3 conv, ReLU, 3x3 conv, [2x2 average pooling];
# shortcut through a 1x1 conv when the channel count changes or the block down-samples
# (conv before pooling with preactivation, pooling before conv in the first block).

@persistence.persistent_class
class DiscriminatorBlock(torch.nn.Module):
    def __init__(self,
        in_channels,            # Number of input channels.
        out_channels,           # Number of output channels.
        downsample,             # Halve the resolution by 2x2 average pooling.
        preactivation,          # Apply ReLU to the input first (all blocks but the first).
        sn_kwargs   = None,     # Keyword arguments of the spectral-norm layers; None = defaults.
        param       = 'SN',     # Layer parameterisation, one of layer_params.
    ):
        super().__init__()
        which_conv, _which_linear, _which_embedding = layer_factories(param, sn_kwargs)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.downsample = bool(downsample)
        self.preactivation = bool(preactivation)
        self.conv1 = which_conv(self.in_channels, self.out_channels, 3, padding=1)
        self.conv2 = which_conv(self.out_channels, self.out_channels, 3, padding=1)
        self.conv_sc = None
        if self.in_channels != self.out_channels or self.downsample:
            self.conv_sc = which_conv(self.in_channels, self.out_channels, 1)

    def _shortcut(self, x):
        if self.preactivation:
            x = self.conv_sc(x) if self.conv_sc is not None else x
            return F.avg_pool2d(x, 2) if self.downsample else x
        x = F.avg_pool2d(x, 2) if self.downsample else x
        return self.conv_sc(x) if self.conv_sc is not None else x

    def forward(self, x):
        misc.assert_shape(x, [None, self.in_channels, None, None])
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        return h + self._shortcut(x)

#----------------------------------------------------------------------------
# Sizes of the z chunks: one for the first linear layer plus one per block (hierarchical z),
# as equal as possible, the first ones one larger when z_dim does not divide evenly.

def _z_chunk_sizes(z_dim, num_chunks):
    if z_dim < num_chunks:
        raise ValueError(f'Hierarchical z needs z_dim >= {num_chunks} (one chunk per block plus one), got z_dim={z_dim}')
    base, extra = divmod(z_dim, num_chunks)
    return [base + 1] * extra + [base] * (num_chunks - extra)

#----------------------------------------------------------------------------
# Option combinations the generator cannot build, as one-line errors.

def _check_generator_options(c_dim, ch, shared_dim, G_shared, norm, norm_style):
    if norm not in generator_norms:
        raise ValueError(f'Unknown generator norm {norm!r}; choose one of {sorted(generator_norms)}')
    if norm == 'vbn' and norm_style not in ('bn', 'vbn'):
        raise ValueError(f"norm='vbn' sets the norm style itself; got norm_style={norm_style!r}")
    if int(ch) < 1 or (int(c_dim) > 0 and G_shared and int(shared_dim) < 1):
        raise ValueError(f'Generator needs ch >= 1 and, with a shared class embedding, shared_dim >= 1; got ch={ch}, shared_dim={shared_dim}')

#----------------------------------------------------------------------------
# BigGAN generator.

@persistence.persistent_class
class Generator(torch.nn.Module):
    def __init__(self,
        z_dim,                      # Input latent (Z) dimensionality.
        c_dim,                      # Conditioning label (C) dimensionality, 0 = no label.
        img_resolution,             # Output resolution (power of two >= 16).
        img_channels,               # Number of output color channels.
        ch              = 64,       # Channel width multiplier (BigGAN's G_ch).
        attn_res        = None,     # Block output resolutions followed by self-attention; None = (64,) when present.
        shared_dim      = 128,      # Size of the shared class embedding (used when c_dim > 0 and G_shared).
        G_shared        = True,     # Blocks are conditioned on a shared class embedding; False = on the one-hot label itself.
        hier            = True,     # Hierarchical z: split z over the first layer and the blocks.
        G_param         = 'SN',     # Layer parameterisation, one of layer_params: 'SN' or 'none'.
        norm            = 'ccbn',   # Normalisation, one of generator_norms: 'ccbn' or 'vbn'.
        norm_style      = 'bn',     # ccbn norm style: 'bn', 'in', 'gn', 'nonorm' (see norms.norm_styles).
        bn_eps          = 1e-5,     # Epsilon of the norm layers.
        bn_momentum     = 0.1,      # Running-average momentum of the BatchNorm layers.
        cross_replica   = False,    # Synchronise BatchNorm statistics over torch.distributed processes.
        mybn            = False,    # BatchNorm with standing statistics (see accumulate_standing_stats).
        num_groups      = 16,       # Group count of norm_style 'gn'.
        num_svs         = 1,        # Singular values tracked by each spectral-norm layer.
        num_itrs        = 1,        # Power-iteration steps per training forward pass.
        sn_eps          = 1e-12,    # Epsilon of the spectral-norm vector normalisation.
        G_init          = 'ortho',  # Weight initialisation: 'ortho', 'N02' or 'xavier'.
        vbn_ref_size    = 32,       # Reference batch size of norm='vbn'.
    ):
        super().__init__()
        _check_generator_options(c_dim, ch, shared_dim, G_shared, norm, norm_style)
        self.z_dim = int(z_dim)
        self.c_dim = int(c_dim)
        self.img_resolution = int(img_resolution)
        self.img_channels = int(img_channels)
        self.norm = norm
        self.hier = bool(hier)
        arch = generator_arch(self.img_resolution, int(ch))
        self.attn_res = _attention_resolutions(attn_res, [res for _i, _o, res in arch])
        self.z_chunk_sizes = _z_chunk_sizes(self.z_dim, len(arch) + 1) if self.hier else [self.z_dim]
        self.shared_dim = int(shared_dim) if self.c_dim > 0 and G_shared else 0
        label_size = self.shared_dim if G_shared else self.c_dim  # Size of the label part of each block's y.
        sn_kwargs = dict(num_svs=num_svs, num_itrs=num_itrs, eps=sn_eps) if G_param == 'SN' else None
        which_conv, which_linear, _which_embedding = layer_factories(G_param, sn_kwargs)
        layer_kwargs = dict(sn_kwargs=sn_kwargs, param=G_param)
        norm_kwargs = dict(norm_style=('vbn' if norm == 'vbn' else norm_style), eps=bn_eps, momentum=bn_momentum,
            cross_replica=cross_replica, mybn=mybn, num_groups=num_groups)

        # Layers. The shared embedding is a bias-free linear map of the one-hot label (BigGAN's table, never SN).
        self.shared = torch.nn.Linear(self.c_dim, self.shared_dim, bias=False) if self.shared_dim > 0 else None
        self.bottom_channels = arch[0][0]
        self.linear = which_linear(self.z_chunk_sizes[0], self.bottom_channels * 16)
        self.blocks = torch.nn.ModuleList()
        self.attentions = torch.nn.ModuleList()
        for idx, (in_channels, out_channels, res) in enumerate(arch):
            cond_size = label_size + (self.z_chunk_sizes[idx + 1] if self.hier else 0)
            self.blocks.append(GeneratorBlock(in_channels, out_channels, cond_size, norm_kwargs, **layer_kwargs))
            self.attentions.append(SelfAttention(out_channels, **layer_kwargs) if res in self.attn_res else torch.nn.Identity())
        self.output_norm = norms.UnconditionalBatchNorm2d(arch[-1][1], **norm_kwargs)
        self.output_conv = which_conv(arch[-1][1], self.img_channels, 3, padding=1)
        init_weights(self, G_init)

        # Fixed reference batch of virtual batch normalisation.
        if norm == 'vbn':
            if int(vbn_ref_size) < 1:
                raise ValueError(f'vbn_ref_size must be >= 1, got {vbn_ref_size}')
            self.register_buffer('vbn_ref_z', torch.randn([int(vbn_ref_size), self.z_dim]))
            self.register_buffer('vbn_ref_c', _random_labels(int(vbn_ref_size), self.c_dim, device='cpu'))

    # Conditioning vectors of the blocks: [label, z chunk], label or None, where the label is
    # shared(c) (G_shared) or the one-hot c itself.
    def _block_conditions(self, z_chunks, c):
        label = None
        if self.c_dim > 0:
            label = self.shared(c) if self.shared is not None else c
        if not self.hier:
            return [label] * len(self.blocks)
        return [torch.cat([label, zc], dim=1) if label is not None else zc for zc in z_chunks[1:]]

    # Image from (already truncated) z and c.
    def synthesize(self, z, c):
        z_chunks = torch.split(z, self.z_chunk_sizes, dim=1)
        ys = self._block_conditions(z_chunks, c)
        x = self.linear(z_chunks[0]).reshape(z.shape[0], self.bottom_channels, 4, 4)     # [NC44]
        for block, attention, y in zip(self.blocks, self.attentions, ys):
            x = attention(block(x, y))
        x = self.output_conv(F.relu(self.output_norm(x)))
        return torch.tanh(x)

    # Recompute the reference statistics of every virtual BatchNorm from the fixed reference
    # batch with the current parameters (no gradient flows through them).
    def set_vbn_reference(self):
        for module in self.modules():
            if callable(getattr(module, 'reset_reference', None)):
                module.reset_reference()
        with torch.no_grad():
            self.synthesize(self.vbn_ref_z, self.vbn_ref_c)

    def forward(self,
        z,                          # Latents [N, z_dim].
        c,                          # Labels [N, c_dim], float one-hot.
        truncation_psi  = 1,        # BigGAN truncation trick (see truncate_z); 1 = off.
        update_emas     = False,    # Accepted for the training loop's call signature; BigGAN has no such averages.
    ):
        _ = update_emas
        misc.assert_shape(z, [None, self.z_dim])
        misc.assert_shape(c, [z.shape[0], self.c_dim])
        z = truncate_z(z, truncation_psi)
        if self.norm == 'vbn':
            self.set_vbn_reference()
        return self.synthesize(z, c.to(z.dtype))

    def extra_repr(self):
        return f'z_dim={self.z_dim}, c_dim={self.c_dim}, img_resolution={self.img_resolution}, img_channels={self.img_channels}, norm={self.norm!r}'

#----------------------------------------------------------------------------
# BigGAN discriminator.

@persistence.persistent_class
class Discriminator(torch.nn.Module):
    def __init__(self,
        c_dim,                      # Conditioning label (C) dimensionality, 0 = no label.
        img_resolution,             # Input resolution (power of two >= 16).
        img_channels,               # Number of input color channels.
        ch              = 64,       # Channel width multiplier (BigGAN's D_ch).
        attn_res        = None,     # Block output resolutions followed by self-attention; None = (64,) when present.
        D_param         = 'SN',     # Layer parameterisation, one of layer_params: 'SN' or 'none'.
        num_svs         = 1,        # Singular values tracked by each spectral-norm layer.
        num_itrs        = 1,        # Power-iteration steps per training forward pass.
        sn_eps          = 1e-12,    # Epsilon of the spectral-norm vector normalisation.
        D_init          = 'ortho',  # Weight initialisation: 'ortho', 'N02' or 'xavier'.
    ):
        super().__init__()
        if int(ch) < 1:
            raise ValueError(f'Discriminator needs ch >= 1, got {ch}')
        self.c_dim = int(c_dim)
        self.img_resolution = int(img_resolution)
        self.img_channels = int(img_channels)
        arch = discriminator_arch(self.img_resolution, int(ch), self.img_channels)
        self.attn_res = _attention_resolutions(attn_res, [res for _i, _o, _d, res in arch])
        sn_kwargs = dict(num_svs=num_svs, num_itrs=num_itrs, eps=sn_eps) if D_param == 'SN' else None
        _which_conv, which_linear, which_embedding = layer_factories(D_param, sn_kwargs)
        layer_kwargs = dict(sn_kwargs=sn_kwargs, param=D_param)

        # Layers.
        self.blocks = torch.nn.ModuleList()
        self.attentions = torch.nn.ModuleList()
        for idx, (in_channels, out_channels, down, res) in enumerate(arch):
            self.blocks.append(DiscriminatorBlock(in_channels, out_channels, down, preactivation=(idx > 0), **layer_kwargs))
            self.attentions.append(SelfAttention(out_channels, **layer_kwargs) if res in self.attn_res else torch.nn.Identity())
        self.out_channels = arch[-1][1]
        self.linear = which_linear(self.out_channels, 1)
        self.embed = which_embedding(self.c_dim, self.out_channels) if self.c_dim > 0 else None
        init_weights(self, D_init)

    def forward(self,
        img,                        # Images [N, img_channels, img_resolution, img_resolution].
        c,                          # Labels [N, c_dim], float one-hot.
        update_emas     = False,    # Accepted for the training loop's call signature; not used.
    ):
        _ = update_emas
        misc.assert_shape(img, [None, self.img_channels, self.img_resolution, self.img_resolution])
        misc.assert_shape(c, [img.shape[0], self.c_dim])
        x = img
        for block, attention in zip(self.blocks, self.attentions):
            x = attention(block(x))
        h = F.relu(x).sum(dim=[2, 3])                                   # [NC]
        out = self.linear(h)                                            # [N1]
        if self.embed is not None:
            out = out + (self.embed(c.to(h.dtype)) * h).sum(dim=1, keepdim=True)
        return out

    def extra_repr(self):
        return f'c_dim={self.c_dim}, img_resolution={self.img_resolution}, img_channels={self.img_channels}'

#----------------------------------------------------------------------------
# Random float one-hot labels [n, c_dim] (uniform classes); [n, 0] when c_dim is 0.

def _random_labels(n, c_dim, device, generator=None):
    if c_dim == 0:
        return torch.zeros([n, 0], device=device)
    idx = torch.randint(c_dim, [n], device=device, generator=generator)
    return F.one_hot(idx, c_dim).to(torch.float32)

#----------------------------------------------------------------------------
# Standing statistics (BigGAN sec. 4 / appendix): reset the statistics of every
# StandingBatchNorm in the generator `module`, run it in training mode without gradients
# over num_batches batches of random z and uniformly random classes, averaging the batch
# statistics, then put it in eval mode so it normalises with those averages. Spectral-norm
# layers are kept in eval mode meanwhile, so their singular vectors do not change. Modifies
# the module in place and returns it. The training loop calls it by name as a snapshot hook
# (module=, batch_size=, device=, seed=, num_batches=); seed=None draws a fresh seed.

def accumulate_standing_stats(module, num_batches, batch_size, device, seed=0):
    G = module
    standing = [m for m in G.modules() if callable(getattr(m, 'reset_stats', None)) and hasattr(m, 'accumulate_standing')]
    if not standing:
        raise ValueError('accumulate_standing_stats: G has no BatchNorm with standing statistics; build it with mybn=True (or cross_replica=True)')
    if int(num_batches) < 1 or int(batch_size) < 2:
        raise ValueError(f'accumulate_standing_stats needs num_batches >= 1 and batch_size >= 2, got {num_batches} and {batch_size}')
    generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(int(seed))
    else:
        generator.seed()
    for m in standing:
        m.reset_stats()
        m.accumulate_standing = True
    G.train()
    for m in G.modules():
        if spectral_norm.is_spectral_norm_module(m):
            m.eval()
    with torch.no_grad():
        for _ in range(int(num_batches)):
            z = torch.randn([int(batch_size), G.z_dim], device=device, generator=generator)
            c = _random_labels(int(batch_size), G.c_dim, device=device, generator=generator)
            G(z, c)
    G.eval()
    return G

#----------------------------------------------------------------------------
