# Tests for loading network pickles without running code from the file (training.safe_pickle,
# training.source_fingerprints): malicious globals and changed sources are refused with
# nothing run, known sources (ours today, our 9dd6ba4 snapshots, original-format pickles) are
# rebuilt with this project's classes with outputs identical to the executing path, and
# trust_code=True runs the file's code as before.

import ast
import copy
import os
import pickle
import textwrap
from collections import OrderedDict

import pytest
import torch

import dnnlib
import legacy
from torch_utils import persistence
from training import known_sources
from training import network_files
from training import networks_stylegan2
from training import safe_pickle
from training import source_fingerprints

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')

#----------------------------------------------------------------------------
# Tiny StyleGAN2 networks with the original constructor arguments (fp16 blocks, conv_clamp 256,
# resnet D with a label mapping), their weights and w_avg randomised.

def make_networks(c_dim=3):
    torch.manual_seed(0)
    G = networks_stylegan2.Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=16, num_fp16_res=2, conv_clamp=256, architecture='skip'))
    D = networks_stylegan2.Discriminator(c_dim=c_dim, img_resolution=16, img_channels=3, architecture='resnet', channel_base=256,
        channel_max=16, num_fp16_res=2, conv_clamp=256, cmap_dim=None, block_kwargs={}, mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=2))
    with torch.no_grad():
        for net in (G, D):
            for name, param in net.named_parameters():
                param.add_(torch.randn_like(param) * 0.1)
        G.mapping.w_avg.normal_()
    G_ema = copy.deepcopy(G)
    for net in (G, D, G_ema):
        net.eval().requires_grad_(False)
    kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path='data.zip', use_labels=True, max_size=10, xflip=False, resolution=16)
    return dict(G=G, D=D, G_ema=G_ema, augment_pipe=None, training_set_kwargs=kwargs)

def outputs(data):
    G, D = data['G_ema'], data['D']
    z = torch.randn([4, G.z_dim], generator=torch.Generator().manual_seed(5))
    c = torch.eye(G.c_dim)[torch.arange(4) % G.c_dim] if G.c_dim else torch.zeros([4, 0])
    with torch.no_grad():
        img = G(z, c, noise_mode='const', truncation_psi=0.7)
        return img, D(img, c), data['G'](z, c, noise_mode='const')

def assert_identical(a, b):
    for x, y in zip(outputs(a), outputs(b)):
        assert torch.equal(x, y)

#----------------------------------------------------------------------------
# Pickle with every persistent object's meta passed through `edit(meta)` (e.g. a changed source).

class _EditingPickler(pickle.Pickler):
    def __init__(self, file, edit):
        super().__init__(file)
        self.edit = edit

    def reducer_override(self, obj):
        if persistence.is_persistent(obj) and not isinstance(obj, type):
            func, (meta,) = obj.__reduce__()
            return func, (self.edit(dict(meta)),)
        return NotImplemented

def dump_edited(path, data, edit):
    with open(path, 'wb') as f:
        _EditingPickler(f, edit).dump(data)

# A source edit that writes a marker file when the module is executed.
def with_marker(marker):
    def edit(meta):
        meta['module_src'] += f'\nopen({str(marker)!r}, "w").close()\n'
        return meta
    return edit

#----------------------------------------------------------------------------
# A pickle in the format of the original code, built by hand: each persistent object is
# `_reconstruct_persistent_obj(meta)` with torch-1.7-era module state (only the fields torch
# had then), nested persistent submodules and the original constructor arguments.

class _Stub:
    def __init__(self, meta):
        self.meta = meta
    def __reduce__(self):
        return (persistence._reconstruct_persistent_obj, (self.meta,)) # pylint: disable=protected-access

_TORCH_17_FIELDS = ('training', '_parameters', '_buffers', '_non_persistent_buffers_set', '_backward_hooks', '_forward_hooks',
    '_forward_pre_hooks', '_state_dict_hooks', '_load_state_dict_pre_hooks', '_modules')

def original_format(module):
    state = {}
    for key, value in module.__dict__.items():
        if key.startswith('_') and key not in _TORCH_17_FIELDS and key not in ('_init_args', '_init_kwargs'):
            continue
        state[key] = value
    state['_parameters'] = OrderedDict(module._parameters) # pylint: disable=protected-access
    state['_buffers'] = OrderedDict(module._buffers) # pylint: disable=protected-access
    state['_modules'] = OrderedDict((name, original_format(child)) for name, child in module._modules.items()) # pylint: disable=protected-access
    state['_init_args'], state['_init_kwargs'] = tuple(module.init_args), dnnlib.EasyDict(module.init_kwargs)
    return _Stub(dict(type='class', version=6, module_src=type(module)._orig_module_src, class_name=type(module).__name__, state=state))

#----------------------------------------------------------------------------
# Our own snapshot: rebuilt safely, identical outputs to the executing path, reported.

def test_own_snapshot_loads_safely(tmp_path, monkeypatch):
    data = make_networks()
    path = tmp_path / 'net.pkl'
    network_files.save_network_pkl(str(path), data)
    trusted = network_files.load_network_pkl(str(path), trust_code=True)
    lines = []
    monkeypatch.setattr(persistence, '_src_to_module', _must_not_run)
    monkeypatch.setattr(persistence, '_reconstruct_persistent_obj', _must_not_run)
    loaded = network_files.load_network_pkl(str(path), log=lines.append)
    assert type(loaded['G_ema']) is networks_stylegan2.Generator
    assert loaded['training_set_kwargs'] == data['training_set_kwargs']
    assert not loaded['D'].training and not any(p.requires_grad for p in loaded['G'].parameters())
    assert_identical(loaded, trusted)
    assert_identical(loaded, data)
    assert len(lines) == 1 and 'no code from the file run' in lines[0] and 'G, D, G_ema rebuilt as StyleGAN2' in lines[0]

def _must_not_run(*args, **kwargs):
    raise AssertionError('the safe path ran persistence code that executes module sources')

#----------------------------------------------------------------------------
# Loading keeps the global random state: the constructors' random initialisation does not leak.

def test_safe_load_keeps_random_state(tmp_path):
    path = tmp_path / 'net.pkl'
    network_files.save_network_pkl(str(path), make_networks())
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    network_files.load_network_pkl(str(path))
    assert torch.equal(torch.rand(3), expected)

#----------------------------------------------------------------------------
# Original-format pickle (torch-1.7 module state, original constructor arguments): rebuilt
# safely with outputs identical to running the pickled code.

def test_original_format_pickle(tmp_path):
    data = make_networks()
    snapshot = dict(G=original_format(data['G']), D=original_format(data['D']), G_ema=original_format(data['G_ema']),
        augment_pipe=None, training_set_kwargs=data['training_set_kwargs'])
    path = tmp_path / 'original.pkl'
    path.write_bytes(pickle.dumps(snapshot, protocol=3))
    loaded = network_files.load_network_pkl(str(path))
    trusted = network_files.load_network_pkl(str(path), trust_code=True)
    assert type(loaded['D']) is networks_stylegan2.Discriminator and loaded['D'].init_kwargs.epilogue_kwargs == dict(mbstd_group_size=2)
    assert loaded['G_ema'].synthesis.b16.use_fp16 and loaded['G_ema'].synthesis.b16.conv1.conv_clamp == 256
    assert_identical(loaded, trusted)
    assert_identical(loaded, data)

#----------------------------------------------------------------------------
# Snapshots written by commit 9dd6ba4 (tests/fixtures): rebuilt safely, identical outputs to
# their own embedded code.

@pytest.mark.parametrize('name', ['stylegan2', 'biggan'])
def test_9dd6ba4_snapshots_load_safely(name):
    path = os.path.join(FIXTURES, f'snapshot-9dd6ba4-{name}.pkl')
    lines = []
    loaded = legacy.load_network_pkl(path, log=lines.append)
    trusted = legacy.load_network_pkl(path, trust_code=True)
    family = dict(stylegan2='StyleGAN2', biggan='BigGAN')[name]
    assert f'G, D, G_ema rebuilt as {family} (gan-research 9dd6ba4)' in lines[0]
    for key in ('G', 'D', 'G_ema'):
        assert type(loaded[key]).__module__.startswith('training.networks_')
        assert not type(trusted[key]).__module__.startswith('training.')
        ours, theirs = loaded[key].state_dict(), trusted[key].state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    G, D = loaded['G_ema'], loaded['D']
    z = torch.randn([4, G.z_dim], generator=torch.Generator().manual_seed(1))
    c = torch.eye(G.c_dim)[torch.arange(4) % G.c_dim]
    kwargs = dict(noise_mode='const') if name == 'stylegan2' else {}
    with torch.no_grad():
        img = G(z, c, **kwargs)
        assert torch.equal(img, trusted['G_ema'](z, c, **kwargs))
        assert torch.equal(D(img, c), trusted['D'](img, c))

#----------------------------------------------------------------------------
# A malicious global is refused with one line naming it; nothing runs (the marker never appears).

class _Evil:
    def __init__(self, marker):
        self.marker = marker
    def __reduce__(self):
        return (exec, (f'open({str(self.marker)!r}, "w").close()',))

def test_malicious_global_refused(tmp_path):
    marker = tmp_path / 'marker'
    path = tmp_path / 'evil.pkl'
    data = make_networks()
    path.write_bytes(pickle.dumps(dict(data, G_ema=_Evil(marker))))
    with pytest.raises(network_files.UntrustedCodeError, match=r'builtins\.exec') as info:
        network_files.load_network_pkl(str(path))
    assert '\n' not in str(info.value) and '--trust-code' in str(info.value)
    assert not marker.exists()

def test_malicious_global_inside_network_state_refused(tmp_path):
    marker = tmp_path / 'marker'
    data = make_networks()
    data['G'].__dict__['payload'] = _Evil(marker)
    path = tmp_path / 'evil.pkl'
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(network_files.UntrustedCodeError, match=r'builtins\.exec'):
        network_files.load_network_pkl(str(path))
    assert not marker.exists()

#----------------------------------------------------------------------------
# An embedded source with a side effect: refused without trust_code (marker never appears);
# with trust_code the file's code runs, as the original did.

def test_side_effect_source_refused(tmp_path):
    marker = tmp_path / 'marker'
    path = tmp_path / 'changed.pkl'
    dump_edited(path, make_networks(), with_marker(marker))
    with pytest.raises(network_files.UntrustedCodeError, match='matches no release this project knows') as info:
        network_files.load_network_pkl(str(path))
    message = str(info.value)
    assert '\n' not in message and '--trust-code' in message and '.safetensors' in message and 'nothing from the file was run' in message
    assert not marker.exists()
    result = legacy_cli(['--source', str(path), '--dest', str(tmp_path / 'out.pkl')])
    assert result.exit_code != 0 and 'matches no release' in result.output and not marker.exists()

def test_modified_source_loads_with_trust_code(tmp_path):
    marker = tmp_path / 'marker'
    data = make_networks()
    path = tmp_path / 'changed.pkl'
    dump_edited(path, data, with_marker(marker))
    loaded = network_files.load_network_pkl(str(path), trust_code=True)
    assert marker.exists() # The file's own code ran.
    assert not isinstance(loaded['G'], networks_stylegan2.Generator)
    assert_identical(loaded, data)
    result = legacy_cli(['--trust-code', '--source', str(path), '--dest', str(tmp_path / 'out.pkl')])
    assert result.exit_code == 0, result.output
    converted = network_files.load_network_pkl(str(tmp_path / 'out.pkl')) # Our classes now: loads safely.
    assert_identical(converted, data)

def legacy_cli(args):
    from click.testing import CliRunner # pylint: disable=import-outside-toplevel
    return CliRunner().invoke(legacy.convert_network_pickle, args)

#----------------------------------------------------------------------------
# Known source, changed structure: refused (shapes, submodule classes, unrecorded constructor).

def _edit_state(edit, class_name='MappingNetwork'):
    def fn(meta):
        if meta['class_name'] == class_name:
            meta['state'] = edit(dict(meta['state']))
        return meta
    return fn

@pytest.mark.parametrize('edit,match', [
    (lambda s: dict(s, _buffers=OrderedDict(w_avg=torch.zeros(5))), r'w_avg is torch.float32 \[5\]'),
    (lambda s: dict(s, _buffers=OrderedDict()), 'buffers do not match'),
    (lambda s: dict(s, _modules=OrderedDict(list(s['_modules'].items())[:1])), 'submodules do not match'),
    (('Generator', lambda s: dict(s, _init_kwargs=None)), 'no recorded constructor arguments'),
    (('Generator', lambda s: dict(s, _init_kwargs=dict(s['_init_kwargs'], mapping_kwargs=dict(num_layers=3)))), 'submodules do not match'),
    (('Generator', lambda s: dict(s, _init_kwargs=dict(s['_init_kwargs'], no_such_option=1))), 'constructor arguments do not build'),
], ids=['shape', 'missing-buffer', 'missing-submodule', 'no-init-args', 'other-init-args', 'bad-init-args'])
def test_structure_mismatch_refused(tmp_path, edit, match):
    path = tmp_path / 'net.pkl'
    class_name, edit = edit if isinstance(edit, tuple) else ('MappingNetwork', edit)
    dump_edited(path, make_networks(), _edit_state(edit, class_name))
    with pytest.raises(network_files.UntrustedCodeError, match=match) as info:
        network_files.load_network_pkl(str(path))
    assert '\n' not in str(info.value)

def test_class_swapped_in_known_source_refused(tmp_path):
    def swap(meta):
        if meta['class_name'] == 'MappingNetwork':
            meta['class_name'] = 'SynthesisNetwork'
        return meta
    path = tmp_path / 'net.pkl'
    dump_edited(path, make_networks(), swap)
    with pytest.raises(network_files.UntrustedCodeError, match='mapping is a SynthesisNetwork in the file but a MappingNetwork'):
        network_files.load_network_pkl(str(path))

#----------------------------------------------------------------------------
# The allow-list: tensors, storages, numpy scalars and arrays, containers load; other globals,
# even harmless-looking ones, do not.

def test_allow_list_plain_data():
    import numpy as np # pylint: disable=import-outside-toplevel
    value = dict(t=torch.arange(6.0).reshape(2, 3)[:, 1:], p=torch.nn.Parameter(torch.ones(2)), a=np.arange(4, dtype=np.float32),
        s=np.float64(0.5), d=torch.float16, od=OrderedDict(x=1), e=dnnlib.EasyDict(y={1, 2}), b=b'raw', c=1 + 2j)
    for protocol in (2, 3, 4, 5):
        loaded, recognised = safe_pickle.load(pickle.dumps(value, protocol=protocol))
        assert recognised == {} and set(loaded) == set(value)
        assert torch.equal(loaded['t'], value['t']) and isinstance(loaded['p'], torch.nn.Parameter)
        assert (loaded['a'] == value['a']).all() and loaded['s'] == 0.5 and loaded['d'] is torch.float16
        assert loaded['e'] == value['e'] and isinstance(loaded['e'], dnnlib.EasyDict) and loaded['c'] == 1 + 2j

@pytest.mark.parametrize('value,name', [
    (os.getcwd, 'posix.getcwd'),
    (copy.deepcopy, 'copy.deepcopy'),
    (torch.nn.functional.relu, 'torch.nn.functional.relu'),
    (ast.parse, 'ast.parse'),
])
def test_allow_list_refuses_other_globals(value, name):
    with pytest.raises(safe_pickle.SafeLoadError, match=name.replace('.', r'\.')):
        safe_pickle.load(pickle.dumps(dict(x=value)))

def test_storage_bytes_are_read_weights_only():
    # A storage's bytes are a torch.save archive; one that holds a pickled global is refused.
    import io # pylint: disable=import-outside-toplevel
    inner = io.BytesIO()
    torch.save(dict(x=os.getcwd), inner, _use_new_zipfile_serialization=False)
    class _FakeStorage:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (inner.getvalue(),)) # pylint: disable=protected-access
    with pytest.raises(pickle.UnpicklingError):
        safe_pickle.load(pickle.dumps(dict(x=_FakeStorage())))

#----------------------------------------------------------------------------
# Fingerprints: formatting, comments and docstrings do not matter; any code change does.

def test_fingerprint_normalisation():
    src = textwrap.dedent('''
        """Module docstring."""
        import torch
        class A:
            """Class docstring."""
            def f(self, x):
                return x + 1
    ''')
    same = src.replace('return x + 1', 'return (x +\n                1)  # comment') + '\n# trailing comment\n'
    same = same.replace('"""Class docstring."""', '"""Another docstring."""')
    assert source_fingerprints.fingerprint(src) == source_fingerprints.fingerprint(same)
    for changed in (src.replace('x + 1', 'x + 2'), src.replace('x + 1', 'x - 1'), src + 'import os\n', src.replace('self, x', 'self, x, y=0')):
        assert source_fingerprints.fingerprint(changed) != source_fingerprints.fingerprint(src)

#----------------------------------------------------------------------------
# The generated table holds today's family modules (regenerate with the command the error
# names) and the sources of the releases listed in PROJECT_RELEASES; every class it lists
# has a persistent counterpart in this installation.

def test_todays_family_modules_are_registered():
    installed = source_fingerprints.installed_sources()
    paths = {path for path, _src in installed}
    assert {'training/networks_stylegan2.py', 'training/networks_biggan.py', 'training/augment.py'} <= paths
    missing = [path for path, src in installed if source_fingerprints.fingerprint(src) not in known_sources.KNOWN_SOURCES]
    assert not missing, f'{missing} changed since training/known_sources.py was generated; run: python -m training.source_fingerprints --write'

def test_table_entries_resolve():
    releases = {entry['release'] for entry in known_sources.KNOWN_SOURCES.values()}
    assert 'gan-research 9dd6ba4' in releases
    for key, entry in known_sources.KNOWN_SOURCES.items():
        assert len(key) == 64 and entry['module'] == source_fingerprints.module_name(entry['path'])
        for class_name in entry['classes']:
            assert source_fingerprints.resolve_class(entry, class_name) is not None, (entry['release'], entry['path'], class_name)

#----------------------------------------------------------------------------
# Constructing a family class from recorded arguments must not look anything up by name:
# family modules never resolve strings to code.

@pytest.mark.parametrize('path', [path for path, _src in source_fingerprints.installed_sources()])
def test_family_modules_resolve_nothing_by_name(path):
    src = dict(source_fingerprints.installed_sources())[path]
    tree = ast.parse(src)
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    by_name = {'get_obj_by_name', 'construct_class_by_name', 'call_func_by_name', 'import_module'}
    assert not (attributes | names) & by_name, f'{path} uses {(attributes | names) & by_name}'
    builtins = {'__import__', 'eval', 'exec', 'compile'}
    assert not names & builtins, f'{path} uses {names & builtins}'

#----------------------------------------------------------------------------
# Setting attributes of an allowed class or function (pickle's BUILD with slot state) could
# change code this process runs later: refused, and the class stays as it was.

def test_build_on_allowed_global_refused():
    raw = b'\x80\x02ccollections\nOrderedDict\nN}X\x08\x00\x00\x00__repr__cbuiltins\nset\ns\x86b.'
    with pytest.raises(safe_pickle.SafeLoadError, match='sets attributes of OrderedDict'):
        safe_pickle.load(raw)
    assert OrderedDict.__repr__ is not set

#----------------------------------------------------------------------------
# The tools: a changed source is refused without --trust-code (nothing written, marker absent)
# and runs with it; a known one loads safely and the tool says which family it recognised.

def _tools():
    import generate # pylint: disable=import-outside-toplevel
    import style_mixing # pylint: disable=import-outside-toplevel
    return [(generate.generate_images_cmd, ['--seeds=0-1']), (style_mixing.generate_style_mix, ['--rows=0', '--cols=1', '--styles=0-1'])]

@pytest.mark.parametrize('tool', [0, 1], ids=['generate', 'style_mixing'])
def test_tools_trust_code(tmp_path, tool):
    from click.testing import CliRunner # pylint: disable=import-outside-toplevel
    cmd, args = _tools()[tool]
    marker = tmp_path / 'marker'
    data = make_networks()
    network_files.save_network_pkl(str(tmp_path / 'ours.pkl'), data)
    dump_edited(tmp_path / 'changed.pkl', data, with_marker(marker))
    common = [*args, '--class=0', '--device=cpu']

    result = CliRunner().invoke(cmd, [f'--network={tmp_path / "changed.pkl"}', f'--outdir={tmp_path / "a"}', *common])
    assert result.exit_code == 1 and 'matches no release this project knows' in result.output and '--trust-code' in result.output
    assert 'Traceback' not in result.output and not marker.exists() and not (tmp_path / 'a').exists()

    result = CliRunner().invoke(cmd, [f'--network={tmp_path / "changed.pkl"}', f'--outdir={tmp_path / "b"}', '--trust-code', *common])
    assert result.exit_code == 0, result.output
    assert marker.exists() and 'ran the code stored in the file' in result.output

    result = CliRunner().invoke(cmd, [f'--network={tmp_path / "ours.pkl"}', f'--outdir={tmp_path / "c"}', *common])
    assert result.exit_code == 0, result.output
    assert 'no code from the file run; G, D, G_ema rebuilt as StyleGAN2' in result.output
    names = sorted(os.listdir(tmp_path / 'b'))
    assert names and names == sorted(os.listdir(tmp_path / 'c'))
    for name in names: # Same images from the executing path and the safe one.
        assert (tmp_path / 'b' / name).read_bytes() == (tmp_path / 'c' / name).read_bytes()

def test_projector_refuses_changed_source(tmp_path):
    from click.testing import CliRunner # pylint: disable=import-outside-toplevel
    import projector # pylint: disable=import-outside-toplevel
    marker = tmp_path / 'marker'
    dump_edited(tmp_path / 'changed.pkl', make_networks(), with_marker(marker))
    result = CliRunner().invoke(projector.run_projection, [f'--network={tmp_path / "changed.pkl"}', '--target=x.png', f'--outdir={tmp_path / "out"}', '--device=cpu'])
    assert result.exit_code == 1 and 'matches no release' in result.output and not marker.exists()

#----------------------------------------------------------------------------
# calc_metrics.py: a changed source is refused before anything is computed; --trust-code loads it.

def test_calc_metrics_trust_code(tmp_path):
    from click.testing import CliRunner # pylint: disable=import-outside-toplevel
    import calc_metrics # pylint: disable=import-outside-toplevel
    marker = tmp_path / 'marker'
    dump_edited(tmp_path / 'changed.pkl', make_networks(), with_marker(marker))
    args = [f'--network={tmp_path / "changed.pkl"}', '--metrics=fid50k_full', f'--data={tmp_path / "missing.zip"}', '--device=cpu']
    result = CliRunner().invoke(calc_metrics.calc_metrics, args)
    assert result.exit_code == 1 and 'matches no release' in result.output and not marker.exists()
    result = CliRunner().invoke(calc_metrics.calc_metrics, [*args, '--trust-code'])
    assert marker.exists() and 'ran the code stored in the file' in result.output # Then stops at the missing dataset.
    assert result.exit_code != 0 and 'missing.zip' in result.output

#----------------------------------------------------------------------------
# train.py --resume=<pkl>: a changed source stops the command before a run directory exists;
# with --trust-code the config says so and the loop loads it by running its code.

def test_train_resume_trust_code(tmp_path, monkeypatch):
    import train # pylint: disable=import-outside-toplevel
    from click.testing import CliRunner # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(train, '_check_resume_fits', lambda *args: None) # These tiny networks do not fit --cfg=small (z_dim 8).
    marker = tmp_path / 'marker'
    dump_edited(tmp_path / 'changed.pkl', make_networks(), with_marker(marker))
    data = tmp_path / 'data'
    data.mkdir()
    import numpy as np # pylint: disable=import-outside-toplevel
    import PIL.Image # pylint: disable=import-outside-toplevel
    for idx in range(4):
        PIL.Image.fromarray(np.full([16, 16, 3], idx * 40, dtype=np.uint8)).save(data / f'{idx}.png')
    args = [f'--outdir={tmp_path / "runs"}', f'--data={data}', '--cfg=small', '--device=cpu', '--metrics=none', '--dry-run',
        f'--resume={tmp_path / "changed.pkl"}']
    result = CliRunner().invoke(train.main, args)
    assert result.exit_code == 1 and 'matches no release' in result.output and '--trust-code' in result.output
    assert not marker.exists() and not (tmp_path / 'runs').exists()
    result = CliRunner().invoke(train.main, [*args, '--trust-code'])
    assert result.exit_code == 0, result.output
    assert marker.exists() and '"resume_trust_code": true' in result.output

#----------------------------------------------------------------------------
# Every family this project implements: a freshly pickled network loads safely as the same
# class with bit-identical outputs (StyleGAN3 G with its edited input transform, BigGAN G and
# D, and the augmentation pipeline with its p).

def _family_cases():
    from training import augment, networks_biggan, networks_stylegan3 # pylint: disable=import-outside-toplevel
    torch.manual_seed(0)
    sg3 = networks_stylegan3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=256, channel_max=16, num_layers=4)
    sg3.synthesis.input.transform.copy_(torch.tensor([[1.0, 0.1, 0.2], [-0.1, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    bg = networks_biggan.Generator(z_dim=16, c_dim=3, img_resolution=32, img_channels=3, ch=4)
    bd = networks_biggan.Discriminator(c_dim=3, img_resolution=32, img_channels=3, ch=4)
    pipe = augment.AugmentPipe(xflip=1, rotate90=1, brightness=1)
    pipe.p.fill_(0.5)
    z8, z16, c3 = torch.randn([2, 8]), torch.randn([2, 16]), torch.eye(3)[:2]
    img = torch.rand([2, 3, 32, 32]) * 2 - 1
    return dict(
        stylegan3=(sg3, lambda G: G(z8, None, noise_mode='const', truncation_psi=0.8)),
        biggan_G=(bg, lambda G: G(z16, c3)),
        biggan_D=(bd, lambda D: D(img, c3)),
        augment_pipe=(pipe, lambda P: P(img)),
    )

@pytest.mark.parametrize('case', ['stylegan3', 'biggan_G', 'biggan_D', 'augment_pipe'])
def test_every_family_loads_safely(tmp_path, case):
    net, run = _family_cases()[case]
    net.eval().requires_grad_(False)
    path = tmp_path / 'net.pkl'
    network_files.save_network_pkl(str(path), dict(G_ema=net if case != 'augment_pipe' else make_networks()['G_ema'], augment_pipe=net if case == 'augment_pipe' else None))
    key = 'augment_pipe' if case == 'augment_pipe' else 'G_ema'
    loaded = network_files.load_network_pkl(str(path))[key]
    assert type(loaded) is type(net)
    ours, theirs = loaded.state_dict(), net.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    with torch.no_grad():
        torch.manual_seed(3)
        expected = run(net)
        torch.manual_seed(3)
        assert torch.equal(run(loaded), expected)

#----------------------------------------------------------------------------
# Files that are not a dict of networks, or nested too deeply, end in the usual one-line errors.

@pytest.mark.parametrize('make,match', [
    (lambda: make_networks()['G'], 'holds a PersistentRecord, not a dict'),
    (lambda: [torch.zeros(2)], 'holds a list'),
    (lambda: b'\x80\x02}X\x05\x00\x00\x00G_ema' + b']' * 100000 + b'a' * 99999 + b's.', 'not a valid network pickle'), # Nested 1e5 deep.
], ids=['record', 'list', 'deep'])
def test_not_a_network_dict(tmp_path, make, match):
    path = tmp_path / 'x.pkl'
    value = make()
    path.write_bytes(value if isinstance(value, bytes) else pickle.dumps(value))
    with pytest.raises(network_files.NetworkLoadError, match=match):
        network_files.load_network_pkl(str(path))

#----------------------------------------------------------------------------
# Import hooks registered in this process (its own code) run on the meta before the source is
# fingerprinted, as on the executing path: a hook can map a known edit back to the release.

def test_import_hooks_apply(tmp_path, monkeypatch):
    marker = tmp_path / 'marker'
    data = make_networks()
    dump_edited(tmp_path / 'changed.pkl', data, with_marker(marker))
    suffix = f'\nopen({str(marker)!r}, "w").close()\n'
    def strip_marker(meta):
        meta.module_src = meta.module_src.replace(suffix, '')
        return meta
    monkeypatch.setattr(persistence, '_import_hooks', [strip_marker])
    assert_identical(network_files.load_network_pkl(str(tmp_path / 'changed.pkl')), data)
    assert not marker.exists()

#----------------------------------------------------------------------------
# Backward hooks on a pickled tensor (they would run during training) are refused.

def test_tensor_backward_hooks_refused():
    class _Hooked:
        def __reduce__(self):
            args = (torch.ones(2), False, OrderedDict(h=set))
            return (torch._utils._rebuild_parameter, args) # pylint: disable=protected-access
    with pytest.raises(safe_pickle.SafeLoadError, match='backward hooks'):
        safe_pickle.load(pickle.dumps(dict(x=_Hooked())))

#----------------------------------------------------------------------------
