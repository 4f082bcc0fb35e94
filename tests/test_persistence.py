# Tests for torch_utils.persistence: round trips in and across processes, the version-6
# meta format, import hooks, errors, tracebacks into pickled code, and a hand-built pickle
# in the format of the original StyleGAN2-ADA code (see test_original_format_pickle below).

import copy
import importlib
import inspect
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import traceback
import uuid
from collections import OrderedDict

import pytest
import torch

import dnnlib
from torch_utils import persistence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#----------------------------------------------------------------------------
# Source of a module of persistent test classes, written to a temporary file.

_TEST_MODULE_SRC = textwrap.dedent('''
    import torch
    from torch_utils import persistence

    @persistence.persistent_class
    class Inner(torch.nn.Module):
        def __init__(self, channels, scale=1.0):
            super().__init__()
            self.fc = torch.nn.Linear(channels, channels)
            self.scale = scale
        def forward(self, x):
            return self.fc(x).tanh() * self.scale

    @persistence.persistent_class
    class Outer(torch.nn.Module):
        def __init__(self, channels, num_inner=2, **inner_kwargs):
            super().__init__()
            self.blocks = torch.nn.ModuleList([Inner(channels, **inner_kwargs) for _ in range(num_inner)])
            self.register_buffer('offset', torch.linspace(-1, 1, channels))
        def forward(self, x):
            for block in self.blocks:
                x = block(x) + self.offset
            return x

    @persistence.persistent_class
    class WithFn(torch.nn.Module):
        def __init__(self, fn=None, sizes=(1,)):
            super().__init__()
            self.sizes = list(sizes)

    @persistence.persistent_class
    class Counter:
        def __init__(self, start):
            self.value = start
            self.cache = 'built by __init__'
        def __getstate__(self):
            return dict(value=self.value)
        def __setstate__(self, state):
            self.value = state['value']
            self.cache = 'rebuilt by __setstate__'
''')

#----------------------------------------------------------------------------
# Write a module with a unique name into a directory and import it from there.

def _import_from_dir(directory, src):
    name = f'persistence_testmod_{uuid.uuid4().hex[:10]}'
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name + '.py'), 'w', encoding='utf-8') as f:
        f.write(src)
    sys.path.insert(0, str(directory))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(directory))

@pytest.fixture
def testmod(tmp_path):
    return _import_from_dir(tmp_path / 'mods', _TEST_MODULE_SRC)

#----------------------------------------------------------------------------
# Helper that pickles to exactly `_reconstruct_persistent_obj(meta)`, as the original code does.

class _PersistentStub:
    def __init__(self, meta):
        self.meta = meta
    def __reduce__(self):
        return (persistence._reconstruct_persistent_obj, (self.meta,)) # pylint: disable=protected-access

#----------------------------------------------------------------------------
# State of a torch.nn.Module as pickled by torch 1.7-1.9 (the fields the originals hold).

def _old_module_state(params=(), buffers=(), modules=(), **attrs):
    state = dict(
        training=False, _parameters=OrderedDict(params), _buffers=OrderedDict(buffers),
        _non_persistent_buffers_set=set(), _backward_hooks=OrderedDict(), _forward_hooks=OrderedDict(),
        _forward_pre_hooks=OrderedDict(), _state_dict_hooks=OrderedDict(),
        _load_state_dict_pre_hooks=OrderedDict(), _modules=OrderedDict(modules),
    )
    state.update(attrs)
    return state

def _meta(src, class_name, state, version=6):
    return dict(type='class', version=version, module_src=src, class_name=class_name, state=state)

def _unique_src(body):
    return textwrap.dedent(body) + f'\n# {uuid.uuid4().hex}\n'

#----------------------------------------------------------------------------
# Round trip in one process: same class, arguments, outputs; deep copies stay independent.

def test_round_trip_same_process(testmod):
    torch.manual_seed(0)
    sizes = [1, 2]
    net = testmod.Outer(4, num_inner=2, scale=0.5)
    holder = testmod.WithFn(sizes=sizes)
    sizes.append(3)
    assert holder.init_kwargs.sizes == [1, 2] # Deep-copied at construction.
    assert net.init_args == (4,) and net.init_kwargs == dict(num_inner=2, scale=0.5)
    assert isinstance(net.init_kwargs, dnnlib.EasyDict) and net.init_kwargs.scale == 0.5

    x = torch.randn(3, 4)
    clone = pickle.loads(pickle.dumps(net))
    assert type(clone) is type(net) and type(clone.blocks[0]) is testmod.Inner
    assert torch.equal(clone(x), net(x))
    assert clone.init_kwargs == net.init_kwargs

    copied = copy.deepcopy(net)
    assert type(copied) is type(net)
    with torch.no_grad():
        copied.offset.add_(1)
    assert not torch.equal(copied(x), net(x))

#----------------------------------------------------------------------------
# The meta of a persistent object: version 6, module source, class name, state.

def test_reduce_meta(testmod):
    net = testmod.Outer(4)
    func, (meta,) = net.__reduce__()
    assert func is persistence._reconstruct_persistent_obj # pylint: disable=protected-access
    assert func.__module__ == 'torch_utils.persistence' and func.__name__ == '_reconstruct_persistent_obj'
    assert set(meta) == {'type', 'version', 'module_src', 'class_name', 'state'}
    assert (meta['type'], meta['version'], meta['class_name']) == ('class', 6, 'Outer')
    assert meta['module_src'] == _TEST_MODULE_SRC
    assert meta['state']['_init_args'] == (4,)
    assert persistence.is_persistent(meta['state']['_modules']['blocks'][0])

#----------------------------------------------------------------------------
# is_persistent, idempotent decoration, __getstate__/__setstate__, plain classes.

def test_decorator_basics(testmod):
    assert persistence.is_persistent(testmod.Outer) and persistence.is_persistent(testmod.Outer(2))
    assert not persistence.is_persistent(torch.nn.Linear) and not persistence.is_persistent(3)
    assert persistence.persistent_class(testmod.Outer) is testmod.Outer
    assert testmod.Outer.__name__ == 'Outer' and testmod.Outer.__module__ == testmod.__name__
    with pytest.raises(TypeError, match='expects a class'):
        persistence.persistent_class(lambda: None)

    # Subclasses of persistent classes: decorated ones keep their own arguments, others cannot be pickled.
    class Sub(testmod.Inner):
        def __init__(self, scale):
            super().__init__(3, scale=scale)
    with pytest.raises(pickle.PicklingError, match='is not decorated with @persistence.persistent_class'):
        pickle.dumps(Sub(2.0))
    sub = persistence.persistent_class(Sub)(2.0)
    assert sub.init_args == (2.0,) and sub.init_kwargs == {}
    with pytest.raises(pickle.PicklingError, match='only classes defined at the top level'):
        pickle.dumps(sub)

    counter = testmod.Counter(7)
    clone = pickle.loads(pickle.dumps(counter))
    assert (clone.value, clone.cache) == (7, 'rebuilt by __setstate__')

#----------------------------------------------------------------------------
# Round trip across processes: pickled where the module is importable, loaded where it is not.

_WRITER = textwrap.dedent('''
    import pickle, sys, torch
    mod = __import__(sys.argv[1])
    torch.manual_seed(123)
    net = mod.Outer(6, num_inner=3, scale=0.75)
    x = torch.randn(5, 6)
    torch.save(dict(x=x, y=net(x).detach()), sys.argv[2] + '/io.pt')
    with open(sys.argv[2] + '/net.pkl', 'wb') as f:
        pickle.dump(dict(G=net, other=[net.blocks[1]]), f)
''')

_READER = textwrap.dedent('''
    import importlib.util, pickle, sys, torch
    from torch_utils import persistence
    assert importlib.util.find_spec(sys.argv[1]) is None, 'defining module must not be importable here'
    with open(sys.argv[2] + '/net.pkl', 'rb') as f:
        data = pickle.load(f)
    net = data['G']
    mods = [name for name in sys.modules if name.startswith('_imported_module_')]
    assert len(mods) == 1, mods
    assert type(net).__module__ == mods[0] and type(net.blocks[0]).__module__ == mods[0]
    assert persistence.is_persistent(net) and persistence.is_persistent(net.blocks[2])
    assert data['other'][0] is net.blocks[1]
    assert net.init_args == (6,) and net.init_kwargs == dict(num_inner=3, scale=0.75)
    again = pickle.loads(pickle.dumps(net))
    assert type(again) is type(net)
    io = torch.load(sys.argv[2] + '/io.pt')
    torch.save(net(io['x']).detach(), sys.argv[2] + '/y2.pt')
''')

@pytest.mark.slow
def test_round_trip_across_processes(tmp_path):
    mod_dir = tmp_path / 'mods'
    modname = _import_from_dir(mod_dir, _TEST_MODULE_SRC).__name__
    _run_python(_WRITER, [modname, str(tmp_path)], pythonpath=[ROOT, str(mod_dir)])
    _run_python(_READER, [modname, str(tmp_path)], pythonpath=[ROOT])
    y = torch.load(tmp_path / 'io.pt')['y']
    y2 = torch.load(tmp_path / 'y2.pt')
    assert y.dtype == y2.dtype and torch.equal(y, y2) # Bit-identical.

def _run_python(code, args, pythonpath):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(pythonpath))
    proc = subprocess.run([sys.executable, '-c', code] + args, env=env, cwd=args[-1], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout

#----------------------------------------------------------------------------
# Import hooks rewrite meta, in registration order; a bad hook is a clear error.

def test_import_hook():
    src = _unique_src('''
        import torch
        from torch_utils import persistence

        @persistence.persistent_class
        class Scaler(torch.nn.Module):
            def forward(self, x):
                return x * 2
    ''')
    def fix_version(meta):
        if meta.module_src == src:
            assert meta.version == 5
            meta.version = 6
        return meta
    def triple(meta):
        if meta.module_src == src and meta.version == 6:
            meta.module_src = src.replace('x * 2', 'x * 3')
        return meta
    data = pickle.dumps(_PersistentStub(_meta(src, 'Scaler', _old_module_state(), version=5)))
    persistence.import_hook(fix_version)
    persistence.import_hook(triple)
    try:
        obj = pickle.loads(data)
    finally:
        persistence._import_hooks.remove(fix_version) # pylint: disable=protected-access
        persistence._import_hooks.remove(triple) # pylint: disable=protected-access
    assert obj(torch.ones(2)).tolist() == [3.0, 3.0]

    bad = persistence.import_hook(lambda meta: None)
    try:
        with pytest.raises(TypeError, match='returned NoneType'):
            pickle.loads(data)
    finally:
        persistence._import_hooks.remove(bad) # pylint: disable=protected-access
    with pytest.raises(TypeError, match='expects a callable'):
        persistence.import_hook('not callable')

#----------------------------------------------------------------------------
# Unknown version or type, missing keys and missing classes are one clear error each.

def test_bad_meta_errors():
    src = _unique_src('''
        class Thing:
            pass
    ''')
    cases = [
        (_meta(src, 'Thing', {}, version=5), r'format version 5 in pickle; this code reads version 6'),
        (_meta(src, 'Thing', {}, version='7'), r"format version '7'"),
        (dict(_meta(src, 'Thing', {}), type='function'), r"type 'function'"),
        ({k: v for k, v in _meta(src, 'Thing', {}).items() if k != 'state'}, r"lacks the key 'state'"),
        (_meta(src, 'Missing', {}), r"defines no class named 'Missing'"),
    ]
    for meta, pattern in cases:
        with pytest.raises(pickle.UnpicklingError, match=pattern):
            pickle.loads(pickle.dumps(_PersistentStub(meta)))
    obj = pickle.loads(pickle.dumps(_PersistentStub(_meta(src, 'Thing', dict(a=1)))))
    assert obj.a == 1 and persistence.is_persistent(obj) and type(obj).__name__ == 'Thing'

#----------------------------------------------------------------------------
# Code from a pickle runs once per source and shows its file name and lines in tracebacks.

def test_traceback_shows_pickled_source():
    src = _unique_src('''
        import torch
        from torch_utils import persistence

        @persistence.persistent_class
        class Boom(torch.nn.Module):
            def forward(self, x):
                raise ValueError('boom from pickled code')
    ''')
    data = pickle.dumps(_PersistentStub(_meta(src, 'Boom', _old_module_state())))
    first, second = pickle.loads(data), pickle.loads(data)
    assert type(first) is type(second)
    assert persistence._module_to_src(sys.modules[type(first).__module__]) == src # pylint: disable=protected-access
    with pytest.raises(ValueError) as info:
        first(torch.zeros(1))
    text = ''.join(traceback.format_exception(info.type, info.value, info.tb))
    assert f"File \"<pickled module '{type(first).__module__}'>\", line 8, in forward" in text
    assert "raise ValueError('boom from pickled code')" in text

    # Pickling it again stores the same source.
    _, (meta,) = first.__reduce__()
    assert meta['module_src'] == src

#----------------------------------------------------------------------------
# Pickling errors: unpicklable constructor arguments, classes without retrievable source.

def test_pickling_errors(testmod):
    with pytest.raises(pickle.PicklingError, match=r"WithFn: its constructor keyword argument 'fn' \(function\) is not picklable"):
        pickle.dumps(testmod.WithFn(fn=lambda x: x))
    with pytest.raises(pickle.PicklingError, match=r'constructor positional argument 0 \(function\)'):
        pickle.dumps(testmod.WithFn(lambda x: x))
    with pytest.raises(TypeError, match='WithFn: cannot record the constructor arguments'):
        testmod.WithFn(fn=threading.Lock())

    class InMain(torch.nn.Module):
        pass
    InMain.__module__ = '__main__'
    with pytest.raises(pickle.PicklingError, match='defined in __main__'):
        pickle.dumps(persistence.persistent_class(InMain)())

    name = f'persistence_nosrc_{uuid.uuid4().hex[:8]}'
    module = type(sys)(name)
    sys.modules[name] = module
    try:
        exec('import torch\nfrom torch_utils import persistence\n@persistence.persistent_class\nclass NoSrc(torch.nn.Module):\n    pass\n', module.__dict__) # pylint: disable=exec-used
        with pytest.raises(pickle.PicklingError, match=f"source code of module '{name}' cannot be retrieved"):
            pickle.dumps(module.NoSrc())
    finally:
        del sys.modules[name]

#----------------------------------------------------------------------------
# A pickle in the format of the original StyleGAN2-ADA code, built by hand: a snapshot dict
# whose networks reduce to `_reconstruct_persistent_obj(meta)` with version-6 meta dicts,
# nested persistent submodules, Parameters/buffers in torch-1.7-style module state, and an
# embedded module source that calls our ops with the original keyword names. It is loaded
# in a fresh process and checked against float64 math written out below.

_ORIGINAL_STYLE_SRC = textwrap.dedent('''
    """Synthetic networks module written like an original StyleGAN2-ADA networks file."""

    import numpy as np
    import torch
    from torch_utils import misc
    from torch_utils import persistence
    from torch_utils.ops import bias_act
    from torch_utils.ops import conv2d_resample
    from torch_utils.ops import upfirdn2d
    from torch_utils.ops import fma

    #----------------------------------------------------------------------------

    @misc.profiled_function
    def scale_to_unit_rms(x, eps=1e-8):
        return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()

    #----------------------------------------------------------------------------

    @persistence.persistent_class
    class Dense(torch.nn.Module):
        def __init__(self, in_features, out_features, act='linear', lr_mul=1):
            raise RuntimeError('__init__ must not run when unpickling')

        def forward(self, x):
            misc.assert_shape(x, [None, self.in_features])
            w = self.weight.to(x.dtype) * (self.lr_mul / np.sqrt(self.in_features))
            return bias_act.bias_act(x.matmul(w.t()), self.bias.to(x.dtype) * self.lr_mul, act=self.act)

    #----------------------------------------------------------------------------

    @persistence.persistent_class
    class UpConv(torch.nn.Module):
        def __init__(self, in_channels, out_channels, resolution, conv_clamp=None):
            raise RuntimeError('__init__ must not run when unpickling')

        def forward(self, x, styles):
            misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
            w = self.weight * misc.constant(self.weight_gain, dtype=x.dtype)
            offset = misc.constant(0.5, shape=[1, self.in_channels, 1, 1], dtype=x.dtype)
            x = fma.fma(x, styles.reshape(-1, self.in_channels, 1, 1), offset)
            x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=self.resample_filter, up=2, padding=1, flip_weight=False)
            gain = bias_act.activation_funcs['lrelu'].def_gain * self.act_gain
            return bias_act.bias_act(x, self.bias.to(x.dtype), act='lrelu', gain=gain, clamp=self.conv_clamp)

    #----------------------------------------------------------------------------

    @persistence.persistent_class
    class TinyGenerator(torch.nn.Module):
        def __init__(self, z_dim, channels):
            raise RuntimeError('__init__ must not run when unpickling')

        def forward(self, z):
            misc.assert_shape(z, [None, self.z_dim])
            styles = self.mapping(scale_to_unit_rms(z))
            x = self.const.unsqueeze(0).repeat([z.shape[0], 1, 1, 1])
            x = self.conv(x, styles)
            return upfirdn2d.downsample2d(x, upfirdn2d.setup_filter([1, 3, 3, 1]))

    #----------------------------------------------------------------------------
''')

_ORIGINAL_STYLE_LOADER = textwrap.dedent('''
    import pickle, sys, torch
    from torch_utils import persistence
    with open('snapshot.pkl', 'rb') as f:
        snapshot = pickle.load(f)
    assert snapshot['D'] is None and snapshot['augment_pipe'] is None
    assert snapshot['training_set_kwargs']['resolution'] == 4
    mods = [name for name in sys.modules if name.startswith('_imported_module_')]
    assert len(mods) == 1, mods
    G = snapshot['G']
    assert type(G).__name__ == 'TinyGenerator' and type(G.conv).__name__ == 'UpConv'
    assert persistence.is_persistent(G.mapping) and type(G_ema := snapshot['G_ema']) is type(G)
    assert G.init_kwargs == dict(channels=3) and G.mapping.init_args == (5, 3)
    assert not any(p.requires_grad for p in G.parameters())
    z = torch.load('z.pt')
    with torch.no_grad():
        torch.save(dict(G=G(z), G_ema=G_ema(z)), 'out.pt')
''')

_CLAMP = 0.6 # conv_clamp of the UpConv layer.

def _original_style_params(seed):
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(shape, generator=gen)
    f1 = torch.tensor([1.0, 3.0, 3.0, 1.0])
    return dict(mw=rand(3, 5), mb=rand(3), cw=rand(4, 3, 3, 3), cb=rand(4) * 0.3, const=rand(3, 4, 4),
        f=torch.outer(f1, f1) / torch.outer(f1, f1).sum())

def _original_style_meta(params):
    param = lambda t: torch.nn.Parameter(t.clone(), requires_grad=False)
    mapping = _meta(_ORIGINAL_STYLE_SRC, 'Dense', _old_module_state(
        params=[('weight', param(params['mw'])), ('bias', param(params['mb']))],
        in_features=5, act='lrelu', lr_mul=0.1, _init_args=(5, 3), _init_kwargs=dnnlib.EasyDict(act='lrelu', lr_mul=0.1)))
    conv = _meta(_ORIGINAL_STYLE_SRC, 'UpConv', _old_module_state(
        params=[('weight', param(params['cw'])), ('bias', param(params['cb']))],
        buffers=[('resample_filter', params['f'].clone())],
        in_channels=3, resolution=4, weight_gain=1 / 27 ** 0.5, act_gain=0.8, conv_clamp=_CLAMP,
        _init_args=(3, 4, 4), _init_kwargs=dnnlib.EasyDict(conv_clamp=_CLAMP)))
    return _meta(_ORIGINAL_STYLE_SRC, 'TinyGenerator', _old_module_state(
        params=[('const', param(params['const']))],
        modules=[('mapping', _PersistentStub(mapping)), ('conv', _PersistentStub(conv))],
        z_dim=5, _init_args=(), _init_kwargs=dnnlib.EasyDict(channels=3)))

# The same network in float64 with plain torch: upsampling conv = zero insertion, padding
# [3, 2] (1 + filter padding), FIR filter with gain 4, true convolution with the weight.
def _original_style_reference(params, z):
    P = {k: v.double() for k, v in params.items()}
    z = z.double()
    lrelu = lambda x: torch.where(x >= 0, x, 0.2 * x) * 2 ** 0.5
    depthwise = lambda x, f: torch.nn.functional.conv2d(x, f.flip([0, 1])[None, None].repeat(x.shape[1], 1, 1, 1), groups=x.shape[1])
    z = z / (z.square().mean(dim=1, keepdim=True) + 1e-8).sqrt()
    styles = lrelu(z @ (P['mw'] * 0.1 / 5 ** 0.5).t() + P['mb'] * 0.1)
    x = P['const'][None] * styles[:, :, None, None] + 0.5
    up = torch.zeros(x.shape[0], 3, 8, 8, dtype=torch.float64)
    up[:, :, ::2, ::2] = x
    x = depthwise(torch.nn.functional.pad(up, [3, 2, 3, 2]), P['f'] * 4)
    x = torch.nn.functional.conv2d(x, (P['cw'] / 27 ** 0.5).flip([2, 3]))
    x = lrelu(x + P['cb'][None, :, None, None]) * 0.8
    clamped = bool((x.abs() > _CLAMP).any())
    x = depthwise(torch.nn.functional.pad(x.clamp(-_CLAMP, _CLAMP), [1, 1, 1, 1]), P['f'])
    return x[:, :, ::2, ::2], clamped

@pytest.mark.slow
def test_original_format_pickle(tmp_path):
    try:
        from torch_utils.ops import bias_act, conv2d_resample, fma, upfirdn2d # pylint: disable=unused-import,import-outside-toplevel
    except ImportError as err:
        pytest.skip(f'torch_utils.ops not complete yet: {err}')
    params, params_ema = _original_style_params(1), _original_style_params(2)
    snapshot = dict(G=_PersistentStub(_original_style_meta(params)), D=None,
        G_ema=_PersistentStub(_original_style_meta(params_ema)), augment_pipe=None,
        training_set_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path='data.zip',
            use_labels=False, max_size=10, xflip=False, resolution=4))
    with open(tmp_path / 'snapshot.pkl', 'wb') as f:
        pickle.dump(snapshot, f)
    z = torch.randn([6, 5], generator=torch.Generator().manual_seed(3))
    torch.save(z, tmp_path / 'z.pt')
    _run_python(_ORIGINAL_STYLE_LOADER, [str(tmp_path)], pythonpath=[ROOT])
    out = torch.load(tmp_path / 'out.pt')
    for key, p in [('G', params), ('G_ema', params_ema)]:
        ref, clamped = _original_style_reference(p, z)
        assert out[key].shape == (6, 4, 4, 4) and out[key].dtype == torch.float32
        assert clamped # The clamp is exercised.
        torch.testing.assert_close(out[key].double(), ref, rtol=1e-5, atol=1e-5)

#----------------------------------------------------------------------------

def test_signature_is_the_original_constructors():
    # Config checks bind keywords against inspect.signature: it must not be (*args, **kwargs).
    class Plain(torch.nn.Module):
        def __init__(self, width, depth=2):
            super().__init__()
    Decorated = persistence.persistent_class(Plain)
    assert list(inspect.signature(Decorated).parameters) == ['width', 'depth']
    with pytest.raises(TypeError):
        inspect.signature(Decorated).bind_partial(widht=3)

#----------------------------------------------------------------------------
