# Former home of the StyleGAN2 building blocks; they now live in training/networks_stylegan2.py.
# Snapshots written before the move embed a training/networks.py and networks_discriminator.py whose
# source imports these names from here, so every one of them stays importable. See docs/networks.md.

from training.networks_stylegan2 import ( # noqa: F401 # pylint: disable=unused-import
    normalize_2nd_moment,
    _block_dtype,
    modulated_conv2d,
    FullyConnectedLayer,
    Conv2dLayer,
    MappingNetwork,
    _block_resolutions,
)
