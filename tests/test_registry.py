# Every `class_name=` / `func_name=` string in the project resolves, and its keyword arguments
# bind to the signature of what it names (STYLE.md: a reader can always get from a string to a file).

import ast
import inspect
import os

import pytest

from dnnlib import util

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {'tests', '.venv', '.git', 'build', '__pycache__'}

#----------------------------------------------------------------------------

def _project_sources():
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith('.')]
        for name in filenames:
            if name.endswith('.py'):
                yield os.path.join(dirpath, name)

def _named_calls():
    # (file:line, dotted name, keyword names passed beside it) for each call naming an object.
    found = []
    for path in _project_sources():
        tree = ast.parse(open(path, encoding='utf-8').read(), filename=path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and target.attr in ('class_name', 'func_name'):
                        found.append((f'{os.path.relpath(path, ROOT)}:{node.lineno}', node.value.value, []))
                continue
            if not isinstance(node, ast.Call):
                continue
            kw = {k.arg: k.value for k in node.keywords if k.arg is not None}
            for key in ('class_name', 'func_name'):
                value = kw.get(key)
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    others = sorted(k for k in kw if k != key)
                    where = f'{os.path.relpath(path, ROOT)}:{node.lineno}'
                    found.append((where, value.value, others))
    return found

NAMED_CALLS = _named_calls()

#----------------------------------------------------------------------------

def test_names_are_found():
    # The scan itself must see the project's configs; an empty scan would pass vacuously.
    assert len(NAMED_CALLS) > 0

@pytest.mark.parametrize('where,name,kwargs', NAMED_CALLS, ids=[f'{w}:{n}' for w, n, _ in NAMED_CALLS])
def test_name_resolves_and_kwargs_bind(where, name, kwargs):
    obj = util.get_obj_by_name(name)
    assert callable(obj), f'{where}: {name} is not callable'
    sig = inspect.signature(obj)
    # Keywords that configure the call site itself rather than the target are not bound.
    bindable = [k for k in kwargs if k not in ('class_name', 'func_name')]
    try:
        sig.bind_partial(**{k: None for k in bindable})
    except TypeError as e:
        pytest.fail(f'{where}: keywords {bindable} do not bind to {name}{sig}: {e}')

#----------------------------------------------------------------------------
