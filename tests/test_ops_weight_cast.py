# Tests of torch_utils/ops/weight_cast.py: the weights of reduced-precision convolutions prepared in one C
# kernel pass (cast, gain, squared tap sums) and its backward. Values and gradients are checked against
# the PyTorch composition they replace (bit for bit), the tap sums against an independent float32 model of
# their order and float64; the path for a graph of the gradient, the fallbacks and the networks' use.

import os
import shutil

import numpy as np
import pytest
import torch

from torch_utils.ops import cpu_kernels
from torch_utils.ops import weight_cast

needs_kernels = pytest.mark.skipif(shutil.which(os.environ.get('CC') or 'cc') is None or os.environ.get(cpu_kernels.ENV) == '0',
    reason='no C compiler, or the CPU kernels are switched off')

LAYOUTS = [torch.contiguous_format, torch.channels_last]

@pytest.fixture
def small_weights_too(monkeypatch):
    monkeypatch.setattr(weight_cast, 'KERNEL_MIN_NUMEL', 0)

def weight(shape, seed, layout=torch.contiguous_format):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return w.contiguous(memory_format=layout).requires_grad_(True)

# The PyTorch compositions the two functions replace.
def reference_scaled(w, gain):
    return (w * gain).to(torch.bfloat16)

def reference_tap_sums(w):
    return w.to(torch.bfloat16), w.square().sum(dim=[2, 3])

# Gradients of w for the given output gradients (g for the cast weight, gs for the sums, either None).
def grad_of(outputs, w, g, gs):
    outs, grads = [], []
    for out, grad in zip(outputs, (g, gs)):
        if grad is not None:
            outs.append(out)
            grads.append(grad)
    return torch.autograd.grad(outs, [w], grads, retain_graph=True)[0]

# The order the kernel documents for the sums of squares, in float32 numpy: contiguous, 8 interleaved partial
# sums, then those in order; channels_last, tap after tap.
def modelled_sums(w, channels_last):
    sq = (w.detach() * w.detach()).reshape(w.shape[0] * w.shape[1], -1).numpy()
    if channels_last:
        acc = np.zeros(sq.shape[0], np.float32)
        for t in range(sq.shape[1]):
            acc = (acc + sq[:, t]).astype(np.float32)
        return torch.from_numpy(acc).reshape(w.shape[:2])
    lanes = [np.zeros(sq.shape[0], np.float32) for _ in range(8)]
    for t in range(sq.shape[1]):
        lanes[t % 8] = (lanes[t % 8] + sq[:, t]).astype(np.float32)
    acc = lanes[0]
    for lane in lanes[1:]:
        acc = (acc + lane).astype(np.float32)
    return torch.from_numpy(acc).reshape(w.shape[:2])

#----------------------------------------------------------------------------
# scaled_cast: values and gradient equal (w * gain).to(bf16)'s bit for bit, both layouts, gradients in the
# strides convolutions hand back (contiguous, channels_last, transposed as for up-sampling).

@needs_kernels
@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('gain', [1 / np.sqrt(256 * 9), np.float64(0.037), 1.0, 3])
def test_scaled_cast_equals_composition(layout, gain, small_weights_too):
    w = weight([64, 48, 3, 3], 0, layout)
    out = weight_cast.scaled_cast(w, gain, torch.bfloat16)
    ref = reference_scaled(w, gain)
    assert type(out.grad_fn).__name__ == '_WeightCastBackward' # The kernel's Function ran.
    assert torch.equal(out, ref) and out.stride() == ref.stride()
    for g in grad_layouts([64, 48, 3, 3], 1):
        assert torch.equal(grad_of([out], w, g, None), grad_of([ref], w, g, None))

def grad_layouts(shape, seed):
    g = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(torch.bfloat16)
    transposed = g.transpose(0, 1).contiguous().transpose(0, 1)
    return [g, g.contiguous(memory_format=torch.channels_last), transposed, g.flip([2, 3])]

@needs_kernels
def test_scaled_cast_special_values(small_weights_too):
    w = torch.tensor([0.0, -0.0, float('inf'), float('-inf'), float('nan'), 1e-40, -3e38, 3.3895e38, 1 + 2 ** -8, 1 + 3 * 2 ** -9])
    w = w.reshape(2, 5, 1, 1).requires_grad_(True)
    out = weight_cast.scaled_cast(w, 1.0, torch.bfloat16)
    ref = w.to(torch.bfloat16)
    nan = torch.isnan(ref)
    assert torch.equal(torch.isnan(out), nan) and nan.sum() == 1 # NaN stays NaN (its bit pattern may differ).
    assert torch.equal(out[~nan].view(torch.int16), ref[~nan].view(torch.int16)) # -0, inf, ties, denormals.

#----------------------------------------------------------------------------
# cast_with_tap_sums: the cast equal to w.to(bf16); the sums equal to the documented order exactly, to float64
# within float32 rounding, and to torch's own sum where torch adds in that order (on this build: contiguous
# weights, and channels_last ones whose input channels fill its vectors); the gradient of both outputs
# equal to the composition's bit for bit.

@needs_kernels
@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('shape', [[32, 32, 3, 3], [64, 256, 3, 3], [16, 16, 4, 4], [8, 5, 3, 3], [12, 7, 1, 3]])
def test_tap_sums_values(layout, shape, small_weights_too):
    w = weight(shape, 2, layout)
    out, sums = weight_cast.cast_with_tap_sums(w, torch.bfloat16)
    ref_out, ref_sums = reference_tap_sums(w)
    assert torch.equal(out, ref_out) and out.stride() == ref_out.stride()
    channels_last = layout == torch.channels_last and not w.is_contiguous()
    assert torch.equal(sums, modelled_sums(w, channels_last))
    exact = w.detach().double().square().sum(dim=[2, 3])
    assert torch.allclose(sums.double(), exact, rtol=4e-7, atol=0)
    if torch.equal(ref_sums, modelled_sums(w, channels_last)): # torch adds in this order here: then bit for bit.
        assert torch.equal(sums, ref_sums)

# The networks' weights (3x3, channels a multiple of 16, either layout): the sums equal torch's where its
# reduction adds in the modelled order, which this build's does (else they differ from it in the last bit).
@needs_kernels
@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('shape', [[32, 32, 3, 3], [256, 128, 3, 3], [512, 512, 3, 3]])
def test_tap_sums_equal_torch_for_network_weights(layout, shape):
    w = weight(shape, 14, layout)
    ref_sums = w.square().sum(dim=[2, 3])
    if not torch.equal(ref_sums, modelled_sums(w, layout == torch.channels_last)):
        pytest.skip('torch sums the taps in another order on this build')
    assert torch.equal(weight_cast.cast_with_tap_sums(w, torch.bfloat16)[1], ref_sums)

@needs_kernels
@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('terms', ['both', 'cast', 'sums'])
def test_tap_sums_gradient_equals_composition(layout, terms):
    shape = [64, 64, 3, 3]
    w = weight(shape, 3, layout)
    outputs = weight_cast.cast_with_tap_sums(w, torch.bfloat16)
    ref = reference_tap_sums(w)
    gs = torch.randn(shape[:2], generator=torch.Generator().manual_seed(4)) if terms != 'cast' else None
    for g in grad_layouts(shape, 5):
        g = g if terms != 'sums' else None
        a, b = grad_of(outputs, w, g, gs), grad_of(ref, w, g, gs)
        assert torch.equal(a, b) and a.stride() == w.stride()

# A wrong gradient would show against float64: d/dw of sum(g * bf16(w)) + sum(gs * tapsums(w)).
@needs_kernels
def test_tap_sums_gradient_against_float64():
    w = weight([40, 33, 3, 3], 6, torch.channels_last)
    g = torch.randn([40, 33, 3, 3]).to(torch.bfloat16)
    gs = torch.randn([40, 33])
    grad = grad_of(weight_cast.cast_with_tap_sums(w, torch.bfloat16), w, g, gs)
    exact = g.double() + 2 * w.detach().double() * gs.double()[:, :, None, None]
    assert torch.allclose(grad.double(), exact, rtol=1e-6, atol=1e-6)

#----------------------------------------------------------------------------
# A graph of the gradient (path length, R1): the backward in torch ops, the same first derivative, and the
# composition's second derivative (to rounding: autograd's backward of square() multiplies in another order).

@needs_kernels
@pytest.mark.parametrize('sums', [False, True])
def test_graph_of_the_gradient(sums):
    w = weight([64, 64, 3, 3], 7, torch.channels_last)
    g = torch.randn([64, 64, 3, 3]).to(torch.bfloat16).requires_grad_(True)
    gs = torch.randn([64, 64]).requires_grad_(True) if sums else None
    grads = [g, gs] if sums else [g]
    def derivatives(outputs):
        first, = torch.autograd.grad(outputs, [w], grads, create_graph=True)
        second = torch.autograd.grad(first.square().sum(), [w] + grads, allow_unused=True, materialize_grads=True)
        return [first.detach()] + list(second)
    if sums:
        results = [derivatives(list(weight_cast.cast_with_tap_sums(w, torch.bfloat16))), derivatives(list(reference_tap_sums(w)))]
    else:
        results = [derivatives([weight_cast.scaled_cast(w, 0.1, torch.bfloat16)]), derivatives([reference_scaled(w, 0.1)])]
    assert torch.equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1:], results[1][1:]): # Autograd's pow backward multiplies in another order.
        assert (a.float() - b.float()).abs().max() <= 1e-6 * b.float().abs().max()

#----------------------------------------------------------------------------
# The PyTorch path where the kernel does not apply: float32 target, small weights, other layouts, kernels off.

def test_fallbacks_equal_composition(monkeypatch):
    w = weight([64, 64, 3, 3], 8)
    assert weight_cast.scaled_cast(w, 0.5, torch.float32).grad_fn.name() == 'MulBackward0'
    w32, sums = weight_cast.cast_with_tap_sums(w, torch.float32)
    assert w32 is w and torch.equal(sums, w.square().sum(dim=[2, 3]))
    small = weight([4, 4, 3, 3], 9)
    assert weight_cast.scaled_cast(small, 0.5, torch.bfloat16).grad_fn.name() == 'ToCopyBackward0'
    strided = weight([64, 128, 3, 3], 10)[:, ::2]
    assert torch.equal(weight_cast.scaled_cast(strided, 0.5, torch.bfloat16), (strided * 0.5).to(torch.bfloat16))
    monkeypatch.setattr(cpu_kernels, '_lib', None)
    monkeypatch.setattr(cpu_kernels, '_state', 'off')
    assert weight_cast.scaled_cast(w, 0.5, torch.bfloat16).grad_fn.name() == 'ToCopyBackward0'

@needs_kernels
def test_without_gradients_no_graph():
    w = weight([64, 64, 3, 3], 11, torch.channels_last)
    with torch.no_grad():
        out, sums = weight_cast.cast_with_tap_sums(w, torch.bfloat16)
        scaled = weight_cast.scaled_cast(w, 0.25, torch.bfloat16)
    assert out.grad_fn is None and sums.grad_fn is None and scaled.grad_fn is None
    assert torch.equal(out, w.detach().to(torch.bfloat16)) and torch.equal(scaled, (w.detach() * 0.25).to(torch.bfloat16))

# The demodulation's squared tap sums (the PyTorch path): values and gradient of weight.square().sum([2, 3])
# bit for bit, and differentiable twice (path-length regularisation) against finite differences in float64.
def test_squared_tap_sums():
    w = torch.randn([6, 5, 3, 3], requires_grad=True)
    g = torch.randn([6, 5])
    a = weight_cast._SquaredTapSums.apply(w)
    b = w.square().sum(dim=[2, 3])
    assert torch.equal(a, b)
    assert torch.equal(torch.autograd.grad(a, [w], g)[0], torch.autograd.grad(b, [w], g)[0])
    w64 = torch.randn([4, 3, 3, 3], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(weight_cast._SquaredTapSums.apply, (w64,))
    assert torch.autograd.gradgradcheck(weight_cast._SquaredTapSums.apply, (w64,))

#----------------------------------------------------------------------------
# The networks: a bfloat16 generator and discriminator give the same images and gradients with the
# kernels as with the PyTorch path.

@needs_kernels
def test_networks_equal_with_and_without_kernels(monkeypatch):
    from training import networks_stylegan2
    kwargs = dict(num_fp16_res=2, conv_clamp=256)
    torch.manual_seed(12)
    G = networks_stylegan2.Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=512, channel_max=64, mixed_dtype='bfloat16',
        fp16_channels_last=True, **kwargs))
    D = networks_stylegan2.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=512, channel_max=64,
        **kwargs, block_kwargs=dict(mixed_dtype='bfloat16', fp16_channels_last=True), epilogue_kwargs=dict(mbstd_group_size=2))
    z = torch.randn([4, 16])
    def run():
        for p in [*G.parameters(), *D.parameters()]:
            p.grad = None
        torch.manual_seed(13)
        img = G(z, None)
        D(img, None).sum().backward()
        return [img.detach()] + [p.grad for p in [*G.parameters(), *D.parameters()]]
    monkeypatch.setattr(weight_cast, 'KERNEL_MIN_NUMEL', 0)
    calls = []
    original = cpu_kernels.weight_cast_forward
    monkeypatch.setattr(cpu_kernels, 'weight_cast_forward', lambda *a, **k: calls.append(1) or original(*a, **k))
    with_kernel = run()
    assert calls, 'the kernel did not run'
    monkeypatch.setattr(weight_cast, '_kernel_applies', lambda w, dtype: False)
    without = run()
    for a, b in zip(with_kernel, without):
        assert (a is None and b is None) or torch.equal(a, b)

#----------------------------------------------------------------------------
