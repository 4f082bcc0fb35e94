# Tests for legacy.py: loading network files (pickles, safetensors), their errors, and the
# conversion of pickles whose classes are not ours into training.networks classes.

import importlib.util
import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap

import pytest
import torch

import legacy
from training import network_files
from training import safe_pickle
from training import networks
from training import networks_stylegan2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#----------------------------------------------------------------------------
# A tiny network dict built from the given networks module.

def make_data(module=networks, c_dim=2, arch='skip', **fp16_kwargs):
    torch.manual_seed(0)
    G = module.Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=16, architecture=arch, **fp16_kwargs))
    D = module.Discriminator(c_dim=c_dim, img_resolution=16, img_channels=3, channel_base=256, channel_max=16,
        mapping_kwargs=dict(num_layers=2), block_kwargs=dict(freeze_layers=1), **fp16_kwargs)
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith('noise_strength'):
                param.fill_(0.2)
        G.mapping.w_avg.normal_()
    G_ema = G.__class__(*G.init_args, **G.init_kwargs)
    G_ema.load_state_dict(G.state_dict())
    nets = dict(G=G, D=D, G_ema=G_ema)
    for net in nets.values():
        net.eval().requires_grad_(False)
    return dict(nets, augment_pipe=None, training_set_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path='x.zip', resolution=16))

def outputs(data, c_dim=2):
    torch.manual_seed(7)
    z = torch.randn([4, 8])
    c = torch.eye(max(c_dim, 1))[torch.arange(4) % max(c_dim, 1)][:, :c_dim]
    img = data['G_ema'](z, c, noise_mode='const', truncation_psi=0.7)
    return img, data['D'](img, c), data['G'](z, c, noise_mode='const')

def assert_same_outputs(a, b):
    for x, y in zip(outputs(a), outputs(b)):
        assert torch.equal(x, y)

#----------------------------------------------------------------------------
# A module with our networks' source plus a change: its classes are "another codebase's".

@pytest.fixture(scope='module')
def old_module(tmp_path_factory):
    src = open(networks_stylegan2.__file__, encoding='utf-8').read() + '\n# Older revision of this file.\n'
    path = tmp_path_factory.mktemp('old') / 'old_stylegan2_networks.py'
    path.write_text(src, encoding='utf-8')
    spec = importlib.util.spec_from_file_location('old_stylegan2_networks', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module

#----------------------------------------------------------------------------
# A module written like the original StyleGAN2-ADA networks file in one respect that matters
# here: blocks flagged use_fp16 run in float16 on every device, the CPU included (ours only
# on CUDA). Built from our StyleGAN2 source with that one function redefined at the end.

@pytest.fixture(scope='module')
def fp16_everywhere_module(tmp_path_factory):
    src = open(networks_stylegan2.__file__, encoding='utf-8').read()
    assert 'def _block_dtype(' in src
    src += textwrap.dedent('''
        def _block_dtype(use_fp16, force_fp32, *_args, **_kwargs):
            return torch.float16 if use_fp16 and not force_fp32 else torch.float32
    ''')
    path = tmp_path_factory.mktemp('fp16') / 'original_fp16_networks.py'
    path.write_text(src, encoding='utf-8')
    spec = importlib.util.spec_from_file_location('original_fp16_networks', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module

#----------------------------------------------------------------------------
# Pickle round trip through save_network_pkl / load_network_pkl (path and open file).

def test_save_and_load_pickle(tmp_path):
    data = make_data()
    path = str(tmp_path / 'net.pkl')
    legacy.save_network_pkl(path, data)
    assert os.listdir(tmp_path) == ['net.pkl']
    loaded = legacy.load_network_pkl(path)
    assert set(loaded) == {'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}
    assert_same_outputs(data, loaded)
    with open(path, 'rb') as f:
        assert_same_outputs(data, legacy.load_network_pkl(f))

def test_load_fills_optional_keys(tmp_path):
    data = make_data()
    path = tmp_path / 'g_only.pkl'
    path.write_bytes(pickle.dumps(dict(G_ema=data['G_ema'])))
    loaded = legacy.load_network_pkl(str(path))
    assert loaded['G'] is None and loaded['D'] is None and loaded['training_set_kwargs'] is None

#----------------------------------------------------------------------------
# Bad files: one-line NetworkLoadError saying what is wrong.

def tf_pickle_bytes():
    # What a TensorFlow-era pickle starts with: a dnnlib.tflib.network.Network object.
    return b'\x80\x03cdnnlib.tflib.network\nNetwork\nq\x00)\x81q\x01}q\x02b.'

@pytest.mark.parametrize('content,match', [
    (None, 'No such file'),
    (b'', 'empty'),
    (b'hello, I am text', 'not a valid network pickle'),
    (b'PK\x03\x04zipzip', 'ZIP'),
    (pickle.dumps([1, 2, 3]), 'holds a list'),
    (pickle.dumps(dict(G=1, D=2)), 'no G_ema'),
    (pickle.dumps(dict(G_ema='x')), 'G_ema is a str'),
    (pickle.dumps(dict(G_ema=torch.nn.Linear(1, 1), training_set_kwargs=3)), ('plain torch.nn.modules.linear.Linear', 'training_set_kwargs')),
    (tf_pickle_bytes(), 'TensorFlow'),
], ids=lambda value: value if isinstance(value, str) else type(value).__name__) # Stable ids: the pickled bytes differ per process.
@pytest.mark.parametrize('trust_code', [False, True])
def test_bad_files(tmp_path, content, match, trust_code):
    path = tmp_path / 'bad.pkl'
    if content is not None:
        path.write_bytes(content)
    if isinstance(match, tuple):
        match = match[trust_code]
    with pytest.raises(legacy.NetworkLoadError, match=match) as info:
        legacy.load_network_pkl(str(path), trust_code=trust_code)
    assert '\n' not in str(info.value)

def test_truncated_pickle(tmp_path):
    raw = pickle.dumps(make_data())
    path = tmp_path / 'cut.pkl'
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(legacy.NetworkLoadError, match='truncated|not a valid|Cannot unpickle') as info:
        legacy.load_network_pkl(str(path))
    assert '\n' not in str(info.value)

def test_folder_is_an_error(tmp_path):
    with pytest.raises(legacy.NetworkLoadError, match='folder'):
        legacy.load_network_pkl(str(tmp_path))

#----------------------------------------------------------------------------
# Conversion of a pickle whose classes are not ours.

def test_convert_foreign_classes(old_module, tmp_path):
    old = make_data(old_module)
    assert type(old['G']).__module__ == 'old_stylegan2_networks'
    path = str(tmp_path / 'old.pkl')
    legacy.save_network_pkl(path, old)
    loaded = legacy.load_network_pkl(path, trust_code=True)
    assert not isinstance(loaded['G'], networks.Generator)
    new, diffs = legacy.convert_network_data(loaded)
    assert diffs == dict(G=0, D=0, G_ema=0)
    for key, cls in [('G', networks.Generator), ('D', networks.Discriminator), ('G_ema', networks.Generator)]:
        assert type(new[key]) is cls
        assert not any(p.requires_grad for p in new[key].parameters())
    assert_same_outputs(old, new)
    assert 'b16.fromrgb.weight' in dict(new['D'].named_buffers()) # Frozen layer stays frozen.

def test_convert_cli_in_fresh_process(old_module, tmp_path):
    old = make_data(old_module, c_dim=0, arch='resnet')
    legacy.save_network_pkl(str(tmp_path / 'old.pkl'), old)
    result = subprocess.run([sys.executable, 'legacy.py', f'--source={tmp_path / "old.pkl"}', f'--dest={tmp_path / "new.pkl"}'],
        cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert 'G_ema: rebuilt as training.networks_stylegan2.Generator, identical outputs' in result.stdout
    new = legacy.load_network_pkl(str(tmp_path / 'new.pkl'))
    assert type(new['G_ema']) is networks.Generator # Its source is this file: the live module is used.
    for x, y in zip(outputs(old, c_dim=0), outputs(new, c_dim=0)):
        assert torch.equal(x, y)

def test_convert_rejects_unknown_class():
    class Mystery(torch.nn.Module):
        pass
    with pytest.raises(legacy.NetworkLoadError, match='Mystery'):
        legacy.convert_module(Mystery())

def test_upgrade_stylegan3_era_generator_kwargs():
    kwargs = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, mapping_kwargs={}, channel_base=256, channel_max=16)
    upgraded = safe_pickle.upgrade_kwargs(networks.Generator, dict(kwargs)) # pylint: disable=protected-access
    assert upgraded['synthesis_kwargs'] == dict(channel_base=256, channel_max=16)
    assert networks.Generator(**upgraded).synthesis.b16.conv1.weight.shape == (16, 16, 3, 3)

#----------------------------------------------------------------------------
# Original pickles with float16 blocks (num_fp16_res > 0, conv_clamp 256, as all published
# ones) convert: the check compares both networks in float32, so fp16 rounding is no error.

def test_convert_fp16_blocks(fp16_everywhere_module, tmp_path):
    old = make_data(fp16_everywhere_module, num_fp16_res=2, conv_clamp=256)
    assert old['G'].synthesis.b16.use_fp16 and old['D'].b16.use_fp16 and not old['G'].synthesis.b4.use_fp16
    z = torch.randn([4, 8], generator=torch.Generator().manual_seed(1))
    c = torch.eye(2)[torch.arange(4) % 2]
    with torch.no_grad(): # The old code really runs float16 on the CPU: far from float32 at the old tolerance.
        fp16_gap = (old['G_ema'](z, c, noise_mode='const') - old['G_ema'](z, c, noise_mode='const', force_fp32=True)).abs().max()
    assert fp16_gap > 1e-3
    new, diffs = legacy.convert_network_data(old)
    assert diffs == dict(G=0, D=0, G_ema=0)
    assert type(new['G_ema']) is networks_stylegan2.Generator and new['G_ema'].synthesis.b16.conv1.conv_clamp == 256
    with torch.no_grad():
        torch.testing.assert_close(new['G_ema'](z, c, noise_mode='const'), old['G_ema'](z, c, noise_mode='const', force_fp32=True), rtol=0, atol=0)
    legacy.save_network_safetensors(str(tmp_path / 'net.safetensors'), new)
    loaded = legacy.load_network_pkl(str(tmp_path / 'net.safetensors'))
    assert legacy.compare_outputs(old['D'], loaded['D']) == 0

def test_convert_fp16_pickle_cli(fp16_everywhere_module, tmp_path):
    # The same as a file: its embedded code (fp16 on the CPU) runs in a fresh process (--trust-code).
    old = make_data(fp16_everywhere_module, num_fp16_res=2, conv_clamp=256)
    legacy.save_network_pkl(str(tmp_path / 'old.pkl'), old)
    for dest in ('new.pkl', 'new.safetensors'):
        result = subprocess.run([sys.executable, 'legacy.py', '--trust-code', f'--source={tmp_path / "old.pkl"}', f'--dest={tmp_path / dest}'],
            cwd=ROOT, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        for key in ('G', 'D', 'G_ema'):
            assert f'{key}: rebuilt as training.networks_stylegan2.' in result.stdout and 'identical outputs' in result.stdout
        new = legacy.load_network_pkl(str(tmp_path / dest)) # Our classes now: no code from the file runs.
        assert type(new['G_ema']) is networks_stylegan2.Generator and new['D'].b16.use_fp16
        for key in ('G', 'D', 'G_ema'):
            assert legacy.compare_outputs(old[key], new[key]) == 0

@pytest.mark.cuda
def test_convert_fp16_blocks_on_cuda(fp16_everywhere_module):
    if not torch.cuda.is_available():
        pytest.skip('needs a CUDA device')
    old = make_data(fp16_everywhere_module, num_fp16_res=2, conv_clamp=256)
    new, _diffs = legacy.convert_network_data(old)
    for key in ('G', 'D', 'G_ema'):
        assert legacy.compare_outputs(old[key], new[key], device='cuda') <= 1e-4

#----------------------------------------------------------------------------
# force_fp16 rebuilds with float16 in the top resolutions and conv_clamp 256.

def test_force_fp16(tmp_path):
    data = make_data()
    path = str(tmp_path / 'net.pkl')
    legacy.save_network_pkl(path, data)
    loaded = legacy.load_network_pkl(path, force_fp16=True)
    assert loaded['G_ema'].synthesis.b16.use_fp16 and loaded['G_ema'].init_kwargs.synthesis_kwargs.conv_clamp == 256
    assert loaded['D'].b16.use_fp16
    assert_same_outputs(data, loaded) # On the CPU the fp16 blocks run in float32; the clamp is not reached.

# StyleGAN3's G takes the settings next to its other arguments (as the original's legacy.py); a
# family without float16 blocks (BigGAN) is a one-line NetworkLoadError, not a TypeError.
def test_force_fp16_other_families(tmp_path):
    from training import networks_biggan, networks_stylegan3 # pylint: disable=import-outside-toplevel
    torch.manual_seed(0)
    G = networks_stylegan3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=256,
        channel_max=16, num_layers=4, num_fp16_res=0, conv_clamp=None).eval()
    path = str(tmp_path / 'sg3.pkl')
    legacy.save_network_pkl(path, dict(G=G, G_ema=G))
    loaded = legacy.load_network_pkl(path, force_fp16=True)['G_ema']
    assert loaded.init_kwargs.num_fp16_res == 4 and loaded.init_kwargs.conv_clamp == 256
    assert all(layer.use_fp16 and layer.conv_clamp == 256 for layer in loaded.synthesis.children() if hasattr(layer, 'use_fp16'))
    z = torch.randn([2, 8])
    with torch.no_grad():
        assert torch.equal(loaded(z, None), G(z, None)) # float32 on the CPU; the clamp is not reached.
    G = networks_biggan.Generator(z_dim=16, c_dim=0, img_resolution=16, img_channels=3, ch=2)
    legacy.save_network_pkl(path, dict(G=G, G_ema=G))
    with pytest.raises(legacy.NetworkLoadError, match=r'force_fp16: G \(training.networks_biggan.Generator\) has no float16 blocks'):
        legacy.load_network_pkl(path, force_fp16=True)

#----------------------------------------------------------------------------
# Safetensors: weights plus JSON, rebuilt without unpickling; identical outputs.

def test_safetensors_round_trip(tmp_path, monkeypatch):
    from training.augment import AugmentPipe # pylint: disable=import-outside-toplevel
    data = make_data()
    data['augment_pipe'] = AugmentPipe(xflip=1, brightness=1)
    data['augment_pipe'].p.fill_(0.25)
    path = str(tmp_path / 'net.safetensors')
    legacy.save_network_safetensors(path, data)
    monkeypatch.setattr(pickle, 'loads', None)
    monkeypatch.setattr(network_files, "_unpickle", None)
    loaded = legacy.load_network_pkl(path)
    assert type(loaded['G_ema']) is networks.Generator
    assert type(loaded['augment_pipe']) is AugmentPipe and loaded['augment_pipe'].p.item() == 0.25
    assert loaded['augment_pipe'].init_kwargs == dict(xflip=1, brightness=1)
    assert loaded['training_set_kwargs'] == data['training_set_kwargs']
    assert not loaded['D'].training and not any(p.requires_grad for p in loaded['D'].parameters())
    assert_same_outputs(data, loaded)

def test_safetensors_metadata_layout(tmp_path):
    path = tmp_path / 'net.safetensors'
    legacy.save_network_safetensors(str(path), make_data())
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + struct.unpack('<Q', raw[:8])[0]])
    meta = json.loads(header['__metadata__']['networks'])
    assert meta['G']['class_name'] == 'training.networks_stylegan2.Generator'
    assert meta['D']['init_kwargs']['block_kwargs'] == dict(freeze_layers=1)
    assert 'G_ema.synthesis.b4.const' in header and 'D.b16.fromrgb.weight' in header

def test_safetensors_refuses_foreign_class_names(tmp_path):
    import safetensors.torch # pylint: disable=import-outside-toplevel
    meta = dict(G_ema=dict(class_name='os.system', init_args=['echo hi'], init_kwargs={}))
    raw = safetensors.torch.save({'G_ema.x': torch.zeros(1)}, metadata=dict(format=legacy.SAFETENSORS_FORMAT, networks=json.dumps(meta)))
    (tmp_path / 'evil.safetensors').write_bytes(raw)
    with pytest.raises(legacy.NetworkLoadError, match='refusing'):
        legacy.load_network_pkl(str(tmp_path / 'evil.safetensors'))

def test_safetensors_export_needs_our_classes(old_module, tmp_path):
    with pytest.raises(legacy.NetworkLoadError, match='convert the pickle first'):
        legacy.save_network_safetensors(str(tmp_path / 'x.safetensors'), make_data(old_module))

def test_cli_to_safetensors(tmp_path):
    data = make_data()
    legacy.save_network_pkl(str(tmp_path / 'net.pkl'), data)
    from click.testing import CliRunner # pylint: disable=import-outside-toplevel
    result = CliRunner().invoke(legacy.convert_network_pickle, [f'--source={tmp_path / "net.pkl"}', f'--dest={tmp_path / "net.safetensors"}'])
    assert result.exit_code == 0, result.output
    assert_same_outputs(data, legacy.load_network_pkl(str(tmp_path / 'net.safetensors')))

@pytest.mark.parametrize('args,match', [
    (['--source=missing.pkl', '--dest=out.pkl'], 'No such file'),
    (['--source=missing.pkl', '--dest=out.txt'], 'must end with'),
])
def test_cli_errors(tmp_path, args, match):
    from click.testing import CliRunner # pylint: disable=import-outside-toplevel
    result = CliRunner().invoke(legacy.convert_network_pickle, args)
    assert result.exit_code != 0 and match in result.output
    assert 'Traceback' not in result.output
    assert not os.path.exists('out.pkl')

#----------------------------------------------------------------------------
# Snapshots of commit 9dd6ba4 (StyleGAN2 and BigGAN, with an augment pipe whose filter constants
# predate today's): converted to .safetensors by running their code, the export gives the same
# outputs, flags set after construction (BigGAN's accumulate_standing) survive, and the augment
# pipe keeps its p with today's filter constants.

@pytest.mark.parametrize('name', ['stylegan2', 'biggan'])
def test_convert_9dd6ba4_snapshots(tmp_path, name):
    from click.testing import CliRunner # pylint: disable=import-outside-toplevel
    source = os.path.join(ROOT, 'tests', 'fixtures', f'snapshot-9dd6ba4-{name}.pkl')
    dest = str(tmp_path / 'net.safetensors')
    result = CliRunner().invoke(legacy.convert_network_pickle, ['--trust-code', f'--source={source}', f'--dest={dest}'])
    assert result.exit_code == 0, result.output
    assert 'G_ema: rebuilt as training.networks_' in result.output and 'identical outputs' in result.output
    old, new = legacy.load_network_pkl(source, trust_code=True), legacy.load_network_pkl(dest)
    for key in ('G', 'D', 'G_ema'):
        assert legacy.compare_outputs(old[key], new[key]) == 0
    if old['augment_pipe'] is not None:
        assert type(new['augment_pipe']).__module__ == 'training.augment' and torch.equal(new['augment_pipe'].p, old['augment_pipe'].p)

#----------------------------------------------------------------------------
