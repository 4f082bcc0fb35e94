# Tests of python -m torch_utils.doctor: the report on this machine, and the verdict on
# a simulated GPU machine whose plugins fail to build.

import os
import shutil
import subprocess
import sys

import pytest
import torch

from torch_utils import custom_ops
from torch_utils import doctor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#----------------------------------------------------------------------------
# The command runs, prints the versions and exits 0; without a GPU it says so and names
# the reference path.

def test_doctor_command():
    proc = subprocess.run([sys.executable, '-m', 'torch_utils.doctor'], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for label in ['torch ', 'torch CUDA', 'C++ compiler', 'ninja', 'nvcc', 'build root']:
        assert label in proc.stdout
    assert torch.__version__ in proc.stdout
    if not torch.cuda.is_available():
        assert 'No GPU' in proc.stdout and 'reference PyTorch path' in proc.stdout
    assert 'CPU kernels' in proc.stdout
    if shutil.which(os.environ.get('CC') or 'cc') and os.environ.get('TORCH_UTILS_CPU_KERNELS') != '0':
        assert 'CPU kernels' in proc.stdout and '  ok (ready in' in proc.stdout.split('CPU kernels')[1]

#----------------------------------------------------------------------------
# --help works (click command).

def test_doctor_help():
    proc = subprocess.run([sys.executable, '-m', 'torch_utils.doctor', '--help'], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and '--no-build' in proc.stdout

#----------------------------------------------------------------------------
# A GPU machine whose plugins fail to build: the reasons are printed and the exit code is 1.

def test_doctor_reports_failed_plugins(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda i=0: 'Fake GPU')
    monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda i=0: (8, 0))
    for module in doctor.PLUGIN_MODULES.values():
        monkeypatch.setattr(module, '_plugin', None)
        monkeypatch.setattr(module, '_plugin_error', custom_ops.PluginError(f'{module.__name__}: nvcc was not found (test)'))
    lines = []
    assert doctor.run_doctor(echo=lines.append) == 1
    text = '\n'.join(lines)
    assert 'GPU 0' in text and 'Fake GPU (compute capability 8.0)' in text
    assert 'bias_act   FAILED' in text and 'upfirdn2d  FAILED' in text and 'nvcc was not found (test)' in text
    assert 'BROKEN: bias_act, upfirdn2d' in text
    assert doctor.run_doctor(echo=lines.append, build=False) == 0

#----------------------------------------------------------------------------
# The parity cases compare something: on the CPU the two impls agree exactly.

@pytest.mark.parametrize('index', range(len(doctor.parity_cases(torch.device("cpu")))))
def test_parity_cases_run_on_cpu(index):
    name, plugin, run = doctor.parity_cases(torch.device('cpu'))[index]
    assert plugin in doctor.PLUGIN_MODULES
    for a, b in zip(run('cuda'), run('ref')):
        assert a.shape == b.shape and torch.equal(a, b)

#----------------------------------------------------------------------------
