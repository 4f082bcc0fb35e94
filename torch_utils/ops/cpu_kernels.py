# CPU kernels in C (cpu_kernels.c), one pass over memory where the PyTorch path needs
# several. Built at first use with the system C compiler ($CC, or cc, gcc, clang) into torch_utils' plugin
# build folder, keyed by a hash of the source, the compiler flags and this CPU (the code is compiled
# for the CPU it runs on), and called through ctypes: no torch headers, a build takes about a second.
# Where no C compiler is found, or TORCH_UTILS_CPU_KERNELS=0 is set, the ops keep their PyTorch path
# (same float32 results); a failed build warns once and does the same. See docs/ops.md.

import ctypes
import glob
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import threading
import warnings

import torch

from torch_utils import custom_ops
from torch_utils import precision

#----------------------------------------------------------------------------

ENV = 'TORCH_UTILS_CPU_KERNELS'     # '0' = off: the ops keep their PyTorch path.
SOURCE = 'cpu_kernels.c'
CFLAGS = ('-O3', '-march=native', '-ffp-contract=off', '-fno-math-errno', '-fPIC', '-shared')
DTYPES = {torch.float32: 0, torch.bfloat16: 1}
ACTS = {'linear': 0, 'relu': 1, 'lrelu': 2}

_lib = None                         # The loaded library; None while not loaded.
_state = None                       # None = not tried yet, else 'loaded', 'off', 'no compiler' or 'failed: <why>'.
_lock = threading.Lock()

#----------------------------------------------------------------------------
# The OpenMP runtime torch itself loaded (the copy in torch/lib, when it ships one), so that the
# kernels share torch's thread pool instead of starting a second runtime; None = the compiler's own.

def _torch_openmp_library():
    found = sorted(glob.glob(os.path.join(os.path.dirname(torch.__file__), 'lib', 'libgomp*.so*')))
    return found[0] if found else None

#----------------------------------------------------------------------------
# The compiler command lines to try, in order: with OpenMP (torch's runtime where it ships one),
# then without OpenMP (one thread; e.g. Apple's clang has none), then also without -march=native.

def _compile_commands(compiler, source, output):
    gomp = _torch_openmp_library()
    link_gomp = [f'-L{os.path.dirname(gomp)}', f'-l:{os.path.basename(gomp)}', f'-Wl,-rpath,{os.path.dirname(gomp)}'] if gomp else []
    portable = [flag for flag in CFLAGS if flag != '-march=native']
    return [[compiler, *CFLAGS, '-fopenmp', source, '-o', output, *link_gomp],
        [compiler, *CFLAGS, source, '-o', output],
        [compiler, *portable, source, '-o', output]]

# $CC, else the first of cc, gcc, clang on PATH; None when there is none.
def _compiler():
    for name in ([os.environ['CC']] if os.environ.get('CC') else ['cc', 'gcc', 'clang']):
        path = shutil.which(name)
        if path is not None:
            return path
    return None

# What the binary depends on besides the source: the flags and the CPU it was compiled for.
def _build_key():
    cpu = f'{platform.machine()} {" ".join(sorted(precision.cpu_flags()))}'
    return dict(cflags=' '.join(CFLAGS), cpu=hashlib.md5(cpu.encode()).hexdigest(), openmp=str(_torch_openmp_library()))

#----------------------------------------------------------------------------
# custom_ops.build_or_load's builder and loader for a ctypes library.

# (Under build_or_load's lock; the library counts as built only once its done-marker is written.)
def _builder(module_name, sources, build_dir, **_build_key_items):
    output = os.path.join(build_dir, f'{module_name}.so')
    for cmd in _compile_commands(_compiler(), sources[0], output):
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if result.returncode == 0:
            return _loader(module_name, build_dir)
    raise RuntimeError(f'{" ".join(result.args)} failed:\n{result.stderr.strip()}')

def _loader(module_name, build_dir):
    lib = ctypes.CDLL(os.path.join(build_dir, f'{module_name}.so'))
    P, L, I, F = ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_float # pointer, long, int, float
    lib.bias_act_cpu_forward.argtypes = [I, P, P, P, L, L, L, I, F, F, F, I]
    lib.bias_act_cpu_grad.argtypes = [I, P, P, P, L, I, F, F, F, I]
    lib.demod_bias_act_cpu_forward.argtypes = [I, P, P, P, P, P, L, L, L, I, I, F, F, F, I]
    lib.demod_bias_act_cpu_grad.argtypes = [I, P, P, P, P, P, P, P, P, P, L, L, L, I, I, F, F, F, I]
    lib.scale_channels_cpu_grad.argtypes = [I, P, P, P, P, P, L, L, L, I, I]
    lib.scale_channels_cpu_forward.argtypes = [I, P, P, P, L, L, L, I, I]
    lib.depthwise_transpose_cpu.argtypes = [I, P, P, P] + [L] * 12 + [I]
    lib.weight_cast_cpu_forward.argtypes = [P, P, P, L, L, L, F, I, I]
    lib.weight_cast_cpu_grad.argtypes = [P, P, L, L, L, L, P, P, L, L, L, L, F, I, I]
    return lib

#----------------------------------------------------------------------------
# The library, built or loaded once per process; None where the kernels are off or cannot be built.

def library():
    global _lib, _state # pylint: disable=global-statement
    if _state is None:
        with _lock:
            if _state is None:
                _lib, _state = _load()
                if _state.startswith('failed'):
                    warnings.warn(f'Cannot build the CPU kernels ({SOURCE}): {_state[len("failed: "):]}\n'
                        f'The ops keep their PyTorch path (same float32 results, slower). Set {ENV}=0 to silence this.',
                        RuntimeWarning, stacklevel=3)
    return _lib

def _load():
    if os.environ.get(ENV, '1') == '0':
        return None, 'off'
    if sys.platform == 'win32' or _compiler() is None:
        return None, 'no compiler'
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), SOURCE)
    key = _build_key()
    build_dir = custom_ops.get_build_dir('cpu_kernels', custom_ops.source_hash([source], key))
    try:
        return custom_ops.build_or_load('cpu_kernels', [source], 1, build_dir, _builder, _loader, key), 'loaded'
    except (custom_ops.LockTimeoutError, OSError, RuntimeError, subprocess.SubprocessError) as err:
        return None, f'failed: {type(err).__name__}: {custom_ops._tail(str(err))} (build folder {build_dir})' # pylint: disable=protected-access

# Whether the kernels take x (a float32 or bfloat16 CPU tensor) and are built (builds them at the first call).
def usable(x):
    return x.device.type == 'cpu' and x.dtype in DTYPES and library() is not None

# 'loaded', 'off', 'no compiler' or 'failed: <why>' (loads the library first): for the doctor and tests.
def status():
    library()
    return _state

#----------------------------------------------------------------------------
# [outer, channels, inner] of a dense tensor x with the bias along `dim` (None: no bias), or None
# when x's memory does not have that form (then the caller keeps its PyTorch path).

def bias_layout(x, dim):
    if dim is None:
        return (1, 1, x.numel()) if x.is_contiguous() or _channels_last(x) else None
    if x.is_contiguous():
        outer = 1
        for size in x.shape[:dim]:
            outer *= size
        return outer, x.shape[dim], x.numel() // max(outer * x.shape[dim], 1)
    if dim == 1 and _channels_last(x):
        return x.numel() // max(x.shape[1], 1), x.shape[1], 1
    return None

def _channels_last(x):
    return x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last)

# Whether x is a 4-D tensor dense in the contiguous or the channels_last layout (what the per-sample and
# weight kernels take: they are told which of the two by x.is_contiguous()).
def dense_4d(x):
    return x.ndim == 4 and (x.is_contiguous() or _channels_last(x))

#----------------------------------------------------------------------------
# The kernels. Tensors are CPU tensors of one dtype in DTYPES; `out` may be x (or dy) itself.

def bias_act_forward(out, x, b, layout, act, alpha, gain, clamp):
    outer, channels, inner = layout
    _lib.bias_act_cpu_forward(DTYPES[x.dtype], out.data_ptr(), x.data_ptr(), b.data_ptr() if b is not None else None,
        outer, channels, inner, ACTS[act], alpha, gain, clamp, torch.get_num_threads())
    return out

def bias_act_grad(out, dy, y, act, alpha, gain, clamp):
    _lib.bias_act_cpu_grad(DTYPES[y.dtype], out.data_ptr(), dy.data_ptr(), y.data_ptr(), y.numel(),
        ACTS[act], alpha, gain, clamp, torch.get_num_threads())
    return out

#----------------------------------------------------------------------------
# Demodulation + noise + bias_act (demod_bias_act.py): x [N, C, H, W] dense, d [N, C], noise [N, H*W]
# or None, b [C], all of x's dtype and contiguous (x: contiguous or channels_last).

def demod_bias_act_forward(x, d, noise, b, act, alpha, gain, clamp):
    n, c, h, w = x.shape
    out = torch.empty_like(x)
    _lib.demod_bias_act_cpu_forward(DTYPES[x.dtype], out.data_ptr(), x.data_ptr(), d.data_ptr(),
        noise.data_ptr() if noise is not None else None, b.data_ptr(), n, c, h * w, int(not x.is_contiguous()),
        ACTS[act], alpha, gain, clamp, torch.get_num_threads())
    return out

# (dx like x, dd [N, C], dnoise [N, H*W], db [C]); the sums in float32.
def demod_bias_act_grad(dy, y, x, d, act, alpha, gain, clamp):
    n, c, h, w = x.shape
    dx = torch.empty_like(x)
    sums = torch.empty([n * c * 2 + n * h * w + c], dtype=torch.float32)
    dd, db_rows, dnoise, db = sums.split([n * c, n * c, n * h * w, c])
    _lib.demod_bias_act_cpu_grad(DTYPES[x.dtype], dx.data_ptr(), dd.data_ptr(), dnoise.data_ptr(), db.data_ptr(),
        db_rows.data_ptr(), dy.data_ptr(), y.data_ptr(), x.data_ptr(), d.data_ptr(), n, c, h * w,
        int(not x.is_contiguous()), ACTS[act], alpha, gain, clamp, torch.get_num_threads())
    return dx, dd.view(n, c), dnoise.view(n, h * w), db

# x * s[:, :, None, None] (demod_bias_act.scale_channels), values equal to torch's product; s [N, C] contiguous.
def scale_channels_forward(x, s):
    n, c, h, w = x.shape
    out = torch.empty_like(x)
    _lib.scale_channels_cpu_forward(DTYPES[x.dtype], out.data_ptr(), x.data_ptr(), s.data_ptr(), n, c, h * w,
        int(not x.is_contiguous()), torch.get_num_threads())
    return out

# The derivative of x * s[:, :, None, None] (demod_bias_act.scale_channels): (dx like x, ds [N, C] float32).
# dy must have x's dtype and strides.
def scale_channels_grad(dy, x, s):
    n, c, h, w = x.shape
    dx = torch.empty_like(x)
    ds = torch.empty([n, c], dtype=torch.float32)
    _lib.scale_channels_cpu_grad(DTYPES[x.dtype], dx.data_ptr(), ds.data_ptr(), dy.data_ptr(), x.data_ptr(), s.data_ptr(),
        n, c, h * w, int(not x.is_contiguous()), torch.get_num_threads())
    return dx, ds

# Depthwise F.conv_transpose2d(x, w, stride, padding, output_padding, groups=C) of a channels_last x
# without bias (conv2d_gradfix); w [C, 1, kh, kw]. Returns a channels_last tensor like x's dtype.
def depthwise_transpose(x, w, stride, padding, output_padding):
    n, c, h, w_in = x.shape
    kh, kw = w.shape[2:]
    out_h = (h - 1) * stride[0] - 2 * padding[0] + kh + output_padding[0]
    out_w = (w_in - 1) * stride[1] - 2 * padding[1] + kw + output_padding[1]
    out = torch.empty([n, c, out_h, out_w], dtype=x.dtype, memory_format=torch.channels_last)
    taps = w.reshape(c, kh * kw).t().float().contiguous() # [kh*kw, C]
    if _lib.depthwise_transpose_cpu(DTYPES[x.dtype], out.data_ptr(), x.data_ptr(), taps.data_ptr(), n, c, h, w_in,
            kh, kw, stride[0], stride[1], padding[0], padding[1], out_h, out_w, torch.get_num_threads()) != 0:
        raise MemoryError('depthwise_transpose: out of memory for its per-thread sums')
    return out

#----------------------------------------------------------------------------
# Weights of a reduced-precision convolution (weight_cast.py): w [O, I, kh, kw] float32, contiguous or
# channels_last; the results have its layout.

# (bf16(w * gain), and the sums of each filter's squared taps [O, I] float32 when `sums`, else None).
def weight_cast_forward(w, gain, sums):
    out = torch.empty_like(w, dtype=torch.bfloat16)
    row_sums = torch.empty(w.shape[:2], dtype=torch.float32) if sums else None
    o, i, kh, kw = w.shape
    _lib.weight_cast_cpu_forward(out.data_ptr(), row_sums.data_ptr() if sums else None, w.data_ptr(),
        o, i, kh * kw, gain, int(not w.is_contiguous()), torch.get_num_threads())
    return out, row_sums

# g * gain (g bfloat16 of w's shape, any strides, or None) + w * 2 * gsums[o, i] (gsums float32 [O, I]
# contiguous, or None): float32 in w's layout.
def weight_cast_grad(g, w, gsums, gain):
    grad = torch.empty_like(w)
    strides = g.stride() if g is not None else (0, 0, 0, 0)
    _lib.weight_cast_cpu_grad(grad.data_ptr(), g.data_ptr() if g is not None else None, *strides, w.data_ptr(),
        gsums.data_ptr() if gsums is not None else None, *w.shape, gain, int(not w.is_contiguous()), torch.get_num_threads())
    return grad
