# Fingerprints of the network-module sources that the safe loader recognises.
#
# A network pickle embeds the full source text of each module that defines one of its
# persistent classes. The safe loader never runs that text: it parses it with `ast` and
# computes a fingerprint, the SHA-256 of a normalised dump of the syntax tree (comments,
# blank lines, formatting and docstrings ignored; any change to the code changes it). A
# source is known when its fingerprint is
#   - in the generated table training/known_sources.py (our earlier releases, the public
#     original releases listed in docs/pickles.md), or
#   - that of a family module of this installation (files written by this very code).
# A known source names the module whose classes of the same names rebuild its objects.
#
# Regenerate the table after changing a family module (keeps the entries of other projects'
# releases, recomputes ours: the current sources and those of the commits in PROJECT_RELEASES):
#
#     python -m training.source_fingerprints --write
#
# Without --write the command lists what is missing and exits with status 1 if anything is.

import ast
import datetime
import hashlib
import importlib
import os
import subprocess
import sys

import click

#----------------------------------------------------------------------------
# Where family modules live, the family each module path belongs to, and the commits of this
# project whose module sources the table must hold (snapshots written by them keep loading).

PACKAGE_DIRS = ('training', 'torch_utils')
FAMILIES = {
    'training/networks.py':                 'StyleGAN2',
    'training/networks_layers.py':          'StyleGAN2',
    'training/networks_discriminator.py':   'StyleGAN2',
    'training/networks_stylegan2.py':       'StyleGAN2',
    'training/networks_stylegan3.py':       'StyleGAN3',
    'training/networks_biggan.py':          'BigGAN',
    'training/norms.py':                    'BigGAN',
    'training/spectral_norm.py':            'BigGAN',
    'torch_utils/norms.py':                 'BigGAN',
    'torch_utils/spectral_norm.py':         'BigGAN',
    'training/augment.py':                  'ADA AugmentPipe',
}
PROJECT_NAME = 'gan-research'
PROJECT_RELEASES = ('9dd6ba4',)
THIS_INSTALLATION = 'this installation'
TABLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'known_sources.py')

#----------------------------------------------------------------------------
# The fingerprint of a module source: SHA-256 of its normalised syntax tree. Raises
# SyntaxError (or ValueError for NUL bytes) when the text is not Python.

def fingerprint(src):
    tree = ast.parse(src)
    _strip_docstrings(tree)
    return hashlib.sha256(_dump(tree).encode('utf-8')).hexdigest()

# Remove docstrings (a leading string constant of a module, class or function body).
def _strip_docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]

# A dump of a syntax tree that is the same on every Python version from 3.9 on: fields that
# are empty or None and version-specific annotations (type_params, type_comment, kind) are left out.
_SKIPPED_FIELDS = frozenset(['type_comment', 'type_params', 'kind'])

def _dump(node):
    if isinstance(node, ast.AST):
        parts = [type(node).__name__]
        for field in node._fields:
            value = getattr(node, field, None)
            if field in _SKIPPED_FIELDS or value is None or (isinstance(value, list) and not value):
                continue
            parts.append(f'{field}={_dump(value)}')
        return '(' + ' '.join(parts) + ')'
    if isinstance(node, list):
        return '[' + ' '.join(_dump(item) for item in node) + ']'
    return repr(node)

#----------------------------------------------------------------------------
# Names of the top-level classes a source decorates with persistent_class.

def persistent_class_names(src):
    names = []
    for node in ast.parse(src).body:
        if isinstance(node, ast.ClassDef) and any(_is_persistent_decorator(d) for d in node.decorator_list):
            names.append(node.name)
    return names

# `@persistence.persistent_class` or `@persistent_class`.
def _is_persistent_decorator(node):
    if isinstance(node, ast.Attribute):
        return node.attr == 'persistent_class'
    return isinstance(node, ast.Name) and node.id == 'persistent_class'

#----------------------------------------------------------------------------
# Module name and family of a repository-relative path such as 'training/networks.py'.

def module_name(path):
    return path[:-len('.py')].replace('/', '.')

# The family name shown to users for a module path.
def family(path):
    return FAMILIES.get(path, module_name(path))

# A table entry for a source found at `path` in `release`.
def make_entry(release, path, src):
    return dict(release=release, path=path, module=module_name(path), family=family(path), classes=persistent_class_names(src))

#----------------------------------------------------------------------------
# The family modules of this installation: (repository-relative path, source) of every module
# under PACKAGE_DIRS that defines a persistent class. torch_utils/persistence.py is the
# mechanism itself and defines none at the top level.

def installed_sources():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = []
    for package in PACKAGE_DIRS:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = sorted(d for d in dirs if d != '__pycache__')
            for name in sorted(files):
                if not name.endswith('.py'):
                    continue
                path = os.path.join(folder, name)
                with open(path, encoding='utf-8') as f:
                    src = f.read()
                if 'persistent_class' in src and persistent_class_names(src):
                    found.append((os.path.relpath(path, root).replace(os.sep, '/'), src))
    return found

_installed_entries = None

# Fingerprint => entry for the family modules of this installation (computed once per process).
def installed_entries():
    global _installed_entries # pylint: disable=global-statement
    if _installed_entries is None:
        _installed_entries = {fingerprint(src): make_entry(THIS_INSTALLATION, path, src) for path, src in installed_sources()}
    return _installed_entries

#----------------------------------------------------------------------------
# The entry of a module source (a dict: release, path, module, family, classes), or None
# when the source is not one this project knows. Raises SyntaxError/ValueError for non-Python text.

def lookup(src):
    from training import known_sources # pylint: disable=import-outside-toplevel
    key = fingerprint(src)
    return installed_entries().get(key) or known_sources.KNOWN_SOURCES.get(key)

# The class of this installation that rebuilds objects of `class_name` from a known source,
# or None: the same name in the entry's module (re-exports followed), a persistent class.
def resolve_class(entry, class_name):
    from torch_utils import persistence # pylint: disable=import-outside-toplevel
    if class_name not in entry['classes']:
        return None
    try:
        module = importlib.import_module(entry['module'])
    except ImportError:
        return None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not persistence.is_persistent(cls) or not cls.__module__.startswith(PACKAGE_DIRS):
        return None
    return cls

#----------------------------------------------------------------------------
# The new table: the entries of other projects' releases from the current one (they cannot be
# recomputed here), the family modules of this project's PROJECT_RELEASES (read with git),
# and this installation's family modules. Entries of this project's unreleased versions are
# not kept: a snapshot written by such code loads safely as long as that code is installed.

def build_table(current, git_root):
    table = {key: entry for key, entry in current.items() if not entry['release'].startswith(PROJECT_NAME)}
    for path, src in installed_sources():
        table[fingerprint(src)] = make_entry(f'{PROJECT_NAME} {datetime.date.today()}', path, src)
    for commit in PROJECT_RELEASES:
        for path, src in _sources_at_commit(git_root, commit):
            table[fingerprint(src)] = make_entry(f'{PROJECT_NAME} {commit}', path, src)
    return table

# (path, source) of the family modules at a commit, read with git.
def _sources_at_commit(git_root, commit):
    def git(*args):
        return subprocess.run(['git', '-C', git_root, *args], capture_output=True, text=True, check=True).stdout
    found = []
    for path in git('ls-tree', '-r', '--name-only', commit, '--', *PACKAGE_DIRS).split():
        if path.endswith('.py'):
            src = git('show', f'{commit}:{path}')
            if 'persistent_class' in src and persistent_class_names(src):
                found.append((path, src))
    return found

# Write the table as a Python module, sorted by release and path.
def write_table(table, path=TABLE_PATH):
    lines = ['# Generated by `python -m training.source_fingerprints --write`; do not edit by hand.',
        '# Fingerprint (training.source_fingerprints.fingerprint) of a network-module source =>',
        '# the release it comes from, its path there, the module and family whose classes rebuild it.',
        '# See docs/pickles.md.', '', 'KNOWN_SOURCES = {']
    for key, entry in sorted(table.items(), key=lambda item: (item[1]['release'], item[1]['path'], item[0])):
        fields = ', '.join(f'{name}={entry[name]!r}' for name in ('release', 'path', 'module', 'family'))
        lines += [f'    {key!r}: dict({fields},', f'        classes={entry["classes"]!r}),']
    lines += ['}', '']
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines))

#----------------------------------------------------------------------------
# Command line: check (or with --write, regenerate) the table.

@click.command()
@click.option('--write', help='Rewrite training/known_sources.py', is_flag=True)
def main(write):
    """Check or regenerate the table of known network-module sources (training/known_sources.py)."""
    from training import known_sources # pylint: disable=import-outside-toplevel
    git_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        table = build_table(known_sources.KNOWN_SOURCES, git_root)
    except (OSError, subprocess.CalledProcessError) as err:
        raise click.ClickException(f'Cannot read the release sources with git ({err}); run this in a git checkout of the project') from err
    added = sorted(set(table) - set(known_sources.KNOWN_SOURCES))
    for key in added:
        click.echo(f'{"adding" if write else "missing"}: {table[key]["release"]} {table[key]["path"]} {key[:16]}')
    if write:
        write_table(table)
        click.echo(f'Wrote {TABLE_PATH} ({len(table)} sources)')
    elif added:
        sys.exit(1)

if __name__ == '__main__':
    main() # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
