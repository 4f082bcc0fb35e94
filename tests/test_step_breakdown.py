# benchmarks/step_breakdown.py: its oneDNN accounting and op count, against what is known of a tiny
# workload (one convolution, a fixed number of ops) and hand-written verbose lines.

import click.testing
import pytest
import torch
import torch.nn.functional as F

@pytest.fixture(scope='module')
def breakdown(load_benchmark):
    return load_benchmark('step_breakdown')

def test_parse_onednn_sums_exec_lines_by_kind(breakdown):
    lines = [
        'onednn_verbose,v1,info,oneDNN v3.7.1',
        'onednn_verbose,v1,primitive,info,template:operation,engine,primitive,implementation,prop_kind,memory_descriptors,attributes,auxiliary,problem_desc,exec_time',
        'onednn_verbose,v1,primitive,exec,cpu,convolution,brg:avx512_core,forward_training,src:f32,attr-scratchpad:user,,mb8_ic32oc32,0.25',
        'onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:f32 dst:f32,,,8x32x4x4,0.125',
        'onednn_verbose,v1,primitive,exec,cpu,convolution,brg:avx512_core,backward_weights,src:f32,,,mb8_ic32oc32,1.5',
        'onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,brg:avx512_core,forward_training,src:f32,,,mb8,0.9',
        'something else',
    ]
    total, per_kind = breakdown.parse_onednn(lines)
    assert total == pytest.approx(1.875)
    assert dict(per_kind) == pytest.approx({'convolution': 1.75, 'reorder': 0.125})

def test_counts_dispatched_ops(breakdown):
    x = torch.ones(4, 4)
    assert breakdown.count_ops(lambda: (x + 1) * 2) == 2
    y = torch.ones(3, requires_grad=True)
    assert breakdown.count_ops(lambda: (y * 3).sum().backward()) >= 4 # Forward ops and the backward pass's.

def test_onednn_lines_catch_a_convolution(breakdown):
    x = torch.randn(2, 8, 16, 16)
    w = torch.randn(8, 8, 3, 3)
    lines = breakdown.onednn_lines(lambda: F.conv2d(x, w, padding=1))
    if not any(line.startswith('onednn_verbose') for line in lines):
        pytest.skip('this torch build prints no oneDNN verbose lines (no mkldnn convolution on this CPU)')
    total, per_kind = breakdown.parse_onednn(lines)
    assert per_kind['convolution'] > 0 and total >= per_kind['convolution']

# The whole script on the demo's networks at one thread: a table row with a step time and oneDNN's share.
def test_script_prints_the_breakdown(breakdown):
    result = click.testing.CliRunner().invoke(breakdown.main, ['--threads=1', '--batch=4', '--repeat=1'])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert 'dispatched ops per step' in result.output
    row = [line for line in result.output.splitlines() if line.startswith('| 1 |')]
    assert len(row) == 1 and float(row[0].split('|')[2]) > 0
