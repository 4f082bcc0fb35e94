# benchmarks/conv_alternatives.py: the two formulations docs/performance.md times against torch's
# convolutions must compute the same thing, checked here in float64 against torch's own layers
# on shapes other than the script's self-check (odd sizes for the transposed one, C_in != C_out).

import pytest
import torch
import torch.nn.functional as F

@pytest.fixture(scope='module')
def alternatives(load_benchmark):
    return load_benchmark('conv_alternatives')

@pytest.mark.parametrize('shape', [(1, 3, 2, 2), (2, 5, 8, 6)])
def test_winograd_equals_conv2d(alternatives, shape):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    w = torch.randn([7, shape[1], 3, 3], generator=gen, dtype=torch.float64)
    torch.testing.assert_close(alternatives.winograd_conv3x3(x, w), F.conv2d(x, w, padding=1), rtol=0, atol=1e-11)

@pytest.mark.parametrize('shape', [(1, 3, 1, 1), (2, 5, 5, 7)])
def test_phases_equal_conv_transpose2d(alternatives, shape):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    w = torch.randn([shape[1], 4, 3, 3], generator=gen, dtype=torch.float64)
    torch.testing.assert_close(alternatives.transposed_by_phases(x, w), F.conv_transpose2d(x, w, stride=2), rtol=0, atol=1e-11)

def test_check_rejects_a_wrong_formulation(alternatives):
    def flipped(x, w):
        return F.conv2d(x, w.flip([2, 3]), padding=1)
    with pytest.raises(Exception, match='differs from torch'):
        alternatives.check(flipped, alternatives.CASES['winograd'][1])
