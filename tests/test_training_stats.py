# Tests for torch_utils.training_stats.

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from torch_utils import training_stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#----------------------------------------------------------------------------
# num/mean/std against numpy over values reported as tensors, lists and scalars.

def test_mean_std_against_numpy():
    rnd = np.random.RandomState(0)
    values = rnd.randn(257) * 3 + 1
    collector = training_stats.Collector(regex=r'TestA/.*')
    assert training_stats.report('TestA/x', torch.tensor(values[:100], dtype=torch.float64).reshape(10, 10)) is not None
    training_stats.report('TestA/x', values[100:200].tolist())
    for v in values[200:]:
        assert training_stats.report('TestA/x', float(v)) == float(v)
    collector.update()
    assert collector.num('TestA/x') == 257
    assert collector.mean('TestA/x') == pytest.approx(values.mean(), rel=1e-12)
    assert collector.std('TestA/x') == pytest.approx(values.std(), rel=1e-10)
    assert collector['TestA/x'] == collector.mean('TestA/x')
    stats = collector.as_dict()['TestA/x']
    assert (stats.num, stats.mean, stats.std) == (257, collector.mean('TestA/x'), collector.std('TestA/x'))

#----------------------------------------------------------------------------
# Each update() covers only what was reported since the previous one.

def test_deltas_between_updates():
    collector = training_stats.Collector(regex=r'TestB/.*')
    training_stats.report('TestB/x', [1.0, 2.0, 3.0])
    collector.update()
    assert (collector.num('TestB/x'), collector.mean('TestB/x')) == (3, 2.0)
    training_stats.report('TestB/x', [10.0])
    collector.update()
    assert (collector.num('TestB/x'), collector.mean('TestB/x'), collector.std('TestB/x')) == (1, 10.0, 0.0)

    # A second collector counts independently, from its own creation on.
    other = training_stats.Collector(regex=r'TestB/.*')
    training_stats.report('TestB/x', [4.0, 6.0])
    collector.update()
    other.update()
    assert collector.mean('TestB/x') == 5.0 and other.mean('TestB/x') == 5.0
    assert other.std('TestB/x') == 1.0

#----------------------------------------------------------------------------
# The regex selects names (full match); unknown names read as num 0, mean/std nan.

def test_regex_filtering():
    collector = training_stats.Collector(regex=r'TestC/Loss/.*')
    training_stats.report('TestC/Loss/G', 1.0)
    training_stats.report('TestC/Loss/D', 2.0)
    training_stats.report('TestC/Timing/tick', 3.0)
    training_stats.report('TestC/Loss/empty', [])
    collector.update()
    assert sorted(collector.names()) == ['TestC/Loss/D', 'TestC/Loss/G', 'TestC/Loss/empty']
    assert sorted(collector.as_dict()) == ['TestC/Loss/D', 'TestC/Loss/G', 'TestC/Loss/empty']
    assert collector.num('TestC/Timing/tick') == 0
    assert math.isnan(collector.mean('TestC/Loss/empty')) and math.isnan(collector.std('TestC/Loss/empty'))
    assert 'TestC/Timing/tick' in training_stats.Collector(regex='TestC/.*').names()

#----------------------------------------------------------------------------
# keep_previous: a name without new samples keeps its values, or reads as empty.

@pytest.mark.parametrize('keep_previous', [True, False])
def test_keep_previous(keep_previous):
    prefix = f'TestD{int(keep_previous)}'
    collector = training_stats.Collector(regex=prefix + '/.*', keep_previous=keep_previous)
    training_stats.report(prefix + '/x', [2.0, 4.0])
    collector.update()
    collector.update()
    if keep_previous:
        assert (collector.num(prefix + '/x'), collector.mean(prefix + '/x')) == (2, 3.0)
    else:
        assert collector.num(prefix + '/x') == 0 and math.isnan(collector.mean(prefix + '/x'))

#----------------------------------------------------------------------------
# NaNs are reported as they are; report0 reports on rank 0; the default collector exists.

def test_nan_report0_default_collector():
    collector = training_stats.Collector(regex=r'TestE/.*')
    training_stats.report('TestE/nan', [1.0, float('nan')])
    training_stats.report0('TestE/rank0', torch.tensor([5.0]))
    collector.update()
    assert collector.num('TestE/nan') == 2 and math.isnan(collector.mean('TestE/nan'))
    assert collector.mean('TestE/rank0') == 5.0
    assert isinstance(training_stats.default_collector, training_stats.Collector)
    with pytest.raises(TypeError, match='name must be a str'):
        training_stats.report(3, 1.0)

#----------------------------------------------------------------------------
# Two gloo processes: synchronised statistics equal those over both processes' values,
# also for names reported by one process only and through report0.

_WORKER = textwrap.dedent('''
    import json, sys, torch
    from torch_utils import training_stats
    rank, init_file = int(sys.argv[1]), sys.argv[2]
    torch.distributed.init_process_group('gloo', init_method='file://' + init_file, rank=rank, world_size=2)
    training_stats.init_multiprocessing(rank=rank, sync_device=None)
    collector = training_stats.Collector(regex='.*')
    gen = torch.Generator().manual_seed(100 + rank)
    values = torch.randn([7 + rank * 5], generator=gen, dtype=torch.float64)
    training_stats.report('Loss/shared', values)
    training_stats.report0('Progress/rank0', float(rank + 10))
    if rank == 1:
        training_stats.report('Only/rank1', [3.0, 5.0])
    collector.update()
    result = dict(values=values.tolist(), stats=collector.as_dict())
    print('RESULT' + json.dumps(result))
    torch.distributed.destroy_process_group()
''')

@pytest.mark.slow
def test_two_process_gloo_sync(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    cmd = lambda rank: [sys.executable, '-c', _WORKER, str(rank), str(tmp_path / 'init')]
    procs = [subprocess.Popen(cmd(rank), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    outs = [proc.communicate(timeout=120) for proc in procs]
    results = []
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err
        results.append(json.loads(out.split('RESULT', 1)[1]))
    all_values = np.array(results[0]['values'] + results[1]['values'])
    for result in results:
        stats = result['stats']
        assert stats['Loss/shared']['num'] == len(all_values) == 19
        assert stats['Loss/shared']['mean'] == pytest.approx(all_values.mean(), rel=1e-12, abs=1e-15)
        assert stats['Loss/shared']['std'] == pytest.approx(all_values.std(), rel=1e-10)
        assert (stats['Progress/rank0']['num'], stats['Progress/rank0']['mean']) == (1, 10.0)
        assert (stats['Only/rank1']['num'], stats['Only/rank1']['mean']) == (2, 4.0)

#----------------------------------------------------------------------------
