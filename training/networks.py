# Former home of the StyleGAN2 generator; the networks now live in training/networks_stylegan2.py.
# This module re-exports every name it used to define or import, so that configs naming
# `training.networks.Generator` and the source embedded in snapshots written before the move still
# resolve. New code names training.networks_stylegan2. See docs/networks.md.

from training.networks_stylegan2 import ( # noqa: F401 # pylint: disable=unused-import
    normalize_2nd_moment,
    _block_dtype,
    modulated_conv2d,
    FullyConnectedLayer,
    Conv2dLayer,
    MappingNetwork,
    _block_resolutions,
    SynthesisLayer,
    ToRGBLayer,
    SynthesisBlock,
    SynthesisNetwork,
    Generator,
    DiscriminatorBlock,
    MinibatchStdLayer,
    DiscriminatorEpilogue,
    Discriminator,
)
