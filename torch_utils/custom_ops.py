# Builds and loads the CUDA extensions of torch_utils/ops at first use.
#
# get_plugin() compiles C++/CUDA sources with ninja through torch.utils.cpp_extension
# into a build folder named after a hash of the sources and of the torch/CUDA versions,
# shared by all processes on the machine (a lock file makes one of them build while the
# others wait), then imports the compiled module. A failed build raises PluginError
# after one loud warning that says why, what was tried and how to fix it.
# See docs/cuda.md.

import glob
import hashlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings

import torch
import torch.utils.cpp_extension

import dnnlib

#----------------------------------------------------------------------------
# Settings, each overridable by an environment variable (see docs/cuda.md).

BUILD_DIR_ENV = 'TORCH_UTILS_BUILD_DIR'     # Build root; default: torch's extension root.
VERBOSE_ENV = 'TORCH_UTILS_VERBOSE_BUILD'   # '1' = show the compiler output.
STALE_LOCK_ENV = 'TORCH_UTILS_STALE_LOCK_S' # Age in seconds after which a lock is broken.
DEFAULT_STALE_LOCK_S = 15 * 60              # A real build takes 1-3 minutes.
LOCK_POLL_S = 0.2                           # Interval between looks at a held lock.
DONE_MARKER = 'build_done.json'             # Written into a build folder after success.

_cached_plugins = dict()        # module_name -> loaded module.
_failed_plugins = dict()        # module_name -> PluginError of the failed attempt.
_plugins_lock = threading.Lock()

#----------------------------------------------------------------------------
# Raised when a plugin cannot be built or loaded; the message says why and how to fix it.

class PluginError(RuntimeError):
    pass

#----------------------------------------------------------------------------
# Raised when a build lock held by a live process is not released in time.

class LockTimeoutError(TimeoutError):
    pass

#----------------------------------------------------------------------------
# Builds (once per source hash and machine) and loads a C++/CUDA extension.

def get_plugin(module_name, sources, headers=None, source_dir=None, builder=None, loader=None, **build_kwargs):
    """Returns the compiled extension `module_name`, building it on first use.

    Args:
        module_name:  Python name of the extension module (also its folder prefix).
        sources:      .cpp / .cu files to compile (relative to source_dir).
        headers:      Files the sources include; they take part in the hash.
        source_dir:   Folder of sources and headers (None = paths as given).
        builder:      builder(module_name, sources, build_dir, **build_kwargs) -> module;
                      compiles the copied sources inside build_dir (None = ninja through
                      torch.utils.cpp_extension.load). Tests inject a fake one.
        loader:       loader(module_name, build_dir) -> module; imports an existing
                      build (None = import the shared library found in build_dir).
        build_kwargs: Passed to the builder (e.g. extra_cuda_cflags).

    Returns:
        The loaded module.

    Raises:
        PluginError: the toolchain is missing or the build/load failed. The first
            failure per module also emits one RuntimeWarning with the full explanation.
    """
    with _plugins_lock:
        if module_name in _cached_plugins:
            return _cached_plugins[module_name]
        if module_name in _failed_plugins:
            raise _failed_plugins[module_name]
        try:
            module = _get_plugin_uncached(module_name, sources, headers, source_dir, builder, loader, build_kwargs)
        except PluginError as err:
            _failed_plugins[module_name] = err
            warnings.warn(str(err), RuntimeWarning, stacklevel=3)
            raise
        _cached_plugins[module_name] = module
        return module

#----------------------------------------------------------------------------
# get_plugin() without the per-process cache: checks, hash, lock, build, load.

def _get_plugin_uncached(module_name, sources, headers, source_dir, builder, loader, build_kwargs):
    paths = [os.path.join(source_dir, p) if source_dir else p for p in list(sources) + list(headers or [])]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise PluginError(f'Cannot build the CUDA plugin {module_name}: source files not found: {missing}.')
    # The toolchain matters only when a build is needed.
    build_dir = get_build_dir(module_name, source_hash(paths, build_kwargs))
    if builder is None and not os.path.isfile(os.path.join(build_dir, DONE_MARKER)):
        problems = find_toolchain_problems()
        if problems:
            raise PluginError(_failure_message(module_name, 'the CUDA toolchain is not usable', problems))
    builder = builder or _ninja_builder
    loader = loader or _import_from_build_dir
    try:
        return build_or_load(module_name, paths, len(sources), build_dir, builder, loader, build_kwargs)
    except (LockTimeoutError, OSError, RuntimeError, ImportError, subprocess.SubprocessError) as err:
        details = [f'{type(err).__name__}: {_tail(str(err))}', f'build folder: {build_dir}']
        raise PluginError(_failure_message(module_name, 'the build or import failed', details)) from err

#----------------------------------------------------------------------------
# md5 of the file contents plus what else the binary depends on: the torch and CUDA
# versions, the target GPU architectures and the build options.

def source_hash(paths, build_kwargs=None):
    md5 = hashlib.md5()
    for path in paths:
        md5.update(os.path.basename(path).encode() + b'\0')
        with open(path, 'rb') as f:
            md5.update(f.read() + b'\0')
    md5.update(f'torch={torch.__version__} cuda={torch.version.cuda} archs={_target_archs()}'.encode())
    md5.update(repr(sorted((build_kwargs or dict()).items())).encode())
    return md5.hexdigest()

#----------------------------------------------------------------------------
# GPU architectures the build targets: $TORCH_CUDA_ARCH_LIST, else the visible GPUs'.

def _target_archs():
    if os.environ.get('TORCH_CUDA_ARCH_LIST'):
        return os.environ['TORCH_CUDA_ARCH_LIST']
    if torch.version.cuda is None or not torch.cuda.is_available():
        return ''
    return ','.join(sorted({'%d.%d' % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}))

#----------------------------------------------------------------------------
# Folder holding the build folders: $TORCH_UTILS_BUILD_DIR, else torch_utils_plugins in
# torch's extension root ($TORCH_EXTENSIONS_DIR or ~/.cache/torch_extensions).

def get_build_root():
    return os.environ.get(BUILD_DIR_ENV) or os.path.join(torch.utils.cpp_extension.get_default_build_root(), 'torch_utils_plugins')

#----------------------------------------------------------------------------
# Build folder of a module with the given source hash.

def get_build_dir(module_name, digest):
    return os.path.join(get_build_root(), f'{module_name}-{digest[:16]}')

#----------------------------------------------------------------------------
# Under the folder's lock: build unless a finished build is there, then load.

def build_or_load(module_name, paths, num_sources, build_dir, builder, loader, build_kwargs, stale_s=None, timeout_s=None):
    """Builds into build_dir (once across processes) and returns the loaded module.

    The first num_sources entries of paths are compiled; all are copied into build_dir.
    """
    os.makedirs(build_dir, exist_ok=True)
    done_path = os.path.join(build_dir, DONE_MARKER)
    with BuildLock(os.path.join(build_dir, 'build.lock'), stale_s=stale_s, timeout_s=timeout_s):
        if not os.path.isfile(done_path):
            copies = []
            for path in paths:
                copy = os.path.join(build_dir, os.path.basename(path))
                shutil.copyfile(path, copy)
                copies.append(copy)
            module = builder(module_name, copies[:num_sources], build_dir, **build_kwargs)
            _write_atomic(done_path, json.dumps(dict(module_name=module_name, torch=torch.__version__, cuda=torch.version.cuda)))
            return module
    return loader(module_name, build_dir)

#----------------------------------------------------------------------------
# Writes text to path through a temporary file and a rename.

def _write_atomic(path, text):
    with dnnlib.util.atomic_write(path, mode='w') as f:
        f.write(text)

#----------------------------------------------------------------------------
# A lock file created with O_CREAT | O_EXCL holding {pid, host, time} of its owner.
# A lock whose owner is a dead process on this host, or older than stale_s, is broken.

class BuildLock:
    def __init__(self,
        path,               # Lock file path.
        stale_s     = None, # Break locks older than this many seconds; None = $TORCH_UTILS_STALE_LOCK_S or 15 min.
        timeout_s   = None, # Give up waiting after this many seconds (LockTimeoutError); None = never.
        poll_s      = LOCK_POLL_S, # Seconds between looks at a held lock.
    ):
        self.path = path
        self.stale_s = float(stale_s if stale_s is not None else os.environ.get(STALE_LOCK_ENV, DEFAULT_STALE_LOCK_S))
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.owner = dict(pid=os.getpid(), host=socket.gethostname(), token=uuid.uuid4().hex)

    # Waits for the lock (breaking a stale one) and takes it.
    def __enter__(self):
        start = time.monotonic()
        while not self._try_create():
            if self._break_if_stale():
                continue
            if self.timeout_s is not None and time.monotonic() - start > self.timeout_s:
                raise LockTimeoutError(f'Timed out after {self.timeout_s:g} s waiting for the build lock {self.path} '
                    f'held by {read_lock_owner(self.path)}; delete the file if no build is running.')
            time.sleep(self.poll_s)
        return self

    # Releases the lock if it is still ours.
    def __exit__(self, *exc_info):
        if read_lock_owner(self.path).get('token') == self.owner['token']:
            os.unlink(self.path)

    # Creates the lock file atomically; False when it exists.
    def _try_create(self):
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(json.dumps(dict(self.owner, time=time.time())))
        return True

    # Removes a stale lock (dead owner on this host, or too old); True if it did.
    def _break_if_stale(self):
        owner = read_lock_owner(self.path)
        try:
            age_s = time.time() - os.stat(self.path).st_mtime
        except FileNotFoundError:
            return True
        dead = owner.get('host') == socket.gethostname() and isinstance(owner.get('pid'), int) and not pid_alive(owner['pid'])
        if not dead and age_s <= self.stale_s:
            return False

        # Rename first, so only one waiter breaks it; put it back if it changed meanwhile.
        aside = f'{self.path}.{uuid.uuid4().hex}.stale'
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True
        if read_lock_owner(aside) != owner:
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        os.unlink(aside)
        return True

#----------------------------------------------------------------------------
# Contents of a lock file as a dict ({} when missing or not yet written).

def read_lock_owner(path):
    try:
        with open(path, encoding='utf-8') as f:
            owner = json.loads(f.read())
    except (FileNotFoundError, json.JSONDecodeError):
        return dict()
    return owner if isinstance(owner, dict) else dict()

#----------------------------------------------------------------------------
# Whether a process with this pid exists on this host.

def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

#----------------------------------------------------------------------------
# Default builder: ninja through torch.utils.cpp_extension.load (it also imports).

def _ninja_builder(module_name, sources, build_dir, **build_kwargs):
    verbose = os.environ.get(VERBOSE_ENV, '') == '1'
    print(f'Building the CUDA plugin {module_name} in {build_dir} (first use; about a minute)...', file=sys.stderr, flush=True)
    return torch.utils.cpp_extension.load(name=module_name, sources=sources, build_directory=build_dir,
        verbose=verbose, **build_kwargs)

#----------------------------------------------------------------------------
# Default loader: imports the shared library that a finished build left in build_dir.

def _import_from_build_dir(module_name, build_dir):
    libs = sorted(glob.glob(os.path.join(build_dir, f'{module_name}*.so')) + glob.glob(os.path.join(build_dir, f'{module_name}*.pyd')))
    if not libs:
        raise ImportError(f'no compiled library {module_name}*.so in {build_dir}')
    name = os.path.basename(libs[-1]).split('.')[0]
    spec = importlib.util.spec_from_file_location(name, libs[-1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

#----------------------------------------------------------------------------
# Problems that make a CUDA build impossible, each with its fix; [] = worth trying.

def find_toolchain_problems():
    problems = []
    tools = get_tool_versions()
    if torch.version.cuda is None:
        problems.append(f'torch {torch.__version__} is built without CUDA (torch.version.cuda is None): '
            'install a CUDA build of torch (https://pytorch.org/get-started/locally/).')
    elif not torch.cuda.is_available():
        problems.append('no CUDA device is visible (torch.cuda.is_available() is False): check the driver '
            '(nvidia-smi) and CUDA_VISIBLE_DEVICES.')
    if tools['ninja'] is None:
        problems.append('ninja was not found on PATH: pip install ninja.')
    if tools['compiler'] is None:
        problems.append(f'no C++ compiler ({torch.utils.cpp_extension.get_cxx_compiler()}) was found: '
            'install g++ (e.g. apt-get install g++) or set CXX.')
    if torch.version.cuda is not None:
        if tools['nvcc'] is None or tools['cuda_home'] is None:
            problems.append(f'nvcc was not found where torch looks for it (CUDA_HOME={tools["cuda_home"]}, nvcc '
                f'on PATH: {tools["nvcc_path"]}): install the CUDA toolkit {torch.version.cuda} and set CUDA_HOME '
                'to it (nvcc must be $CUDA_HOME/bin/nvcc).')
        elif _major(tools['nvcc']) != _major(torch.version.cuda):
            problems.append(f'nvcc is CUDA {tools["nvcc"]} but torch was built with CUDA {torch.version.cuda}: '
                f'install the CUDA {_major(torch.version.cuda)}.x toolkit and point CUDA_HOME to it, '
                'or install the torch build that matches your toolkit.')
    return problems

#----------------------------------------------------------------------------
# Major version of a version string ('12.4' -> '12').

def _major(version):
    return str(version).split('.')[0]

#----------------------------------------------------------------------------
# Versions of the build tools: {'compiler': first line of --version, 'ninja': version,
# 'nvcc': release (e.g. '12.4'), 'nvcc_path', 'cuda_home'}; None where not found.
# nvcc is looked for where torch will look (CUDA_HOME/bin), else on PATH.

def get_tool_versions():
    compiler = shutil.which(torch.utils.cpp_extension.get_cxx_compiler())
    compiler_text = _run_version([compiler, '--version']) if compiler else None
    cuda_home = torch.utils.cpp_extension.CUDA_HOME
    nvcc = os.path.join(cuda_home, 'bin', 'nvcc') if cuda_home else None
    if nvcc is None or not os.path.isfile(nvcc):
        nvcc = shutil.which('nvcc')
    match = re.search(r'release (\d+\.\d+)', (_run_version([nvcc, '--version']) if nvcc else None) or '')
    ninja_ok = torch.utils.cpp_extension.is_ninja_available()
    return dict(
        compiler    = compiler_text.split('\n')[0] if compiler_text else None,
        ninja       = _run_version(['ninja', '--version']) if ninja_ok else None,
        nvcc        = match.group(1) if match else None,
        nvcc_path   = nvcc,
        cuda_home   = cuda_home,
    )

#----------------------------------------------------------------------------
# stdout of a short version command, stripped; None when it cannot run.

def _run_version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None

#----------------------------------------------------------------------------
# Last lines of a long error text.

def _tail(text, num_lines=25):
    lines = text.strip().split('\n')
    return '\n'.join((['...'] if len(lines) > num_lines else []) + lines[-num_lines:])

#----------------------------------------------------------------------------
# The one loud message of a failed plugin: why, what was tried, how to fix it.

def _failure_message(module_name, why, details):
    lines = [f'Cannot build the CUDA plugin {module_name}: {why}.']
    lines += [f'  - {d}' for d in details]
    lines += [f'Tried: ninja build through torch.utils.cpp_extension.load (torch {torch.__version__}, CUDA {torch.version.cuda}).',
        "The ops fall back to the reference PyTorch path (same results, slower); impl='cuda' raises instead.",
        f'Run "python -m torch_utils.doctor" for a full check; set {VERBOSE_ENV}=1 to see the compiler output.']
    return '\n'.join(lines)

#----------------------------------------------------------------------------
# Lazy plugin of one op module: builds or loads `<stem>_plugin` from <stem>.cpp/.cu/.h beside the
# module at the first call, keeping the result in the module's globals `_plugin` and
# `_plugin_error` (so a failed build is tried once, and tests can patch either); True when usable.

def init_op_plugin(op_module_name, stem):
    op = sys.modules[op_module_name]
    if op._plugin is None and op._plugin_error is None: # pylint: disable=protected-access
        try:
            op._plugin = get_plugin(f'{stem}_plugin', sources=[f'{stem}.cpp', f'{stem}.cu'], # pylint: disable=protected-access
                headers=[f'{stem}.h'], source_dir=os.path.dirname(op.__file__))
        except PluginError as err:
            op._plugin_error = err # pylint: disable=protected-access
    return op._plugin is not None # pylint: disable=protected-access

#----------------------------------------------------------------------------
# The `impl` rule shared by the ops: True = run the CUDA kernel, False = the reference path.
# 'auto' falls back to the reference (a failed build warned once); 'cuda' on a CUDA tensor
# raises when the kernel cannot run; CPU tensors always take the reference.

IMPLS = ('auto', 'cuda', 'ref')

def use_cuda_kernel(op_name, impl, x, kernel_dtypes, kernel_available, plugin_error):
    """Decide the path of op `op_name` for tensor x; `kernel_available(x)` builds the plugin on first use."""
    if impl not in IMPLS:
        raise ValueError(f"{op_name}: impl must be 'auto', 'cuda' or 'ref', got {impl!r}")
    if impl == 'ref' or not isinstance(x, torch.Tensor) or x.device.type != 'cuda':
        return False
    if kernel_available(x):
        return True
    if impl == 'cuda':
        names = [str(d).replace('torch.', '') for d in kernel_dtypes]
        why = (f'the kernel supports {", ".join(names[:-1])} and {names[-1]}, not {x.dtype}'
            if x.dtype not in kernel_dtypes else f'the plugin is not available:\n{plugin_error()}')
        raise RuntimeError(f"{op_name}: impl='cuda' was asked for, but {why}")
    return False

#----------------------------------------------------------------------------
