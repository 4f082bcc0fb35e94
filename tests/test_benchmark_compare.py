# benchmarks/compare.py: its table and geometric mean from given timings, and its one-line errors.
# (The timing runs themselves check out a worktree and take minutes; docs/performance.md quotes one.)

import math
import os

import click.testing
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

@pytest.fixture
def compare(load_benchmark):
    return load_benchmark('compare')

#----------------------------------------------------------------------------
# Speed-up = median(A) / median(B) per measure (min ratio in brackets); geometric mean over measures.

def test_report(compare, capsys):
    times = {'A': {'g_fwd': [4.0, 6.0, 5.0], 'd_r1': [9.0, 8.0, 10.0]}, 'B': {'g_fwd': [1.0, 2.0, 3.0], 'd_r1': [1.0, 1.0, 1.0]}}
    compare.report(times, ['g_fwd', 'd_r1'], 'aaaaaaa', 'bbbbbbb')
    out = capsys.readouterr().out
    assert '| g_fwd | 5.0000 (4.0000) | 2.0000 (1.0000) | 2.50x (4.00x) |' in out
    assert '| d_r1 | 9.0000 (8.0000) | 1.0000 (1.0000) | 9.00x (8.00x) |' in out
    assert f'| geometric mean | | | {math.sqrt(2.5 * 9):.2f}x |' in out

#----------------------------------------------------------------------------
# Bad arguments end in one line naming what is wrong.

def test_errors(compare):
    runner = click.testing.CliRunner()
    result = runner.invoke(compare.main, ['--baseline=no-such-revision-xyz'])
    assert result.exit_code != 0 and 'is not a commit' in result.output
    result = runner.invoke(compare.main, ['--baseline=HEAD', '--measures=g_fwd,bogus'])
    assert result.exit_code != 0 and 'unknown measure(s) bogus' in result.output

#----------------------------------------------------------------------------
# Shared weights: a parameter shaped differently in this tree (a changed architecture) keeps its own
# seeded initial values and is named in the notes, and so does a layer the baseline lacks; the others
# are loaded; a parameter the shared weights lack from a layer they have is an error.

def test_build_networks_shared_weights(compare, tmp_path, monkeypatch):
    import torch
    monkeypatch.chdir(ROOT)
    datasets = compare.make_datasets(str(tmp_path))
    datasets['workdir'] = str(tmp_path)
    c = compare.dry_run_config('demo', datasets, fp32=True)
    G, D, _common = compare.build_networks(c)
    weights = dict(G={k: v + 1 for k, v in G.state_dict().items()}, D={k: v + 1 for k, v in D.state_dict().items()})
    name = next(k for k, v in weights['D'].items() if k.endswith('conv.weight') and v.ndim == 4)
    weights['D'][name] = torch.zeros([1, 1, 1, 1])
    notes = []
    G2, D2, _common = compare.build_networks(c, weights, notes)
    assert notes == [f'D.{name} {list(D.state_dict()[name].shape)} (baseline [1, 1, 1, 1])']
    assert torch.equal(D2.state_dict()[name], D.state_dict()[name]) # Own seeded initial values.
    assert all(torch.equal(v, weights['G'][k]) for k, v in G2.state_dict().items())
    layer = next(n for n, _ in D.named_parameters() if n.endswith('.weight')).rsplit('.', 1)[0]
    for key in [k for k in weights['D'] if k.rsplit('.', 1)[0] == layer]: # A layer the baseline does not have.
        del weights['D'][key]
    notes = []
    _G2, D2, _common = compare.build_networks(c, weights, notes)
    assert f'D.{layer}.weight {list(D.state_dict()[layer + ".weight"].shape)} (not in the baseline)' in notes
    assert torch.equal(D2.state_dict()[layer + '.weight'], D.state_dict()[layer + '.weight'])
    del weights['G'][next(n for n, _ in G.named_parameters())]
    with pytest.raises(RuntimeError, match='parameters differ from the shared weights'):
        compare.build_networks(c, weights)

# The allocator setting follows the measured tree's own files: a baseline without torch_utils/host_memory.py
# keeps glibc's default even where an editable install of this project could import the module for it.
def test_trainer_setup_only_from_the_trees_own_module(compare, tmp_path, monkeypatch):
    from torch_utils import host_memory
    calls = []
    monkeypatch.setattr(host_memory, 'keep_freed_memory', lambda: calls.append(1) or True)
    compare._set_up_like_the_trainer(str(tmp_path)) # pylint: disable=protected-access
    assert calls == []
    compare._set_up_like_the_trainer(ROOT) # pylint: disable=protected-access
    assert calls == [1]
