# How the process's C allocator hands back freed memory.
#
# glibc serves large blocks (above a threshold of 128 KB that adapts up to 32 MB) with mmap and unmaps
# them on free; it also trims the top of the heap once more than a threshold is free there. A CPU
# training step frees and re-allocates the same activation tensors (megabytes each) every layer of every
# step, so each new tensor is a fresh mapping whose pages the kernel zero-fills one 4 KB fault at a time:
# about 27,000 minor faults per G forward+backward of the 64x64 benchmark network, where element-wise ops
# on fresh 8 MB tensors take 3.5 ms instead of 0.5 ms (docs/performance.md). Keeping freed memory in the
# heap lets the next step reuse it. Peak memory is what the step needs anyway; the process only stops
# giving its freed peak back to the system.

import ctypes
import ctypes.util
import os
import sys

OPT_OUT_ENV = 'DNNLIB_KEEP_FREED_MEMORY'   # '0' leaves the allocator as it is.
_M_TRIM_THRESHOLD = -1                      # mallopt parameters (glibc's malloc.h).
_M_MMAP_MAX = -4
_INT_MAX = 2 ** 31 - 1

def keep_freed_memory():
    """Serve every allocation from the heap (no mmap) and never trim it, on Linux with glibc. Returns
    True when the allocator was set, False where it cannot be (other C libraries, other systems) or
    when $DNNLIB_KEEP_FREED_MEMORY is '0'."""
    if os.environ.get(OPT_OUT_ENV, '1') == '0' or not sys.platform.startswith('linux'):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').mallopt
    except (OSError, AttributeError): # musl and other C libraries have no mallopt.
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1
