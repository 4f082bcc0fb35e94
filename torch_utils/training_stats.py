# Training statistics: any code reports named scalars or tensors with report(); a
# Collector turns what was reported since its previous update() into num/mean/std,
# summed over all processes when torch.distributed is initialised.
#
# Every element counts as one sample. NaN and inf values are accumulated as they are
# (the mean then becomes NaN/inf), so a diverging run shows up in the statistics.

import re

import numpy as np
import torch

import dnnlib

#----------------------------------------------------------------------------
# Module state.

_num_moments    = 3             # [number of samples, sum, sum of squares].
_counter_dtype  = torch.float64 # Accumulation dtype.
_rank           = 0             # Rank of this process (report0 reports only on rank 0).
_sync_device    = None          # Device for the all-reduce (CUDA for NCCL), None = CPU.
_counters       = dict()        # Name => {device => tensor[_num_moments]} not yet synced.
_cumulative     = dict()        # Name => CPU tensor[_num_moments], summed over processes and time.

#----------------------------------------------------------------------------
# Set this process's rank and the device used to synchronise statistics (None for the
# CPU, i.e. gloo; a CUDA device for NCCL). Call before the first Collector.update().

def init_multiprocessing(rank, sync_device):
    global _rank, _sync_device
    if int(rank) != rank or rank < 0:
        raise ValueError(f'init_multiprocessing: rank must be a non-negative integer, got {rank}')
    _rank = int(rank)
    _sync_device = torch.device(sync_device) if sync_device is not None else None

#----------------------------------------------------------------------------
# Report a statistic: a Python number, array or tensor; each element is one sample.
# An empty value only makes the name known. Returns value unchanged, so a report can
# wrap an expression. Tensors are accumulated on their own device, without a sync.

def report(name, value):
    if not isinstance(name, str):
        raise TypeError(f'training_stats.report: name must be a str, got {type(name).__name__}')
    if name not in _counters:
        _counters[name] = dict()
    elems = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value, dtype=np.float64))
    if elems.numel() == 0:
        return value
    elems = elems.detach().flatten().to(_counter_dtype)
    moments = torch.stack([
        torch.ones_like(elems).sum(),
        elems.sum(),
        elems.square().sum(),
    ])
    counter = _counters[name].get(moments.device, None)
    if counter is None:
        _counters[name][moments.device] = moments
    else:
        counter.add_(moments)
    return value

#----------------------------------------------------------------------------
# Report only in the process of rank 0 (other processes only make the name known).

def report0(name, value):
    report(name, value if _rank == 0 else [])
    return value

#----------------------------------------------------------------------------
# Collects the statistics whose names fully match a regex. update() takes what was
# reported since the previous update() (of any collector) or since construction;
# num/mean/std/as_dict read the result. With keep_previous=True a name that got no new
# samples keeps its previous values; otherwise it reads as num=0, mean=std=nan.
# Under torch.distributed every process must call update() at the same time.

class Collector:
    def __init__(self,
        regex           = '.*', # Names to collect (re.fullmatch).
        keep_previous   = True, # Keep values of names without new samples.
    ):
        self._regex = re.compile(regex)
        self._keep_previous = keep_previous
        self._cumulative = {name: value.clone() for name, value in _cumulative.items()}
        self._moments = dict()

    # Names reported so far (in this process) that match the regex.
    def names(self):
        return [name for name in _counters if self._regex.fullmatch(name)]

    # Synchronise the counters and compute the statistics since the previous update.
    def update(self):
        if not self._keep_previous:
            self._moments.clear()
        for name, cumulative in _sync(self.names()):
            previous = self._cumulative.get(name, torch.zeros_like(cumulative))
            delta = cumulative - previous
            self._cumulative[name] = cumulative.clone()
            if float(delta[0]) != 0:
                self._moments[name] = delta

    # Number of samples of a name in the last update.
    def num(self, name):
        moments = self._moments.get(name, None)
        return int(moments[0]) if moments is not None else 0

    # Mean of the samples of a name in the last update (nan when there are none).
    def mean(self, name):
        moments = self._moments.get(name, None)
        if moments is None:
            return float('nan')
        return float(moments[1] / moments[0])

    # Standard deviation (population, ddof=0) of the samples of a name (nan when none).
    def std(self, name):
        moments = self._moments.get(name, None)
        if moments is None:
            return float('nan')
        mean = float(moments[1] / moments[0])
        if not np.isfinite(mean):
            return float('nan')
        variance = float(moments[2] / moments[0]) - mean ** 2
        return float(np.sqrt(max(variance, 0.0)))

    # Name => EasyDict(num, mean, std) for every matching name.
    def as_dict(self):
        names = sorted(set(self.names()) | set(self._moments))
        return {name: dnnlib.EasyDict(num=self.num(name), mean=self.mean(name), std=self.std(name)) for name in names}

    # collector[name] is the mean.
    def __getitem__(self, name):
        return self.mean(name)

#----------------------------------------------------------------------------
# Add the pending counters of the given names (over all processes) to the cumulative
# totals and return [(name, cumulative)]. Under torch.distributed the processes first
# agree on the union of their names, so they need not have reported the same ones.

def _sync(names):
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed:
        all_names = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(all_names, list(names))
        names = sorted(set(name for rank_names in all_names for name in rank_names))
    if len(names) == 0:
        return []

    # Sum the pending counters of this process.
    device = _sync_device if _sync_device is not None else torch.device('cpu')
    deltas = torch.zeros([len(names), _num_moments], dtype=_counter_dtype, device=device)
    for idx, name in enumerate(names):
        for counter in _counters.get(name, {}).values():
            deltas[idx].add_(counter.to(device))
            counter.zero_()

    # Sum over processes and accumulate.
    if distributed:
        torch.distributed.all_reduce(deltas)
    deltas = deltas.cpu()
    result = []
    for idx, name in enumerate(names):
        if name not in _cumulative:
            _cumulative[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
        _cumulative[name].add_(deltas[idx])
        result.append((name, _cumulative[name].clone()))
    return result

#----------------------------------------------------------------------------
# Collector of all statistics, shared by the training loop and the code it calls.

default_collector = Collector()

#----------------------------------------------------------------------------
