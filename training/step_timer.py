# Wall-clock time of the named parts of each training step (data, augment, Gmain, Dreg, ...),
# reported as the statistics Timing/<name> in seconds per step. On CUDA the parts are timed with
# CUDA events, read once per tick, so timing never synchronises a step.

import contextlib
import time

import torch

from torch_utils import training_stats

#----------------------------------------------------------------------------
# Times `with timer(name):` blocks; a name timed several times in one step is summed for that step.

class StepTimer:
    def __init__(self, device):
        self.use_events = (torch.device(device).type == 'cuda')
        self.step = 0           # Index of the current step; next_step() advances it.
        self._pending = []      # (name, step, start mark, end mark) not yet reported.

    # A time mark: a recorded CUDA event, or the CPU clock.
    def _mark(self):
        if not self.use_events:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    @contextlib.contextmanager
    def __call__(self, name):
        start = self._mark()
        try:
            yield
        finally:
            self._pending.append((name, self.step, start, self._mark()))

    def next_step(self):
        self.step += 1

    def report(self):
        """Report Timing/<name> (seconds per step in which <name> ran) to training_stats; call on every rank."""
        if self.use_events and self._pending:
            self._pending[-1][3].synchronize()
        totals = {}
        for name, step, start, end in self._pending:
            seconds = start.elapsed_time(end) / 1000 if self.use_events else end - start
            totals[(name, step)] = totals.get((name, step), 0.0) + seconds
        for (name, _step), seconds in totals.items():
            training_stats.report('Timing/' + name, seconds)
        self._pending.clear()

#----------------------------------------------------------------------------
# A callable (e.g. the augment pipe) whose calls are timed under one name; everything else passes through.

class TimedCall:
    def __init__(self, func, timer, name):
        self.func = func
        self.timer = timer
        self.name = name

    def __call__(self, *args, **kwargs):
        with self.timer(self.name):
            return self.func(*args, **kwargs)

    # Attributes other than the three above come from the wrapped callable (e.g. augment_pipe.p).
    def __getattr__(self, attr):
        if attr in ('func', 'timer', 'name'):
            raise AttributeError(attr)
        return getattr(self.func, attr)

#----------------------------------------------------------------------------
