# Tests for torch_utils.ops.conv2d_gradfix: parity with torch.nn.functional, exact first
# and second derivatives, and the no_weight_gradients() context.

import itertools
import threading

import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import conv2d_gradfix

#----------------------------------------------------------------------------
# Convolution settings: (stride, padding, dilation, groups, kernel).

CONV_CASES = [
    (s, p, d, g, k)
    for s, p, d, g, k in itertools.product([1, 2], [0, 1, (2, 0)], [1, 2], [1, 2], [1, 3])
]

#----------------------------------------------------------------------------
# Random float64 tensors that require grad.

def _rand(*shape, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_(True)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('stride,padding,dilation,groups,k', CONV_CASES)
def test_conv2d_matches_torch(stride, padding, dilation, groups, k):
    x = _rand(2, 4, 9, 8, seed=0)
    w = _rand(6, 4 // groups, k, k, seed=1)
    b = _rand(6, seed=2)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = conv2d_gradfix.conv2d(x, w, b, **kw)
    y_ref = F.conv2d(x, w, b, **kw)
    assert torch.equal(y, y_ref)
    gy = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, w, b], gy)
    grads_ref = torch.autograd.grad(y_ref, [x, w, b], gy)
    for a, r in zip(grads, grads_ref):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)

#----------------------------------------------------------------------------

# Transposed convolution settings: output_padding must be smaller than stride or dilation.
TRANSPOSE_CASES = [case + (op,) for case in CONV_CASES for op in [0, 1] if op < max(case[0], case[2])]

@pytest.mark.parametrize('stride,padding,dilation,groups,k,output_padding', TRANSPOSE_CASES)
def test_conv_transpose2d_matches_torch(stride, padding, dilation, groups, k, output_padding):
    x = _rand(2, 4, 5, 6, seed=0)
    w = _rand(4, 6 // groups, k, k, seed=1)
    b = _rand(6, seed=2)
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    y = conv2d_gradfix.conv_transpose2d(x, w, b, **kw)
    y_ref = F.conv_transpose2d(x, w, b, **kw)
    assert torch.equal(y, y_ref)
    gy = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, w, b], gy)
    grads_ref = torch.autograd.grad(y_ref, [x, w, b], gy)
    for a, r in zip(grads, grads_ref):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('stride,padding,dilation,groups', [(1, 1, 1, 1), (2, 1, 1, 2), (2, 0, 2, 1), (1, (0, 2), 1, 2)])
def test_conv2d_gradcheck_gradgradcheck(stride, padding, dilation, groups):
    x = _rand(1, 2, 6, 5, seed=3)
    w = _rand(4, 2 // groups, 3, 2, seed=4)
    b = _rand(4, seed=5)
    fn = lambda x, w, b: conv2d_gradfix.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))

#----------------------------------------------------------------------------

@pytest.mark.parametrize('stride,padding,output_padding,dilation,groups', [(2, 1, 1, 1, 1), (2, 0, 0, 1, 2), (1, 1, 1, 2, 2), (3, 2, 2, 1, 1)])
def test_conv_transpose2d_gradcheck_gradgradcheck(stride, padding, output_padding, dilation, groups):
    x = _rand(1, 2, 4, 3, seed=6)
    w = _rand(2, 4 // groups, 3, 3, seed=7)
    b = _rand(4, seed=8)
    fn = lambda x, w, b: conv2d_gradfix.conv_transpose2d(x, w, b, stride=stride, padding=padding,
        output_padding=output_padding, groups=groups, dilation=dilation)
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))

@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
@pytest.mark.parametrize('channels_last', [False, True])
def test_dtypes_and_memory_formats_match_torch(dtype, channels_last):
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(20)
    x = torch.randn(2, 4, 8, 8, generator=gen).to(dtype=dtype, memory_format=memory_format).requires_grad_(True)
    w = torch.randn(6, 2, 3, 3, generator=gen).to(dtype=dtype, memory_format=memory_format).requires_grad_(True)
    for ours, theirs, kw in [(conv2d_gradfix.conv2d, F.conv2d, dict(stride=2, padding=1, groups=2)),
                             (conv2d_gradfix.conv_transpose2d, F.conv_transpose2d, dict(stride=2, padding=1, output_padding=1, groups=2))]:
        weight = w if ours is conv2d_gradfix.conv2d else w[:4]
        y, y_ref = ours(x, weight, **kw), theirs(x, weight, **kw)
        assert y.dtype == dtype
        torch.testing.assert_close(y, y_ref)
        gy = torch.randn(y.shape, generator=gen).to(dtype)
        for a, r in zip(torch.autograd.grad(y, [x, w], gy), torch.autograd.grad(y_ref, [x, w], gy)):
            torch.testing.assert_close(a, r)

#----------------------------------------------------------------------------
# A two-layer network: conv2d -> softplus -> conv_transpose2d -> softplus -> sum.

def _two_layer(x, w1, w2, conv=conv2d_gradfix):
    h = F.softplus(conv.conv2d(x, w1, stride=2, padding=1))
    return F.softplus(conv.conv_transpose2d(h, w2, stride=2, padding=1, output_padding=1)).sum()

#----------------------------------------------------------------------------

def test_no_weight_gradients_skips_weight_only():
    x = _rand(2, 3, 8, 8, seed=9)
    w1 = _rand(4, 3, 3, 3, seed=10)
    w2 = _rand(4, 2, 3, 3, seed=11)
    with conv2d_gradfix.no_weight_gradients():
        _two_layer(x, w1, w2).backward()
    assert w1.grad is None and w2.grad is None
    gx_ref, = torch.autograd.grad(_two_layer(x, w1, w2, conv=F), [x])
    torch.testing.assert_close(x.grad, gx_ref, rtol=1e-12, atol=1e-12)

#----------------------------------------------------------------------------

def test_no_weight_gradients_double_backward_is_exact():
    x = _rand(2, 3, 8, 8, seed=12)
    w1 = _rand(4, 3, 3, 3, seed=13)
    w2 = _rand(4, 2, 3, 3, seed=14)

    # Reference: plain torch ops.
    gx_ref, = torch.autograd.grad(_two_layer(x, w1, w2, conv=F), [x], create_graph=True)
    grads_ref = torch.autograd.grad(gx_ref.square().sum(), [x, w1, w2])

    # Ours: first backward without weight gradients, second backward with them.
    with conv2d_gradfix.no_weight_gradients():
        gx, = torch.autograd.grad(_two_layer(x, w1, w2), [x], create_graph=True)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(gx.square().sum(), [x, w1, w2])
    for a, r in zip(grads, grads_ref):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)

#----------------------------------------------------------------------------
# R1-like penalty ||d out / d x||^2: its weight gradient against central differences.

def test_r1_weight_gradient_matches_finite_differences():
    x = _rand(1, 2, 6, 6, seed=15)
    w1 = _rand(3, 2, 3, 3, seed=16)
    w2 = _rand(3, 2, 3, 3, seed=17)

    def penalty(w1, create_graph):
        with conv2d_gradfix.no_weight_gradients():
            gx, = torch.autograd.grad(_two_layer(x, w1, w2), [x], create_graph=create_graph)
        return gx.square().sum()

    grad_w1, = torch.autograd.grad(penalty(w1, create_graph=True), [w1])
    eps = 1e-6
    flat = w1.detach().flatten()
    for i in range(0, flat.numel(), 5):
        delta = torch.zeros_like(flat)
        delta[i] = eps
        hi = penalty((flat + delta).view_as(w1).requires_grad_(True), create_graph=False)
        lo = penalty((flat - delta).view_as(w1).requires_grad_(True), create_graph=False)
        fd = (hi - lo).item() / (2 * eps)
        assert abs(grad_w1.flatten()[i].item() - fd) < 1e-6 * max(1.0, abs(fd))

#----------------------------------------------------------------------------

def test_no_weight_gradients_state_is_context_local():
    assert not conv2d_gradfix.weight_gradients_disabled()
    seen_in_thread = []
    with conv2d_gradfix.no_weight_gradients():
        assert conv2d_gradfix.weight_gradients_disabled()
        with conv2d_gradfix.no_weight_gradients(disable=False):
            assert not conv2d_gradfix.weight_gradients_disabled()
        assert conv2d_gradfix.weight_gradients_disabled()
        thread = threading.Thread(target=lambda: seen_in_thread.append(conv2d_gradfix.weight_gradients_disabled()))
        thread.start()
        thread.join()
    assert seen_in_thread == [False]
    assert not conv2d_gradfix.weight_gradients_disabled()

    # Restored after an exception too.
    with pytest.raises(RuntimeError):
        with conv2d_gradfix.no_weight_gradients():
            raise RuntimeError('boom')
    assert not conv2d_gradfix.weight_gradients_disabled()

#----------------------------------------------------------------------------

def test_bad_arguments_raise_clear_errors():
    x = torch.randn(1, 4, 5, 5)
    with pytest.raises(ValueError, match='4D'):
        conv2d_gradfix.conv2d(x, torch.randn(3, 4, 3))
    with pytest.raises(ValueError, match='input channels'):
        conv2d_gradfix.conv2d(x, torch.randn(3, 3, 3, 3))
    with pytest.raises(ValueError, match='input channels'):
        conv2d_gradfix.conv2d(x, torch.randn(3, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match='padding'):
        conv2d_gradfix.conv2d(x, torch.randn(3, 4, 3, 3), padding=-1)
    with pytest.raises(ValueError, match='stride'):
        conv2d_gradfix.conv2d(x, torch.randn(3, 4, 3, 3), stride=0)
    with pytest.raises(ValueError, match='padding'):
        conv2d_gradfix.conv2d(x, torch.randn(3, 4, 3, 3), padding=(1, -1)) # Pairs take the quick check.
    with pytest.raises(ValueError, match='stride'):
        conv2d_gradfix.conv2d(x, torch.randn(3, 4, 3, 3), stride=(1, 0))
    with pytest.raises(ValueError, match='stride'):
        conv2d_gradfix.conv2d(x, torch.randn(3, 4, 3, 3), stride=(True, 1))
    with pytest.raises(ValueError, match='groups'):
        conv2d_gradfix.conv_transpose2d(x, torch.randn(4, 3, 3, 3), groups=0)
    with pytest.raises(ValueError, match='input channels'):
        conv2d_gradfix.conv_transpose2d(x, torch.randn(3, 3, 3, 3))

#----------------------------------------------------------------------------

#----------------------------------------------------------------------------
# Strided depthwise transposed convolutions in bfloat16 on the CPU run by phases: against float64
# F.conv_transpose2d of the same (bfloat16-representable) values, over strides, taps, padding,
# output_padding and both layouts; first and second derivatives against the float32 path.

@pytest.mark.parametrize('kernel', [(4, 4), (3, 2), (1, 3)])
@pytest.mark.parametrize('stride,padding,output_padding', [((2, 2), (0, 0), (0, 0)), ((2, 3), (1, 0), (1, 2)), ((3, 2), (2, 1), (0, 1))])
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('channels', [3, 1]) # One channel with equal strides: all phases in one convolution.
def test_depthwise_transpose_bfloat16(kernel, stride, padding, output_padding, channels_last, channels):
    torch.manual_seed(0)
    x = torch.randn([2, channels, 5, 6]).bfloat16()
    w = torch.randn([channels, 1, *kernel]).bfloat16()
    b = torch.randn([channels]).bfloat16()
    expected = torch.nn.functional.conv_transpose2d(x.double(), w.double(), b.double(), stride, padding, output_padding, groups=channels)
    x = x.to(memory_format=torch.channels_last) if channels_last else x
    y = conv2d_gradfix.conv_transpose2d(x, w, b, stride, padding, output_padding, groups=channels)
    assert y.dtype == torch.bfloat16 and y.shape == expected.shape
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.testing.assert_close(y.double(), expected, rtol=2e-2, atol=5e-2)

def test_depthwise_transpose_bfloat16_gradients():
    torch.manual_seed(0)
    x = torch.randn([2, 4, 5, 5])
    w = torch.randn([4, 1, 4, 4])
    grads = []
    for dtype in (torch.float32, torch.bfloat16):
        xx = x.to(dtype).requires_grad_(True)
        y = conv2d_gradfix.conv_transpose2d(xx, w.to(dtype), stride=2, padding=1, groups=4)
        dx, = torch.autograd.grad(y.float().square().sum(), [xx], create_graph=True)
        ddx, = torch.autograd.grad(dx.float().square().sum(), [xx])
        grads.append((y.float(), dx.float(), ddx.float()))
    for ref, low in zip(*grads):
        torch.testing.assert_close(low, ref, rtol=5e-2, atol=5e-2 * ref.abs().max().item())

#----------------------------------------------------------------------------
# native_cpu_kernels(): convolutions of one-channel inputs give the values of F.conv2d /
# F.conv_transpose2d (float64, first and second derivatives) without a oneDNN convolution, also in
# backward passes run after the context has closed; convolutions of several channels stay on oneDNN.

# Names of the convolution kernels the profiler saw while fn ran.
def _conv_kernels(fn):
    from torch.profiler import profile, ProfilerActivity # pylint: disable=import-outside-toplevel
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages() if 'conv' in e.key and e.key.startswith('aten::')}

@pytest.mark.parametrize('transpose,stride,out_channels,kernel', [
    (False, (1, 1), 1, (3, 3)), (False, (2, 1), 2, (1, 12)), (True, (1, 2), 2, (1, 12)),
    (True, (2, 1), 1, (12, 1)), (True, (2, 2), 1, (4, 4)), (True, (3, 2), 2, (5, 4)), (True, (2, 2), 1, (3, 3)),
    (True, (1, 1), 1, (3, 5))])
def test_native_cpu_kernels_match_torch(transpose, stride, out_channels, kernel):
    gen = torch.Generator().manual_seed(11)
    x = torch.randn([2, 1, 7, 15], generator=gen, dtype=torch.float64).requires_grad_(True)
    w_shape = [1, out_channels, *kernel] if transpose else [out_channels, 1, *kernel]
    w = torch.randn(w_shape, generator=gen, dtype=torch.float64).requires_grad_(True)
    kw = dict(stride=stride, padding=(1, 0))
    ref_fn, fn = (F.conv_transpose2d, conv2d_gradfix.conv_transpose2d) if transpose else (F.conv2d, conv2d_gradfix.conv2d)
    y_ref = ref_fn(x, w, **kw)
    dx_ref, = torch.autograd.grad(y_ref.square().sum(), [x], create_graph=True)
    second_ref = torch.autograd.grad(dx_ref.square().sum(), [x, w])
    with conv2d_gradfix.native_cpu_kernels():
        y = fn(x, w, **kw)
        dx, = torch.autograd.grad(y.square().sum(), [x], create_graph=True)
    second = torch.autograd.grad(dx.square().sum(), [x, w]) # Outside the context: the recorded kernels.
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-12, atol=1e-12)
    for a, r in zip(second, second_ref):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)

def test_native_cpu_kernels_avoid_onednn_in_every_pass():
    x = torch.randn([4, 1, 20, 24]).requires_grad_(True)
    w = torch.randn([1, 1, 1, 12])
    def passes(native):
        with conv2d_gradfix.native_cpu_kernels(native):
            y = conv2d_gradfix.conv_transpose2d(x, w, stride=(1, 2), padding=(0, 5))
            y = conv2d_gradfix.conv2d(y, w.transpose(2, 3), stride=(2, 1))
        def backward_passes():
            dx, = torch.autograd.grad(y.square().sum(), [x], create_graph=True)
            dx.square().sum().backward()
        return backward_passes
    assert torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    assert 'aten::mkldnn_convolution' in _conv_kernels(lambda: passes(False)())
    kernels = _conv_kernels(lambda: passes(True)())
    assert kernels and 'aten::mkldnn_convolution' not in kernels, kernels
    forward = _conv_kernels(lambda: passes(True))
    assert forward and 'aten::mkldnn_convolution' not in forward, forward
    assert torch.backends.mkldnn.enabled # Restored after every call.

# Several channels (RGB images: oneDNN's depthwise kernel) stay on oneDNN inside the context.
@pytest.mark.parametrize('channels,groups', [(3, 3), (3, 1), (2, 2)])
def test_native_cpu_kernels_leave_several_channels_to_onednn(channels, groups):
    x = torch.randn([4, channels, 20, 24])
    w = torch.randn([channels, channels // groups, 3, 3])
    with conv2d_gradfix.native_cpu_kernels():
        kernels = _conv_kernels(lambda: conv2d_gradfix.conv2d(x, w, padding=1, groups=groups))
    assert 'aten::mkldnn_convolution' in kernels, kernels

def test_native_cpu_kernels_restore_onednn_after_errors():
    with conv2d_gradfix.native_cpu_kernels(), pytest.raises(RuntimeError):
        conv2d_gradfix.conv2d(torch.randn([1, 2, 3, 3]), torch.randn([2, 2, 5, 5])) # Kernel larger than the input.
    assert torch.backends.mkldnn.enabled
    with conv2d_gradfix.native_cpu_kernels():
        with conv2d_gradfix.native_cpu_kernels(False):
            assert not conv2d_gradfix._native_cpu_kernels.get() # pylint: disable=protected-access
        assert conv2d_gradfix._native_cpu_kernels.get() # pylint: disable=protected-access
    assert not conv2d_gradfix._native_cpu_kernels.get() # pylint: disable=protected-access

# One-channel images whose strides look channels-last (crops and pads of them give such strides) are
# handed to the native kernels with NCHW strides, same memory: those kernels' channels-last path is
# 3-15x slower for them. Values and gradients stay those of F.conv2d.
def test_native_cpu_kernels_one_channel_strides():
    base = torch.randn([3, 9, 11, 1], dtype=torch.float64).permute(0, 3, 1, 2) # [N, 1, H, W], stride 1 on C.
    assert base.stride(1) == 1
    plain = conv2d_gradfix._plain_strides(base) # pylint: disable=protected-access
    assert plain.stride() == (99, 99, 11, 1) and plain.data_ptr() == base.data_ptr() and torch.equal(plain, base)
    x = base.detach().requires_grad_(True)
    w = torch.randn([2, 1, 1, 6], dtype=torch.float64)
    with conv2d_gradfix.native_cpu_kernels():
        y = conv2d_gradfix.conv2d(x, w, stride=(1, 2))
    y_ref = F.conv2d(x, w, stride=(1, 2))
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(y.sum(), x)[0], torch.autograd.grad(y_ref.sum(), x)[0], rtol=1e-12, atol=1e-12)
