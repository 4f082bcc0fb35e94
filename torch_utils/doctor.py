# Diagnostics of the CUDA ops: python -m torch_utils.doctor
#
# Prints the versions the CUDA plugins depend on (torch, CUDA, GPUs, C++ compiler, ninja,
# nvcc) and whether the CPU kernels load, builds and loads each CUDA plugin when a GPU is
# present and compares it with the reference path on small inputs. Exit code 0 when nothing is broken (a machine without
# a GPU is not broken: the ops use the reference path there). See docs/cuda.md.

import platform
import sys
import time

import click
import torch

from torch_utils import custom_ops
from torch_utils.ops import bias_act
from torch_utils.ops import cpu_kernels
from torch_utils.ops import filtered_lrelu
from torch_utils.ops import upfirdn2d

PLUGIN_MODULES = dict(bias_act=bias_act, upfirdn2d=upfirdn2d, filtered_lrelu=filtered_lrelu)

#----------------------------------------------------------------------------
# (label, value) rows describing the environment.

def environment_rows():
    tools = custom_ops.get_tool_versions()
    rows = [('python', platform.python_version()), ('torch', torch.__version__),
        ('torch CUDA', torch.version.cuda or 'none (CPU-only build of torch)')]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(i)
            rows.append((f'GPU {i}', f'{torch.cuda.get_device_name(i)} (compute capability {major}.{minor})'))
    else:
        rows.append(('GPU', 'none (torch.cuda.is_available() is False)'))
    rows += [('C++ compiler', tools['compiler'] or 'not found'), ('ninja', tools['ninja'] or 'not found'),
        ('nvcc', f'{tools["nvcc"]} ({tools["nvcc_path"]})' if tools['nvcc'] else 'not found'),
        ('CUDA_HOME (torch)', tools['cuda_home'] or 'not set / not found'),
        ('build root', custom_ops.get_build_root())]
    return rows

#----------------------------------------------------------------------------
# One line on the CPU kernels (a missing or failing build leaves the PyTorch path: not broken).

def cpu_kernel_state(build):
    if not build:
        return 'not checked (--no-build)'
    start = time.time()
    state = cpu_kernels.status()
    return {'loaded': f'ok (ready in {time.time() - start:.1f} s)',
        'off': f'off ({cpu_kernels.ENV}=0): PyTorch path',
        'no compiler': 'no C compiler found (cc, or $CC): PyTorch path, slower'}.get(state, f'{state}; PyTorch path, slower')

#----------------------------------------------------------------------------
# Builds/loads each plugin; returns {name: error text or None}.

def check_plugins(echo):
    errors = dict()
    for name, module in PLUGIN_MODULES.items():
        start = time.time()
        if module._init():
            echo(f'  {name:10s} ok (ready in {time.time() - start:.1f} s)')
            errors[name] = None
        else:
            errors[name] = str(module._plugin_error or 'the upfirdn2d plugin it runs on failed (see above)')
            echo(f'  {name:10s} FAILED:')
            echo('\n'.join('      ' + line for line in errors[name].split('\n')))
    return errors

#----------------------------------------------------------------------------
# Small parity checks, CUDA kernel vs reference path: (name, plugin, fn(impl) -> tensors).

def parity_cases(device):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 16, 16, generator=gen).to(device)
    b = torch.randn(8, generator=gen).to(device)
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)

    # Output and input gradient of op(x, impl) for a fixed random output gradient.
    def with_grad(op):
        def run(impl):
            xg = x.detach().requires_grad_(True)
            y = op(xg, impl)
            dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(device)
            return [y, torch.autograd.grad(y, xg, dy)[0]]
        return run

    return [
        ('bias_act lrelu clamp', 'bias_act', with_grad(lambda x, impl: bias_act.bias_act(x, b, act='lrelu', clamp=1.5, impl=impl))),
        ('bias_act swish', 'bias_act', with_grad(lambda x, impl: bias_act.bias_act(x, b, act='swish', impl=impl))),
        ('upsample2d', 'upfirdn2d', with_grad(lambda x, impl: upfirdn2d.upsample2d(x, f, impl=impl))),
        ('downsample2d', 'upfirdn2d', with_grad(lambda x, impl: upfirdn2d.downsample2d(x, f, impl=impl))),
        ('filtered_lrelu', 'filtered_lrelu', with_grad(lambda x, impl: filtered_lrelu.filtered_lrelu(x, f, f, b, up=2,
            down=2, padding=3, clamp=1.5, impl=impl))),
    ]

#----------------------------------------------------------------------------
# Runs the parity cases whose op has a plugin; returns the names of the failed ones.

def check_parity(echo, plugin_errors, device='cuda', tol=1e-4):
    failed = []
    for name, plugin, run in parity_cases(torch.device(device)):
        if plugin_errors.get(plugin):
            continue
        fast, ref = run('cuda'), run('ref')
        err = max(float((a - b).abs().max() / (b.abs().max() + 1e-8)) for a, b in zip(fast, ref))
        ok = err <= tol
        echo(f'  {name:22s} max relative difference {err:.2e} (forward and gradient): {"ok" if ok else "MISMATCH"}')
        if not ok:
            failed.append(name)
    return failed

#----------------------------------------------------------------------------
# The whole report; returns the exit code (0 = nothing broken).

def run_doctor(echo=print, build=True):
    echo('Environment')
    for label, value in environment_rows():
        echo(f'  {label:18s} {value}')
    echo('')
    echo('CPU kernels (bias_act, demodulation and more on float32 / bfloat16 CPU tensors; C, built at first use; docs/ops.md)')
    echo(f'  {cpu_kernel_state(build)}')
    echo('')
    if not torch.cuda.is_available():
        echo('No GPU: the CUDA plugins are not built here; upfirdn2d (and the ops built on it) uses')
        echo('the reference PyTorch path, bias_act the CPU kernels above. Nothing is broken.')
        return 0
    if not build:
        echo('Plugins not checked (--no-build).')
        return 0

    echo('CUDA plugins (built on first use; cached in the build root)')
    errors = check_plugins(echo)
    echo('')
    failed = []
    if not all(errors.values()):
        echo('Parity with the reference path (float32, forward and gradient)')
        failed = check_parity(echo, errors)
        echo('')
    broken = [name for name, err in errors.items() if err] + failed
    if broken:
        echo(f'BROKEN: {", ".join(broken)}. Without a plugin the ops fall back to the reference path '
            "(impl='cuda' raises); see docs/cuda.md, Troubleshooting.")
        return 1
    echo('OK: the CUDA plugins build, load and match the reference path.')
    return 0

#----------------------------------------------------------------------------
# Command line.

@click.command()
@click.option('--build/--no-build', default=True, show_default=True, help='Build and test the plugins when a GPU is present.')
def main(build):
    """Print what the CUDA ops depend on and check that they build and match the reference."""
    sys.exit(run_doctor(build=build))

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
