# torch_utils.host_memory: after keep_freed_memory() a step that makes and frees tensors of 4-64 MB takes (almost) no
# page faults the second time; without it, glibc maps them afresh (64 MB is above its largest mmap threshold).
# Each case runs in its own process, as the allocator setting is process-wide.

import subprocess
import sys

import pytest

from torch_utils import host_memory

PROBE = '''
import resource, sys, torch
from torch_utils import host_memory
print(host_memory.keep_freed_memory() if sys.argv[1] == '1' else 'skip')
def faults_of_one_step(): # Activations of 4 to 64 MB made and freed, as in a training step.
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tensors = [torch.empty([n << 20], dtype=torch.float32).fill_(1) for n in (4, 1, 16, 2, 8)]
    del tensors
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
for _ in range(3):
    faults_of_one_step()
print(min(faults_of_one_step() for _ in range(3)))
'''

def _probe(setting, env=None):
    out = subprocess.run([sys.executable, '-c', PROBE, setting], capture_output=True, text=True, check=True, env=env)
    status, faults = out.stdout.split()
    return status, int(faults)

@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc allocator setting')
def test_reallocation_takes_no_page_faults():
    status, faults = _probe('1')
    if status != 'True':
        pytest.skip('no glibc mallopt here')
    assert faults < 500
    assert _probe('0')[1] > 4000 # 64 MB in 4 KB pages (16384), fewer with transparent huge pages.

def test_opt_out(monkeypatch):
    monkeypatch.setenv(host_memory.OPT_OUT_ENV, '0')
    assert host_memory.keep_freed_memory() is False

def test_cpu_processes_ask_for_it(monkeypatch):
    from training import inference, training_loop
    calls = []
    monkeypatch.setattr(host_memory, 'keep_freed_memory', lambda: calls.append(1) or True)
    training_loop._init_process('cpu', seed=0, cudnn_benchmark=False, allow_tf32=False)
    assert inference.resolve_device('cpu').type == 'cpu'
    assert len(calls) == 2
