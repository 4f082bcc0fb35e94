# Spectral normalisation moved to torch_utils/spectral_norm.py, so that BigGAN pickles carry
# the code they run (see docs/biggan.md). This module keeps the old import path working for
# configs and scripts that name `training.spectral_norm.*`; pickles written before the move
# embed their own copy of the old source and do not need it.

# pylint: disable=unused-import
from torch_utils.spectral_norm import (gram_schmidt, power_iteration, is_spectral_norm_module,
    SpectralNormMixin, SpectralNormConv2d, SpectralNormLinear, SpectralNormEmbedding,
    SN, SNConv2d, SNLinear, SNEmbedding)

#----------------------------------------------------------------------------
