# The training-state file for exact resume: module and optimizer states, counters, ADA and loss
# state, and every RNG state of every rank. Only tensors, numbers, strings, lists and dicts, so it
# loads with torch.load(weights_only=True). Writes are atomic (temp file + rename).

import contextlib
import os
import random
import tempfile

import numpy as np
import torch

#----------------------------------------------------------------------------
# RNG states of this process as weights_only-loadable values.

def capture_rng_state(device):
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = dict(
        torch_cpu=torch.get_rng_state(),
        numpy=dict(name=np_state[0], keys=torch.from_numpy(np_state[1].astype(np.int64)), pos=int(np_state[2]),
            has_gauss=int(np_state[3]), cached_gaussian=float(np_state[4])),
        python=dict(version=py_state[0], internal=list(py_state[1]), gauss=py_state[2]),
    )
    if device.type == 'cuda':
        state['torch_cuda'] = torch.cuda.get_rng_state(device)
    return state

def restore_rng_state(state, device):
    torch.set_rng_state(state['torch_cpu'])
    n = state['numpy']
    np.random.set_state((n['name'], n['keys'].numpy().astype(np.uint32), n['pos'], n['has_gauss'], n['cached_gaussian']))
    p = state['python']
    random.setstate((p['version'], tuple(p['internal']), p['gauss']))
    if device.type == 'cuda' and 'torch_cuda' in state:
        torch.cuda.set_rng_state(state['torch_cuda'], device)

@contextlib.contextmanager
def preserved_rng(device):
    """Run maintenance (image grids, metrics, standing statistics) without moving the training RNG streams.

    Yields the captured state (what a training-state file stores)."""
    state = capture_rng_state(device)
    try:
        yield state
    finally:
        restore_rng_state(state, device)

#----------------------------------------------------------------------------
# Save and load.

def state_file_name(cur_nimg):
    return f'training-state-{cur_nimg // 1000:06d}.pt'

def save_training_state(path, state):
    """Write `state` (a dict of tensors and plain values) atomically to `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise

def load_training_state(path):
    """Load a training-state file without unpickling code; one clear error for a bad file."""
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except FileNotFoundError:
        raise ValueError(f'Training state {path} does not exist.') from None
    except Exception as e: # torch.load raises several types for a damaged file.
        raise ValueError(f'Training state {path} cannot be read ({type(e).__name__}: {e}); '
            'continue from an earlier training-state-*.pt of the run instead.') from None
    missing = [k for k in ('G', 'D', 'G_ema', 'G_opt', 'D_opt', 'cur_nimg', 'cur_tick', 'batch_idx', 'rng') if k not in state]
    if missing:
        raise ValueError(f'Training state {path} lacks {", ".join(missing)}; it was not written by this training loop.')
    return state

#----------------------------------------------------------------------------
