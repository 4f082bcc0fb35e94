# Tests for benchmarks/augment.py: the table it prints for the chosen pipes, p and channels, and its
# one-line errors.

import re

import pytest
import torch
from click.testing import CliRunner

# The benchmark sets torch's thread count for the process: put it back afterwards.
@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)

#----------------------------------------------------------------------------

def test_prints_one_row_per_pipe_at_the_given_p_and_channels(load_benchmark, monkeypatch):
    bench = load_benchmark('augment')
    seen = []
    real_measure = bench.measure
    def measure(pipe, images, seconds, backward):
        seen.append((float(pipe.p), tuple(images.shape)))
        return real_measure(pipe, images, seconds, backward)
    monkeypatch.setattr(bench, 'measure', measure)
    monkeypatch.setattr(bench, 'CASES', [(16, 2)])
    result = CliRunner().invoke(bench.main, ['--device=cpu', '--seconds=0.01', '--pipes=blit,geom', '--p=0.25', '--channels=1', '--threads=1'])
    assert result.exit_code == 0, result.output
    assert 'p = 0.25, 1 channel(s)' in result.output
    rows = [line for line in result.output.splitlines() if re.match(r'\| (blit|geom) \| \d+ / \d+ \|', line)]
    assert len(rows) == 2, result.output
    assert set(seen) == {(0.25, (2, 1, 16, 16))}
    assert torch.get_num_threads() == 1

def test_rejects_unknown_pipes_and_p_out_of_range(load_benchmark):
    bench = load_benchmark('augment')
    result = CliRunner().invoke(bench.main, ['--device=cpu', '--pipes=bgc,nope'])
    assert result.exit_code != 0 and 'nope' in result.output
    result = CliRunner().invoke(bench.main, ['--device=cpu', '--p=0'])
    assert result.exit_code != 0 and '--p' in result.output
