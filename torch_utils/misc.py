# Small PyTorch helpers used by networks (and by the module source embedded in network
# pickles), by the training loop and by the tools: cached constants, shape assertions,
# profiling labels, an infinite data sampler, parameter copying, DDP helpers and a
# module summary table.

import contextlib
import functools
import re
import warnings

import numpy as np
import torch

#----------------------------------------------------------------------------
# A constant tensor, cached: the same arguments return the same tensor object, so
# constants built inside forward() cost nothing after the first call.

_constant_cache = dict()

def constant(value, shape=None, dtype=None, device=None, memory_format=None):
    """Return a cached constant tensor.

    Args:
        value:          Scalar, nested list or array giving the values.
        shape:          Shape to broadcast `value` to, or None to keep its own shape.
        dtype:          Tensor dtype, or None for torch.get_default_dtype().
        device:         Tensor device, or None for the CPU.
        memory_format:  torch.memory_format, or None for torch.contiguous_format.

    Returns:
        Tensor shared by every call with the same arguments; do not modify it in place.
    """
    value = np.asarray(value)
    shape = tuple(shape) if shape is not None else None
    dtype = dtype if dtype is not None else torch.get_default_dtype()
    device = torch.device(device) if device is not None else torch.device('cpu')
    memory_format = memory_format if memory_format is not None else torch.contiguous_format

    key = (value.shape, value.dtype, value.tobytes(), shape, dtype, device, memory_format)
    tensor = _constant_cache.get(key, None)
    if tensor is None:
        tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
        if shape is not None:
            tensor = torch.broadcast_to(tensor, shape)
        tensor = tensor.contiguous(memory_format=memory_format)
        _constant_cache[key] = tensor
    return tensor

#----------------------------------------------------------------------------
# Replace NaN and +-inf by finite numbers (same arguments as torch.nan_to_num).

def nan_to_num(input, nan=0.0, posinf=None, neginf=None, *, out=None): # pylint: disable=redefined-builtin
    return torch.nan_to_num(input, nan=nan, posinf=posinf, neginf=neginf, out=out)

#----------------------------------------------------------------------------
# Context manager that hides torch.jit.TracerWarning inside it (and only there).

@contextlib.contextmanager
def suppress_tracer_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        yield

#----------------------------------------------------------------------------
# Assert that a tensor has the given shape; None in ref_shape matches any size.
# Sizes may be symbolic (tensors under torch.jit.trace): then the check is traced too.

def assert_shape(tensor, ref_shape):
    if tensor.ndim != len(ref_shape):
        raise AssertionError(f'Wrong number of dimensions: got {tensor.ndim} (shape {list(tensor.shape)}), expected {len(ref_shape)} (shape {list(ref_shape)})')
    for idx, (size, ref_size) in enumerate(zip(tensor.shape, ref_shape)):
        if ref_size is None:
            continue
        if isinstance(ref_size, torch.Tensor) or isinstance(size, torch.Tensor):
            with suppress_tracer_warnings():
                torch._assert(torch.equal(torch.as_tensor(size), torch.as_tensor(ref_size)), f'Wrong size for dimension {idx}: expected {ref_size}') # pylint: disable=protected-access
        elif size != ref_size:
            raise AssertionError(f'Wrong size for dimension {idx}: got {size}, expected {ref_size} (shape {list(tensor.shape)}, expected {list(ref_shape)})')

#----------------------------------------------------------------------------
# Decorator that labels every call of a function in the autograd profiler with its name.

def profiled_function(fn):
    @functools.wraps(fn)
    def decorator(*args, **kwargs):
        with torch.autograd.profiler.record_function(fn.__name__):
            return fn(*args, **kwargs)
    return decorator

#----------------------------------------------------------------------------
# Sampler that yields dataset indices forever. The order is a seeded permutation that is
# reshuffled on the fly: after position i is visited, item i is swapped with a random one
# among the window_size * len(dataset) preceding positions. Global positions are split
# between processes: rank r takes the positions p with p % num_replicas == r.
#
# Resuming: `position` counts the global positions consumed by this rank's iterator
# (start_index + num_replicas * items yielded), identical on all ranks that took the same
# number of items. A sampler created with start_index=N (or after set_position(N))
# continues exactly where an iterator that consumed N global positions left off; pass the
# total number of items consumed by all ranks (e.g. cur_nimg), not the `position` of a
# sampler read by a prefetching DataLoader, which runs ahead of training.

class InfiniteSampler(torch.utils.data.Sampler):
    def __init__(self,
        dataset,                # Sized object (anything with len()).
        rank            = 0,    # Index of this process, 0 <= rank < num_replicas.
        num_replicas    = 1,    # Number of processes sharing the sequence.
        shuffle         = True, # False: plain sequential order, repeated.
        seed            = 0,    # Seed of the permutation and of the window swaps.
        window_size     = 0.5,  # Swap window as a fraction of len(dataset), 0 to 1.
        start_index     = 0,    # Global position to start from (see above).
    ):
        if len(dataset) <= 0:
            raise ValueError('InfiniteSampler: the dataset is empty')
        if not (num_replicas >= 1 and 0 <= rank < num_replicas):
            raise ValueError(f'InfiniteSampler: need 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}')
        if not 0 <= window_size <= 1:
            raise ValueError(f'InfiniteSampler: window_size must be in [0, 1], got {window_size}')
        super().__init__()
        self.dataset_size = len(dataset)
        self.rank = rank
        self.num_replicas = num_replicas
        self.shuffle = shuffle
        self.seed = seed
        self.window_size = window_size
        self.set_position(start_index)

    # Make the next iterator start at the given global position.
    def set_position(self, start_index):
        if int(start_index) != start_index or start_index < 0:
            raise ValueError(f'InfiniteSampler: start_index must be a non-negative integer, got {start_index}')
        self.start_index = int(start_index)
        self.position = self.start_index

    # Yield indices forever, starting at self.start_index.
    def __iter__(self):
        order, swaps, window = self._initial_order()
        chunk_size = 4096
        draws = None
        pos = 0 if swaps is not None else self.start_index # Without swaps, nothing to replay.
        taken = 0
        while True:
            if swaps is not None and pos % chunk_size == 0:
                draws = swaps.randint(window, size=chunk_size).tolist()
            i = pos % len(order)
            if pos >= self.start_index and pos % self.num_replicas == self.rank:
                taken += 1
                self.position = self.start_index + self.num_replicas * taken
                yield order[i]
            if swaps is not None:
                j = (i - draws[pos % chunk_size]) % len(order)
                order[i], order[j] = order[j], order[i]
            pos += 1

    # Initial order (a list), the generator of window offsets (None without swaps) and the window.
    def _initial_order(self):
        order = list(range(self.dataset_size))
        if not self.shuffle:
            return order, None, 0
        rnd = np.random.RandomState(self.seed)
        order = rnd.permutation(self.dataset_size).tolist()
        window = int(np.rint(self.dataset_size * self.window_size))
        if window < 2:
            return order, None, 0
        return order, rnd, window

#----------------------------------------------------------------------------
# Sampler that yields dataset indices forever in class groups, for minibatch-stddev groups that
# each see one class. Every `round_size` consecutive indices (one accumulation round) hold
# n = round_size // group_size class slots; index g * n + k is the g-th member of slot k, the
# layout of MinibatchStdLayer's groups (x.reshape(group_size, n, ...)). A slot takes the class of
# a uniformly drawn item (so classes keep the dataset's frequencies) and draws its members from
# that class, without replacement where the class is large enough.
#
# Rounds are numbered over all processes: rank r takes rounds r, r + num_replicas, ..., and a
# round's indices depend only on (seed, round number), so a sampler started at a global item
# count start_index (e.g. cur_nimg, a multiple of round_size * num_replicas) resumes exactly.

class ClassGroupedSampler(torch.utils.data.Sampler):
    def __init__(self,
        labels,                 # Label of every item: [N] class ids or [N, L] label vectors (equal vectors = one class).
        group_size,             # Items of one class per group.
        round_size,             # Items per round (a multiple of group_size).
        rank            = 0,    # Index of this process, 0 <= rank < num_replicas.
        num_replicas    = 1,    # Number of processes.
        seed            = 0,    # Seed of every round's draws.
        start_index     = 0,    # Global item count to start from (see above).
    ):
        labels = np.asarray(labels)
        if labels.ndim not in (1, 2) or len(labels) == 0:
            raise ValueError(f'ClassGroupedSampler: labels must be a non-empty [N] or [N, L] array, got shape {list(labels.shape)}')
        if not (group_size >= 1 and round_size >= group_size and round_size % group_size == 0):
            raise ValueError(f'ClassGroupedSampler: round_size ({round_size}) must be a positive multiple of group_size ({group_size})')
        if not (num_replicas >= 1 and 0 <= rank < num_replicas) or start_index < 0:
            raise ValueError(f'ClassGroupedSampler: need 0 <= rank < num_replicas and start_index >= 0, got {rank}, {num_replicas}, {start_index}')
        super().__init__()
        _classes, self.class_of = np.unique(labels.reshape(len(labels), -1), axis=0, return_inverse=True)
        self.class_of = self.class_of.reshape(-1)
        self.members = [np.flatnonzero(self.class_of == k) for k in range(len(_classes))]
        self.group_size, self.round_size = int(group_size), int(round_size)
        self.rank, self.num_replicas, self.seed = rank, num_replicas, seed
        self.start_index = int(start_index)

    # The indices of global round u, laid out as [group_size, n] flattened.
    def round_indices(self, u):
        rnd = np.random.RandomState([self.seed, u])
        n = self.round_size // self.group_size
        rows = []
        for anchor in rnd.randint(len(self.class_of), size=n):
            members = self.members[self.class_of[anchor]]
            rows.append(rnd.choice(members, size=self.group_size, replace=len(members) < self.group_size))
        return np.stack(rows, axis=1).reshape(-1)

    # Yield indices forever: this rank's rounds from the one holding start_index on.
    def __iter__(self):
        u = -(-self.start_index // self.round_size) # First round not yet consumed.
        u += (self.rank - u) % self.num_replicas
        while True:
            yield from self.round_indices(u).tolist()
            u += self.num_replicas

#----------------------------------------------------------------------------
# Parameters and buffers of a module, as a list (plain or with names).

def params_and_buffers(module):
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f'Expected a torch.nn.Module, got {type(module).__name__}')
    return list(module.parameters()) + list(module.buffers())

def named_params_and_buffers(module):
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f'Expected a torch.nn.Module, got {type(module).__name__}')
    return list(module.named_parameters()) + list(module.named_buffers())

#----------------------------------------------------------------------------
# Copy parameters and buffers from one module to another, matching them by name.
# Names missing in src_module are skipped, or an error when require_all=True.

@torch.no_grad()
def copy_params_and_buffers(src_module, dst_module, require_all=False):
    src_tensors = dict(named_params_and_buffers(src_module))
    for name, tensor in named_params_and_buffers(dst_module):
        if name not in src_tensors:
            if require_all:
                raise KeyError(f'copy_params_and_buffers: source {type(src_module).__name__} has no parameter or buffer named {name!r} (require_all=True)')
            continue
        src = src_tensors[name]
        if src.shape != tensor.shape:
            raise ValueError(f'copy_params_and_buffers: shape mismatch for {name!r}: source {list(src.shape)}, destination {list(tensor.shape)}')
        tensor.copy_(src.detach())

#----------------------------------------------------------------------------
# Context manager for gradient accumulation: with sync=False, a DistributedDataParallel
# module skips its gradient all-reduce (no_sync); any other case changes nothing.

@contextlib.contextmanager
def ddp_sync(module, sync):
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f'ddp_sync: expected a torch.nn.Module, got {type(module).__name__}')
    if sync or not isinstance(module, torch.nn.parallel.DistributedDataParallel):
        yield
    else:
        with module.no_sync():
            yield

#----------------------------------------------------------------------------
# Buffers that legitimately differ between processes (running averages over each rank's own
# batches): a module class lists them in a class attribute `rank_local_buffers`, a tuple of
# regexes each fullmatched against the names of that module's OWN buffers; torch's BatchNorm and
# InstanceNorm running statistics count as rank-local too.

_TORCH_RUNNING_STATS_CLASSES = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d, torch.nn.SyncBatchNorm,
    torch.nn.InstanceNorm1d, torch.nn.InstanceNorm2d, torch.nn.InstanceNorm3d)
_TORCH_RUNNING_STATS = ('running_mean', 'running_var', 'num_batches_tracked')

def rank_local_buffer_names(module):
    """Full names (as in module.named_buffers()) of the rank-local buffers of module and its submodules."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f'Expected a torch.nn.Module, got {type(module).__name__}')
    names = []
    for prefix, sub in module.named_modules():
        patterns = tuple(getattr(type(sub), 'rank_local_buffers', ()))
        if isinstance(sub, _TORCH_RUNNING_STATS_CLASSES):
            patterns += _TORCH_RUNNING_STATS
        for name, _buffer in sub.named_buffers(recurse=False):
            if any(re.fullmatch(pattern, name) for pattern in patterns):
                names.append(f'{prefix}.{name}' if prefix else name)
    return names

#----------------------------------------------------------------------------
# Check that every parameter and buffer equals the one on rank 0 (broadcast and compare;
# NaNs at the same place count as equal). Tensor names are '<ClassName>.<name>';
# ignore_regex skips the names it fully matches, ignore_names the names (as in
# named_buffers(), without the class) it lists. No-op outside torch.distributed.

def check_ddp_consistency(module, ignore_regex=None, ignore_names=()):
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    ignore_names = set(ignore_names)
    for name, tensor in named_params_and_buffers(module):
        fullname = type(module).__name__ + '.' + name
        if name in ignore_names or (ignore_regex is not None and re.fullmatch(ignore_regex, fullname)):
            continue
        tensor = tensor.detach()
        other = tensor.clone()
        torch.distributed.broadcast(tensor=other, src=0)
        equal = (tensor == other)
        if tensor.is_floating_point() or tensor.is_complex():
            equal = equal | (tensor.isnan() & other.isnan())
        if not bool(equal.all()):
            rank = torch.distributed.get_rank()
            raise RuntimeError(f'check_ddp_consistency: {fullname} on rank {rank} differs from rank 0 '
                f'({int((~equal).sum())} of {tensor.numel()} elements)')

#----------------------------------------------------------------------------
# Run module(*inputs) and print a table of its submodules (down to max_nesting levels
# below it): parameter count, buffer count, output shape and dtype. Each tensor is
# counted once, in the innermost module that owns it. skip_redundant drops rows with no
# own tensors whose outputs were all listed before. Returns the outputs.

def print_module_summary(module, inputs, max_nesting=3, skip_redundant=True):
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f'print_module_summary: expected a torch.nn.Module, got {type(module).__name__}')
    if isinstance(inputs, torch.Tensor) or not isinstance(inputs, (tuple, list)):
        raise TypeError('print_module_summary: inputs must be a tuple or list of arguments')
    entries, outputs = _record_module_calls(module, inputs, max_nesting)
    rows = _summary_rows(module, entries, skip_redundant)
    _print_table(rows)
    return outputs

#----------------------------------------------------------------------------
# Call the module with forward hooks that record (submodule, output tensors) for every call.

def _record_module_calls(module, inputs, max_nesting):
    names = {submodule: name for name, submodule in module.named_modules()}
    entries = []
    depth = [0]
    def pre_hook(_mod, _inputs):
        depth[0] += 1
    def post_hook(mod, _inputs, outputs):
        depth[0] -= 1
        if depth[0] <= max_nesting:
            entries.append((mod, names.get(mod, '?'), _flatten_tensors(outputs)))
    hooks = [mod.register_forward_pre_hook(pre_hook) for mod in module.modules()]
    hooks += [mod.register_forward_hook(post_hook) for mod in module.modules()]
    try:
        outputs = module(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return entries, outputs

#----------------------------------------------------------------------------
# Table rows [name, params, buffers, output shape, dtype], header and totals included.

def _summary_rows(module, entries, skip_redundant):
    seen_tensors = set()
    seen_outputs = set()
    rows = [['Module', 'Parameters', 'Buffers', 'Output shape', 'Datatype'], None]
    total_params = total_buffers = 0
    for mod, name, outputs in entries:
        params = [t for t in mod.parameters() if id(t) not in seen_tensors]
        buffers = [t for t in mod.buffers() if id(t) not in seen_tensors]
        new_outputs = [t for t in outputs if id(t) not in seen_outputs]
        seen_tensors.update(id(t) for t in params + buffers)
        seen_outputs.update(id(t) for t in outputs)
        is_top = mod is module
        if skip_redundant and not is_top and not params and not buffers and not new_outputs:
            continue
        num_params = sum(t.numel() for t in params)
        num_buffers = sum(t.numel() for t in buffers)
        total_params += num_params
        total_buffers += num_buffers
        label = type(mod).__name__ if is_top else name
        shown = outputs if outputs else [None]
        for idx, t in enumerate(shown):
            row_name = label if idx == 0 else f'{label}:{idx}'
            counts = [str(num_params) if num_params else '-', str(num_buffers) if num_buffers else '-'] if idx == 0 else ['', '']
            shape = str(list(t.shape)) if t is not None else '-'
            dtype = str(t.dtype).split('.')[-1] if t is not None else '-'
            rows.append([row_name] + counts + [shape, dtype])
    rows += [None, ['Total', str(total_params), str(total_buffers), '', '']]
    return rows

#----------------------------------------------------------------------------
# Print rows as left-aligned columns; None rows become separator lines.

def _print_table(rows):
    widths = [max(len(row[col]) for row in rows if row is not None) for col in range(len(rows[0]))]
    print()
    for row in rows:
        cells = ['-' * width for width in widths] if row is None else [cell.ljust(width) for cell, width in zip(row, widths)]
        print('  '.join(cells).rstrip())
    print()

#----------------------------------------------------------------------------
# All tensors in a nested structure of tuples, lists and dicts, in order.

def _flatten_tensors(obj):
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in _flatten_tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _flatten_tensors(item)]
    return []

#----------------------------------------------------------------------------
# Device by name: 'auto' = CUDA if available, else Apple MPS if available, else CPU.

def mps_available():
    backend = getattr(torch.backends, 'mps', None)
    return backend is not None and backend.is_available()

def resolve_device(name):
    """torch.device for 'auto', 'cuda', 'mps' or 'cpu'; ValueError naming the missing device."""
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'mps' if mps_available() else 'cpu'
    if name == 'cuda' and not torch.cuda.is_available():
        raise ValueError('no CUDA device is visible to PyTorch on this machine; use cpu')
    if name == 'mps' and not mps_available():
        raise ValueError('MPS is not available on this machine; use cpu')
    return torch.device(name)

#----------------------------------------------------------------------------
