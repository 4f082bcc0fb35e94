# Tests for torch_utils.misc.

import itertools
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

from torch_utils import misc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#----------------------------------------------------------------------------
# constant(): values, broadcasting, dtype/device defaults and caching by key.

def test_constant_values_and_cache():
    a = misc.constant([1, 2, 3])
    assert a.dtype == torch.get_default_dtype() and a.device.type == 'cpu'
    assert a.tolist() == [1.0, 2.0, 3.0]
    assert misc.constant([1, 2, 3]) is a
    assert misc.constant([1, 2, 4]) is not a
    assert misc.constant([1, 2, 3], dtype=torch.float64) is not a
    b = misc.constant(0.5, shape=[2, 3])
    assert b.shape == (2, 3) and bool((b == 0.5).all())
    assert misc.constant(0.5, shape=(2, 3)) is b
    assert misc.constant(np.float32(0.5), shape=[2, 3]) is not b # Different value dtype => different key.
    c = misc.constant(1, shape=[1, 3, 2, 2], memory_format=torch.channels_last)
    assert c.is_contiguous(memory_format=torch.channels_last)
    assert misc.constant(1, shape=[1, 3, 2, 2]) is not c

#----------------------------------------------------------------------------
# nan_to_num() replaces NaN and infinities.

def test_nan_to_num():
    x = torch.tensor([float('nan'), float('inf'), -float('inf'), 1.5])
    y = misc.nan_to_num(x, nan=0.0, posinf=3.0, neginf=-3.0)
    assert y.tolist() == [0.0, 3.0, -3.0, 1.5]

#----------------------------------------------------------------------------
# suppress_tracer_warnings() hides TracerWarning only inside the block.

def test_suppress_tracer_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with misc.suppress_tracer_warnings():
            warnings.warn('hidden', torch.jit.TracerWarning)
            warnings.warn('shown', UserWarning)
        warnings.warn('shown too', torch.jit.TracerWarning)
    assert [str(w.message) for w in caught] == ['shown', 'shown too']

#----------------------------------------------------------------------------
# assert_shape(): None matches anything; errors name the dimension and sizes.

def test_assert_shape():
    x = torch.zeros(2, 3, 4)
    misc.assert_shape(x, [2, 3, 4])
    misc.assert_shape(x, [None, 3, None])
    with pytest.raises(AssertionError, match=r'dimension 1: got 3, expected 5'):
        misc.assert_shape(x, [2, 5, 4])
    with pytest.raises(AssertionError, match=r'Wrong number of dimensions: got 3 .* expected 2'):
        misc.assert_shape(x, [2, 3])

#----------------------------------------------------------------------------
# assert_shape() with sizes given as tensors (symbolic sizes) and under torch.jit.trace.

@pytest.mark.filterwarnings('ignore:.*torch.jit.trace.*:DeprecationWarning')
def test_assert_shape_symbolic_and_traced():
    x = torch.zeros(2, 3)
    misc.assert_shape(x, [torch.tensor(2), None])
    with pytest.raises(AssertionError, match='dimension 0'):
        misc.assert_shape(x, [torch.tensor(5), None])
    def fn(x, y):
        misc.assert_shape(x, [None, y.shape[1]])
        return x * 2
    with warnings.catch_warnings():
        warnings.simplefilter('error', torch.jit.TracerWarning)
        traced = torch.jit.trace(fn, (torch.zeros(2, 3), torch.zeros(1, 3)), check_trace=False)
        with pytest.raises(AssertionError, match='dimension 1'):
            torch.jit.trace(fn, (torch.zeros(2, 3), torch.zeros(1, 4)), check_trace=False)
    assert traced(torch.ones(4, 3), torch.zeros(1, 3)).shape == (4, 3)

#----------------------------------------------------------------------------
# profiled_function keeps the name and docstring and labels calls in the profiler.

def test_profiled_function():
    @misc.profiled_function
    def my_op(x):
        """Doc of my_op."""
        return x + 1
    assert my_op.__name__ == 'my_op' and my_op.__doc__ == 'Doc of my_op.'
    with torch.autograd.profiler.profile() as prof:
        assert my_op(torch.zeros(2)).tolist() == [1.0, 1.0]
    assert any(event.name == 'my_op' for event in prof.function_events)

#----------------------------------------------------------------------------
# InfiniteSampler: deterministic per seed, different across seeds.

def test_infinite_sampler_determinism():
    take = lambda sampler, n: list(itertools.islice(iter(sampler), n))
    a = take(misc.InfiniteSampler(range(50), seed=3), 200)
    assert a == take(misc.InfiniteSampler(range(50), seed=3), 200)
    assert a != take(misc.InfiniteSampler(range(50), seed=4), 200)
    assert sorted(set(a)) == list(range(50))
    assert take(misc.InfiniteSampler(range(5), shuffle=False), 12) == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]

#----------------------------------------------------------------------------
# InfiniteSampler: rank shards interleave into the single-process sequence.

def test_infinite_sampler_shards():
    n, replicas, steps = 37, 3, 50
    full = list(itertools.islice(iter(misc.InfiniteSampler(range(n), seed=7)), replicas * steps))
    shards = [list(itertools.islice(iter(misc.InfiniteSampler(range(n), rank=r, num_replicas=replicas, seed=7)), steps)) for r in range(replicas)]
    for r in range(replicas):
        assert shards[r] == full[r::replicas]
    first_epoch = [idx for step in range(steps) for idx in (shards[r][step] for r in range(replicas))][:n]
    assert first_epoch == full[:n]
    assert set(full) == set(range(n))

    # Without shuffling the shards are disjoint and cover the dataset exactly once per epoch.
    plain = [list(itertools.islice(iter(misc.InfiniteSampler(range(12), rank=r, num_replicas=3, shuffle=False)), 4)) for r in range(3)]
    assert sorted(sum(plain, [])) == list(range(12))

#----------------------------------------------------------------------------
# InfiniteSampler: resuming at the consumed position continues the same sequence.

@pytest.mark.parametrize('replicas', [1, 2])
def test_infinite_sampler_resume(replicas):
    n, steps, done = 23, 40, 15
    for rank in range(replicas):
        sampler = misc.InfiniteSampler(range(n), rank=rank, num_replicas=replicas, seed=11, window_size=0.3)
        it = iter(sampler)
        seq = [next(it) for _ in range(steps)]
        assert sampler.position == replicas * steps
        resumed = misc.InfiniteSampler(range(n), rank=rank, num_replicas=replicas, seed=11, window_size=0.3, start_index=done * replicas)
        assert list(itertools.islice(iter(resumed), steps - done)) == seq[done:]
        resumed.set_position(replicas * 5)
        assert list(itertools.islice(iter(resumed), 3)) == seq[5:8]

#----------------------------------------------------------------------------
# InfiniteSampler: the window reshuffle against a naive re-implementation of its rule.

def test_infinite_sampler_window_rule():
    n, seed, window_size = 10, 5, 0.5
    rnd = np.random.RandomState(seed)
    order = list(rnd.permutation(n))
    window = int(np.rint(n * window_size))
    offsets = rnd.randint(window, size=4096)
    expected = []
    for pos in range(30):
        i = pos % n
        expected.append(order[i])
        j = (i - offsets[pos]) % n
        order[i], order[j] = order[j], order[i]
    got = list(itertools.islice(iter(misc.InfiniteSampler(range(n), seed=seed, window_size=window_size)), 30))
    assert got == expected

#----------------------------------------------------------------------------
# InfiniteSampler: bad arguments.

def test_infinite_sampler_errors():
    with pytest.raises(ValueError, match='empty'):
        misc.InfiniteSampler([])
    with pytest.raises(ValueError, match='rank'):
        misc.InfiniteSampler(range(4), rank=2, num_replicas=2)
    with pytest.raises(ValueError, match='window_size'):
        misc.InfiniteSampler(range(4), window_size=1.5)
    with pytest.raises(ValueError, match='start_index'):
        misc.InfiniteSampler(range(4), start_index=-1)

#----------------------------------------------------------------------------
# ClassGroupedSampler: every round is [group_size, n] slots of one class each (MinibatchStdLayer's
# layout), slot classes follow the dataset's frequencies, and rounds are split between ranks and
# resumed by global item count.

def _grouped(sampler, count):
    it = iter(sampler)
    return np.array([next(it) for _ in range(count)])

def test_class_grouped_sampler_layout():
    labels = np.repeat(np.arange(5), [3, 10, 20, 6, 1]) # Class 4 has fewer items than a group.
    sampler = misc.ClassGroupedSampler(labels, group_size=4, round_size=12, seed=3)
    idx = _grouped(sampler, 12 * 200).reshape(200, 4, 3) # [round, member g, slot k]
    assert idx.min() >= 0 and idx.max() < len(labels)
    classes = labels[idx]
    assert (classes == classes[:, :1, :]).all() # Every slot holds one class.
    for r in range(200):
        for k in range(3):
            members = idx[r, :, k]
            if np.sum(labels == labels[members[0]]) >= 4:
                assert len(set(members.tolist())) == 4 # Without replacement where the class is large enough.
    freq = np.bincount(classes[:, 0, :].reshape(-1), minlength=5) / 600
    np.testing.assert_allclose(freq, np.bincount(labels) / len(labels), atol=0.06)

def test_class_grouped_sampler_label_vectors():
    ids = np.random.RandomState(0).randint(3, size=30)
    one_hot = np.eye(3, dtype=np.float32)[ids]
    a = _grouped(misc.ClassGroupedSampler(ids, group_size=2, round_size=6, seed=1), 120)
    b = _grouped(misc.ClassGroupedSampler(one_hot, group_size=2, round_size=6, seed=1), 120)
    np.testing.assert_array_equal(a, b)

@pytest.mark.parametrize('replicas', [1, 2, 3])
def test_class_grouped_sampler_shards_and_resume(replicas):
    labels = np.arange(40) % 4
    kwargs = dict(group_size=2, round_size=4, num_replicas=replicas, seed=7)
    whole = misc.ClassGroupedSampler(labels, group_size=2, round_size=4, seed=7)
    rounds = _grouped(whole, 4 * 12 * replicas).reshape(-1, 4)
    for rank in range(replicas):
        got = _grouped(misc.ClassGroupedSampler(labels, rank=rank, **kwargs), 4 * 6).reshape(-1, 4)
        np.testing.assert_array_equal(got, rounds[rank::replicas][:6]) # Rank r takes rounds r, r + replicas, ...
        start = 4 * replicas * 3 # Three steps of all ranks consumed.
        resumed = _grouped(misc.ClassGroupedSampler(labels, rank=rank, start_index=start, **kwargs), 4 * 3).reshape(-1, 4)
        np.testing.assert_array_equal(resumed, got[3:6])

def test_class_grouped_sampler_errors():
    with pytest.raises(ValueError, match='non-empty'):
        misc.ClassGroupedSampler([], group_size=2, round_size=4)
    with pytest.raises(ValueError, match='multiple of group_size'):
        misc.ClassGroupedSampler([0, 1], group_size=3, round_size=4)
    with pytest.raises(ValueError, match='rank'):
        misc.ClassGroupedSampler([0, 1], group_size=2, round_size=4, rank=1, num_replicas=1)

#----------------------------------------------------------------------------
# Parameters and buffers helpers and copy_params_and_buffers.

def _small_net(with_extra=False):
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    if with_extra:
        net.register_buffer('extra', torch.ones(2))
    return net

def test_params_and_buffers_and_copy():
    torch.manual_seed(0)
    src, dst = _small_net(), _small_net(with_extra=True)
    names = [name for name, _ in misc.named_params_and_buffers(dst)]
    assert names == ['0.weight', '0.bias', '1.weight', '1.bias', 'extra', '1.running_mean', '1.running_var', '1.num_batches_tracked']
    assert len(misc.params_and_buffers(dst)) == len(names)
    src[1].running_mean.fill_(0.25)
    misc.copy_params_and_buffers(src, dst)
    for name, tensor in misc.named_params_and_buffers(src):
        assert torch.equal(dict(misc.named_params_and_buffers(dst))[name], tensor)
    assert dst[0].weight.requires_grad and dst[0].weight.grad_fn is None
    with pytest.raises(KeyError, match="named 'extra'"):
        misc.copy_params_and_buffers(src, dst, require_all=True)
    with pytest.raises(ValueError, match="shape mismatch for '0.weight'"):
        misc.copy_params_and_buffers(torch.nn.Sequential(torch.nn.Linear(2, 4)), dst)

#----------------------------------------------------------------------------
# ddp_sync and check_ddp_consistency outside torch.distributed are no-ops.

def test_ddp_helpers_single_process():
    net = _small_net()
    with misc.ddp_sync(net, sync=False):
        net(torch.zeros(2, 3)).sum().backward()
    misc.check_ddp_consistency(net)
    with pytest.raises(TypeError):
        with misc.ddp_sync('not a module', sync=True):
            pass

#----------------------------------------------------------------------------
# check_ddp_consistency in two gloo processes: equal (with NaNs) passes, a difference is named.

_DDP_WORKER = textwrap.dedent('''
    import sys, torch
    from torch_utils import misc
    rank, init_file = int(sys.argv[1]), sys.argv[2]
    torch.distributed.init_process_group('gloo', init_method='file://' + init_file, rank=rank, world_size=2)
    net = torch.nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.fill_(1.0); net.weight[0, 0] = float('nan'); net.bias.fill_(float(rank))
    misc.check_ddp_consistency(net, ignore_regex=r'.*\\.bias')
    misc.check_ddp_consistency(net, ignore_names=['bias'])
    try:
        misc.check_ddp_consistency(net)
        print('rank', rank, 'no error')
    except RuntimeError as err:
        print('rank', rank, 'error:', err)
    torch.distributed.destroy_process_group()
''')

@pytest.mark.slow
def test_check_ddp_consistency_two_processes(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    cmd = lambda rank: [sys.executable, '-c', _DDP_WORKER, str(rank), str(tmp_path / 'init')]
    procs = [subprocess.Popen(cmd(rank), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    outs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err
    assert 'rank 0 no error' in outs[0][0]
    assert 'rank 1 error: check_ddp_consistency: Linear.bias on rank 1 differs from rank 0' in outs[1][0]

#----------------------------------------------------------------------------
# rank_local_buffer_names: each class's own regexes, on its own buffers only, plus torch's running statistics.

class _Averaging(torch.nn.Module):
    rank_local_buffers = ('w_avg', r'stat_\w+')
    def __init__(self):
        super().__init__()
        self.register_buffer('w_avg', torch.zeros(2))
        self.register_buffer('stat_mean', torch.zeros(2))
        self.register_buffer('w_avg_copy', torch.zeros(2)) # Fullmatch: not rank-local.
        self.register_buffer('constant', torch.zeros(2))
        self.inner = torch.nn.Module()
        self.inner.register_buffer('w_avg', torch.zeros(2)) # Another class, which declares nothing.

def test_rank_local_buffer_names():
    net = torch.nn.Sequential(_Averaging(), torch.nn.BatchNorm2d(3), torch.nn.Linear(2, 2))
    assert misc.rank_local_buffer_names(net) == ['0.w_avg', '0.stat_mean', '1.running_mean', '1.running_var', '1.num_batches_tracked']
    assert misc.rank_local_buffer_names(_Averaging()) == ['w_avg', 'stat_mean']
    assert misc.rank_local_buffer_names(torch.nn.BatchNorm1d(2, track_running_stats=False)) == []
    with pytest.raises(TypeError):
        misc.rank_local_buffer_names('not a module')

#----------------------------------------------------------------------------
# print_module_summary: rows, counts, shapes, dtypes and the returned outputs.

class _TwoOutputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 6)
        self.register_buffer('scale', torch.ones(3))
    def forward(self, x):
        y = self.fc(x)
        return y, y.to(torch.float64)

def test_print_module_summary(capsys):
    net = torch.nn.Sequential(_TwoOutputs(), torch.nn.Identity())
    outputs = misc.print_module_summary(net, [torch.zeros(5, 4)])
    assert isinstance(outputs, tuple) and outputs[0].shape == (5, 6)
    lines = [line.split() for line in capsys.readouterr().out.strip().splitlines()]
    rows = {line[0]: line[1:] for line in lines}
    assert rows['Module'] == ['Parameters', 'Buffers', 'Output', 'shape', 'Datatype']
    assert rows['0.fc'] == ['30', '-', '[5,', '6]', 'float32']
    assert rows['0'] == ['-', '3', '[5,', '6]', 'float32'] # Own buffer; its first output is fc's.
    assert rows['0:1'] == ['[5,', '6]', 'float64']
    assert '1' not in rows # Identity: no tensors, outputs seen before.
    assert rows['Sequential'][:2] == ['-', '-']
    assert rows['Total'] == ['30', '3']

    # Nesting limit and skip_redundant=False.
    misc.print_module_summary(net, [torch.zeros(5, 4)], max_nesting=1, skip_redundant=False)
    names = [line.split()[0] for line in capsys.readouterr().out.strip().splitlines()]
    assert '0.fc' not in names and '1' in names
    with pytest.raises(TypeError, match='tuple or list'):
        misc.print_module_summary(net, torch.zeros(5, 4))

#----------------------------------------------------------------------------

def test_resolve_device(monkeypatch):
    assert misc.resolve_device('cpu') == torch.device('cpu')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(misc, 'mps_available', lambda: False)
    assert misc.resolve_device('auto') == torch.device('cpu')
    with pytest.raises(ValueError, match='no CUDA device'):
        misc.resolve_device('cuda')
    with pytest.raises(ValueError, match='MPS is not available'):
        misc.resolve_device('mps')
    monkeypatch.setattr(misc, 'mps_available', lambda: True)
    assert misc.resolve_device('auto') == torch.device('mps')

#----------------------------------------------------------------------------
