# Mixed precision by device: which low-precision dtype the networks' mixed-precision blocks (StyleGAN2's
# num_fp16_res) use where. float16 on CUDA (the original's choice), bfloat16 on CPUs with bfloat16
# instructions (bfloat16 convolutions there run 2-3x faster than float32), float32 elsewhere. See
# docs/performance.md.

import os
import platform

#----------------------------------------------------------------------------
# CPU feature flags that mean native bfloat16 arithmetic (x86: AVX512-BF16 or AMX-BF16; Arm: BF16).

BF16_CPU_FLAGS = ('avx512_bf16', 'amx_bf16', 'bf16')

#----------------------------------------------------------------------------
# The CPU's feature flags from /proc/cpuinfo (Linux); an empty set where it cannot be read.

def cpu_flags(cpuinfo_path='/proc/cpuinfo'):
    flags = set()
    try:
        with open(cpuinfo_path, encoding='utf-8', errors='replace') as f:
            for line in f:
                key, sep, value = line.partition(':')
                if sep and key.strip().lower() in ('flags', 'features'):
                    flags.update(value.split())
    except OSError:
        pass
    return flags

#----------------------------------------------------------------------------
# Whether this CPU computes in bfloat16 natively.

def cpu_has_bfloat16(cpuinfo_path='/proc/cpuinfo'):
    """True when the CPU reports a bfloat16 instruction set (avx512_bf16, amx_bf16 or Arm bf16).

    Args:
        cpuinfo_path: The Linux cpuinfo file to read (other systems: no file, so False).

    Returns:
        bool.
    """
    if not os.path.exists(cpuinfo_path):
        return False
    return any(flag in cpu_flags(cpuinfo_path) for flag in BF16_CPU_FLAGS)

#----------------------------------------------------------------------------
# The mixed-precision dtype for a device and the user's switches.

def choose_mixed_dtype(device, fp32=False, bf16=False, cpuinfo_path='/proc/cpuinfo'):
    """Chooses the dtype of the mixed-precision blocks for a training run.

    Args:
        device:       'cuda', 'cpu' or 'mps' (anything else counts as not CUDA).
        fp32:         The user asked for float32 everywhere (train.py --fp32).
        bf16:         The user asked for bfloat16 on CUDA (train.py --bf16); the CPU always uses it.
        cpuinfo_path: The Linux cpuinfo file the CPU's features are read from.

    Returns:
        'float16', 'bfloat16', or None for float32 everywhere.
    """
    if fp32:
        return None
    if device == 'cuda':
        return 'bfloat16' if bf16 else 'float16'
    if device == 'cpu' and cpu_has_bfloat16(cpuinfo_path):
        return 'bfloat16'
    return None

#----------------------------------------------------------------------------
# The precision a run uses, in words, for the start-of-training summary.

def describe_mixed_precision(device, num_fp16_res, mixed_dtype, cpuinfo_path='/proc/cpuinfo'):
    """One line saying which precision the networks train in, and why.

    Args:
        device:       'cuda', 'cpu' or 'mps'.
        num_fp16_res: Number of highest resolutions in mixed precision (0 = none).
        mixed_dtype:  'float16', 'bfloat16', or None (= 'float16', the networks' default).
        cpuinfo_path: The Linux cpuinfo file the CPU's features are read from.

    Returns:
        str.
    """
    mixed_dtype = mixed_dtype or 'float16'
    if num_fp16_res > 0 and (mixed_dtype == 'bfloat16' or device == 'cuda'):
        where = f'CPU with {", ".join(sorted(set(BF16_CPU_FLAGS) & cpu_flags(cpuinfo_path)))}' if device == 'cpu' else device
        return f'{mixed_dtype} in the {num_fp16_res} highest resolutions ({where}), float32 elsewhere; --fp32=1 turns it off'
    if device == 'cpu' and not cpu_has_bfloat16(cpuinfo_path):
        return f'off, float32 everywhere (this {platform.machine() or "CPU"} CPU reports no bfloat16 instructions)'
    return 'off, float32 everywhere (--fp32=1, or a configuration without mixed precision)'

#----------------------------------------------------------------------------
