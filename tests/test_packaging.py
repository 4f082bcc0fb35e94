# Tests that the installable packages stand on their own: no library module imports a
# top-level script (legacy.py, train.py, ...), and a non-editable `pip install` of a copy of
# the project gives importable training, metrics and network-file modules.

import ast
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('dnnlib', 'torch_utils', 'training', 'metrics')

#----------------------------------------------------------------------------
# Top-level module names each Python file of a package imports (absolute imports only).

def _imported_top_names(path):
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split('.')[0])
    return names

def _package_files():
    for package in PACKAGES:
        for folder, _dirs, files in os.walk(os.path.join(ROOT, package)):
            for name in sorted(files):
                if name.endswith('.py'):
                    yield os.path.join(folder, name)

#----------------------------------------------------------------------------

def test_no_library_module_imports_a_script():
    scripts = {name[:-3] for name in os.listdir(ROOT) if name.endswith('.py')}
    assert {'legacy', 'train', 'generate'} <= scripts
    offenders = []
    for path in _package_files():
        bad = _imported_top_names(path) & scripts
        if bad:
            offenders.append(f'{os.path.relpath(path, ROOT)} imports {", ".join(sorted(bad))}')
    assert not offenders, offenders

#----------------------------------------------------------------------------
# Every folder of a package holding Python files is a package itself, so setuptools' find
# (the rule in pyproject.toml) ships it.

def test_every_package_folder_is_shipped():
    missing = []
    for package in PACKAGES:
        for folder, _dirs, files in os.walk(os.path.join(ROOT, package)):
            if '__pycache__' in folder:
                continue
            if any(name.endswith('.py') for name in files) and '__init__.py' not in files:
                missing.append(os.path.relpath(folder, ROOT))
    assert not missing, f'folders without __init__.py are not installed: {missing}'
    with open(os.path.join(ROOT, 'pyproject.toml'), encoding='utf-8') as f:
        pyproject = f.read()
    for package in PACKAGES:
        assert f'"{package}*"' in pyproject

#----------------------------------------------------------------------------
# A real non-editable install of a copy of the project (no network: no build isolation, no
# dependencies), then imports from a folder where the repository is not on sys.path.

@pytest.mark.slow
def test_non_editable_install(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    for name in ('pyproject.toml', 'README.md'):
        shutil.copy(os.path.join(ROOT, name), src / name)
    for package in PACKAGES:
        shutil.copytree(os.path.join(ROOT, package), src / package, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    site = tmp_path / 'site'
    result = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--no-build-isolation',
        '--no-index', f'--target={site}', str(src)], capture_output=True, text=True, check=False)
    if result.returncode != 0 and 'setuptools' in result.stderr and 'No module named' in result.stderr:
        pytest.skip('setuptools is not installed in this environment')
    assert result.returncode == 0, result.stderr
    for source in ('cpu_kernels.c', 'bias_act.cu', 'bias_act.cpp', 'bias_act.h'): # Compiled at first use.
        assert (site / 'torch_utils' / 'ops' / source).is_file(), source
    code = ('import training, training.training_loop, training.network_files, metrics.metric_main; '
        'import sys; sys.stdout.write(training.__file__)')
    env = dict(os.environ, PYTHONPATH=str(site))
    run = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(str(site)), run.stdout # The installed copy, not the repository.

#----------------------------------------------------------------------------
