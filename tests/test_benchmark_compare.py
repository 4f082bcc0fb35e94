# benchmarks/compare.py: its table and geometric mean from given timings, and its one-line errors.
# (The timing runs themselves check out a worktree and take minutes; docs/performance.md quotes one.)

import importlib.util
import math
import os

import click.testing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def load_compare():
    spec = importlib.util.spec_from_file_location('benchmark_compare', os.path.join(ROOT, 'benchmarks', 'compare.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

#----------------------------------------------------------------------------
# Speed-up = median(A) / median(B) per measure (min ratio in brackets); geometric mean over measures.

def test_report(capsys):
    compare = load_compare()
    times = {'A': {'g_fwd': [4.0, 6.0, 5.0], 'd_r1': [9.0, 8.0, 10.0]}, 'B': {'g_fwd': [1.0, 2.0, 3.0], 'd_r1': [1.0, 1.0, 1.0]}}
    compare.report(times, ['g_fwd', 'd_r1'], 'aaaaaaa', 'bbbbbbb')
    out = capsys.readouterr().out
    assert '| g_fwd | 5.0000 (4.0000) | 2.0000 (1.0000) | 2.50x (4.00x) |' in out
    assert '| d_r1 | 9.0000 (8.0000) | 1.0000 (1.0000) | 9.00x (8.00x) |' in out
    assert f'| geometric mean | | | {math.sqrt(2.5 * 9):.2f}x |' in out

#----------------------------------------------------------------------------
# Bad arguments end in one line naming what is wrong.

def test_errors():
    compare = load_compare()
    runner = click.testing.CliRunner()
    result = runner.invoke(compare.main, ['--baseline=no-such-revision-xyz'])
    assert result.exit_code != 0 and 'is not a commit' in result.output
    result = runner.invoke(compare.main, ['--baseline=HEAD', '--measures=g_fwd,bogus'])
    assert result.exit_code != 0 and 'unknown measure(s) bogus' in result.output
