# Tests of torch_utils.custom_ops (build folders, the build lock, the loud failure) and
# of the impl= rules of the ops. Builds are simulated with injected builder functions,
# so everything runs on a CPU-only machine.

import json
import multiprocessing
import importlib
import os
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import warnings

import pytest
import torch

from torch_utils import custom_ops
from torch_utils.ops import bias_act
from torch_utils.ops import upfirdn2d

#----------------------------------------------------------------------------
# Fresh per-process plugin caches and a private build root for every test.

@pytest.fixture(autouse=True)
def clean_state(monkeypatch, tmp_path):
    monkeypatch.setattr(custom_ops, '_cached_plugins', dict())
    monkeypatch.setattr(custom_ops, '_failed_plugins', dict())
    monkeypatch.setenv(custom_ops.BUILD_DIR_ENV, str(tmp_path / 'builds'))

#----------------------------------------------------------------------------
# Writes small source files into tmp_path; returns their folder.

def write_sources(tmp_path, cpp='int f() { return 1; }', header='#pragma once'):
    src = tmp_path / 'src'
    src.mkdir(exist_ok=True)
    (src / 'op.cpp').write_text(cpp)
    (src / 'op.h').write_text(header)
    return str(src)

#----------------------------------------------------------------------------
# A fake build: records the call, sleeps a little (so concurrent callers overlap), returns
# a module-like dict. The loader returns another dict so tests can tell them apart.

class FakeToolchain:
    def __init__(self, sleep_s=0.0, fail=False):
        self.sleep_s = sleep_s
        self.fail = fail
        self.builds = []
        self.loads = []
        self.mutex = threading.Lock()

    def builder(self, module_name, sources, build_dir, **kwargs):
        with self.mutex:
            self.builds.append((module_name, sources, build_dir, kwargs))
        time.sleep(self.sleep_s)
        if self.fail:
            raise RuntimeError('Error building extension: nvcc fatal: Unsupported gpu architecture')
        return dict(kind='built', build_dir=build_dir)

    def loader(self, module_name, build_dir):
        with self.mutex:
            self.loads.append(build_dir)
        return dict(kind='loaded', build_dir=build_dir)

#----------------------------------------------------------------------------
# The build folder follows the contents of sources and headers, not their timestamps.

def test_hash_follows_contents(tmp_path):
    src = write_sources(tmp_path)
    paths = [os.path.join(src, 'op.cpp'), os.path.join(src, 'op.h')]
    digest = custom_ops.source_hash(paths)
    os.utime(paths[0], (0, 0))
    assert custom_ops.source_hash(paths) == digest
    write_sources(tmp_path, cpp='int f() { return 2; }')
    assert custom_ops.source_hash(paths) != digest
    digest2 = custom_ops.source_hash(paths)
    write_sources(tmp_path, cpp='int f() { return 2; }', header='#pragma once // changed')
    assert custom_ops.source_hash(paths) not in (digest, digest2)
    dirs = {custom_ops.get_build_dir('op_plugin', custom_ops.source_hash(paths))}
    write_sources(tmp_path)
    dirs.add(custom_ops.get_build_dir('op_plugin', custom_ops.source_hash(paths)))
    assert len(dirs) == 2 and all(os.path.basename(d).startswith('op_plugin-') for d in dirs)
    assert all(d.startswith(str(tmp_path / 'builds')) for d in dirs)

#----------------------------------------------------------------------------
# The hash also follows the build options and the target GPU architectures.

def test_hash_follows_options(tmp_path, monkeypatch):
    paths = [os.path.join(write_sources(tmp_path), 'op.cpp')]
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '8.0')
    digest = custom_ops.source_hash(paths)
    assert custom_ops.source_hash(paths, dict(extra_cuda_cflags=['-O3'])) != digest
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '9.0')
    assert custom_ops.source_hash(paths) != digest

#----------------------------------------------------------------------------
# First call builds, later calls in the process use the cache; a new process (cache
# cleared) loads the finished build instead of building again.

def test_build_once_then_load(tmp_path, monkeypatch):
    src = write_sources(tmp_path)
    tools = FakeToolchain()
    kwargs = dict(sources=['op.cpp'], headers=['op.h'], source_dir=src, builder=tools.builder, loader=tools.loader)
    first = custom_ops.get_plugin('op_plugin', extra_cflags=['-O2'], **kwargs)
    assert first['kind'] == 'built' and custom_ops.get_plugin('op_plugin', **kwargs) is first
    (name, sources, build_dir, build_kwargs), = tools.builds
    assert name == 'op_plugin' and build_kwargs == dict(extra_cflags=['-O2'])
    assert sources == [os.path.join(build_dir, 'op.cpp')] and os.path.isfile(os.path.join(build_dir, 'op.h'))
    assert os.path.isfile(os.path.join(build_dir, custom_ops.DONE_MARKER))
    assert not os.path.exists(os.path.join(build_dir, 'build.lock'))

    monkeypatch.setattr(custom_ops, '_cached_plugins', dict())
    assert custom_ops.get_plugin('op_plugin', extra_cflags=['-O2'], **kwargs)['kind'] == 'loaded'
    assert len(tools.builds) == 1 and tools.loads == [build_dir]

#----------------------------------------------------------------------------
# Concurrent callers (threads of one process) build once; the others wait and load.

def test_concurrent_threads_build_once(tmp_path):
    src = write_sources(tmp_path)
    tools = FakeToolchain(sleep_s=0.3)
    paths = [os.path.join(src, 'op.cpp')]
    build_dir = custom_ops.get_build_dir('op_plugin', custom_ops.source_hash(paths))
    results = []
    def call():
        results.append(custom_ops.build_or_load('op_plugin', paths, 1, build_dir, tools.builder, tools.loader, {}))
    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(tools.builds) == 1 and len(tools.loads) == 3
    assert sorted(r['kind'] for r in results) == ['built', 'loaded', 'loaded', 'loaded']

#----------------------------------------------------------------------------
# Concurrent processes build once (fork keeps it fast); each appends to a log file.

def _process_build(build_dir, src_path, log_path):
    def builder(module_name, sources, build_dir, **kwargs):
        with open(log_path, 'a', encoding='utf-8') as f:
            f.write(f'build {os.getpid()}\n')
        time.sleep(0.3)
        return 'built'
    def loader(module_name, build_dir):
        with open(log_path, 'a', encoding='utf-8') as f:
            f.write(f'load {os.getpid()}\n')
        return 'loaded'
    custom_ops.build_or_load('op_plugin', [src_path], 1, build_dir, builder, loader, {})

@pytest.mark.skipif(sys.platform != 'linux', reason='uses the fork start method')
def test_concurrent_processes_build_once(tmp_path):
    src = write_sources(tmp_path)
    build_dir, log_path = str(tmp_path / 'build'), str(tmp_path / 'log.txt')
    ctx = multiprocessing.get_context('fork')
    procs = [ctx.Process(target=_process_build, args=(build_dir, os.path.join(src, 'op.cpp'), log_path)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    lines = open(log_path, encoding='utf-8').read().split()
    assert lines.count('build') == 1 and lines.count('load') == 2

#----------------------------------------------------------------------------
# A lock left by a dead process on this host is broken at once.

def test_stale_lock_dead_pid(tmp_path):
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    lock = tmp_path / 'build.lock'
    lock.write_text(json.dumps(dict(pid=proc.pid, host=socket.gethostname(), token='old')))
    start = time.monotonic()
    with custom_ops.BuildLock(str(lock), timeout_s=5) as held:
        assert custom_ops.read_lock_owner(str(lock))['token'] == held.owner['token']
    assert time.monotonic() - start < 2 and not lock.exists()
    assert not list(tmp_path.glob('*.stale'))

#----------------------------------------------------------------------------
# A lock older than stale_s is broken even when its owner looks alive (or is on another host).

@pytest.mark.parametrize('host', ['this', 'other-host.example'])
def test_stale_lock_too_old(tmp_path, host):
    lock = tmp_path / 'build.lock'
    lock.write_text(json.dumps(dict(pid=os.getpid(), host=socket.gethostname() if host == 'this' else host, token='old')))
    old = time.time() - 3600
    os.utime(lock, (old, old))
    with custom_ops.BuildLock(str(lock), stale_s=60, timeout_s=5):
        pass
    assert not lock.exists()

#----------------------------------------------------------------------------
# A fresh lock of a live process is waited for: a timeout error names the holder; a
# lock on another host with an unknown pid is not treated as dead.

@pytest.mark.parametrize('host', ['this', 'other-host.example'])
def test_live_lock_times_out(tmp_path, host):
    lock = tmp_path / 'build.lock'
    owner = dict(pid=os.getpid() if host == 'this' else 999999999, host=socket.gethostname() if host == 'this' else host, token='x')
    lock.write_text(json.dumps(owner))
    start = time.monotonic()
    with pytest.raises(custom_ops.LockTimeoutError, match='build.lock.*delete the file'):
        with custom_ops.BuildLock(str(lock), timeout_s=0.5, poll_s=0.05):
            pass
    assert 0.5 <= time.monotonic() - start < 3
    assert json.loads(lock.read_text()) == owner

#----------------------------------------------------------------------------
# A live lock released by its holder lets the waiter in.

def test_live_lock_released(tmp_path):
    lock = str(tmp_path / 'build.lock')
    holder = custom_ops.BuildLock(lock)
    holder.__enter__()
    timer = threading.Timer(0.3, holder.__exit__, args=(None, None, None))
    timer.start()
    start = time.monotonic()
    with custom_ops.BuildLock(lock, timeout_s=10, poll_s=0.05):
        assert time.monotonic() - start >= 0.25
    timer.join()

#----------------------------------------------------------------------------
# A failed build: one RuntimeWarning with the reason and the build folder, then
# PluginError on every call without another warning; the lock is released.

def test_failed_build_is_loud_once(tmp_path):
    src = write_sources(tmp_path)
    tools = FakeToolchain(fail=True)
    kwargs = dict(sources=['op.cpp'], source_dir=src, builder=tools.builder, loader=tools.loader)
    with pytest.warns(RuntimeWarning, match=r'(?s)Cannot build the CUDA plugin op_plugin.*Unsupported gpu.*build folder.*reference PyTorch path'):
        with pytest.raises(custom_ops.PluginError):
            custom_ops.get_plugin('op_plugin', **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        with pytest.raises(custom_ops.PluginError, match='Unsupported gpu'):
            custom_ops.get_plugin('op_plugin', **kwargs)
    assert len(tools.builds) == 1
    assert not list((tmp_path / 'builds').glob('*/build.lock'))
    assert not list((tmp_path / 'builds').glob(f'*/{custom_ops.DONE_MARKER}'))

#----------------------------------------------------------------------------
# Missing source files are a PluginError that names them.

def test_missing_sources(tmp_path):
    with pytest.warns(RuntimeWarning), pytest.raises(custom_ops.PluginError, match='not found.*nope.cu'):
        custom_ops.get_plugin('op_plugin', sources=['nope.cu'], source_dir=str(tmp_path))

#----------------------------------------------------------------------------
# The toolchain checks name the missing piece and its fix.

@pytest.mark.parametrize('missing,match', [
    ('nvcc', 'nvcc was not found.*CUDA_HOME'),
    ('ninja', 'ninja was not found.*pip install ninja'),
    ('compiler', 'no C\\+\\+ compiler'),
    ('mismatch', 'nvcc is CUDA 11.8 but torch was built with CUDA 12.1'),
    ('torch', 'built without CUDA.*install a CUDA build of torch'),
])
def test_toolchain_problems(monkeypatch, tmp_path, missing, match):
    tools = dict(compiler='c++ 12', ninja='1.11', nvcc='12.1', nvcc_path='/cuda/bin/nvcc', cuda_home='/cuda')
    cuda_version = '12.1'
    if missing == 'mismatch':
        tools['nvcc'] = '11.8'
    elif missing == 'torch':
        cuda_version = None
    else:
        tools[missing] = None
    monkeypatch.setattr(custom_ops, 'get_tool_versions', lambda: tools)
    monkeypatch.setattr(torch.version, 'cuda', cuda_version)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda_version is not None)
    problems = custom_ops.find_toolchain_problems()
    assert len(problems) == 1
    src = write_sources(tmp_path)
    with pytest.warns(RuntimeWarning, match=f'(?s)toolchain is not usable.*{match}'):
        with pytest.raises(custom_ops.PluginError):
            custom_ops.get_plugin(f'op_{missing}_plugin', sources=['op.cpp'], source_dir=src)

def test_toolchain_complete(monkeypatch):
    tools = dict(compiler='c++ 12', ninja='1.11', nvcc='12.4', nvcc_path='/cuda/bin/nvcc', cuda_home='/cuda')
    monkeypatch.setattr(custom_ops, 'get_tool_versions', lambda: tools)
    monkeypatch.setattr(torch.version, 'cuda', '12.1')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert custom_ops.find_toolchain_problems() == []

#----------------------------------------------------------------------------
# On this machine's torch (CPU build) the checks say so; tool versions are strings or None.

def test_toolchain_here():
    tools = custom_ops.get_tool_versions()
    assert set(tools) == {'compiler', 'ninja', 'nvcc', 'nvcc_path', 'cuda_home'}
    assert all(v is None or isinstance(v, str) for v in tools.values())
    if torch.version.cuda is None:
        assert any('built without CUDA' in p for p in custom_ops.find_toolchain_problems())

#----------------------------------------------------------------------------
# The default loader imports a real compiled extension module from a build folder.

def test_default_loader_imports_library(tmp_path):
    (tmp_path / 'tiny.c').write_text(
        '#include <Python.h>\n'
        'static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "tiny_plugin", NULL, -1, NULL};\n'
        'PyMODINIT_FUNC PyInit_tiny_plugin(void) { PyObject* m = PyModule_Create(&def);\n'
        '  PyModule_AddIntConstant(m, "answer", 42); return m; }\n')
    def builder(module_name, sources, build_dir, **kwargs):
        lib = os.path.join(build_dir, f'{module_name}.so')
        subprocess.run(['cc', '-shared', '-fPIC', '-I' + sysconfig.get_paths()['include'], sources[0], '-o', lib], check=True)
        return 'built'
    try:
        assert custom_ops.get_plugin('tiny_plugin', sources=['tiny.c'], source_dir=str(tmp_path), builder=builder) == 'built'
    except custom_ops.PluginError as err:
        if 'FileNotFoundError' in str(err):
            pytest.skip('no C compiler (cc)')
        raise
    custom_ops._cached_plugins.clear()
    assert custom_ops.get_plugin('tiny_plugin', sources=['tiny.c'], source_dir=str(tmp_path), builder=builder).answer == 42

#----------------------------------------------------------------------------
# impl= rules of the ops: unknown values are errors; CPU tensors take the reference;
# on a CUDA tensor whose plugin failed, 'auto' falls back and 'cuda' raises with the reason.

class FakeCudaTensor(torch.Tensor):
    @property
    def device(self):
        return torch.device('cuda')

@pytest.mark.parametrize('module', [bias_act, upfirdn2d])
def test_impl_rules(monkeypatch, module):
    name = module.__name__.split('.')[-1]
    with pytest.raises(ValueError, match=f"{name}: impl must be 'auto', 'cuda' or 'ref'"):
        module._check_impl('fast', torch.zeros(1))
    for impl in ['auto', 'cuda', 'ref']:
        assert module._check_impl(impl, torch.zeros(1)) is False
    monkeypatch.setattr(module, '_plugin', None)
    monkeypatch.setattr(module, '_plugin_error', custom_ops.PluginError('nvcc was not found (test)'))
    x = torch.zeros(1).as_subclass(FakeCudaTensor)
    assert x.device.type == 'cuda'
    assert module._check_impl('auto', x) is False and module._check_impl('ref', x) is False
    with pytest.raises(RuntimeError, match=f"(?s){name}: impl='cuda' was asked for.*nvcc was not found"):
        module._check_impl('cuda', x)
    with pytest.raises(RuntimeError, match='float32, float16 and bfloat16, not torch.float64'):
        module._check_impl('cuda', x.double())

def test_impl_default_is_auto():
    import inspect
    for fn in [bias_act.bias_act, upfirdn2d.upfirdn2d, upfirdn2d.filter2d, upfirdn2d.upsample2d, upfirdn2d.downsample2d]:
        assert inspect.signature(fn).parameters['impl'].default == 'auto'

#----------------------------------------------------------------------------

#----------------------------------------------------------------------------
# init_op_plugin: each op module builds its plugin once; a failed build is kept in the module's
# _plugin_error and not retried, a successful one in _plugin.

@pytest.mark.parametrize('op_name,stem', [('bias_act', 'bias_act'), ('upfirdn2d', 'upfirdn2d'), ('filtered_lrelu', 'filtered_lrelu')])
def test_init_op_plugin_builds_once(monkeypatch, op_name, stem):
    module = importlib.import_module(f'torch_utils.ops.{op_name}')
    calls = []
    def failing(name, sources, headers, source_dir):
        calls.append((name, tuple(sources), tuple(headers), source_dir))
        raise custom_ops.PluginError('no nvcc (test)')
    monkeypatch.setattr(custom_ops, 'get_plugin', failing)
    monkeypatch.setattr(module, '_plugin', None)
    monkeypatch.setattr(module, '_plugin_error', None)
    assert not custom_ops.init_op_plugin(module.__name__, stem)
    assert not custom_ops.init_op_plugin(module.__name__, stem)
    assert calls == [(f'{stem}_plugin', (f'{stem}.cpp', f'{stem}.cu'), (f'{stem}.h',), os.path.dirname(module.__file__))]
    assert 'no nvcc (test)' in str(module._plugin_error) # pylint: disable=protected-access
    monkeypatch.setattr(module, '_plugin_error', None)
    monkeypatch.setattr(custom_ops, 'get_plugin', lambda *args, **kwargs: 'built')
    assert custom_ops.init_op_plugin(module.__name__, stem) and module._plugin == 'built' # pylint: disable=protected-access
