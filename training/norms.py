# The BigGAN-family normalisation layers moved to torch_utils/norms.py, so that BigGAN pickles
# carry the code they run (see docs/biggan.md). This module keeps the old import path working
# for configs and scripts that name `training.norms.*`; pickles written before the move embed
# their own copy of the old source and do not need it.

# pylint: disable=unused-import
from torch_utils.norms import (norm_styles, batch_stats, fused_bn, manual_bn,
    StandingBatchNorm, Normalize2d, ConditionalBatchNorm2d, UnconditionalBatchNorm2d,
    VirtualBatchNorm1d, VirtualBatchNorm2d, myBN, ccbn, bn)

#----------------------------------------------------------------------------
