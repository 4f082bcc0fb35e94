# Spectral normalisation of layer weights by power iteration (Miyato et al. 2018, "Spectral
# Normalization for Generative Adversarial Networks"), in the form used by BigGAN: several
# singular values can be tracked at once (Gram-Schmidt keeps the singular vectors
# orthogonal), the estimated singular values are kept in buffers for logging, and the
# weight used in the forward pass is W / sigma_0.
#
# Readable names: SpectralNormMixin, SpectralNormConv2d, SpectralNormLinear,
# SpectralNormEmbedding. BigGAN's names are aliases with BigGAN's constructor arguments:
# SN, SNConv2d, SNLinear, SNEmbedding.
#
# The layers are persistent classes: a pickled network carries this module's source, so it
# runs the spectral norm it was trained with. This module imports only torch and torch_utils.

import torch
import torch.nn.functional as F

from torch_utils import persistence

#----------------------------------------------------------------------------
# Remove from the row vector x its components along the orthonormal row vectors ys.

def gram_schmidt(x, ys):
    for y in ys:
        x = x - (x @ y.t()) * y
    return x

#----------------------------------------------------------------------------
# One step of power iteration for the num_svs leading singular values of a matrix.

def power_iteration(W, us, update=True, eps=1e-12):
    """One power-iteration step for the leading singular vectors of W.

    Args:
        W:      Matrix [M, K]; the singular values of W are estimated.
        us:     List of left singular vector estimates, each [1, M] (the u buffers).
        update: Write the new u estimates back into the tensors of `us` (in place, no grad).
        eps:    Epsilon of the vector normalisation.

    Returns:
        svs: List of singular value estimates (0-dim tensors, differentiable w.r.t. W).
        us:  List of new left singular vectors [1, M] (detached).
        vs:  List of new right singular vectors [1, K] (detached).
    """
    svs, new_us, new_vs = [], [], []
    for i, u in enumerate(us):
        with torch.no_grad():
            v = F.normalize(gram_schmidt(u @ W, new_vs), dim=1, eps=eps)            # [1K]
            u_new = F.normalize(gram_schmidt(v @ W.t(), new_us), dim=1, eps=eps)    # [1M]
            if update:
                us[i].copy_(u_new)
        new_vs.append(v)
        new_us.append(u_new)
        svs.append(torch.squeeze(v @ W.t() @ u_new.t()))
    return svs, new_us, new_vs

#----------------------------------------------------------------------------
# Mixin that adds spectral normalisation to a layer with a `weight` parameter. The weight is
# viewed as the matrix [weight.shape[0], -1] (transposed when `transpose` is set).
# Buffers: u0, u1, ... (left singular vectors) and sv0, sv1, ... (singular value estimates,
# for logging only). In training mode each W_() call runs `num_itrs` power-iteration steps
# and updates the buffers in place; in eval mode it runs one step from the stored u
# without changing any buffer, so evaluation is deterministic.

class SpectralNormMixin:
    def __init__(self,
        num_svs     = 1,        # Number of singular values (and vectors) to track.
        num_itrs    = 1,        # Power-iteration steps per forward pass in training mode.
        num_outputs = None,     # Length of the u vectors (BigGAN's argument); None = the matrix's row count.
        transpose   = False,    # Normalise the transposed weight matrix.
        eps         = 1e-12,    # Epsilon of the vector normalisation.
    ):
        if int(num_svs) < 1 or int(num_itrs) < 1:
            raise ValueError(f'Spectral norm needs num_svs >= 1 and num_itrs >= 1, got {num_svs} and {num_itrs}')
        self.num_svs = int(num_svs)
        self.num_itrs = int(num_itrs)
        self.transpose = bool(transpose)
        self.eps = float(eps)
        num_rows = self.weight.shape[0] if not self.transpose else self.weight[0].numel()
        if num_outputs is not None and int(num_outputs) != num_rows:
            raise ValueError(f'Spectral norm: num_outputs={num_outputs}, but the {"transposed " if self.transpose else ""}'
                f'{list(self.weight.shape)} weight has {num_rows} rows')
        if self.num_svs > min(self.weight.shape[0], self.weight[0].numel()):
            raise ValueError(f'Spectral norm: num_svs={num_svs} exceeds the rank bound of a {list(self.weight.shape)} weight')
        for i in range(self.num_svs):
            self.register_buffer(f'u{i}', torch.randn([1, num_rows]))
            self.register_buffer(f'sv{i}', torch.ones([1]))

    # Left singular vector buffers.
    @property
    def u(self):
        return [getattr(self, f'u{i}') for i in range(self.num_svs)]

    # Singular value buffers (logging only).
    @property
    def sv(self):
        return [getattr(self, f'sv{i}') for i in range(self.num_svs)]

    # The weight as the matrix whose spectral norm is estimated.
    def weight_matrix(self):
        W = self.weight.reshape(self.weight.shape[0], -1)
        return W.t() if self.transpose else W

    # The spectrally normalised weight W / sigma_0 (same shape as self.weight).
    def W_(self):
        W = self.weight_matrix()
        if self.training:
            for _ in range(self.num_itrs):
                svs, _us, _vs = power_iteration(W, self.u, update=True, eps=self.eps)
            with torch.no_grad():
                for sv_buf, sv in zip(self.sv, svs):
                    sv_buf.copy_(sv.detach().reshape([1]))
        else:
            svs, _us, _vs = power_iteration(W, self.u, update=False, eps=self.eps)
        return self.weight / svs[0]

    # Extra text for the module's repr.
    def sn_repr(self):
        return f'num_svs={self.num_svs}, num_itrs={self.num_itrs}, transpose={self.transpose}, eps={self.eps:g}'

#----------------------------------------------------------------------------
# 2D convolution with a spectrally normalised weight.

@persistence.persistent_class
class SpectralNormConv2d(torch.nn.Conv2d, SpectralNormMixin):
    def __init__(self,
        in_channels,            # Number of input channels.
        out_channels,           # Number of output channels.
        kernel_size,            # Kernel size (int or pair).
        stride      = 1,        # Stride (int or pair).
        padding     = 0,        # Zero padding (int or pair).
        dilation    = 1,        # Dilation (int or pair).
        groups      = 1,        # Number of channel groups.
        bias        = True,     # Add a learned bias.
        num_svs     = 1,        # Number of singular values to track.
        num_itrs    = 1,        # Power-iteration steps per training forward pass.
        eps         = 1e-12,    # Epsilon of the vector normalisation.
    ):
        torch.nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride,
            padding=padding, dilation=dilation, groups=groups, bias=bias)
        SpectralNormMixin.__init__(self, num_svs=num_svs, num_itrs=num_itrs, eps=eps)

    def forward(self, x):
        return F.conv2d(x, self.W_(), self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self):
        return f'{super().extra_repr()}, {self.sn_repr()}'

#----------------------------------------------------------------------------
# Fully-connected layer with a spectrally normalised weight.

@persistence.persistent_class
class SpectralNormLinear(torch.nn.Linear, SpectralNormMixin):
    def __init__(self,
        in_features,            # Number of input features.
        out_features,           # Number of output features.
        bias        = True,     # Add a learned bias.
        num_svs     = 1,        # Number of singular values to track.
        num_itrs    = 1,        # Power-iteration steps per training forward pass.
        eps         = 1e-12,    # Epsilon of the vector normalisation.
    ):
        torch.nn.Linear.__init__(self, in_features, out_features, bias=bias)
        SpectralNormMixin.__init__(self, num_svs=num_svs, num_itrs=num_itrs, eps=eps)

    def forward(self, x):
        return F.linear(x, self.W_(), self.bias)

    def extra_repr(self):
        return f'{super().extra_repr()}, {self.sn_repr()}'

#----------------------------------------------------------------------------
# Embedding table with a spectrally normalised weight [num_embeddings, embedding_dim]
# (the rows are the u side, as in BigGAN). Integer input looks rows up; floating-point
# input [..., num_embeddings] (one-hot or soft labels) returns input @ weight.

@persistence.persistent_class
class SpectralNormEmbedding(torch.nn.Embedding, SpectralNormMixin):
    def __init__(self,
        num_embeddings,                 # Number of rows (classes).
        embedding_dim,                  # Size of each row.
        padding_idx         = None,     # As torch.nn.Embedding: this row gets no gradient.
        max_norm            = None,     # Accepted for BigGAN's signature; must be None.
        norm_type           = 2.0,      # Accepted for BigGAN's signature; unused without max_norm.
        scale_grad_by_freq  = False,    # As torch.nn.Embedding.
        sparse              = False,    # Accepted for BigGAN's signature; must be False.
        _weight             = None,     # As torch.nn.Embedding: initial weight [num_embeddings, embedding_dim].
        num_svs             = 1,        # Number of singular values to track.
        num_itrs            = 1,        # Power-iteration steps per training forward pass.
        eps                 = 1e-12,    # Epsilon of the vector normalisation.
    ):
        if max_norm is not None or sparse:
            raise ValueError('SpectralNormEmbedding: max_norm and sparse are not supported (the normalised weight is a new tensor each call)')
        torch.nn.Embedding.__init__(self, num_embeddings, embedding_dim, padding_idx=padding_idx, max_norm=max_norm,
            norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq, sparse=sparse, _weight=_weight)
        SpectralNormMixin.__init__(self, num_svs=num_svs, num_itrs=num_itrs, eps=eps)

    def forward(self, x):
        if x.is_floating_point():
            if x.shape[-1] != self.num_embeddings:
                raise ValueError(f'SpectralNormEmbedding: floating-point input must end in {self.num_embeddings} (one-hot), got shape {list(x.shape)}')
            return x @ self.W_().to(x.dtype)
        return F.embedding(x, self.W_(), self.padding_idx, scale_grad_by_freq=self.scale_grad_by_freq)

    def extra_repr(self):
        return f'{super().extra_repr()}, {self.sn_repr()}'

#----------------------------------------------------------------------------
# True for a module whose weight is spectrally normalised by SpectralNormMixin (duck-typed,
# so it also holds for classes rebuilt from a pickle's embedded source).

def is_spectral_norm_module(module):
    return callable(getattr(module, 'W_', None)) and hasattr(module, 'num_svs')

#----------------------------------------------------------------------------
# BigGAN's names (aliases).

SN = SpectralNormMixin
SNConv2d = SpectralNormConv2d
SNLinear = SpectralNormLinear
SNEmbedding = SpectralNormEmbedding

#----------------------------------------------------------------------------
