# Network files: loading, saving and converting the pickles written by this project or by the
# original StyleGAN2-ADA / StyleGAN3 code, and weights-only .safetensors files that load
# without running any code from the file. `legacy.py` is the command-line front end; library
# code (the training loop, the tools) imports this module, never a top-level script.

import ast
import copy
import inspect
import io
import json
import os
import pickle
import struct

import torch

import dnnlib
from torch_utils import misc
from torch_utils import persistence
from training import safe_pickle
from training import source_fingerprints

#----------------------------------------------------------------------------
# Keys of a network file; the networks among them; the prefix of loadable class names.

NETWORK_KEYS = ('G', 'D', 'G_ema')
MODULE_KEYS = ('G', 'D', 'G_ema', 'augment_pipe')
ALL_KEYS = ('G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs')
SAFETENSORS_FORMAT = 'gan-research-networks'
SAFE_CLASS_PREFIXES = ('training.',)

#----------------------------------------------------------------------------
# A network file that cannot be read or used; the message is one line saying what is wrong.

class NetworkLoadError(Exception):
    pass

# A pickle that cannot be loaded without running code from it (an unknown global, an unknown
# or changed embedded source); the message says why and what the two choices are.
class UntrustedCodeError(NetworkLoadError):
    pass

#----------------------------------------------------------------------------

def load_network_pkl(f, force_fp16=False, trust_code=False, log=None):
    """Load a network file: a pickle (this project's or the original code's) or a .safetensors export.

    Args:
        f:          Open binary file, local path, or URL (fetched through the download cache).
        force_fp16: Rebuild G, D, G_ema with float16 in the 4 highest resolutions and conv_clamp=256.
        trust_code: Unpickle by running the code stored in the file (its module sources and any
                    global it names), as the original code did. Only for files whose author you trust.
                    Default: run nothing from the file; networks whose embedded source is a known
                    release of a family this project implements are rebuilt with this project's
                    classes, anything else is refused (UntrustedCodeError). See docs/pickles.md.
        log:        Optional callable (e.g. print) that receives one line saying how the file was
                    loaded and which network families were recognised.

    Returns:
        Dict with the keys G, D, G_ema, augment_pipe, training_set_kwargs (absent ones are None).

    Raises:
        NetworkLoadError: the file is missing, unreadable, truncated, not a network file,
        a TensorFlow-era pickle, or lacks G_ema. UntrustedCodeError (a NetworkLoadError):
        the file can only be loaded by running its code and trust_code is False.
    """
    name, raw = _read_bytes(f)
    if raw.startswith(b'PK'):
        raise NetworkLoadError(f'{name} is a ZIP archive (e.g. a torch.save() training state or a dataset), not a network pickle')
    if _looks_like_safetensors(raw):
        data, how = _load_safetensors(raw, name), 'weights-only export, no code from the file run'
    elif trust_code:
        data, how = _unpickle(raw, name), 'ran the code stored in the file (trust_code)'
    else:
        data, recognised = _safe_unpickle(raw, name)
        how = 'no code from the file run; ' + _describe(recognised)
    data = _check_data(data, name)
    if force_fp16:
        data = _force_fp16(data)
    if log is not None:
        log(f'Loaded {name}: {how}')
    return data

# 'G, D, G_ema rebuilt as StyleGAN2 (release); augment_pipe ...' for {key: RebuildReport}.
def _describe(recognised):
    groups = {}
    for key, report in recognised.items():
        groups.setdefault(report.describe(), []).append(str(key))
    return '; '.join(f'{", ".join(keys)} rebuilt as {text}' for text, keys in groups.items()) or 'no networks'

#----------------------------------------------------------------------------
# Write a network dict (G, D, G_ema, augment_pipe, training_set_kwargs) as a pickle,
# atomically: a temporary file in the same folder renamed over the destination.

def save_network_pkl(path, data):
    if not isinstance(data, dict):
        raise TypeError(f'save_network_pkl() expects a dict of networks, got {type(data).__name__}')
    with dnnlib.util.atomic_write(path) as f:
        pickle.dump(data, f)

#----------------------------------------------------------------------------
# The bytes of a file object, path or URL, and a name for messages.

def _read_bytes(f):
    if isinstance(f, (str, os.PathLike)):
        name = os.fspath(f)
        if not dnnlib.util.is_url(name) and os.path.isdir(name):
            raise NetworkLoadError(f'{name} is a folder, not a network file')
        try:
            with dnnlib.util.open_url(name) as stream:
                return name, stream.read()
        except (OSError, dnnlib.util.DownloadError) as err:
            raise NetworkLoadError(f'Cannot open network file {name}: {err}') from err
    if not hasattr(f, 'read'):
        raise NetworkLoadError(f'Expected a path, URL or open binary file, got {type(f).__name__}')
    name = getattr(f, 'name', '<file object>')
    raw = f.read()
    if not isinstance(raw, bytes):
        raise NetworkLoadError(f'{name} is opened in text mode; open it with mode "rb"')
    return str(name), raw

#----------------------------------------------------------------------------
# Unpickle by running the file's code (trust_code=True), refusing TensorFlow-era pickles
# before any of their classes is looked up.

_TF_MESSAGE = ('This is a TensorFlow-era StyleGAN2(-ADA) pickle, which is not supported; convert it first '
    'with the original stylegan2-ada-pytorch code: python legacy.py --source=OLD.pkl --dest=NEW.pkl')

class _NetworkUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.startswith('dnnlib.tflib'):
            raise NetworkLoadError(_TF_MESSAGE)
        return super().find_class(module, name)

# The executing path: plain unpickling, with one-line errors.
def _unpickle(raw, name):
    if len(raw) == 0:
        raise NetworkLoadError(f'{name} is empty')
    if raw[0] != 0x80:
        raise NetworkLoadError(f'{name} is not a valid network pickle (no pickle protocol header; not a .safetensors file either)')
    try:
        return _NetworkUnpickler(io.BytesIO(raw)).load()
    except NetworkLoadError:
        raise
    except EOFError as err:
        raise NetworkLoadError(f'{name} is truncated (the pickle ends early: {err or "EOF"}); download or copy it again') from err
    except pickle.UnpicklingError as err:
        raise NetworkLoadError(f'{name} is not a valid network pickle ({err})') from err
    except Exception as err: # pylint: disable=broad-except
        # Unpickling runs the code stored in the file; any of its failures ends here.
        raise NetworkLoadError(f'Cannot unpickle {name}: {type(err).__name__}: {_one_line(err)}') from err

#----------------------------------------------------------------------------
# Unpickle without running code from the file (training.safe_pickle); returns (data, recognised).

_TRUST_CHOICES = ('nothing from the file was run. If you trust its author, load it with --trust-code '
    '(Python: trust_code=True), which runs the code stored in the file; otherwise ask for a weights-only '
    '.safetensors export (python legacy.py --trust-code --source=FILE --dest=NAME.safetensors)')

def _safe_unpickle(raw, name):
    if len(raw) == 0:
        raise NetworkLoadError(f'{name} is empty')
    if raw[0] != 0x80:
        raise NetworkLoadError(f'{name} is not a valid network pickle (no pickle protocol header; not a .safetensors file either)')
    try:
        return safe_pickle.load(raw)
    except safe_pickle.SafeLoadError as err:
        raise UntrustedCodeError(f'Refusing to load {name}: {err}; {_TRUST_CHOICES}') from err
    except safe_pickle.TensorFlowPickleError as err:
        raise NetworkLoadError(_TF_MESSAGE) from err
    except EOFError as err:
        raise NetworkLoadError(f'{name} is truncated (the pickle ends early: {err or "EOF"}); download or copy it again') from err
    except (pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError, OverflowError, RecursionError) as err:
        raise NetworkLoadError(f'{name} is not a valid network pickle ({type(err).__name__}: {_one_line(err)})') from err

# An exception message on one line.
def _one_line(err):
    return ' '.join(str(err).split())

#----------------------------------------------------------------------------
# Check the keys and types of a loaded network dict; fill in the optional keys.

def _check_data(data, name):
    if not isinstance(data, dict):
        raise NetworkLoadError(f'{name} holds a {type(data).__name__}, not a dict of networks (G, D, G_ema, ...)')
    if 'G_ema' not in data:
        raise NetworkLoadError(f'{name} has no G_ema (keys: {", ".join(map(str, data.keys())) or "none"})')
    data = dict(data)
    for key in ALL_KEYS:
        data.setdefault(key, None)
    if not isinstance(data['G_ema'], torch.nn.Module):
        raise NetworkLoadError(f'{name}: G_ema is a {type(data["G_ema"]).__name__}, not a torch.nn.Module')
    for key in ('G', 'D', 'augment_pipe'):
        if not isinstance(data[key], (torch.nn.Module, type(None))):
            raise NetworkLoadError(f'{name}: {key} is a {type(data[key]).__name__}, not a torch.nn.Module or None')
    if not isinstance(data['training_set_kwargs'], (dict, type(None))):
        raise NetworkLoadError(f'{name}: training_set_kwargs is a {type(data["training_set_kwargs"]).__name__}, not a dict or None')
    return data

#----------------------------------------------------------------------------
# Rebuild G, D, G_ema with float16 in the top 4 resolutions and conv_clamp 256: the settings go
# into synthesis_kwargs where the constructor has them (StyleGAN2's G), else next to the other
# arguments (StyleGAN2's D, StyleGAN3's G). Families without float16 blocks are an error.

def _force_fp16(data):
    for key in NETWORK_KEYS:
        old = data[key]
        if old is None:
            continue
        kwargs = copy.deepcopy(old.init_kwargs)
        fp16_kwargs = kwargs
        if _init_parameters(type(old)).get('synthesis_kwargs', inspect.Parameter.VAR_KEYWORD) != inspect.Parameter.VAR_KEYWORD:
            fp16_kwargs = kwargs.synthesis_kwargs = dnnlib.EasyDict(kwargs.get('synthesis_kwargs', {}))
        fp16_kwargs.num_fp16_res = 4
        fp16_kwargs.conv_clamp = 256
        if kwargs != old.init_kwargs:
            try:
                new = type(old)(*old.init_args, **kwargs).train(old.training).requires_grad_(False)
            except TypeError as err:
                raise NetworkLoadError(f'force_fp16: {key} ({type(old).__module__}.{type(old).__name__}) has no float16 '
                    f'blocks to switch on ({_one_line(err)})') from err
            misc.copy_params_and_buffers(old, new, require_all=True)
            data[key] = new
    return data

# {name: kind} of a class's own constructor parameters (a persistent class's wrapper takes *args, **kwargs).
def _init_parameters(cls):
    if persistence.is_persistent(cls):
        cls = cls.__mro__[1]
    return {name: param.kind for name, param in inspect.signature(cls.__init__).parameters.items()}

#----------------------------------------------------------------------------
# Safetensors export: tensors under '<key>.<state_dict name>', and the metadata entry
# 'networks' holding JSON of {key: {class_name, init_args, init_kwargs}, training_set_kwargs}.

def save_network_safetensors(path, data):
    import safetensors.torch # pylint: disable=import-outside-toplevel
    tensors = {}
    meta = {}
    for key in MODULE_KEYS:
        module = data.get(key)
        if module is None:
            continue
        class_name = f'{type(module).__module__}.{type(module).__name__}'
        if not class_name.startswith(SAFE_CLASS_PREFIXES):
            raise NetworkLoadError(f'{key} is a {class_name}, not one of this project\'s classes; convert the pickle first (python legacy.py --source=... --dest=NEW.pkl)')
        meta[key] = dict(class_name=class_name, init_args=list(module.init_args), init_kwargs=dict(module.init_kwargs),
            attributes=_changed_attributes(module))
        for name, tensor in module.state_dict().items():
            tensors[f'{key}.{name}'] = tensor.detach().cpu().contiguous().clone()
    meta['training_set_kwargs'] = data.get('training_set_kwargs')
    try:
        meta_json = json.dumps(meta)
    except TypeError as err:
        raise NetworkLoadError(f'Cannot export to safetensors: constructor arguments are not JSON-serialisable ({err})') from err
    raw = safetensors.torch.save(tensors, metadata={'format': SAFETENSORS_FORMAT, 'networks': meta_json})
    with dnnlib.util.atomic_write(path) as f:
        f.write(raw)

#----------------------------------------------------------------------------
# Scalar attributes (bool, int, float, str, None) that differ from a freshly constructed
# network, by submodule name: flags set after construction, such as BigGAN's
# accumulate_standing, which the weights alone do not carry. Applied on loading to
# attributes the rebuilt submodule has.

_SCALARS = (bool, int, float, str, type(None))

def _changed_attributes(module):
    with safe_pickle.preserved_random_state():
        fresh = dict(type(module)(*module.init_args, **module.init_kwargs).named_modules())
    changed = {}
    for name, sub in module.named_modules():
        reference = vars(fresh[name]) if name in fresh else {}
        for key, value in vars(sub).items():
            if not key.startswith('_') and key != 'training' and isinstance(value, _SCALARS) and key in reference:
                if type(reference[key]) is not type(value) or reference[key] != value:
                    changed.setdefault(name, {})[key] = value
    return changed

# Apply _changed_attributes() to a rebuilt network; only attributes its submodules have.
def _set_attributes(module, attributes):
    modules = dict(module.named_modules())
    for name, values in attributes.items():
        for key, value in values.items():
            target = modules.get(name)
            if target is None or key.startswith('_') or key not in vars(target) or not isinstance(value, _SCALARS):
                raise ValueError(f'attribute {name}.{key} is not one this class has')
            vars(target)[key] = value

#----------------------------------------------------------------------------
# A safetensors file starts with an 8-byte little-endian header length and a JSON header.

def _looks_like_safetensors(raw):
    if len(raw) < 10:
        return False
    header_len = struct.unpack('<Q', raw[:8])[0]
    return 2 <= header_len <= len(raw) - 8 and raw[8:9] == b'{'

# The 'networks' JSON of a safetensors header, checked to be this project's export.
def _safetensors_metadata(raw, name):
    header_len = struct.unpack('<Q', raw[:8])[0]
    try:
        header = json.loads(raw[8:8 + header_len].decode('utf-8'))
        meta = header.get('__metadata__') or {}
        if meta.get('format') != SAFETENSORS_FORMAT:
            raise NetworkLoadError(f'{name} is a safetensors file but not a network export of this project (no "format": "{SAFETENSORS_FORMAT}" metadata)')
        return json.loads(meta['networks'])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, AttributeError) as err:
        raise NetworkLoadError(f'{name} has a corrupt safetensors header ({type(err).__name__}: {_one_line(err)})') from err

#----------------------------------------------------------------------------
# Rebuild the networks of a safetensors export: construct each class by name (only this
# project's classes), load its tensors, eval mode, requires_grad off. Nothing is unpickled.

def _load_safetensors(raw, name):
    import safetensors.torch # pylint: disable=import-outside-toplevel
    meta = _safetensors_metadata(raw, name)
    try:
        tensors = safetensors.torch.load(raw)
    except Exception as err: # pylint: disable=broad-except
        raise NetworkLoadError(f'{name} has corrupt safetensors data ({_one_line(err)})') from err
    data = dict(training_set_kwargs=meta.get('training_set_kwargs'))
    for key in MODULE_KEYS:
        spec = meta.get(key)
        if spec is None:
            continue
        class_name = spec.get('class_name', '')
        if not isinstance(class_name, str) or not class_name.startswith(SAFE_CLASS_PREFIXES):
            raise NetworkLoadError(f'{name}: {key} names class {class_name!r}, outside this project\'s {SAFE_CLASS_PREFIXES} modules; refusing to construct it')
        prefix = key + '.'
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module = dnnlib.util.construct_class_by_name(*spec.get('init_args', []), class_name=class_name, **spec.get('init_kwargs', {}))
            module.load_state_dict(state, strict=True)
            _set_attributes(module, spec.get('attributes', {}))
        except (ImportError, TypeError, ValueError, RuntimeError, KeyError) as err:
            raise NetworkLoadError(f'{name}: cannot rebuild {key} as {class_name}: {_one_line(err)}') from err
        data[key] = module.eval().requires_grad_(False)
    return data

#----------------------------------------------------------------------------
# Rebuild one network as this project's class of the same name, copying every parameter and
# buffer. The module: the one a known embedded source maps to (training.source_fingerprints),
# the object's own module when it is already one of ours, else `module_name`
# (training.networks, or training.augment for the augmentation pipeline).

def convert_module(obj, module_name='training.networks'):
    class_name = f'{_target_module(obj, module_name)}.{type(obj).__name__}'
    try:
        cls = dnnlib.util.get_obj_by_name(class_name)
    except ImportError as err:
        raise NetworkLoadError(f'No class {class_name} to convert {type(obj).__name__} into ({_one_line(err)})') from err
    init_args = list(getattr(obj, 'init_args', []))
    init_kwargs = safe_pickle.upgrade_kwargs(cls, dict(getattr(obj, 'init_kwargs', {})))
    try:
        new = cls(*init_args, **init_kwargs)
        misc.copy_params_and_buffers(obj, new, require_all=True)
        _copy_plain_attributes(obj, new)
    except (TypeError, ValueError, KeyError, RuntimeError) as err:
        raise NetworkLoadError(f'Cannot rebuild {type(obj).__name__} as {class_name}: {_one_line(err)}') from err
    trainable = {name for name, p in obj.named_parameters() if p.requires_grad}
    for name, param in new.named_parameters():
        param.requires_grad_(name in trainable)
    return new.train(obj.training)

# Plain attributes (flags, numbers, tensors) set after construction, e.g. BigGAN's
# accumulate_standing: copied for every attribute the new submodule of the same name has.
def _copy_plain_attributes(old, new):
    old_modules = dict(old.named_modules())
    for name, module in new.named_modules():
        source = old_modules.get(name)
        for key, value in (vars(source).items() if source is not None else ()):
            if not key.startswith('_') and key != 'training' and key in module.__dict__ and safe_pickle.is_plain(value):
                module.__dict__[key] = copy.deepcopy(value)

# The module whose class of the same name rebuilds `obj` (see convert_module).
def _target_module(obj, default):
    src = getattr(type(obj), '_orig_module_src', None)
    entry = None
    if isinstance(src, str):
        try:
            entry = source_fingerprints.lookup(src)
        except (SyntaxError, ValueError):
            entry = None
    if entry is not None and source_fingerprints.resolve_class(entry, type(obj).__name__) is not None:
        return entry['module']
    if type(obj).__module__.startswith(source_fingerprints.PACKAGE_DIRS):
        return type(obj).__module__
    if default == 'training.networks' and isinstance(src, str) and _defines_class(src, 'SynthesisInput'):
        return 'training.networks_stylegan3' # A StyleGAN3 generator file (its Generator is not StyleGAN2's).
    return default

# Whether Python source text defines a top-level class of this name (parsed, not run).
def _defines_class(src, class_name):
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.ClassDef) and node.name == class_name for node in tree.body)

#----------------------------------------------------------------------------
# Largest absolute difference between the outputs of two networks on a fixed input
# (noise_mode='const' for generators); 0.0 means bit-identical. Both run in float32
# (force_fp32=True where the network takes it): the check compares the weight mapping, and
# the float16 rounding of fp16 blocks (the original code runs them in float16 even on the
# CPU; ours only on CUDA) is not a conversion error.

@torch.no_grad()
def compare_outputs(old, new, batch_size=4, seed=0, device='cpu'):
    device = torch.device(device)
    rnd = torch.Generator().manual_seed(seed)
    c_dim = getattr(new, 'c_dim', 0)
    c = torch.zeros([batch_size, c_dim])
    if c_dim > 0:
        c[torch.arange(batch_size), torch.arange(batch_size) % c_dim] = 1
    if device.type != 'cpu':
        old, new = copy.deepcopy(old).to(device), copy.deepcopy(new).to(device)
    c = c.to(device)
    was_training = (old.training, new.training)
    old.eval()
    new.eval()
    try:
        if hasattr(new, 'z_dim'): # A generator; StyleGAN ones take noise_mode (BigGAN's do not).
            z = torch.randn([batch_size, new.z_dim], generator=rnd).to(device)
            noise = dict(noise_mode='const') if hasattr(new, 'synthesis') else {}
            a, b = old(z, c, **noise, **_fp32_kwargs(old)), new(z, c, **noise, **_fp32_kwargs(new))
        else:
            img = torch.randn([batch_size, new.img_channels, new.img_resolution, new.img_resolution], generator=rnd).to(device)
            a, b = old(img, c, **_fp32_kwargs(old)), new(img, c, **_fp32_kwargs(new))
    finally:
        old.train(was_training[0])
        new.train(was_training[1])
    if a.shape != b.shape:
        return float('inf')
    return (a.double() - b.double()).abs().max().item()

# `force_fp32=True` for a network whose forward takes it, directly or (StyleGAN2/3: G and D
# pass their extra keywords on to the blocks) through **kwargs to blocks with a use_fp16 flag.
def _fp32_kwargs(net):
    params = inspect.signature(net.forward).parameters
    if 'force_fp32' in params:
        return dict(force_fp32=True)
    if any(p.kind == p.VAR_KEYWORD for p in params.values()) and any(hasattr(m, 'use_fp16') for m in net.modules()):
        return dict(force_fp32=True)
    return {}

#----------------------------------------------------------------------------
# Convert every network of a loaded dict into this project's current classes and check
# that G, D, G_ema give the same outputs. Returns (new dict, {key: max abs difference}).
# `log` (e.g. print) receives a line when the augmentation pipeline cannot be converted.

def convert_network_data(data, tolerance=1e-4, log=None):
    new_data = dict(data)
    diffs = {}
    for key in NETWORK_KEYS:
        if data.get(key) is None:
            continue
        new_data[key] = convert_module(data[key])
        diffs[key] = compare_outputs(data[key], new_data[key])
        if not diffs[key] <= tolerance:
            raise NetworkLoadError(f'{key} converted to {type(new_data[key]).__name__} gives different outputs (max abs difference {diffs[key]:g})')
    if data.get('augment_pipe') is not None:
        try:
            new_data['augment_pipe'] = convert_module(data['augment_pipe'], module_name='training.augment')
        except NetworkLoadError as err:
            new_data['augment_pipe'], note = _convert_augment_pipe_leniently(data['augment_pipe'], err)
            if log is not None:
                log(note)
    return new_data, diffs

# An augmentation pipeline whose filter constants differ from today's (an earlier release):
# today's class from the same constructor arguments, with the file's tensors that have the
# same name and shape (its probability p); kept as it is when even that fails.
def _convert_augment_pipe_leniently(old, strict_error):
    try:
        cls = dnnlib.util.get_obj_by_name(f'training.augment.{type(old).__name__}')
        new = cls(*getattr(old, 'init_args', []), **getattr(old, 'init_kwargs', {})).train(old.training)
    except (ImportError, TypeError, ValueError, KeyError, RuntimeError):
        return old, f'augment_pipe kept as is: {strict_error}'
    theirs = dict(old.named_parameters()) | dict(old.named_buffers())
    ours = dict(new.named_parameters()) | dict(new.named_buffers())
    kept = sorted(name for name, tensor in ours.items() if name not in theirs or theirs[name].shape != tensor.shape)
    with torch.no_grad():
        for name, tensor in ours.items():
            if name not in kept:
                tensor.copy_(theirs[name])
    return new, f'augment_pipe rebuilt as {cls.__module__}.{cls.__name__}; today\'s values for {", ".join(kept)}'

