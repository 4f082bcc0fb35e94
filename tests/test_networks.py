# Tests for training.networks_stylegan2: tiny StyleGAN2 generators and discriminators of every
# architecture, numerics against independent float64 formulations, names and shapes of
# the original parameters, pickling.

import copy
import importlib
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import dnnlib
from training import networks_stylegan2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHS = ['orig', 'skip', 'resnet']

#----------------------------------------------------------------------------
# Tiny networks: 16x16 unless asked (32x32 where four blocks matter), channels min(512 // res, 32).

def make_G(arch='skip', c_dim=0, res=16, img_channels=3, **synthesis_kwargs):
    torch.manual_seed(0)
    return networks_stylegan2.Generator(z_dim=16, c_dim=c_dim, w_dim=16, img_resolution=res, img_channels=img_channels,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=512, channel_max=32, architecture=arch, **synthesis_kwargs))

def make_D(arch='resnet', c_dim=0, res=16, **kwargs):
    torch.manual_seed(1)
    return networks_stylegan2.Discriminator(c_dim=c_dim, img_resolution=res, img_channels=3, architecture=arch,
        channel_base=512, channel_max=32, mapping_kwargs=dict(num_layers=2), **kwargs)

def labels(batch_size, c_dim):
    c = torch.zeros([batch_size, c_dim])
    if c_dim > 0:
        c[torch.arange(batch_size), torch.arange(batch_size) % c_dim] = 1
    return c

def randomize_noise_strength(G):
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith('noise_strength'):
                param.fill_(0.5)

#----------------------------------------------------------------------------
# Forward + backward: finite, and every parameter receives a gradient.

@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('c_dim', [0, 3])
def test_generator_forward_backward(arch, c_dim):
    G = make_G(arch, c_dim).train()
    img = G(torch.randn([4, 16]), labels(4, c_dim))
    assert img.shape == (4, 3, 16, 16) and img.dtype == torch.float32
    (img.square().sum() + img.sum()).backward()
    for name, param in G.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name

@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('c_dim', [0, 3])
def test_discriminator_forward_backward(arch, c_dim):
    D = make_D(arch, c_dim)
    img = torch.randn([4, 3, 16, 16], requires_grad=True)
    logits = D(img, labels(4, c_dim))
    assert logits.shape == (4, 1)
    r1_grad, = torch.autograd.grad(logits.sum(), img, create_graph=True)
    (logits.sum() + r1_grad.square().sum()).backward()
    for name, param in D.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name

#----------------------------------------------------------------------------
# freeze_layers: the first N layers become buffers, the rest stay parameters.

def test_discriminator_freeze_layers():
    D = make_D('resnet', res=32, block_kwargs=dict(freeze_layers=5))
    params = dict(D.named_parameters())
    buffers = dict(D.named_buffers())
    for name in ['b32.fromrgb.weight', 'b32.conv0.weight', 'b32.conv1.bias', 'b32.skip.weight', 'b16.conv0.weight']:
        assert name in buffers and name not in params, name
    for name in ['b16.conv1.weight', 'b16.skip.weight', 'b8.conv0.weight', 'b4.conv.weight', 'b4.fc.weight']:
        assert name in params, name
    assert D.b32.num_layers == 4 and D.b16.first_layer_idx == 4
    D(torch.randn([4, 3, 32, 32]), None).sum().backward()
    assert all(p.grad is not None for p in D.parameters())

#----------------------------------------------------------------------------
# Names and shapes of the original StyleGAN2-ADA parameters and buffers.

def test_generator_names_and_shapes():
    G = make_G('resnet', c_dim=3, res=32)
    tensors = {name: tuple(t.shape) for name, t in list(G.named_parameters()) + list(G.named_buffers())}
    assert G.num_ws == 8 # 2 * log2(32) - 2
    expected = {
        'mapping.embed.weight': (16, 3), 'mapping.embed.bias': (16,),
        'mapping.fc0.weight': (16, 32), 'mapping.fc1.weight': (16, 16), 'mapping.w_avg': (16,),
        'synthesis.b4.const': (32, 4, 4), 'synthesis.b4.conv1.weight': (32, 32, 3, 3),
        'synthesis.b4.conv1.affine.weight': (32, 16), 'synthesis.b4.conv1.affine.bias': (32,),
        'synthesis.b4.conv1.noise_const': (4, 4), 'synthesis.b4.conv1.noise_strength': (),
        'synthesis.b32.torgb.weight': (3, 16, 1, 1), 'synthesis.b32.torgb.bias': (3,),
        'synthesis.b8.conv0.resample_filter': (4, 4), 'synthesis.b8.conv0.noise_const': (8, 8),
        'synthesis.b32.conv0.weight': (16, 32, 3, 3), 'synthesis.b32.skip.weight': (16, 32, 1, 1),
        'synthesis.b32.resample_filter': (4, 4), 'synthesis.b32.torgb.affine.weight': (16, 16),
    }
    for name, shape in expected.items():
        assert tensors.get(name) == shape, name
    assert 'synthesis.b32.skip.bias' not in tensors
    assert 'synthesis.b4.conv0.weight' not in tensors
    assert 'synthesis.b4.torgb.weight' not in tensors # ToRGB only in the last block of 'resnet'.
    assert torch.all(G.synthesis.b4.conv1.affine.bias == 1) # Styles start at 1.

def test_discriminator_names_and_shapes():
    D = make_D('skip', c_dim=3, res=32)
    tensors = {name: tuple(t.shape) for name, t in list(D.named_parameters()) + list(D.named_buffers())}
    expected = {
        'b32.fromrgb.weight': (16, 3, 1, 1), 'b32.conv0.weight': (16, 16, 3, 3), 'b32.conv1.weight': (32, 16, 3, 3),
        'b16.fromrgb.weight': (32, 3, 1, 1), 'b4.fromrgb.weight': (32, 3, 1, 1),
        'b4.conv.weight': (32, 33, 3, 3), 'b4.fc.weight': (32, 32 * 16), 'b4.out.weight': (32, 32),
        'mapping.embed.weight': (32, 3), 'mapping.fc1.weight': (32, 32),
    }
    for name, shape in expected.items():
        assert tensors.get(name) == shape, name
    assert not any(name.startswith('mapping.w_avg') for name in tensors)
    assert 'b16.skip.weight' in dict(make_D('resnet').named_parameters())

#----------------------------------------------------------------------------
# The per-block ws slices overlap by one: ToRGB of a block shares its w with the next conv0.

def test_synthesis_ws_slices():
    G = make_G('skip', res=32).eval()
    seen = {}
    for res in G.synthesis.block_resolutions:
        block = getattr(G.synthesis, f'b{res}')
        block.register_forward_pre_hook(lambda mod, args, res=res: seen.__setitem__(res, args[2]))
    ws = torch.randn([2, G.num_ws, 16])
    G.synthesis(ws)
    for res, (start, count) in {4: (0, 2), 8: (1, 3), 16: (3, 3), 32: (5, 3)}.items():
        assert torch.equal(seen[res], ws[:, start : start + count]), res

#----------------------------------------------------------------------------
# Noise modes.

def test_noise_modes():
    G = make_G().eval()
    randomize_noise_strength(G)
    ws = G.mapping(torch.randn([2, 16]), None)
    const1 = G.synthesis(ws, noise_mode='const')
    const2 = G.synthesis(ws, noise_mode='const')
    rand1 = G.synthesis(ws, noise_mode='random')
    rand2 = G.synthesis(ws, noise_mode='random')
    none = G.synthesis(ws, noise_mode='none')
    assert torch.equal(const1, const2)
    assert not torch.allclose(rand1, rand2)
    assert not torch.allclose(const1, none)
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith('noise_strength'):
                param.zero_()
    assert torch.allclose(G.synthesis(ws, noise_mode='random'), G.synthesis(ws, noise_mode='none'))
    with pytest.raises(ValueError, match='noise_mode'):
        G.synthesis(ws, noise_mode='bogus')

def test_use_noise_false_has_no_noise_tensors():
    G = make_G(use_noise=False)
    names = [name for name, _ in list(G.named_parameters()) + list(G.named_buffers())]
    assert not any('noise' in name for name in names)
    G(torch.randn([2, 16]), None).sum().backward()

#----------------------------------------------------------------------------
# Truncation toward w_avg, with and without cutoff.

def test_truncation():
    G = make_G().eval()
    G.mapping.w_avg.copy_(torch.randn([16]))
    z = torch.randn([3, 16])
    w = G.mapping(z, None).double()
    w_avg = G.mapping.w_avg.double()
    assert torch.allclose(G.mapping(z, None, truncation_psi=0).double(), w_avg.expand_as(w), atol=1e-6)
    assert torch.allclose(G.mapping(z, None, truncation_psi=0.7).double(), w_avg + 0.7 * (w - w_avg), atol=1e-5)
    cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=3).double()
    assert torch.allclose(cut[:, :3], w_avg + 0.5 * (w[:, :3] - w_avg), atol=1e-5)
    assert torch.equal(cut[:, 3:], w[:, 3:])

#----------------------------------------------------------------------------
# w_avg: w_avg <- mean(w) + beta * (w_avg - mean(w)) when training or asked to.

def test_w_avg_tracking():
    G = make_G()
    mapping = G.mapping
    mapping.w_avg.copy_(torch.randn([16]))
    z = torch.randn([8, 16])

    mapping.eval()
    before = mapping.w_avg.clone()
    w = mapping(z, None)
    assert torch.equal(mapping.w_avg, before)

    mapping.train()
    mapping(z, None, update_emas=False)
    mapping(z, None, skip_w_avg_update=True)
    assert torch.equal(mapping.w_avg, before)
    mapping(z, None)
    expected = w[:, 0].double().mean(0) + 0.995 * (before.double() - w[:, 0].double().mean(0))
    assert torch.allclose(mapping.w_avg.double(), expected, atol=1e-6)

    mapping.eval()
    mapping(z, None, update_emas=True)
    assert not torch.allclose(mapping.w_avg.double(), expected, atol=1e-6)

def test_mapping_normalizes_z():
    G = make_G()
    z = torch.randn([4, 16])
    assert torch.allclose(G.mapping(z * 10, None), G.mapping(z, None), atol=1e-5)

#----------------------------------------------------------------------------
# Minibatch stddev against a naive loop (sample i is in group i % (N / G)).

def minibatch_std_naive(x, group_size, num_channels):
    x = x.double().numpy()
    N, C, H, W = x.shape
    G = min(group_size, N)
    n = N // G
    c = C // num_channels
    extra = np.zeros([N, num_channels, H, W])
    for j in range(n):
        members = [j + g * n for g in range(G)]
        for f in range(num_channels):
            part = x[members, f * c : (f + 1) * c]
            std = np.sqrt(((part - part.mean(axis=0)) ** 2).mean(axis=0) + 1e-8)
            extra[members, f] = std.mean()
    return np.concatenate([x, extra], axis=1)

@pytest.mark.parametrize('N,group_size,num_channels', [(8, 4, 1), (8, 4, 2), (6, 2, 3), (8, 4, 6), (3, 4, 1), (4, None, 1)])
def test_minibatch_std(N, group_size, num_channels):
    x = torch.randn([N, 6, 3, 5], dtype=torch.float64)
    y = networks_stylegan2.MinibatchStdLayer(group_size=group_size, num_channels=num_channels)(x)
    expected = minibatch_std_naive(x, group_size if group_size is not None else N, num_channels)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-12)

def test_minibatch_std_bad_batch():
    with pytest.raises(ValueError, match='divisible'):
        networks_stylegan2.MinibatchStdLayer(group_size=4)(torch.randn([6, 4, 2, 2]))

#----------------------------------------------------------------------------
# Modulated convolution against an explicit per-sample float64 convolution loop.

def modulated_conv_naive(x, weight, styles, demodulate, padding):
    outs = []
    for n in range(x.shape[0]):
        w = weight.double() * styles[n].double().reshape(1, -1, 1, 1)
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        outs.append(torch.nn.functional.conv2d(x[n : n + 1].double(), w, padding=padding))
    return torch.cat(outs)

@pytest.mark.parametrize('demodulate', [True, False])
@pytest.mark.parametrize('kernel', [1, 3])
def test_modulated_conv2d(demodulate, kernel):
    torch.manual_seed(2)
    x = torch.randn([3, 5, 8, 8])
    weight = torch.randn([4, 5, kernel, kernel])
    styles = torch.randn([3, 5])
    expected = modulated_conv_naive(x, weight, styles, demodulate, kernel // 2)
    for fused in [True, False]:
        y = networks_stylegan2.modulated_conv2d(x, weight, styles, padding=kernel // 2, demodulate=demodulate, fused_modconv=fused)
        assert torch.allclose(y.double(), expected, rtol=1e-4, atol=1e-4), fused

def test_modulated_conv2d_fused_equals_unfused_with_upsampling_and_noise():
    torch.manual_seed(3)
    layer = networks_stylegan2.SynthesisLayer(6, 4, w_dim=8, resolution=16, up=2)
    with torch.no_grad():
        layer.noise_strength.fill_(0.3)
    x = torch.randn([3, 6, 8, 8])
    w = torch.randn([3, 8])
    a = layer(x, w, noise_mode='const', fused_modconv=True)
    b = layer(x, w, noise_mode='const', fused_modconv=False)
    assert a.shape == (3, 4, 16, 16)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)

def test_modulated_conv2d_float16_normalization():
    torch.manual_seed(4)
    x = torch.randn([2, 5, 8, 8])
    weight = torch.randn([4, 5, 3, 3]) * 100
    styles = torch.randn([2, 5]) * 100
    expected = modulated_conv_naive(x, weight, styles, True, 1)
    y = networks_stylegan2.modulated_conv2d(x.half(), weight, styles, padding=1, fused_modconv=False)
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    assert torch.allclose(y.double(), expected, rtol=2e-2, atol=2e-2)

#----------------------------------------------------------------------------
# Equalised learning rate of the FC layer.

def test_fully_connected_equalized_lr():
    torch.manual_seed(5)
    layer = networks_stylegan2.FullyConnectedLayer(400, 300, lr_multiplier=0.01, bias_init=2)
    assert abs(layer.weight.std().item() - 100) < 2
    x = torch.randn([5, 400])
    expected = x.double() @ (layer.weight.double() * 0.01 / np.sqrt(400)).t() + layer.bias.double() * 0.01
    assert torch.allclose(layer(x).double(), expected, atol=1e-5)
    act = networks_stylegan2.FullyConnectedLayer(400, 300, activation='lrelu', bias_init=2)
    pre = x.double() @ (act.weight.double() / np.sqrt(400)).t() + 2
    assert torch.allclose(act(x).double(), torch.nn.functional.leaky_relu(pre, 0.2) * np.sqrt(2), atol=1e-5)

#----------------------------------------------------------------------------
# Conditional discriminator output is the projection (out(x) . cmap) / sqrt(cmap_dim).

def test_discriminator_projection():
    D = make_D('resnet', c_dim=3)
    captured = {}
    D.b4.out.register_forward_hook(lambda mod, args, out: captured.__setitem__('out', out))
    D.mapping.register_forward_hook(lambda mod, args, out: captured.__setitem__('cmap', out))
    logits = D(torch.randn([4, 3, 16, 16]), labels(4, 3))
    expected = (captured['out'].double() * captured['cmap'].double()).sum(1, keepdim=True) / np.sqrt(32)
    assert torch.allclose(logits.double(), expected, atol=1e-5)

#----------------------------------------------------------------------------
# float16: only on CUDA unless fp16_on_cpu; on CPU the fp16 blocks run in float32.

def test_fp16_blocks_on_cpu():
    G = make_G(num_fp16_res=2, conv_clamp=256).eval()
    G_fp32 = make_G(conv_clamp=256).eval()
    G_fp32.load_state_dict(G.state_dict())
    assert G.synthesis.b16.use_fp16 and G.synthesis.b8.use_fp16 and not G.synthesis.b4.use_fp16
    z = torch.randn([2, 16])
    assert torch.equal(G(z, None, noise_mode='const'), G_fp32(z, None, noise_mode='const'))
    dtypes = {}
    G.synthesis.b16.register_forward_hook(lambda mod, args, out: dtypes.__setitem__('x', out[0].dtype))
    img = G(z, None, noise_mode='const', fp16_on_cpu=True)
    assert dtypes['x'] == torch.float16 and img.dtype == torch.float32
    assert torch.allclose(img, G_fp32(z, None, noise_mode='const'), atol=0.05)
    assert G(z, None, noise_mode='const', fp16_on_cpu=True, force_fp32=True).dtype == torch.float32

def test_fp16_discriminator_runs_on_cpu_when_asked():
    D = make_D('resnet', num_fp16_res=2, conv_clamp=256, block_kwargs=dict(fp16_channels_last=True))
    img = torch.randn([4, 3, 16, 16])
    a = D(img, None)
    b = D(img, None, fp16_on_cpu=True)
    assert a.dtype == b.dtype == torch.float32
    assert torch.allclose(a, b, atol=0.05)

#----------------------------------------------------------------------------
# Bad configuration values fail at construction with a clear message.

def test_bad_configs():
    with pytest.raises(ValueError, match='architecture'):
        make_G('bogus')
    with pytest.raises(ValueError, match='architecture'):
        make_D('bogus')
    with pytest.raises(ValueError, match='power of two'):
        make_G(res=24)
    with pytest.raises(TypeError):
        make_G(chanel_base=3)
    G = make_G()
    with pytest.raises(AssertionError):
        G(torch.randn([2, 15]), None)

#----------------------------------------------------------------------------
# Pickling: same outputs after a round trip, also in a fresh process.

@pytest.mark.parametrize('arch', ARCHS)
def test_pickle_round_trip(arch):
    G = make_G(arch, c_dim=2).eval()
    D = make_D(arch, c_dim=2)
    randomize_noise_strength(G)
    G2, D2 = pickle.loads(pickle.dumps((G, D)))
    z, c = torch.randn([2, 16]), labels(2, 2)
    img = G(z, c, noise_mode='const')
    assert torch.equal(img, G2(z, c, noise_mode='const'))
    assert torch.equal(D(img, c), D2(img, c))
    assert G2.init_kwargs == G.init_kwargs
    G3 = copy.deepcopy(G)
    assert torch.equal(img, G3(z, c, noise_mode='const'))

def test_pickle_in_fresh_process(tmp_path):
    G = make_G('skip', c_dim=2).eval()
    randomize_noise_strength(G)
    z, c = torch.randn([2, 16]), labels(2, 2)
    with open(tmp_path / 'G.pkl', 'wb') as f:
        pickle.dump(dict(G=G, z=z, c=c), f)
    script = ('import pickle, sys, torch\n'
        f'data = pickle.load(open({str(tmp_path / "G.pkl")!r}, "rb"))\n'
        'assert "training.networks_stylegan2" not in sys.modules, "networks imported by name"\n'
        'torch.save(data["G"](data["z"], data["c"], noise_mode="const"), sys.argv[1])\n')
    subprocess.run([sys.executable, '-c', script, str(tmp_path / 'img.pt')], cwd=ROOT, check=True)
    assert torch.equal(torch.load(tmp_path / 'img.pt'), G(z, c, noise_mode='const'))

#----------------------------------------------------------------------------
# Profiler labels: mapping, each synthesis block, each D block, D's label mapping and its epilogue.

def test_profiler_labels():
    G = make_G('skip', c_dim=2)
    D = make_D('resnet', c_dim=2)
    z, c = torch.randn([2, 16]), labels(2, 2)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        D(G(z, c), c)
    names = {event.name for event in prof.events()}
    expected = {'mapping', 'synthesis.b4', 'synthesis.b8', 'synthesis.b16', 'discriminator.b16', 'discriminator.b8',
        'discriminator.mapping', 'discriminator.epilogue'}
    assert expected <= names, sorted(expected - names)

#----------------------------------------------------------------------------
# Rank-local buffers: the regexes each class declares, fullmatched against its own buffers, name exactly
# the generator's w_avg (D's label mapping tracks no w_avg; filters and noise_const are the same on every rank).

def test_rank_local_buffers():
    def rank_local(module):
        found = set()
        for prefix, sub in module.named_modules():
            for name, _ in sub.named_buffers(recurse=False):
                if any(re.fullmatch(pattern, name) for pattern in getattr(type(sub), 'rank_local_buffers', ())):
                    found.add(f'{prefix}.{name}' if prefix else name)
        return found
    assert rank_local(make_G('skip', c_dim=2)) == {'mapping.w_avg'}
    assert rank_local(make_D('resnet', c_dim=2)) == set()

#----------------------------------------------------------------------------
# The former modules re-export the very same objects, so old configs and old embedded sources get today's classes.

@pytest.mark.parametrize('module_name', ['training.networks', 'training.networks_layers', 'training.networks_discriminator'])
def test_former_modules_reexport(module_name):
    module = importlib.import_module(module_name)
    names = [name for name, obj in vars(module).items() if callable(obj)]
    assert 'FullyConnectedLayer' in names and '_block_dtype' in names
    for name in names:
        assert getattr(module, name) is getattr(networks_stylegan2, name), name
    G = dnnlib.util.construct_class_by_name(class_name='training.networks.Generator', z_dim=4, c_dim=0, w_dim=4,
        img_resolution=8, img_channels=3, synthesis_kwargs=dict(channel_base=64, channel_max=4))
    assert type(G) is networks_stylegan2.Generator

#----------------------------------------------------------------------------
