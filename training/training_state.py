# The state of a run: the counters and objects that travel from step to step (networks, optimizers,
# augment pipe, loss), saved to and restored from one training-state file for exact resume. The
# file holds only tensors, numbers, strings, lists and dicts, so it loads with
# torch.load(weights_only=True); it is written atomically (dnnlib.util.atomic_write).
#
# File layout: G, D, G_ema (state dicts), <name>_opt for each optimizer (G_opt, D_opt), augment_pipe
# (state dict or None), cur_nimg, cur_tick, batch_idx, and per rank (lists in rank order): rng (RNG
# states as training left them) and ranks (the loss state and the rank-local buffers, see
# torch_utils.misc.rank_local_buffer_names). `loss` repeats rank 0's loss state for readers.

import contextlib
import glob
import os
import random
import re

import numpy as np
import torch

import dnnlib
from torch_utils import misc

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
# Everything a run carries from step to step.

class RunState:
    def __init__(self, G, D, G_ema, augment_pipe, loss, optimizers):
        self.G = G                          # Generator being trained.
        self.D = D                          # Discriminator being trained.
        self.G_ema = G_ema                  # Moving average of G's weights.
        self.augment_pipe = augment_pipe    # AugmentPipe or None.
        self.loss = loss                    # training.loss.Loss; owns its running state.
        self.optimizers = dict(optimizers)  # Network name ('G', 'D') -> optimizer.
        self.cur_nimg = 0                   # Real images shown to D so far (all ranks).
        self.cur_tick = 0                   # Current tick.
        self.batch_idx = 0                  # Minibatches completed.

    # The networks by the names the file uses.
    def networks(self):
        return dict(G=self.G, D=self.D, G_ema=self.G_ema)

    # This process's own part: RNG state, loss state and rank-local buffers, as CPU tensors.
    def _rank_part(self, rng):
        buffers = {}
        for name, module in self.networks().items():
            own = dict(module.named_buffers())
            buffers[name] = {b: own[b].detach().cpu().clone() for b in misc.rank_local_buffer_names(module)}
        return dict(rng=rng, loss=self.loss.state_dict(), buffers=buffers)

    def save(self, path, rng, rank=0, num_gpus=1, keep=None):
        """Write the training state (collective: every rank calls it); `rng` is this rank's RNG state as
        training left it. Rank 0 writes `path` and keeps the newest `keep` state files (None = all)."""
        parts = [self._rank_part(rng)]
        if num_gpus > 1:
            parts = [None] * num_gpus
            torch.distributed.all_gather_object(parts, self._rank_part(rng))
        if rank != 0:
            return
        state = {name: module.state_dict() for name, module in self.networks().items()}
        state.update({f'{name}_opt': opt.state_dict() for name, opt in self.optimizers.items()})
        state.update(augment_pipe=(self.augment_pipe.state_dict() if self.augment_pipe is not None else None),
            loss=parts[0]['loss'], cur_nimg=self.cur_nimg, cur_tick=self.cur_tick + 1, batch_idx=self.batch_idx,
            rng=[part['rng'] for part in parts], ranks=[dict(loss=part['loss'], buffers=part['buffers']) for part in parts])
        with dnnlib.util.atomic_write(path) as f:
            torch.save(state, f)
        if keep:
            for old in list_state_files(os.path.dirname(path))[:-keep]:
                os.remove(old)

    def load(self, path, rank=0, device=torch.device('cpu')):
        """Restore everything from a training-state file, with this rank's own RNG, loss state and buffers."""
        state = load_training_state(path)
        for name, module in self.networks().items():
            module.load_state_dict(state[name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[f'{name}_opt'])
        if self.augment_pipe is not None and state.get('augment_pipe') is not None:
            self.augment_pipe.load_state_dict(state['augment_pipe'])
        ranks = state.get('ranks') # Files written before per-rank parts existed hold rank 0's loss state only.
        mine = ranks[rank] if ranks is not None else dict(loss=state['loss'], buffers={})
        self.loss.load_state_dict(mine['loss'])
        with torch.no_grad():
            for name, buffers in mine['buffers'].items():
                own = dict(self.networks()[name].named_buffers())
                for buffer_name, value in buffers.items():
                    own[buffer_name].copy_(value)
        self.cur_nimg, self.cur_tick, self.batch_idx = int(state['cur_nimg']), int(state['cur_tick']), int(state['batch_idx'])
        restore_rng_state(state['rng'][rank], device)

#----------------------------------------------------------------------------
# Files: training-state-<kimg:06d>.pt in the run directory.

def state_file_name(cur_nimg):
    return f'training-state-{cur_nimg // 1000:06d}.pt'

def list_state_files(run_dir):
    """The training-state files of a run directory, oldest first."""
    paths = glob.glob(os.path.join(run_dir, 'training-state-*.pt'))
    return sorted(p for p in paths if re.fullmatch(r'training-state-\d+\.pt', os.path.basename(p)))

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
