# The import rules of docs/architecture.md, checked by parsing every module's imports with ast
# (imports inside functions included): which part of the code may import which.

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY_PACKAGES = ('dnnlib', 'torch_utils', 'training', 'metrics')

#----------------------------------------------------------------------------
# Repository files: top-level scripts and library modules, as paths relative to ROOT.

def _python_files(folder):
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, folder)):
        dirnames[:] = [d for d in dirnames if not d.startswith('.') and d != '__pycache__']
        for name in sorted(filenames):
            if name.endswith('.py'):
                yield os.path.relpath(os.path.join(dirpath, name), ROOT)

SCRIPTS = sorted(name for name in os.listdir(ROOT) if name.endswith('.py') and os.path.isfile(os.path.join(ROOT, name)))
SCRIPT_MODULES = {name[:-3] for name in SCRIPTS}
LIBRARY = sorted(path for package in LIBRARY_PACKAGES for path in _python_files(package))

#----------------------------------------------------------------------------
# Dotted module name of a repository file ('training/augment.py' -> 'training.augment').

def module_name(path):
    parts = path[:-3].split(os.sep)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)

# Every module a file imports (absolute dotted names, relative imports resolved), with line numbers.
def imported_modules(path, root=ROOT):
    with open(os.path.join(root, path), encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    package = module_name(path) if path.endswith('__init__.py') else module_name(path).rpartition('.')[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level > 0:
                anchor = package.split('.')[:len(package.split('.')) - (node.level - 1)] if package else []
                base = '.'.join(anchor + ([base] if base else []))
            found.append((base, node.lineno))
            found += [(f'{base}.{alias.name}', node.lineno) for alias in node.names if alias.name != '*']
    return found

# The top-level name of a dotted module name.
def top(name):
    return name.split('.')[0]

# 'path:line imports name' for each import of path whose module satisfies `bad`.
def violations(path, bad):
    return [f'{path}:{line} imports {name}' for name, line in imported_modules(path) if bad(name)]

#----------------------------------------------------------------------------
# The files the rules are about exist (so a rule cannot pass by matching nothing).

def test_layout_is_found():
    assert {'train.py', 'generate.py', 'legacy.py'} <= set(SCRIPTS)
    assert 'training/augment.py' in LIBRARY and 'torch_utils/persistence.py' in LIBRARY
    assert network_family_modules(), 'no network family module found'
    assert any(name == 'torch_utils.misc' for name, _ in imported_modules('training/augment.py'))

# The parser finds imports inside functions and resolves relative ones.
def test_import_parser(tmp_path):
    (tmp_path / 'training' / 'sub').mkdir(parents=True)
    (tmp_path / 'training' / 'sub' / 'mod.py').write_text(
        'import os.path\nfrom . import sibling\nfrom ..augment import AugmentPipe\n'
        'def f():\n    import legacy\n    from torch_utils.ops import upfirdn2d\n')
    found = {name for name, _ in imported_modules(os.path.join('training', 'sub', 'mod.py'), root=str(tmp_path))}
    assert found == {'os.path', 'training.sub', 'training.sub.sibling', 'training.augment', 'training.augment.AugmentPipe',
                     'legacy', 'torch_utils.ops', 'torch_utils.ops.upfirdn2d'}

#----------------------------------------------------------------------------
# dnnlib and torch_utils are the base: they never import training, metrics or a script.

@pytest.mark.parametrize('path', [p for p in LIBRARY if top(module_name(p)) in ('dnnlib', 'torch_utils')])
def test_base_packages_import_no_training_metrics_or_script(path):
    assert violations(path, lambda name: top(name) in ('training', 'metrics') or top(name) in SCRIPT_MODULES) == []

#----------------------------------------------------------------------------
# dnnlib needs no torch; metrics evaluate any generator and know no training code.

@pytest.mark.parametrize('path', [p for p in LIBRARY if top(module_name(p)) == 'dnnlib'])
def test_dnnlib_imports_no_torch(path):
    assert violations(path, lambda name: top(name) == 'torch') == []

@pytest.mark.parametrize('path', [p for p in LIBRARY if top(module_name(p)) == 'metrics'])
def test_metrics_import_no_training(path):
    assert violations(path, lambda name: top(name) == 'training' or top(name) in SCRIPT_MODULES) == []

#----------------------------------------------------------------------------
# A network family module (training/networks_<family>.py that defines anything; the thin
# re-export modules do not) imports only torch_utils and dnnlib from the repository, so its
# pickles carry all the code their forward pass runs.

def network_family_modules():
    paths = []
    for path in LIBRARY:
        if path.startswith(os.path.join('training', 'networks_')):
            with open(os.path.join(ROOT, path), encoding='utf-8') as f:
                tree = ast.parse(f.read())
            if any(isinstance(node, (ast.ClassDef, ast.FunctionDef)) for node in tree.body):
                paths.append(path)
    return paths

@pytest.mark.parametrize('path', network_family_modules())
def test_network_family_modules_import_only_torch_utils_and_dnnlib(path):
    repo = set(LIBRARY_PACKAGES) | SCRIPT_MODULES
    assert violations(path, lambda name: top(name) in repo and top(name) not in ('torch_utils', 'dnnlib')) == []

#----------------------------------------------------------------------------
# No library module imports a top-level script (a non-editable `pip install .` has none).

@pytest.mark.parametrize('path', LIBRARY)
def test_library_imports_no_script(path):
    assert violations(path, lambda name: top(name) in SCRIPT_MODULES) == []

#----------------------------------------------------------------------------
# Scripts do not import other scripts: what they share lives in the library.

@pytest.mark.parametrize('path', SCRIPTS)
def test_scripts_import_no_other_script(path):
    own = path[:-3]
    assert violations(path, lambda name: top(name) in SCRIPT_MODULES and top(name) != own) == []

#----------------------------------------------------------------------------
# Atomic writes go through dnnlib.util.atomic_write / atomic_folder (fsync, normal permissions,
# cleanup on error) rather than a temporary file and rename of their own. The exceptions are
# not data files written for keeps, each with its reason.

RENAME_CALLS = {('os', 'replace'), ('os', 'rename'), ('os', 'fsync'), ('tempfile', 'mkstemp'), ('tempfile', 'mkdtemp')}
OWN_RENAME_ALLOWED = {
    'dnnlib/util.py': 'atomic_write and atomic_folder themselves',
    'torch_utils/custom_ops.py': 'a stale build lock is renamed aside so that one waiter breaks it',
    'training/launch.py': 'the run lock is created with its content by os.link of a temporary file',
    'gen_video.py': 'ffmpeg writes the video to a named temporary file (it needs a path, not a file object)',
}

def own_rename_calls(path):
    with open(os.path.join(ROOT, path), encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    return [f'{path}:{node.lineno} calls {node.func.value.id}.{node.func.attr}' for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
            and (node.func.value.id, node.func.attr) in RENAME_CALLS]

def test_atomic_writes_go_through_dnnlib():
    found = [call for path in LIBRARY + SCRIPTS if path not in OWN_RENAME_ALLOWED for call in own_rename_calls(path)]
    assert found == [], 'use dnnlib.util.atomic_write / atomic_folder'
    assert own_rename_calls('dnnlib/util.py')                       # The scan sees the real thing.
    stale = [path for path in OWN_RENAME_ALLOWED if not own_rename_calls(path)]
    assert stale == [], 'no longer needs its exception: remove it from OWN_RENAME_ALLOWED'

#----------------------------------------------------------------------------
# README's layout section lists every file of training/ on a line of its own.

def test_readme_layout_lists_every_training_file():
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
        layout = f.read().split('## Layout', 1)[1].split('\n## ', 1)[0]
    listed = {line.split()[0] for line in layout.splitlines() if line.startswith('  ') and line.split()[0].endswith('.py')}
    files = {os.path.basename(p) for p in LIBRARY if p.startswith('training' + os.sep) and not p.endswith('__init__.py')}
    assert files - listed == set(), 'add these to the README layout'
    assert listed - files == set(), 'the README layout names files that do not exist'

#----------------------------------------------------------------------------
