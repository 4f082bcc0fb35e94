# Persistent classes: objects that pickle the source code of the module that defines
# their class, so a pickle can be loaded without the original code being importable.
#
# The format is that of the original StyleGAN2-ADA / StyleGAN3 network pickles (version 6):
# each instance reduces to `_reconstruct_persistent_obj(meta)` with meta = dict(type='class',
# version=6, module_src=..., class_name=..., state=...). See docs/pickles.md.

import copy
import hashlib
import inspect
import linecache
import pickle
import sys
import types

import dnnlib

#----------------------------------------------------------------------------
# Format version written and read by this module (the one used by the original code).

_version = 6

#----------------------------------------------------------------------------
# Module-level registries.

_decorators = set()             # Every class returned by persistent_class().
_decorated_by_orig = dict()     # Original class => its persistent subclass (keeps decoration idempotent).
_import_hooks = []              # Callables meta => meta, run before a persistent object is rebuilt.
_module_to_src_dict = dict()    # Module object => source text (live modules and modules loaded from pickles).
_src_to_module_dict = dict()    # Source text => module object.

#----------------------------------------------------------------------------
# Class decorator: make a class pickle its module source and its constructor arguments.

def persistent_class(orig_class):
    """Class decorator: instances pickle the source of the defining module with their state.

    Unpickling executes that source in a fresh module (once per distinct source) and rebuilds
    the object from it, so a network pickle runs the code it was saved with, even where the
    defining module has changed or cannot be imported. Instances also get `init_args`
    (tuple) and `init_kwargs` (EasyDict), deep copies of what the constructor received, so
    the object can be constructed again with the same arguments.

        from torch_utils import persistence

        @persistence.persistent_class
        class MyNetwork(torch.nn.Module):
            def __init__(self, num_inputs, num_outputs):
                super().__init__()
                self.fc = torch.nn.Linear(num_inputs, num_outputs)

        net = MyNetwork(num_inputs=7, num_outputs=8)
        data = pickle.dumps(net)        # This module's source + net's state.
        net2 = pickle.loads(data)       # Loads even where this module is not importable.
        net.init_kwargs                 # {'num_inputs': 7, 'num_outputs': 8}

    Rules for the decorated class's module, because its whole source travels in the pickle:
    it imports only what a loading process has (torch, numpy, `torch_utils`, `dnnlib`; not
    `training`, see docs/architecture.md); its top-level code may run again when a pickle is
    loaded; constructor arguments must be deep-copyable and picklable; the object's state
    (`__getstate__()` or `__dict__`) must pickle.

    Args:
        orig_class: The class to decorate. A class that is already persistent is returned unchanged.

    Returns:
        A subclass that looks like orig_class (same name, module, docstring and signature).
    """
    if not isinstance(orig_class, type):
        raise TypeError(f'persistent_class() expects a class, got {type(orig_class).__name__}')
    if is_persistent(orig_class):
        return orig_class
    if orig_class not in _decorated_by_orig:
        decorated = _make_persistent_subclass(orig_class)
        _decorators.add(decorated)
        _decorated_by_orig[orig_class] = decorated
    return _decorated_by_orig[orig_class]

#----------------------------------------------------------------------------
# The persistent subclass of a class, made to look like the original one.

def _make_persistent_subclass(orig_class):
    orig_module = sys.modules.get(orig_class.__module__)
    orig_module_src = _module_to_src(orig_module)
    class_name = orig_class.__name__

    class Decorator(orig_class):
        _orig_module_src = orig_module_src
        _orig_class_name = class_name
        _orig_module_name = orig_class.__module__

        def __init__(self, *args, **kwargs):
            try:
                init_args, init_kwargs = copy.deepcopy((args, kwargs))
            except Exception as err: # pylint: disable=broad-except
                raise TypeError(f'{class_name}: cannot record the constructor arguments of a persistent class (copy.deepcopy failed: {err})') from err
            self._init_args = init_args
            self._init_kwargs = dnnlib.EasyDict(init_kwargs)
            super().__init__(*args, **kwargs)
            self._init_args = init_args # Again: a persistent base class's __init__ may have overwritten them.
            self._init_kwargs = dnnlib.EasyDict(init_kwargs)

        @property
        def init_args(self):
            return copy.deepcopy(self._init_args)

        @property
        def init_kwargs(self):
            return dnnlib.EasyDict(copy.deepcopy(self._init_kwargs))

        def __reduce__(self):
            return _reduce_persistent_obj(self)

    if '__deepcopy__' not in _inherited_names(orig_class):
        Decorator.__deepcopy__ = _deepcopy_persistent_obj
    if '__copy__' not in _inherited_names(orig_class):
        Decorator.__copy__ = _copy_persistent_obj

    # Look like the original class to users and to the standard pickle-by-reference of classes.
    Decorator.__name__ = orig_class.__name__
    Decorator.__qualname__ = orig_class.__qualname__
    try:
        Decorator.__signature__ = inspect.signature(orig_class) # The real keywords, not (*args, **kwargs).
    except (TypeError, ValueError):
        pass # A signature Python cannot describe (e.g. a builtin base): inspect falls back as before.
    Decorator.__module__ = orig_class.__module__
    Decorator.__doc__ = orig_class.__doc__
    return Decorator

#----------------------------------------------------------------------------
# True for a class returned by persistent_class() or an instance of one.

def is_persistent(obj):
    if isinstance(obj, type):
        return obj in _decorators
    return type(obj) in _decorators

#----------------------------------------------------------------------------
# Register a hook that may rewrite every persistent object's meta before it is rebuilt.

def import_hook(hook):
    """Register a hook that sees, and may replace, every persistent object being unpickled.

    The hook receives the object's meta, an EasyDict with `type` ('class'), `version`,
    `module_src` (the pickled module source), `class_name` and `state`, and returns the meta
    to use, typically to patch the source or the state of old pickles before they run.
    Hooks run in registration order, for every later `pickle.load`, in this process.

        from torch_utils import persistence

        @persistence.import_hook
        def rename_old_argument(meta):
            if meta.class_name == 'MappingNetwork':
                meta.module_src = meta.module_src.replace('lr_mul', 'lr_multiplier')
            return meta

    Args:
        hook: Callable meta -> meta.

    Returns:
        hook itself, so this works as a decorator.
    """
    if not callable(hook):
        raise TypeError(f'import_hook() expects a callable, got {type(hook).__name__}')
    _import_hooks.append(hook)
    return hook

#----------------------------------------------------------------------------
# Rebuild a persistent object from its meta dict. Called by pickle; the name and the
# signature are part of the file format and must not change.

def _reconstruct_persistent_obj(meta):
    meta = dnnlib.EasyDict(meta)
    for hook in _import_hooks:
        meta = hook(meta)
        if not isinstance(meta, dict):
            raise TypeError(f'Import hook {hook!r} returned {type(meta).__name__} instead of the meta dict')
        meta = dnnlib.EasyDict(meta)

    # Check the format.
    if meta.get('type') != 'class':
        raise pickle.UnpicklingError(f"Unsupported persistent object type {meta.get('type')!r} in pickle; this code reads type 'class'")
    if meta.get('version') != _version:
        raise pickle.UnpicklingError(f"Unsupported persistent object format version {meta.get('version')!r} in pickle; this code reads version {_version}")
    for key in ['module_src', 'class_name', 'state']:
        if key not in meta:
            raise pickle.UnpicklingError(f'Persistent object meta in pickle lacks the key {key!r}')

    # Get the class and create the object without calling __init__.
    module = _src_to_module(meta.module_src)
    orig_class = getattr(module, meta.class_name, None)
    if not isinstance(orig_class, type):
        raise pickle.UnpicklingError(f'Pickled module source ({module.__name__}) defines no class named {meta.class_name!r}')
    cls = persistent_class(orig_class)
    obj = cls.__new__(cls)
    _set_state(obj, meta.state)
    return obj

#----------------------------------------------------------------------------
# The source text of a module, or None when it cannot be retrieved.

def _module_to_src(module):
    if module is None:
        return None
    src = _module_to_src_dict.get(module, None)
    if src is None:
        try:
            src = inspect.getsource(module)
        except (OSError, TypeError):
            return None
        _module_to_src_dict[module] = src
        _src_to_module_dict.setdefault(src, module)
    return src

#----------------------------------------------------------------------------
# The module for a source text: a live module with exactly that source, or a fresh module
# executed from it once and registered in sys.modules as `_imported_module_<md5>`.

def _src_to_module(src):
    module = _src_to_module_dict.get(src, None)
    if module is not None:
        return module
    if not isinstance(src, str):
        raise pickle.UnpicklingError(f'Persistent object module_src in pickle is {type(src).__name__}, not str')

    # Register the module and its source before running it, so that persistent classes
    # defined in it find their source, and tracebacks show its lines.
    digest = hashlib.md5(src.encode('utf-8')).hexdigest()
    module_name = f'_imported_module_{digest}'
    file_name = f"<pickled module '{module_name}'>"
    module = types.ModuleType(module_name)
    module.__file__ = file_name
    sys.modules[module_name] = module
    _module_to_src_dict[module] = src
    _src_to_module_dict[src] = module
    linecache.cache[file_name] = (len(src), None, src.splitlines(True), file_name)

    # Run it; forget it again if that fails, so a later attempt reports the same error.
    try:
        exec(compile(src, file_name, 'exec'), module.__dict__)
    except BaseException:
        del sys.modules[module_name]
        del _module_to_src_dict[module]
        del _src_to_module_dict[src]
        raise
    return module

#----------------------------------------------------------------------------
# Reduce a persistent object to the call `_reconstruct_persistent_obj(meta)`.

def _reduce_persistent_obj(obj):
    cls = type(obj)
    what = f'{cls._orig_module_name}.{cls._orig_class_name}'
    if cls not in _decorators:
        raise pickle.PicklingError(f'Cannot pickle {cls.__module__}.{cls.__qualname__}: it subclasses the persistent class {what} '
            'but is not decorated with @persistence.persistent_class itself')
    if cls._orig_module_name == '__main__':
        raise pickle.PicklingError(f'Cannot pickle persistent object of class {what}: classes defined in __main__ cannot be pickled; move the class into an importable module file')
    if cls.__qualname__ != cls._orig_class_name:
        raise pickle.PicklingError(f'Cannot pickle persistent object of class {cls.__module__}.{cls.__qualname__}: '
            'only classes defined at the top level of a module can be pickled')
    if cls._orig_module_src is None:
        raise pickle.PicklingError(f'Cannot pickle persistent object of class {what}: the source code of module {cls._orig_module_name!r} cannot be retrieved')
    _check_init_args_picklable(obj, what)
    meta = dict(type='class', version=_version, module_src=cls._orig_module_src, class_name=cls._orig_class_name, state=_get_state(obj))
    return (_reconstruct_persistent_obj, (meta,))

#----------------------------------------------------------------------------
# Raise a PicklingError naming the first constructor argument that cannot be pickled.

def _check_init_args_picklable(obj, what):
    init_args = obj.__dict__.get('_init_args', ())
    init_kwargs = obj.__dict__.get('_init_kwargs', {})
    try:
        pickle.dumps((init_args, init_kwargs))
        return
    except Exception: # pylint: disable=broad-except
        pass
    named = [(f'positional argument {idx}', value) for idx, value in enumerate(init_args)]
    named += [(f'keyword argument {key!r}', value) for key, value in init_kwargs.items()]
    for arg_name, value in named:
        try:
            pickle.dumps(value)
        except Exception as err: # pylint: disable=broad-except
            raise pickle.PicklingError(f'Cannot pickle persistent object of class {what}: its constructor {arg_name} '
                f'({type(value).__name__}) is not picklable: {err}') from err
    pickle.dumps((init_args, init_kwargs)) # Raises the original error if no single argument is to blame.

#----------------------------------------------------------------------------
# Object state as pickled: __getstate__() when defined, else __dict__.

def _get_state(obj):
    getstate = getattr(obj, '__getstate__', None)
    if getstate is not None:
        return getstate()
    return obj.__dict__

#----------------------------------------------------------------------------
# Restore object state: __setstate__() when defined, else __dict__.update().

def _set_state(obj, state):
    setstate = getattr(obj, '__setstate__', None)
    if setstate is not None:
        setstate(state)
    elif state is not None:
        obj.__dict__.update(state)

#----------------------------------------------------------------------------
# copy.deepcopy() of a persistent object: same class, no detour through the module source.

def _deepcopy_persistent_obj(self, memo):
    cls = type(self)
    obj = cls.__new__(cls)
    memo[id(self)] = obj
    _set_state(obj, copy.deepcopy(_get_state(self), memo))
    return obj

#----------------------------------------------------------------------------
# copy.copy() of a persistent object: a new object sharing the attribute values.

def _copy_persistent_obj(self):
    cls = type(self)
    obj = cls.__new__(cls)
    state = _get_state(self)
    _set_state(obj, copy.copy(state))
    return obj

#----------------------------------------------------------------------------
# Names defined by a class or its bases other than `object`.

def _inherited_names(cls):
    return {name for klass in cls.__mro__ if klass is not object for name in vars(klass)}

#----------------------------------------------------------------------------
