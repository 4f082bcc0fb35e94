# Config dicts, the name registry, time formatting, a stdout/stderr tee and the URL download cache.

import contextlib
import difflib
import hashlib
import importlib
import os
import pkgutil
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

#----------------------------------------------------------------------------
# A dict whose keys can also be read and written as attributes (`cfg.batch` == `cfg['batch']`).

class EasyDict(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        del self[name]

#----------------------------------------------------------------------------
# Human-readable duration: '5s', '3m 04s', '2h 03m 04s', '1d 02h 03m'.

def format_time(seconds):
    s = int(round(seconds))
    if s < 60:
        return f'{s}s'
    if s < 60 * 60:
        return f'{s // 60}m {s % 60:02d}s'
    if s < 24 * 60 * 60:
        return f'{s // 3600}h {(s // 60) % 60:02d}m {s % 60:02d}s'
    return f'{s // 86400}d {(s // 3600) % 24:02d}h {(s // 60) % 60:02d}m'

#----------------------------------------------------------------------------
# Tee of stdout/stderr into a log file, active from construction until close().

class Logger:
    def __init__(self,
        file_name   = None,     # Log file to append to; None = no file, only the tee.
        file_mode   = 'a',      # Mode for opening file_name.
        should_flush = True,    # Flush the file and the console after every write.
    ):
        self.file = open(file_name, file_mode) if file_name is not None else None
        self.should_flush = should_flush
        self.stdout = sys.stdout
        self.stderr = sys.stderr
        sys.stdout = self
        sys.stderr = self

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()

    def write(self, text):
        if isinstance(text, bytes):
            text = text.decode()
        if len(text) == 0:
            return
        if self.file is not None:
            self.file.write(text)
        self.stdout.write(text)
        if self.should_flush:
            self.flush()

    def flush(self):
        if self.file is not None:
            self.file.flush()
        self.stdout.flush()

    def isatty(self):
        return False

    def close(self):
        self.flush()
        if sys.stdout is self:
            sys.stdout = self.stdout
        if sys.stderr is self:
            sys.stderr = self.stderr
        if self.file is not None:
            self.file.close()
            self.file = None

#----------------------------------------------------------------------------
# Cache folder: $DNNLIB_CACHE_DIR, else ~/.cache/dnnlib (the original's default, so old downloads are found).

def make_cache_dir_path(*paths):
    if os.environ.get('DNNLIB_CACHE_DIR'):
        return os.path.join(os.environ['DNNLIB_CACHE_DIR'], *paths)
    home = os.environ.get('HOME') or os.environ.get('USERPROFILE')
    if home:
        return os.path.join(home, '.cache', 'dnnlib', *paths)
    return os.path.join(tempfile.gettempdir(), '.cache', 'dnnlib', *paths)

#----------------------------------------------------------------------------
# The name registry: a full dotted name ('training.networks_stylegan2.Generator') resolves to the object.

class NameLookupError(ImportError):
    """A dotted name that does not resolve; the message lists the closest valid names."""

def _close_matches(word, candidates, n=5):
    return difflib.get_close_matches(word, sorted(set(candidates)), n=n, cutoff=0.5)

def _submodule_names(package):
    if not hasattr(package, '__path__'):
        return []
    return [info.name for info in pkgutil.iter_modules(package.__path__)]

def _import_longest_prefix(parts):
    # Import the longest prefix that is a module. A module that exists but fails to import
    # raises its own error: it is never mistaken for a missing name.
    for i in range(len(parts), 0, -1):
        module_name = '.'.join(parts[:i])
        try:
            return importlib.import_module(module_name), parts[i:]
        except ModuleNotFoundError as e:
            if e.name is None or not (module_name == e.name or module_name.startswith(e.name + '.')):
                raise
    return None, parts

def _unknown_name_error(obj_name, module, rest):
    if module is None:
        top = [m.name for m in pkgutil.iter_modules()]
        hint = _close_matches(obj_name.split('.')[0], top + list(sys.modules))
        what = f"no module named '{obj_name.split('.')[0]}'"
    else:
        attrs = [a for a in dir(module) if not a.startswith('_')]
        hint = [f'{module.__name__}.{a}' for a in _close_matches(rest[0], attrs + _submodule_names(module))]
        what = f"module '{module.__name__}' has no attribute '{rest[0]}'"
    suggestion = f" Closest valid names: {', '.join(hint)}." if hint else ''
    return NameLookupError(f"Cannot resolve '{obj_name}': {what}.{suggestion}")

def get_module_from_obj_name(obj_name):
    """Split a dotted name into (module, attribute path inside it), importing the module."""
    if not isinstance(obj_name, str) or not obj_name or obj_name.strip('.') != obj_name:
        raise NameLookupError(f'Expected a full dotted name such as "training.networks_stylegan2.Generator", got {obj_name!r}.')
    parts = obj_name.split('.')
    module, rest = _import_longest_prefix(parts)
    if module is None:
        raise _unknown_name_error(obj_name, None, parts)
    return module, '.'.join(rest)

def get_obj_from_module(module, obj_name):
    """Follow a dotted attribute path inside a module ('' gives the module itself)."""
    obj = module
    for i, part in enumerate(obj_name.split('.') if obj_name else []):
        if not hasattr(obj, part):
            raise _unknown_name_error(f'{module.__name__}.{obj_name}', obj, obj_name.split('.')[i:])
        obj = getattr(obj, part)
    return obj

def get_obj_by_name(name):
    """The object behind a full dotted name, or `name` itself when it is not a string.

    The longest importable prefix of the name is imported as a module and the rest is
    followed as attributes, so classes, functions, nested attributes and modules resolve:

        >>> get_obj_by_name('torch.nn.functional.relu')      # The function itself.
        >>> get_obj_by_name(torch.nn.functional.relu)        # Passed through unchanged.

    Args:
        name: A full dotted name ('training.networks_stylegan2.Generator', never an alias)
              or any object.

    Returns:
        The named object.

    Raises:
        NameLookupError: the name does not resolve; the message lists the closest valid names.
            An existing module that fails to import raises its own error instead.
    """
    if not isinstance(name, str):
        return name
    module, obj_name = get_module_from_obj_name(name)
    return get_obj_from_module(module, obj_name)

def call_func_by_name(*args, func_name=None, **kwargs):
    """Call a function given as a full dotted name or as the callable itself.

    Configs name functions this way so they can be saved as JSON; pass the callable itself
    where the config need not be saved:

        >>> call_func_by_name(3, func_name='math.sqrt')      # 1.7320508075688772
        >>> cfg = dnnlib.EasyDict(func_name='training.networks_biggan.accumulate_standing_stats', num_batches=16)
        >>> call_func_by_name(module=G_ema, batch_size=32, device=device, seed=0, **cfg)

    Args:
        *args:     Positional arguments for the function.
        func_name: Full dotted name or callable (required, keyword only).
        **kwargs:  Keyword arguments for the function.

    Returns:
        What the function returns.

    Raises:
        NameLookupError: func_name does not resolve. TypeError: it is missing or not callable.
    """
    if func_name is None:
        raise TypeError('call_func_by_name() needs func_name (a dotted name or a callable).')
    func_obj = get_obj_by_name(func_name)
    if not callable(func_obj):
        raise TypeError(f'{func_name!r} resolves to {type(func_obj).__name__}, which is not callable.')
    return func_obj(*args, **kwargs)

def construct_class_by_name(*args, class_name=None, **kwargs):
    """Construct a class given as a full dotted name or as the class itself.

    The configs of the training loop (G_kwargs, D_kwargs, loss_kwargs, augment_kwargs, ...)
    are dicts with a `class_name` and the constructor's keywords:

        >>> G_kwargs = dnnlib.EasyDict(class_name='training.networks_stylegan2.Generator',
        ...     z_dim=512, c_dim=0, w_dim=512, img_resolution=32, img_channels=3)
        >>> G = construct_class_by_name(**G_kwargs)
        >>> opt = construct_class_by_name(G.parameters(), class_name=torch.optim.Adam, lr=0.002)

    Args:
        *args:      Positional arguments for the constructor.
        class_name: Full dotted name or class (required, keyword only).
        **kwargs:   Keyword arguments for the constructor; a misspelt one is the
                    constructor's TypeError.

    Returns:
        The new instance.

    Raises:
        NameLookupError: class_name does not resolve. TypeError: it is missing or not a class.
    """
    if class_name is None:
        raise TypeError('construct_class_by_name() needs class_name (a dotted name or a class).')
    cls = get_obj_by_name(class_name)
    if not isinstance(cls, type):
        raise TypeError(f'{class_name!r} resolves to {type(cls).__name__}, not a class.')
    return cls(*args, **kwargs)

def list_named_objects(package_names, kind=type):
    """Every public object of `kind` defined in the modules of the given packages, by full dotted name."""
    names = []
    for package_name in package_names:
        package = importlib.import_module(package_name)
        modules = [package] + [importlib.import_module(f'{package_name}.{m}') for m in _submodule_names(package)]
        for module in modules:
            for attr, obj in vars(module).items():
                if not attr.startswith('_') and isinstance(obj, kind) and getattr(obj, '__module__', None) == module.__name__:
                    names.append(f'{module.__name__}.{attr}')
    return sorted(set(names))

#----------------------------------------------------------------------------
# URLs and local files, with the download cache shared with the original code.

class DownloadError(IOError):
    """A URL could not be fetched and no cached copy exists; the message says where to place the file."""

def is_url(obj, allow_file_urls=False):
    if not isinstance(obj, str) or '://' not in obj:
        return False
    scheme = urllib.parse.urlparse(obj).scheme
    return scheme in ('http', 'https') or (allow_file_urls and scheme == 'file')

def url_cache_key(url):
    """The cache file name stem of a URL: '<md5 hex of the URL>_'."""
    return hashlib.md5(url.encode('utf-8')).hexdigest() + '_'

def url_cache_path(url, cache_dir=None):
    """Where open_url keeps (and looks for) the cached copy of a URL."""
    cache_dir = cache_dir if cache_dir is not None else make_cache_dir_path('downloads')
    file_name = os.path.basename(urllib.parse.urlparse(url).path) or 'download'
    safe_name = re.sub(r'[^0-9a-zA-Z-._]', '_', file_name)
    return os.path.join(cache_dir, url_cache_key(url) + safe_name)

def _find_cached(url, cache_dir):
    # Any '<md5>_*' file counts: the original named some entries after the whole URL.
    if not os.path.isdir(cache_dir):
        return None
    key = url_cache_key(url)
    found = sorted(f for f in os.listdir(cache_dir) if f.startswith(key) and not f.endswith('.tmp'))
    return os.path.join(cache_dir, found[0]) if found else None

def _download(url, timeout, num_attempts, verbose):
    last_error = None
    for attempt in range(num_attempts):
        try:
            if verbose:
                print(f'Downloading {url} ...', end='', flush=True, file=sys.stderr)
            with urllib.request.urlopen(url, timeout=timeout) as res:
                data = res.read()
            if verbose:
                print(' done', file=sys.stderr)
            return data
        except (urllib.error.URLError, OSError, ValueError) as e:
            last_error = e
            if verbose:
                print(' failed', file=sys.stderr)
            if isinstance(e, urllib.error.HTTPError) and e.code in (403, 404):
                break
            time.sleep(min(2 ** attempt, 4) * 0.25)
    raise last_error

@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """Open a temporary file beside `path` for writing; on success it replaces `path` in one rename.

    Readers never see a half-written file, a crash leaves at most a hidden '.<name>.*.tmp' file,
    and the result gets the usual permissions (0666 minus the umask), not mkstemp's 0600. The
    data is flushed and fsync'ed before the rename. Every file this project writes for keeps
    (snapshots, training states, caches, datasets, images) goes through here.

        >>> with atomic_write('out/stats.json', 'w') as f:
        ...     json.dump(stats, f)

    Args:
        path: Destination; missing parent folders are created.
        mode: 'wb' (default) or 'w'.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise

@contextlib.contextmanager
def atomic_folder(path):
    """Yield a hidden temporary folder beside `path` to fill; on success it becomes `path` in one rename.

    `path` must not exist or be an empty folder (it is replaced). On error the temporary
    folder is removed. The result gets the usual permissions (0777 minus the umask).
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix='.' + os.path.basename(os.path.normpath(path)) + '.', suffix='.tmp')
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_current_umask())
        if os.path.isdir(path):
            os.rmdir(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

# The process umask (read by setting and restoring it).
def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask

# Write bytes to path through atomic_write.
def _write_atomic(path, data):
    with atomic_write(path) as f:
        f.write(data)

def _local_path(url):
    if url.startswith('file://'):
        return urllib.request.url2pathname(urllib.parse.urlparse(url).path)
    return url

def open_url(
    url,                    # http(s) URL, file:// URL or local path.
    cache_dir   = None,     # Download cache; None = make_cache_dir_path('downloads').
    num_attempts = 3,       # Download attempts before giving up.
    verbose     = True,     # Print download progress to stderr.
    return_filename = False,# Return a local path instead of an open binary file.
    cache       = True,     # Keep downloads in (and read them from) the cache.
    timeout     = 10,       # Seconds per network attempt.
):
    """Open a URL or local file for binary reading, using the download cache for URLs.

    A URL is fetched once and kept in the cache as '<md5 of the URL>_<file name>' (the
    original code's naming, so its downloads are reused); a cached copy is used without
    touching the network. Offline without a cached copy, the DownloadError says where to
    place the file.

        >>> with open_url('https://example.com/network.pkl') as f:
        ...     data = network_files.load_network_pkl(f)

    Returns:
        An open binary file, or its local path with return_filename=True.

    Raises:
        FileNotFoundError: a local path that does not exist. DownloadError: a URL that cannot
        be fetched and is not cached.
    """
    if not is_url(url):
        path = _local_path(url)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'No such file: {path}')
        return path if return_filename else open(path, 'rb')

    cache_dir = cache_dir if cache_dir is not None else make_cache_dir_path('downloads')
    cached = _find_cached(url, cache_dir) if cache else None
    if cached is None:
        try:
            data = _download(url, timeout=timeout, num_attempts=num_attempts, verbose=verbose)
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, 'reason', None) or e
            raise DownloadError(f'Cannot download {url} ({reason}). Offline? Place the file at '
                f'{url_cache_path(url, cache_dir)} (or set DNNLIB_CACHE_DIR) and retry.') from None
        if not cache:
            if return_filename:
                raise ValueError('open_url(return_filename=True) needs cache=True for URLs.')
            import io
            return io.BytesIO(data)
        cached = url_cache_path(url, cache_dir)
        _write_atomic(cached, data)
    return cached if return_filename else open(cached, 'rb')

#----------------------------------------------------------------------------
