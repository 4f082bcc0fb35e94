# Former home of the StyleGAN2 discriminator; it now lives in training/networks_stylegan2.py.
# Snapshots written before the move embed a training/networks.py whose source imports these names
# from here, so every one of them stays importable. See docs/networks.md.

from training.networks_stylegan2 import ( # noqa: F401 # pylint: disable=unused-import
    _block_dtype,
    FullyConnectedLayer,
    Conv2dLayer,
    MappingNetwork,
    _block_resolutions,
    DiscriminatorBlock,
    MinibatchStdLayer,
    DiscriminatorEpilogue,
    Discriminator,
)
