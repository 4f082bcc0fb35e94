# Shared pytest set-up: run from the repository root so that top-level modules import, and keep
# each test process to one thread (pytest-xdist already runs one process per core; more threads
# only contend, and subprocesses started by tests inherit the setting).

import importlib.util
import os
import sys

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MKL_NUM_THREADS', '1')

import pytest # noqa: E402
import torch # noqa: E402 (after the thread settings)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

if os.environ.get('PYTEST_XDIST_WORKER') or os.environ.get('OMP_NUM_THREADS') == '1':
    torch.set_num_threads(1)

# A script of benchmarks/ as a module (they are stand-alone scripts, not a package): load_benchmark('compare').
@pytest.fixture(scope='session')
def load_benchmark():
    def load(name):
        spec = importlib.util.spec_from_file_location(f'benchmark_{name}', os.path.join(ROOT, 'benchmarks', f'{name}.py'))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load
