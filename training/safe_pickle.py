# Loading network pickles without running code from the file.
#
# 1. A restricted unpickler allows only the globals that tensors, storages, numpy arrays and
#    scalars, OrderedDict, EasyDict and the persistence reconstructor need; any other global
#    stops the load (SafeLoadError naming it). Storages are read with
#    torch.load(weights_only=True). Persistent objects become inert PersistentRecords and
#    plain torch.nn containers (ModuleList, Linear, ...) inert ObjectRecords: nothing is
#    constructed from the file's classes, and the embedded module source is never executed.
# 2. Each record is rebuilt with this project's class when its module source is known
#    (training.source_fingerprints: a fingerprint of the parsed, never executed, source):
#    the class is constructed from the recorded constructor arguments, then the file's
#    parameters, buffers and plain attributes are put in place after a structural check
#    (the same submodules with the same classes, the same parameter and buffer names and
#    shapes). Anything unknown or different is a SafeLoadError saying what.
# See docs/pickles.md.

import _compat_pickle
import collections
import inspect
import io
import pickle
import random
import types

import numpy as np
import torch

import dnnlib
from torch_utils import persistence
from training import source_fingerprints

#----------------------------------------------------------------------------
# The file cannot be loaded without running code from it; the message is one line saying why.

class SafeLoadError(Exception):
    pass

# A TensorFlow-era pickle (dnnlib.tflib objects).
class TensorFlowPickleError(Exception):
    pass

#----------------------------------------------------------------------------
# Inert stand-ins for the objects of a pickle that only code could rebuild.

class PersistentRecord:
    def __init__(self, meta):
        self.module_src = meta['module_src']
        self.class_name = meta['class_name']
        self.state = meta['state']

    def __repr__(self):
        return f'<pickled persistent object of class {self.class_name}>'

# Base of the stand-ins for plain torch.nn classes; pickle creates them with __new__ and
# hands them their state, which they only keep.
class ObjectRecord:
    global_name = None

    def __new__(cls, *args, **kwargs): # pylint: disable=unused-argument
        obj = super().__new__(cls)
        obj.state = None
        return obj

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f'<pickled {self.global_name} object>'

_object_record_classes = dict()

# The record class standing in for one plain torch.nn class (one per name).
def _object_record_class(global_name):
    if global_name not in _object_record_classes:
        _object_record_classes[global_name] = type('ObjectRecord', (ObjectRecord,), dict(global_name=global_name))
    return _object_record_classes[global_name]

#----------------------------------------------------------------------------
# Replacements for two globals: a storage is read with torch.load(weights_only=True), not with
# torch's own _load_from_bytes (which unpickles with weights_only=False), and a persistent
# object becomes a record instead of executing its module source (after the import hooks
# registered in this process, as in persistence._reconstruct_persistent_obj).

def _load_storage_from_bytes(raw):
    return torch.load(io.BytesIO(raw), map_location='cpu', weights_only=True)

# _reconstruct_persistent_obj's replacement: check the meta, return a PersistentRecord.
def _record_persistent_obj(meta):
    if isinstance(meta, dict):
        for hook in persistence._import_hooks: # pylint: disable=protected-access
            meta = hook(dnnlib.EasyDict(meta)) # The process's own import hooks (code of this process, not of the file).
    if not isinstance(meta, dict) or meta.get('type') != 'class' or meta.get('version') != persistence._version: # pylint: disable=protected-access
        raise pickle.UnpicklingError(f'unsupported persistent object meta (type {meta.get("type")!r}, version {meta.get("version")!r})' if isinstance(meta, dict) else 'persistent object meta is not a dict')
    if not isinstance(meta.get('module_src'), str) or not isinstance(meta.get('class_name'), str) or 'state' not in meta:
        raise pickle.UnpicklingError('persistent object meta lacks module_src, class_name or state')
    return PersistentRecord(meta)

#----------------------------------------------------------------------------
# The allow-list: (module, name) => the object the unpickler hands out for it.

def _allowed_globals():
    allowed = {
        ('torch._utils', '_rebuild_tensor'):                 torch._utils._rebuild_tensor, # pylint: disable=protected-access
        ('torch._utils', '_rebuild_tensor_v2'):              _without_hooks(torch._utils._rebuild_tensor_v2, 5), # pylint: disable=protected-access
        ('torch._utils', '_rebuild_parameter'):              _without_hooks(torch._utils._rebuild_parameter, 2), # pylint: disable=protected-access
        ('torch._utils', '_rebuild_parameter_with_state'):   _without_hooks(torch._utils._rebuild_parameter_with_state, 2), # pylint: disable=protected-access
        ('torch._tensor', '_rebuild_from_type_v2'):          torch._tensor._rebuild_from_type_v2, # pylint: disable=protected-access
        ('torch._tensor', 'Tensor'):                         torch.Tensor,
        ('torch.nn.parameter', 'Parameter'):                 torch.nn.Parameter,
        ('torch.storage', '_load_from_bytes'):               _load_storage_from_bytes,
        ('torch', 'Size'):                                   torch.Size,
        ('torch', 'device'):                                 torch.device,
        ('collections', 'OrderedDict'):                      collections.OrderedDict,
        ('dnnlib.util', 'EasyDict'):                         dnnlib.EasyDict,
        ('dnnlib', 'EasyDict'):                              dnnlib.EasyDict,
        ('builtins', 'set'):                                 set,
        ('builtins', 'frozenset'):                           frozenset,
        ('builtins', 'complex'):                             complex,
        ('builtins', 'slice'):                               slice,
        ('builtins', 'bytearray'):                           bytearray,
        ('_codecs', 'encode'):                               _latin1_encode,
        ('numpy', 'ndarray'):                                np.ndarray,
        ('numpy', 'dtype'):                                  np.dtype,
        ('torch_utils.persistence', '_reconstruct_persistent_obj'): _record_persistent_obj,
    }
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray # pylint: disable=protected-access
    for numpy_core in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        allowed[(numpy_core, '_reconstruct')] = multiarray._reconstruct # pylint: disable=protected-access
        allowed[(numpy_core, 'scalar')] = multiarray.scalar
    numeric = np._core.numeric if hasattr(np, '_core') else np.core.numeric # pylint: disable=protected-access
    if hasattr(numeric, '_frombuffer'): # Protocol-5 arrays (numpy >= 1.16); never an object array.
        allowed[('numpy.core.numeric', '_frombuffer')] = allowed[('numpy._core.numeric', '_frombuffer')] = numeric._frombuffer # pylint: disable=protected-access
    return allowed

# A tensor rebuild function that refuses backward hooks (argument `index`): a network file
# has none, and they would be called during training.
def _without_hooks(func, index):
    def rebuild(*args):
        if len(args) > index and args[index]:
            raise SafeLoadError('it attaches backward hooks to a tensor, which a network file never does')
        return func(*args)
    return rebuild

# Protocol-2 pickles store bytes as _codecs.encode(text, 'latin1'); nothing else is accepted.
def _latin1_encode(text, encoding='latin1'):
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
        raise pickle.UnpicklingError('_codecs.encode is only allowed for latin1 text')
    return text.encode('latin1')

_ALLOWED = None

#----------------------------------------------------------------------------
# The restricted unpickler: pickle's pure-Python unpickler (so that BUILD can be checked too:
# it must never set attributes of a class, function or module, which could change code this
# process runs later) with find_class limited to the allow-list.

def _load_build(unpickler):
    target = unpickler.stack[-2] # [..., object, state]
    if isinstance(target, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType)):
        raise SafeLoadError(f'it sets attributes of {getattr(target, "__qualname__", type(target).__name__)}, which a network file never does')
    pickle._Unpickler.load_build(unpickler) # pylint: disable=protected-access

# find_class answers only from the allow-list (or with record classes); persistent IDs are refused.
class _SafeUnpickler(pickle._Unpickler): # pylint: disable=protected-access
    dispatch = dict(pickle._Unpickler.dispatch) # pylint: disable=protected-access
    dispatch[pickle.BUILD[0]] = _load_build

    def find_class(self, module, name):
        global _ALLOWED # pylint: disable=global-statement
        if _ALLOWED is None:
            _ALLOWED = _allowed_globals()
        # Python 2 names (protocol 2 pickles), mapped as pickle's own find_class does.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module.startswith('dnnlib.tflib'):
            raise TensorFlowPickleError(f'{module}.{name}')
        obj = _ALLOWED.get((module, name))
        if obj is not None:
            return obj
        if module == 'torch' and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module.startswith('torch.nn.modules.') and '.' not in name:
            cls = getattr(torch.nn.modules, module.split('.')[3], None) if module.count('.') == 3 else None
            cls = getattr(cls, name, None)
            if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
                return _object_record_class(f'{module}.{name}')
        raise SafeLoadError(f'it refers to the global {module}.{name}, which a network file does not need')

    def persistent_load(self, pid):
        raise pickle.UnpicklingError('persistent IDs are not used by network pickles')

#----------------------------------------------------------------------------
# What rebuilding one top-level object found: the known sources it came from ('family
# (release)') and notes on buffers that today's class computes itself.

class RebuildReport:
    def __init__(self):
        self.sources = set()
        self.notes = []

    def describe(self):
        text = ', '.join(sorted(self.sources))
        return text + (f' ({"; ".join(self.notes)})' if self.notes else '')

#----------------------------------------------------------------------------
# Unpickle with the restricted unpickler and rebuild every persistent object at the top level
# of the resulting dict. Returns (data, recognised), recognised = {key: RebuildReport}.
# Other values are checked to be plain data. Raises SafeLoadError, TensorFlowPickleError, pickle/EOF errors for bad files.

def load(raw):
    obj = _SafeUnpickler(io.BytesIO(raw)).load()
    if isinstance(obj, (PersistentRecord, ObjectRecord)):
        return obj, {} # Not a dict of networks: the caller says so.
    if not isinstance(obj, dict):
        return _plain(obj, 'the file'), {}
    data, recognised = {}, {}
    for key, value in obj.items():
        where = str(key)
        if isinstance(value, PersistentRecord):
            recognised[key] = RebuildReport()
            data[key] = rebuild(value, where, recognised[key])
        elif isinstance(value, ObjectRecord):
            raise SafeLoadError(f'{where} is a plain {value.global_name}, not one of the persistent network classes this project rebuilds')
        else:
            data[key] = _plain(value, where)
    return data, recognised

#----------------------------------------------------------------------------
# Rebuild one persistent record as this project's class: construct it from the recorded
# constructor arguments (without touching the global random state), then restore its state.

def rebuild(record, where, report):
    cls, entry = _known_class(record, where)
    report.sources.add(f'{entry["family"]} ({entry["release"]})')
    state = record.state if isinstance(record.state, dict) else {}
    init_args = _plain(state.get('_init_args', None), f'{where} constructor arguments')
    init_kwargs = _plain(state.get('_init_kwargs', None), f'{where} constructor arguments')
    if not isinstance(init_args, (tuple, list)) or not isinstance(init_kwargs, dict):
        raise SafeLoadError(f'{where} ({record.class_name}) has no recorded constructor arguments to rebuild it from')
    init_kwargs = upgrade_kwargs(cls, dict(init_kwargs))
    try:
        with preserved_random_state():
            obj = cls(*init_args, **init_kwargs)
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError, AssertionError) as err:
        raise SafeLoadError(f'{where}: its recorded constructor arguments do not build {cls.__module__}.{cls.__name__} '
            f'({type(err).__name__}: {" ".join(str(err).split())})') from err
    _restore_state(obj, record.state, where, report, entry)
    return obj

# The class of this installation for a record, and the entry of its source; SafeLoadError
# when the source is not known or the class is missing.
_entry_cache = dict()

def _known_class(record, where):
    src = record.module_src
    if src not in _entry_cache:
        try:
            _entry_cache[src] = source_fingerprints.lookup(src)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
            raise SafeLoadError(f'{where} ({record.class_name}): its embedded module source is not valid Python ({type(err).__name__})') from err
    entry = _entry_cache[src]
    if entry is None:
        digest = source_fingerprints.fingerprint(src)[:12]
        raise SafeLoadError(f'{where} ({record.class_name}) embeds module source that matches no release this project knows '
            f'(fingerprint {digest}): its code was written or changed by someone else')
    cls = source_fingerprints.resolve_class(entry, record.class_name)
    if cls is None:
        raise SafeLoadError(f'{where}: class {record.class_name} of the known source {entry["path"]} ({entry["release"]}) '
            f'has no counterpart in this installation\'s {entry["module"]}')
    return cls, entry

#----------------------------------------------------------------------------
# StyleGAN3-era generators take the synthesis keywords directly; a class that has a
# synthesis_kwargs parameter (and no **kwargs) gets them moved there.

def upgrade_kwargs(cls, kwargs):
    if persistence.is_persistent(cls):
        cls = cls.__mro__[1] # The decorated class: its __init__ has the real signature.
    params = inspect.signature(cls.__init__).parameters
    if 'synthesis_kwargs' not in params or any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return kwargs
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in params}
    if extra:
        kwargs['synthesis_kwargs'] = dict(kwargs.get('synthesis_kwargs', {}), **extra)
    return kwargs

#----------------------------------------------------------------------------
# Restore a pickled object state into a constructed object: parameters (same names, same
# shapes), buffers, submodules (same names and classes, recursively), and the plain attributes
# the object has. Constructor arguments and torch's hook tables stay as built; attributes
# today's class does not have are left out (no code of this project reads them). Buffers must
# match as strictly as parameters when the source is this installation's own; a source of an
# earlier release may differ in buffers that today's class computes in its constructor (e.g.
# filter constants): the shared ones are restored, the others noted in the report.

_KEEP_BUILT = frozenset(['_init_args', '_init_kwargs', '_parameters', '_buffers', '_modules'])

def _restore_state(obj, state, where, report, entry):
    if not isinstance(state, dict):
        raise SafeLoadError(f'{where}: its pickled state is a {type(state).__name__}, not a dict of attributes')
    if isinstance(obj, torch.nn.Module):
        _restore_tensors(obj._parameters, state.get('_parameters', {}), where, 'parameters') # pylint: disable=protected-access
        buffers = state.get('_buffers', {})
        if entry['release'] != source_fingerprints.THIS_INSTALLATION and isinstance(buffers, dict):
            buffers = _reconcile_buffers(obj._buffers, buffers, where, report) # pylint: disable=protected-access
        _restore_tensors(obj._buffers, buffers, where, 'buffers') # pylint: disable=protected-access
        _restore_children(obj, state.get('_modules', {}), where, report, entry)
    for key, value in state.items():
        if key in _KEEP_BUILT or not isinstance(key, str) or (key.startswith('_') and key.endswith('hooks')):
            continue
        if key in obj.__dict__:
            obj.__dict__[key] = _plain(value, f'{where}.{key}')

# The file's buffers of an earlier release, reduced to those today's class has with the same
# shape; today's constructed values for the rest (noted in the report).
def _reconcile_buffers(ours, theirs, where, report):
    same = lambda name: isinstance(theirs.get(name), torch.Tensor) and ours.get(name) is not None and theirs[name].shape == ours[name].shape
    own = sorted(name for name in ours if not same(name))
    unused = sorted(name for name in theirs if name not in ours)
    if own or unused:
        report.notes.append(f'{where}: ' + '; '.join(([f'buffers computed by today\'s class: {", ".join(own)}'] if own else [])
            + ([f'unused buffers of the file: {", ".join(unused)}'] if unused else [])))
    return {name: (theirs[name] if same(name) else ours[name]) for name in ours}

# Put the file's parameters or buffers in place after checking names, shapes and kinds.
def _restore_tensors(ours, theirs, where, kind):
    if not isinstance(theirs, dict):
        raise SafeLoadError(f'{where}: its pickled {kind} are a {type(theirs).__name__}, not a dict')
    if set(ours) != set(theirs):
        _mismatch(where, kind, sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs)))
    for name, tensor in theirs.items():
        built = ours[name]
        if tensor is None or built is None:
            if (tensor is None) != (built is None):
                raise SafeLoadError(f'{where}.{name}: the file has {tensor!r:.40} where this installation\'s class has {type(built).__name__}')
            continue
        if not isinstance(tensor, torch.Tensor):
            raise SafeLoadError(f'{where}.{name} is a {type(tensor).__name__}, not a tensor')
        if tensor.shape != built.shape or tensor.is_floating_point() != built.is_floating_point():
            raise SafeLoadError(f'{where}.{name} is {tensor.dtype} {list(tensor.shape)} in the file but {built.dtype} {list(built.shape)} in this installation\'s class')
        if kind == 'parameters' and not isinstance(tensor, torch.nn.Parameter):
            tensor = torch.nn.Parameter(tensor, requires_grad=tensor.requires_grad)
        ours[name] = tensor

# Restore each submodule: same names, and the class today's constructor built there.
def _restore_children(obj, theirs, where, report, parent_entry):
    ours = obj._modules # pylint: disable=protected-access
    if not isinstance(theirs, dict):
        raise SafeLoadError(f'{where}: its pickled submodules are a {type(theirs).__name__}, not a dict')
    if set(ours) != set(theirs):
        _mismatch(where, 'submodules', sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs)))
    for name, record in theirs.items():
        child, sub = ours[name], f'{where}.{name}'
        if record is None or child is None:
            if (record is None) != (child is None):
                raise SafeLoadError(f'{sub}: the file has {record!r} where this installation\'s class has {type(child).__name__}')
        elif isinstance(record, PersistentRecord):
            cls, entry = _known_class(record, sub)
            if type(child) is not cls:
                raise SafeLoadError(f'{sub} is a {record.class_name} in the file but a {type(child).__name__} in this installation\'s class')
            report.sources.add(f'{entry["family"]} ({entry["release"]})')
            _restore_state(child, record.state, sub, report, entry)
        elif isinstance(record, ObjectRecord):
            if persistence.is_persistent(child) or record.global_name != f'{type(child).__module__}.{type(child).__qualname__}':
                raise SafeLoadError(f'{sub} is a {record.global_name} in the file but a {type(child).__name__} in this installation\'s class')
            _restore_state(child, record.state, sub, report, parent_entry)
        else:
            raise SafeLoadError(f'{sub} is a {type(record).__name__} in the file, not a module')

# One-line error for names present on one side only.
def _mismatch(where, kind, extra, missing):
    parts = ([f'the file has {", ".join(extra)}'] if extra else []) + ([f'lacks {", ".join(missing)}'] if missing else [])
    raise SafeLoadError(f'{where}: its {kind} do not match this installation\'s class ({"; ".join(parts)})')

#----------------------------------------------------------------------------
# Check that a value is plain data (numbers, strings, tensors, arrays, containers of them;
# no records, modules or other objects) and return it; is_plain() says whether it is.

def is_plain(value):
    try:
        _plain(value, '')
        return True
    except (SafeLoadError, RecursionError):
        return False


_PLAIN_LEAVES = (type(None), bool, int, float, complex, str, bytes, bytearray, slice, torch.Tensor, np.ndarray, np.generic,
    torch.dtype, torch.device)

def _plain(value, where):
    if isinstance(value, _PLAIN_LEAVES):
        if isinstance(value, np.ndarray) and value.dtype == object:
            for item in value.flat:
                _plain(item, where)
        return value
    if isinstance(value, dict):
        for key, item in value.items():
            _plain(key, where)
            _plain(item, where)
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _plain(item, where)
        return value
    raise SafeLoadError(f'{where} holds a {value!r:.60} where plain data is expected')

#----------------------------------------------------------------------------
# Run a block without changing the global random states (torch CPU, numpy, random): our
# constructors initialise weights randomly, which the executing path does not do.

class preserved_random_state: # pylint: disable=invalid-name
    def __enter__(self):
        self.states = (torch.random.get_rng_state(), np.random.get_state(), random.getstate())

    def __exit__(self, *exc):
        torch.random.set_rng_state(self.states[0])
        np.random.set_state(self.states[1])
        random.setstate(self.states[2])

#----------------------------------------------------------------------------
