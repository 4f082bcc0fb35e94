# Where a demo training step's time goes on the CPU: the wall time of a step, the time oneDNN reports
# for executing its primitives (the convolutions, their gradients and layout reorders: its verbose
# mode), and the number of ops the PyTorch dispatcher runs per step (views, casts, element-wise ops,
# matrix products, convolutions), at each thread count. The step is compare.py's demo_step (the
# loss phases with their optimizer steps, lazy regularisation amortised over a 16-step cycle) at the
# small preset's batch, on this tree.
#
#   python benchmarks/step_breakdown.py [--threads 1,2] [--batch 8] [--repeat 3]

import collections
import ctypes
import importlib.util
import os
import sys
import tempfile

import click
import torch
from torch.utils._python_dispatch import TorchDispatchMode

# compare.py by its path: benchmarks/ on sys.path would shadow the project's `metrics` package.
_spec = importlib.util.spec_from_file_location('benchmark_compare', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'compare.py'))
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)
if sys.path[0] != compare.ROOT:
    sys.path.insert(0, compare.ROOT) # This tree's train.py and packages, before benchmarks/.

#----------------------------------------------------------------------------
# oneDNN's verbose lines: 'onednn_verbose,...,exec,cpu,<primitive>,...,<milliseconds>'. Returns the total
# execution time in ms and the time per primitive kind.

def parse_onednn(lines):
    per_kind = collections.Counter()
    for line in lines:
        fields = line.strip().split(',')
        if len(fields) > 6 and fields[0] == 'onednn_verbose' and 'exec' in fields[1:4]:
            kind = fields[fields.index('exec') + 2]
            per_kind[kind] += float(fields[-1])
    return sum(per_kind.values()), per_kind

# Run fn with oneDNN's verbose mode on, its lines (printed by C code to file descriptor 1) caught in a file.
def onednn_lines(fn):
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode='w+') as f:
        os.dup2(f.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                fn()
            libc.fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        f.seek(0)
        return f.readlines()

# Ops the dispatcher runs in fn (below autograd: the backward pass's ops count too).
class _OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))

def count_ops(fn):
    with _OpCounter() as counter:
        fn()
    return counter.count

#----------------------------------------------------------------------------

@click.command()
@click.option('--threads', help='Comma-separated torch thread counts', default='1,2', show_default=True)
@click.option('--batch', help='Images per step', type=click.IntRange(min=4), default=8, show_default=True)
@click.option('--repeat', help='Timed cycles per thread count (the minimum is reported)', type=click.IntRange(min=1), default=3, show_default=True)
def main(threads, batch, repeat):
    """Time, oneDNN time and dispatched ops of one demo training step."""
    thread_counts = [int(t) for t in threads.split(',')]
    with tempfile.TemporaryDirectory() as workdir:
        datasets = compare.make_datasets(workdir)
        datasets['workdir'] = workdir
        compare.make_inputs(datasets, os.path.join(workdir, 'inputs.pt'))
        inputs = torch.load(os.path.join(workdir, 'inputs.pt'), weights_only=True)
        c = compare.dry_run_config('demo', datasets, fp32=False)
        c['batch_size'] = batch
        cycle = compare.demo_cycle(c, inputs['demo'], inputs, notes=[])
        steps = compare.DEMO_CYCLE
        ops = count_ops(cycle) / steps
        print(f'demo step, batch {batch}: {ops:.0f} dispatched ops per step')
        print('| threads | step ms | oneDNN ms | oneDNN share | convolution | deconvolution | reorder | other |')
        print('|---:|---:|---:|---:|---:|---:|---:|---:|')
        for n in thread_counts:
            torch.set_num_threads(n)
            step_ms = min(compare.time_calls(cycle, repeat)) / steps * 1e3
            total, per_kind = parse_onednn(onednn_lines(cycle))
            total, kinds = total / steps, {k: v / steps for k, v in per_kind.items()}
            other = total - sum(kinds.get(k, 0) for k in ('convolution', 'deconvolution', 'reorder'))
            print(f'| {n} | {step_ms:.1f} | {total:.1f} | {total / step_ms:.0%} | {kinds.get("convolution", 0):.1f} | '
                f'{kinds.get("deconvolution", 0):.1f} | {kinds.get("reorder", 0):.1f} | {other:.1f} |')

if __name__ == '__main__':
    main() # pylint: disable=no-value-for-parameter
