# Starting a training run: devices, run directories, and the processes (one, spawned, or torchrun's).

import json
import os
import pickle
import re
import socket
import sys
import tempfile

import torch

import dnnlib
from torch_utils import misc
from torch_utils import precision

#----------------------------------------------------------------------------
# Device by name; 'auto' = CUDA, else Apple MPS, else CPU.

def resolve_device(name):
    try:
        return misc.resolve_device(name).type
    except ValueError as err:
        raise ValueError(f'--device={name}: {err}.') from None

#----------------------------------------------------------------------------
# torchrun sets these for every process it starts (any number of nodes).

def torchrun_env():
    """(rank, local_rank, world_size) when started by torchrun, else None."""
    env = os.environ
    if not all(k in env for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')):
        return None
    return int(env['RANK']), int(env['LOCAL_RANK']), int(env['WORLD_SIZE'])

#----------------------------------------------------------------------------
# Run directories: <outdir>/<id:05d>-<desc>.

def describe(dataset_name, opts, c):
    desc = f'{dataset_name}-{opts.cfg}-gpus{c.num_gpus}-batch{c.batch_size}'
    if opts.cond:
        desc += '-cond'
    if opts.mirror:
        desc += '-mirror'
    if c.get('loss_kwargs', {}).get('r1_gamma') is not None:
        desc += f'-gamma{c.loss_kwargs.r1_gamma:g}'
    return re.sub(r'[^0-9a-zA-Z-._]', '_', desc)

def _run_dirs(outdir):
    if not os.path.isdir(outdir):
        return []
    return sorted(d for d in os.listdir(outdir) if re.match(r'^\d+-', d) and os.path.isdir(os.path.join(outdir, d)))

def latest_training_state(run_dir):
    """Path of the newest training-state-NNNNNN.pt in run_dir, or None."""
    from training import training_state
    states = training_state.list_state_files(run_dir)
    return states[-1] if states else None

def _comparable(c):
    # The options that define a run; where it lives and how it was (re)started do not.
    c = json.loads(json.dumps(c))
    for key in ('run_dir', 'resume_state'):
        c.pop(key, None)
    return c

def find_unfinished_run(outdir, c):
    """A run in outdir with exactly these options whose latest state has not reached total_kimg; sets c.resume_state."""
    for name in reversed(_run_dirs(outdir)):
        run_dir = os.path.join(outdir, name)
        try:
            with open(os.path.join(run_dir, 'training_options.json')) as f:
                old = json.load(f)
        except (OSError, ValueError):
            continue
        state = latest_training_state(run_dir)
        if state is None or _comparable(old) != _comparable(c):
            continue
        if state_nimg(state) < round(c.total_kimg * 1000):
            c.resume_state = state
            return run_dir
    return None

# cur_nimg of a training-state file; memory-mapped, so the weights are not read. Unreadable = 0.
def state_nimg(path):
    try:
        return int(torch.load(path, map_location='cpu', weights_only=True, mmap=True)['cur_nimg'])
    except (OSError, RuntimeError, ValueError, KeyError, pickle.UnpicklingError):
        return 0

def remove_partial_files(run_dir):
    """Delete the temporary files of writes that a killed run left unfinished (never a complete file)."""
    for name in os.listdir(run_dir):
        if name.endswith('.tmp') or name.endswith('.tmp.png'):
            os.remove(os.path.join(run_dir, name))

def make_run_dir(outdir, desc, c, run_dir=None, command=None):
    """Create the next numbered run directory (or reuse run_dir), take its lock (RunDirLock), and write
    training_options.json (and command.json, train.py's own options, for a new run). Returns the lock."""
    new = run_dir is None
    if new:
        ids = [int(re.match(r'^(\d+)', d).group(1)) for d in _run_dirs(outdir)]
        run_dir = os.path.join(outdir, f'{max(ids, default=-1) + 1:05d}-{desc}')
        os.makedirs(run_dir)
    lock = RunDirLock(run_dir)
    remove_partial_files(run_dir)
    c.run_dir = run_dir
    with dnnlib.util.atomic_write(os.path.join(run_dir, 'training_options.json'), 'w') as f:
        json.dump(c, f, indent=2)
    if new and command is not None:
        with dnnlib.util.atomic_write(os.path.join(run_dir, 'command.json'), 'w') as f:
            json.dump(command, f, indent=2)
    return lock

def read_command(run_dir):
    """train.py's options of the run (command.json), or None for runs started before it was written."""
    try:
        with open(os.path.join(run_dir, 'command.json')) as f:
            return json.load(f)
    except FileNotFoundError:
        return None

#----------------------------------------------------------------------------
# One process trains in a run directory at a time: <run_dir>/run.lock holds the owner's pid and host
# while it runs. A lock whose process is gone (killed) is taken over; a live owner is an error.

class RunDirLock:
    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, 'run.lock')
        self.owner = f'{os.getpid()} {socket.gethostname()}'
        for _attempt in range(3):
            if self._try_create():
                return
            pid, host = self._read_owner()
            if host == socket.gethostname() and pid is not None and not _process_alive(pid):
                _remove_if_exists(self.path) # Stale: its process was killed.
                continue
            raise ValueError(f'{run_dir} is in use by process {pid} on {host} ({self.path}); '
                'wait for it to finish, or stop it; delete the lock file only if that process is gone.')
        raise ValueError(f'Cannot take the lock {self.path}; another process keeps taking it.')

    # Create the lock file with its content in one step (link fails if it exists).
    def _try_create(self):
        fd, tmp = tempfile.mkstemp(dir=self.run_dir, prefix='.run.lock.', suffix='.tmp')
        try:
            with os.fdopen(fd, 'w') as f:
                f.write(self.owner + '\n')
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            os.remove(tmp)

    def _read_owner(self):
        try:
            with open(self.path) as f:
                pid, host = f.read().split()
            return int(pid), host
        except (OSError, ValueError):
            return None, 'an unknown host'

    def release(self):
        """Remove the lock if this process still holds it."""
        try:
            with open(self.path) as f:
                if f.read().strip() == self.owner:
                    os.remove(self.path)
        except FileNotFoundError:
            pass

def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True # Someone else's process.
    return True

def _remove_if_exists(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass

def print_summary(c, run_dir):
    print()
    print('Training options:')
    print(json.dumps({key: value for key, value in c.items() if key not in ('abort_fn', 'progress_fn')}, indent=2))
    print()
    print(f'Output directory:    {run_dir}')
    print(f'Continue from state: {c.get("resume_state")}')
    print(f'Number of processes: {c.num_gpus} on {c.device}')
    print(f'Batch size:          {c.batch_size} images ({c.batch_gpu} per process per step)')
    print(f'Training duration:   {c.total_kimg} kimg')
    print(f'Dataset path:        {c["training_set_kwargs"].get("path")}')
    print(f'Dataset resolution:  {c["training_set_kwargs"].get("resolution")}')
    print(f'Dataset labels:      {c["training_set_kwargs"].get("use_labels")}')
    synthesis_kwargs = c['G_kwargs'].get('synthesis_kwargs', c['G_kwargs']) # StyleGAN3-T/R keep them in G_kwargs.
    if 'num_fp16_res' in synthesis_kwargs: # Families with mixed-precision blocks.
        print(f'Mixed precision:     {precision.describe_mixed_precision(c["device"], synthesis_kwargs["num_fp16_res"], synthesis_kwargs.get("mixed_dtype"))}')
    print()

#----------------------------------------------------------------------------
# Processes: torch.distributed with NCCL on CUDA and gloo elsewhere.

# Exit status of a run stopped by a NaN or Inf loss (the message is printed by rank 0).
DIVERGED_EXIT_CODE = 3

def _backend(device):
    return 'nccl' if device == 'cuda' else 'gloo'

def _run_rank(rank, local_rank, c):
    from torch_utils import training_stats
    from training import training_loop
    if c.device == 'cuda':
        torch.cuda.set_device(local_rank)
    sync_device = torch.device('cuda', local_rank) if c.num_gpus > 1 and c.device == 'cuda' else None
    training_stats.init_multiprocessing(rank=rank, sync_device=sync_device)
    logger = dnnlib.util.Logger(os.path.join(c.run_dir, 'log.txt'), file_mode='a') if rank == 0 else None
    if rank == 0:
        print_summary(c, c.run_dir)
    try:
        training_loop.training_loop(rank=rank, **c)
        _barrier()
    except training_loop.TrainingDivergedError as e:
        if rank == 0:
            print(f'Error: {e}', file=sys.stderr) # Into log.txt too.
        _barrier() # Every rank stops at the same tick.
        raise SystemExit(DIVERGED_EXIT_CODE) from None
    finally:
        if logger is not None:
            logger.close()

# All processes wait for each other before leaving: a gloo process that exits while another still
# talks to it makes that one abort.
def _barrier():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()

def run_spawned_process(rank, num_processes, device, init_file, fn, *args):
    """One of `num_processes` processes of torch.multiprocessing.spawn on this machine: share the CPU
    threads, join the process group (file:// rendezvous at `init_file`), run fn(rank, *args), wait for
    the others, leave the group and end without Python's finalization (exit_finished_process)."""
    share_cpu_threads(device, num_processes)
    torch.distributed.init_process_group(backend=_backend(device), init_method=f'file://{init_file}',
        rank=rank, world_size=num_processes)
    try:
        fn(rank, *args)
        _barrier()
    finally:
        torch.distributed.destroy_process_group()
    exit_finished_process()

def _spawned_training(rank, c):
    _run_rank(rank, rank, c)

def share_cpu_threads(device, num_processes):
    """Give each of `num_processes` CPU processes on this machine an equal share of torch's threads.

    A spawned process starts with as many threads as the machine has cores, so N processes would run
    N times too many and slow each other down. An explicit OMP_NUM_THREADS is left as it is (torchrun
    sets it to 1 for several processes per node).
    """
    if device == 'cpu' and num_processes > 1 and 'OMP_NUM_THREADS' not in os.environ:
        torch.set_num_threads(max(torch.get_num_threads() // num_processes, 1))

def exit_finished_process():
    """End a distributed process (training, metrics) that has finished and closed its files, without
    Python's finalization.

    After the last barrier, a gloo worker thread can still be releasing the last collectives' tensors,
    which takes the interpreter lock; a worker that finds the interpreter finalizing aborts the whole
    process (SIGABRT, 'terminate called without an active exception', seen after 'Exiting...' under
    CPU load; the backtrace runs through ProcessGroupGloo::runLoop and ~AsyncBarrierWork).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

def launch_training(c, run_dir):
    """Run the training loop in this process, or spawn one process per GPU / CPU worker."""
    c = dnnlib.EasyDict(c, run_dir=run_dir)
    if c.num_gpus == 1:
        _run_rank(0, 0, c)
        return
    with tempfile.TemporaryDirectory() as temp_dir:
        init_file = os.path.abspath(os.path.join(temp_dir, '.torch_distributed_init'))
        try:
            torch.multiprocessing.spawn(fn=run_spawned_process, args=(c.num_gpus, c.device, init_file, _spawned_training, c),
                nprocs=c.num_gpus)
        except torch.multiprocessing.ProcessExitedException as e:
            if e.exit_code == DIVERGED_EXIT_CODE:
                raise SystemExit(DIVERGED_EXIT_CODE) from None
            raise

def init_torchrun(device):
    """Join torchrun's process group; returns (rank, local_rank, world_size)."""
    rank, local_rank, world_size = torchrun_env()
    if device == 'cuda':
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group(backend=_backend(device), init_method='env://')
    return rank, local_rank, world_size

def broadcast_object(value, rank):
    """Rank 0's value (a picklable object), on every rank."""
    obj = [value if rank == 0 else None]
    torch.distributed.broadcast_object_list(obj, src=0)
    return obj[0]

def run_torchrun_rank(c, rank, local_rank):
    try:
        _run_rank(rank, local_rank, c)
    finally:
        torch.distributed.destroy_process_group()

#----------------------------------------------------------------------------
