# Mixed precision: the CPU feature detection and per-device choice (torch_utils.precision), what the
# StyleGAN2 presets make of it, and bfloat16 blocks in the StyleGAN2 networks against float32 ones.

import copy

import numpy as np
import pytest
import torch

import dnnlib
from torch_utils import precision
from torch_utils.ops import conv2d_gradfix
from torch_utils.ops import conv2d_resample
from training import networks_stylegan2
from training import presets

#----------------------------------------------------------------------------
# cpuinfo files as Linux writes them.

X86_BF16 = 'processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n\nprocessor\t: 1\nflags\t\t: fpu avx512_bf16\n'
X86_PLAIN = 'processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n'
ARM_BF16 = 'processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n'

@pytest.mark.parametrize('text,expected', [(X86_BF16, True), (X86_PLAIN, False), (ARM_BF16, True)])
def test_cpu_has_bfloat16(tmp_path, text, expected):
    path = tmp_path / 'cpuinfo'
    path.write_text(text)
    assert precision.cpu_has_bfloat16(str(path)) is expected
    assert ('avx2' in precision.cpu_flags(str(path))) == text.startswith('processor\t: 0\nflags')
    assert precision.cpu_has_bfloat16(str(tmp_path / 'missing')) is False

#----------------------------------------------------------------------------
# The dtype per device and switches, and the summary line.

def test_choose_and_describe(tmp_path):
    bf16_cpu, plain_cpu = tmp_path / 'bf16', tmp_path / 'plain'
    bf16_cpu.write_text(X86_BF16)
    plain_cpu.write_text(X86_PLAIN)
    choose = precision.choose_mixed_dtype
    assert choose('cpu', cpuinfo_path=str(bf16_cpu)) == 'bfloat16'
    assert choose('cpu', cpuinfo_path=str(plain_cpu)) is None
    assert choose('cpu', fp32=True, cpuinfo_path=str(bf16_cpu)) is None
    assert choose('cuda') == 'float16' and choose('cuda', bf16=True) == 'bfloat16' and choose('cuda', fp32=True, bf16=True) is None
    assert choose('mps') is None
    describe = precision.describe_mixed_precision
    assert describe('cpu', 4, 'bfloat16', cpuinfo_path=str(bf16_cpu)).startswith('bfloat16 in the 4 highest resolutions (CPU with avx512_bf16)')
    assert 'reports no bfloat16' in describe('cpu', 0, None, cpuinfo_path=str(plain_cpu))
    assert describe('cpu', 0, None, cpuinfo_path=str(bf16_cpu)).startswith('off, float32 everywhere (--fp32=1')
    assert describe('cuda', 4, None).startswith('float16 in the 4 highest')

#----------------------------------------------------------------------------
# The StyleGAN2 presets: bfloat16 (with the float16 clamp and NHWC) on a bfloat16 CPU, float32 without
# clamping on other CPUs or with --fp32, float16 or bfloat16 on CUDA.

@pytest.mark.parametrize('device,has_bf16,opts,expected', [
    ('cpu', True, {}, ('bfloat16', 4, 256, True)),
    ('cpu', True, dict(fp32=True), (None, 0, None, None)),
    ('cpu', False, {}, (None, 0, None, None)),
    ('cuda', False, {}, (None, 4, 256, None)),
    ('cuda', False, dict(bf16=True), ('bfloat16', 4, 256, None)),
])
def test_presets(monkeypatch, device, has_bf16, opts, expected):
    monkeypatch.setattr(precision, 'cpu_has_bfloat16', lambda *args, **kwargs: has_bf16)
    preset = presets.get('small')
    c = preset.config(32, 1)
    preset.apply_options(c, dnnlib.EasyDict(opts), device)
    for kwargs, block in ((c.G_kwargs.synthesis_kwargs, c.G_kwargs.synthesis_kwargs), (c.D_kwargs, c.D_kwargs.block_kwargs)):
        got = (block.get('mixed_dtype'), kwargs.num_fp16_res, kwargs.conv_clamp, block.get('fp16_channels_last'))
        assert got == expected

#----------------------------------------------------------------------------
# Tiny StyleGAN2 G and D, float32 and the same weights with bfloat16 blocks.

def make_pair(mixed_dtype='bfloat16'):
    kwargs = dict(num_fp16_res=2, conv_clamp=256)
    torch.manual_seed(0)
    G = networks_stylegan2.Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=32, **kwargs))
    D = networks_stylegan2.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=32,
        **kwargs, epilogue_kwargs=dict(mbstd_group_size=2))
    G_low = networks_stylegan2.Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=32, mixed_dtype=mixed_dtype,
        fp16_channels_last=True, **kwargs))
    D_low = networks_stylegan2.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=32,
        **kwargs, block_kwargs=dict(mixed_dtype=mixed_dtype, fp16_channels_last=True), epilogue_kwargs=dict(mbstd_group_size=2))
    G_low.load_state_dict(G.state_dict())
    D_low.load_state_dict(D.state_dict())
    return G, D, G_low, D_low

# Output dtypes of the blocks, recorded by forward hooks.
def block_dtypes(net, run):
    dtypes = {}
    hooks = [module.register_forward_hook(lambda m, i, o, name=name: dtypes.__setitem__(name, o[0].dtype))
        for name, module in net.named_modules() if name.startswith(('synthesis.b', 'b')) and '.' not in name.split('synthesis.')[-1]]
    run()
    for hook in hooks:
        hook.remove()
    return dtypes

#----------------------------------------------------------------------------
# bfloat16 blocks: the top num_fp16_res resolutions run in bfloat16, the rest and the outputs in
# float32; images and logits stay close to the float32 networks'; gradients and R1 work.

def test_bfloat16_networks():
    G, D, G_low, D_low = make_pair()
    z = torch.randn([4, 32])
    assert block_dtypes(G_low.synthesis, lambda: G_low(z, None)) == {'b4': torch.float32, 'b8': torch.bfloat16, 'b16': torch.bfloat16}
    assert set(block_dtypes(G.synthesis, lambda: G(z, None)).values()) == {torch.float32}
    img, img_low = G(z, None, noise_mode='const'), G_low(z, None, noise_mode='const')
    assert img_low.dtype == torch.float32
    assert (img_low - img).abs().max() < 0.05 * img.abs().max()
    # force_fp32: float32 again (up to the NHWC weights' different convolution order).
    torch.testing.assert_close(G_low(z, None, noise_mode='const', force_fp32=True), img, rtol=1e-5, atol=1e-5)

    logits, logits_low = D(img, None), D_low(img, None)
    assert logits_low.dtype == torch.float32
    assert (logits_low - logits).abs().max() < 0.05 * logits.abs().max() + 1e-3

    # Parameter gradients everywhere, and the R1 double backward.
    G_low.requires_grad_(True)
    D_low.requires_grad_(True)
    x = G_low(z, None).detach().requires_grad_(True)
    with conv2d_gradfix.no_weight_gradients():
        grad, = torch.autograd.grad(D_low(x, None).sum(), [x], create_graph=True)
    (grad.square().sum() + D_low(G_low(z, None), None).sum()).backward()
    for net in (G_low, D_low):
        for name, param in net.named_parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert any(param.grad.abs().sum() > 0 for param in D_low.parameters())

#----------------------------------------------------------------------------
# Pickles of blocks made before mixed_dtype existed read the class default: float32 on the CPU.

def test_old_instances_and_errors():
    _G, _D, G_low, _D_low = make_pair()
    old = copy.deepcopy(G_low)
    for module in old.modules():
        module.__dict__.pop('mixed_dtype', None)
    assert set(block_dtypes(old.synthesis, lambda: old(torch.randn([2, 32]), None)).values()) == {torch.float32}
    with pytest.raises(ValueError, match='mixed_dtype must be one of'):
        make_pair(mixed_dtype='float8')

#----------------------------------------------------------------------------
# The factored demodulation of reduced precision (styles^2 @ sum_k W^2) against the explicit per-sample
# weights, both in float64 (float64 input takes the factored path, as any dtype other than float32).

def test_factored_demodulation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal([3, 5, 6, 6])
    weight = rng.standard_normal([4, 5, 3, 3])
    styles = rng.standard_normal([3, 5])
    w = weight[np.newaxis] * styles[:, np.newaxis, :, np.newaxis, np.newaxis] # [NOIkk]
    w = w / np.sqrt((w ** 2).sum(axis=(2, 3, 4), keepdims=True) + 1e-8)
    expected = np.stack([torch.nn.functional.conv2d(torch.tensor(x[i:i + 1]), torch.tensor(w[i]), padding=1)[0].numpy() for i in range(3)])
    y = networks_stylegan2.modulated_conv2d(torch.tensor(x), torch.tensor(weight), torch.tensor(styles), padding=1, fused_modconv=False)
    assert y.dtype == torch.float64
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-10)

#----------------------------------------------------------------------------
# exact_fp32=False on float32 input (the float32 blocks of a mixed-precision network): the factored
# demodulation and the 1x1 batched matrix product against the per-sample weights in float64 (fused
# path), with and without demodulation, up-sampling and noise; the default keeps the original formula.

@pytest.mark.parametrize('kernel,up,demodulate', [(3, 1, True), (3, 2, True), (1, 1, True), (1, 1, False)])
def test_reduced_forms_in_float32(kernel, up, demodulate):
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.standard_normal([3, 6, 5, 5]))
    weight = torch.tensor(rng.standard_normal([7, 6, kernel, kernel]))
    styles = torch.tensor(rng.standard_normal([3, 6]))
    noise = torch.tensor(rng.standard_normal([3, 1, 5 * up, 5 * up]))
    f = networks_stylegan2.upfirdn2d.setup_filter([1, 3, 3, 1])
    kwargs = dict(up=up, padding=kernel // 2, resample_filter=f, flip_weight=(up == 1), demodulate=demodulate)
    expected = []
    for i in range(3): # Per-sample weights, one plain (resampling) convolution per sample, float64.
        w = weight * styles[i].reshape(1, -1, 1, 1)
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        expected.append(conv2d_resample.conv2d_resample(x[i:i + 1], w, f=f, up=up, padding=kernel // 2, flip_weight=(up == 1))[0])
    expected = torch.stack(expected) + noise
    x32, weight32, styles32, noise32 = x.float(), weight.float(), styles.float(), noise.float()
    for layout in (torch.contiguous_format, torch.channels_last):
        for fused in (False, True):
            y = networks_stylegan2.modulated_conv2d(x32.to(memory_format=layout), weight32, styles32, noise=noise32,
                fused_modconv=fused, exact_fp32=False, **kwargs)
            assert y.dtype == torch.float32
            torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-5)
    default = networks_stylegan2.modulated_conv2d(x32, weight32, styles32, fused_modconv=False, **kwargs)
    assert torch.equal(default, networks_stylegan2.modulated_conv2d(x32, weight32, styles32, fused_modconv=False, exact_fp32=True, **kwargs))

#----------------------------------------------------------------------------
# The 1x1 batched matrix product in bfloat16 and channels_last (ToRGB of a bfloat16 block): values
# and gradients (x, weight, styles) against the float64 per-sample weights.

def test_modulated_conv1x1_bfloat16_gradients():
    rng = np.random.default_rng(2)
    x = torch.tensor(rng.standard_normal([2, 16, 4, 4]))
    weight = torch.tensor(rng.standard_normal([3, 16, 1, 1]))
    styles = torch.tensor(rng.standard_normal([2, 16]) / 4)
    r = torch.tensor(rng.standard_normal([2, 3, 4, 4]))
    grads = []
    for dtype, layout in ((torch.float64, torch.contiguous_format), (torch.bfloat16, torch.channels_last)):
        leaves = [x.to(dtype=dtype, memory_format=layout).requires_grad_(True), weight.float().requires_grad_(True), styles.float().requires_grad_(True)]
        if dtype == torch.float64: # The reference: per-sample weights in float64, as an einsum.
            y = torch.einsum('noi,nihw->nohw', leaves[1].double()[:, :, 0, 0] * leaves[2].double()[:, None, :], leaves[0])
        else:
            y = networks_stylegan2.modulated_conv2d(leaves[0], leaves[1], leaves[2], demodulate=False, fused_modconv=False)
        assert y.dtype == dtype and y.is_contiguous(memory_format=layout)
        grads.append([y.double()] + [g.double() for g in torch.autograd.grad((y.double() * r).sum(), leaves)])
    for got, expected in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, expected, rtol=0.03, atol=0.03 * expected.abs().max().item())

#----------------------------------------------------------------------------
# How the float32 blocks' modulated convolutions run: in a network with bfloat16 blocks unfused with
# factored demodulation, also in eval mode; with force_fp32, or with no reduced-precision block on
# this device (float16 on the CPU), as the original (fused in eval mode, per-sample weights).

def test_float32_blocks_of_mixed_networks(monkeypatch):
    calls = []
    original = networks_stylegan2.modulated_conv2d
    def spy(x, weight, styles, **kwargs):
        calls.append((x.dtype, kwargs.get('fused_modconv'), kwargs.get('exact_fp32')))
        return original(x, weight, styles, **kwargs)
    monkeypatch.setattr(networks_stylegan2, 'modulated_conv2d', spy)
    G, _D, G_low, _D_low = make_pair()
    G_half = make_pair(mixed_dtype='float16')[2]
    z = torch.randn([2, 32])
    for net, kwargs, fused, exact in [(G_low, {}, False, False), (G_low, dict(force_fp32=True), True, True),
                                      (G_half, {}, True, True), (G, {}, True, True)]:
        calls.clear()
        with torch.no_grad():
            net.eval()(z, None, noise_mode='const', **kwargs)
        float32_calls = [call for call in calls if call[0] == torch.float32]
        assert len(float32_calls) == (2 if net is G_low and not kwargs else 8) # b4: conv1, torgb; b8, b16: conv0, conv1, torgb.
        assert all(call[1:] == (fused, exact) for call in float32_calls)
    assert networks_stylegan2.SynthesisNetwork.runs_mixed(G_low.synthesis, torch.device('cpu'))
    assert not G_low.synthesis.runs_mixed(torch.device('cpu'), force_fp32=True) and not G_half.synthesis.runs_mixed(torch.device('cpu'))

#----------------------------------------------------------------------------
# The start-of-training summary names the precision.

def test_summary_line(capsys, monkeypatch):
    from training import launch
    monkeypatch.setattr(precision, 'cpu_flags', lambda *args, **kwargs: {'avx512_bf16'})
    c = dnnlib.EasyDict(num_gpus=1, device='cpu', batch_size=8, batch_gpu=8, total_kimg=1, training_set_kwargs={},
        G_kwargs=dict(synthesis_kwargs=dict(num_fp16_res=4, mixed_dtype='bfloat16')))
    launch.print_summary(c, 'run')
    assert 'Mixed precision:     bfloat16 in the 4 highest resolutions (CPU with avx512_bf16)' in capsys.readouterr().out
    # StyleGAN3-T/R keep the synthesis options in G_kwargs itself; BigGAN has no mixed-precision blocks.
    launch.print_summary(dnnlib.EasyDict(c, device='cuda', G_kwargs=dict(num_fp16_res=4, conv_kernel=1)), 'run')
    assert 'Mixed precision:     float16 in the 4 highest resolutions (cuda)' in capsys.readouterr().out
    launch.print_summary(dnnlib.EasyDict(c, G_kwargs=dict(ch=8)), 'run')
    assert 'Mixed precision' not in capsys.readouterr().out

#----------------------------------------------------------------------------
