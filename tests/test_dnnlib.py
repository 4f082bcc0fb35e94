# Tests of dnnlib: EasyDict, the name registry, format_time, Logger and open_url with its cache.

import hashlib
import http.server
import io
import os
import sys
import threading

import pytest

import dnnlib
from dnnlib import util

#----------------------------------------------------------------------------

def test_easydict_attribute_access():
    d = dnnlib.EasyDict(a=1)
    d.b = 2
    assert d == {'a': 1, 'b': 2} and d.a == 1
    del d.a
    assert 'a' not in d
    with pytest.raises(AttributeError):
        _ = d.missing

#----------------------------------------------------------------------------

def test_registry_resolves_names_and_objects():
    assert util.get_obj_by_name('os.path.join') is os.path.join
    assert util.get_obj_by_name(os.path.join) is os.path.join
    assert util.call_func_by_name('a', 'b', func_name='os.path.join') == os.path.join('a', 'b')
    d = util.construct_class_by_name(class_name='dnnlib.util.EasyDict', x=3)
    assert isinstance(d, dnnlib.EasyDict) and d.x == 3
    assert util.construct_class_by_name(class_name=dict, y=1) == {'y': 1}
    module, rest = util.get_module_from_obj_name('collections.OrderedDict.fromkeys')
    assert module.__name__ == 'collections' and rest == 'OrderedDict.fromkeys'

def test_registry_unknown_attribute_lists_closest_names():
    with pytest.raises(util.NameLookupError) as e:
        util.construct_class_by_name(class_name='dnnlib.util.EasyDikt')
    assert 'dnnlib.util.EasyDict' in str(e.value)

def test_registry_unknown_module_lists_closest_names():
    with pytest.raises(util.NameLookupError) as e:
        util.get_obj_by_name('dnnlibb.util.EasyDict')
    assert "'dnnlibb'" in str(e.value) and 'dnnlib' in str(e.value)
    with pytest.raises(util.NameLookupError) as e:
        util.get_obj_by_name('dnnlib.utill.EasyDict')
    assert 'dnnlib.util' in str(e.value)

def test_registry_shows_import_error_inside_target(tmp_path, monkeypatch):
    pkg = tmp_path / 'brokenpkg'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    (pkg / 'mod.py').write_text('import no_such_dependency_xyz\nclass C: pass\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as e:
        util.get_obj_by_name('brokenpkg.mod.C')
    assert e.value.name == 'no_such_dependency_xyz'

def test_registry_rejects_bad_names():
    for bad in ['', '.x', 'x.']:
        with pytest.raises(util.NameLookupError):
            util.get_obj_by_name(bad)
    with pytest.raises(TypeError):
        util.construct_class_by_name(class_name='os.path.join')
    with pytest.raises(TypeError):
        util.call_func_by_name(func_name='os.sep')

def test_list_named_objects():
    names = util.list_named_objects(['dnnlib'])
    assert 'dnnlib.util.EasyDict' in names and 'dnnlib.util.Logger' in names

#----------------------------------------------------------------------------

@pytest.mark.parametrize('seconds,text', [(0, '0s'), (59.4, '59s'), (61, '1m 01s'), (3600 * 2 + 3 * 60 + 4, '2h 03m 04s'),
                                          (86400 + 2 * 3600 + 3 * 60, '1d 02h 03m')])
def test_format_time(seconds, text):
    assert util.format_time(seconds) == text

def test_logger_tees_to_file(tmp_path, capsys):
    log = tmp_path / 'log.txt'
    with util.Logger(str(log), file_mode='w'):
        print('hello')
        print('oops', file=sys.stderr)
    assert sys.stdout is not None and not isinstance(sys.stdout, util.Logger)
    assert log.read_text() == 'hello\noops\n'
    assert 'hello' in capsys.readouterr().out

#----------------------------------------------------------------------------

def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path))
    assert util.make_cache_dir_path('downloads') == os.path.join(str(tmp_path), 'downloads')
    monkeypatch.delenv('DNNLIB_CACHE_DIR')
    monkeypatch.setenv('HOME', str(tmp_path))
    assert util.make_cache_dir_path('x') == os.path.join(str(tmp_path), '.cache', 'dnnlib', 'x')

def test_cache_path_matches_original_layout(tmp_path):
    url = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt'
    expect = hashlib.md5(url.encode('utf-8')).hexdigest() + '_vgg16.pt'
    assert util.url_cache_path(url, str(tmp_path)) == os.path.join(str(tmp_path), expect)
    assert util.url_cache_path('http://h/a b+c.pkl', 'd').endswith('_a_b_c.pkl')

def test_open_url_local_and_file_urls(tmp_path):
    f = tmp_path / 'x.bin'
    f.write_bytes(b'abc')
    with util.open_url(str(f)) as fp:
        assert fp.read() == b'abc'
    with util.open_url(f.as_uri()) as fp:
        assert fp.read() == b'abc'
    assert util.open_url(str(f), return_filename=True) == str(f)
    with pytest.raises(FileNotFoundError, match='No such file'):
        util.open_url(str(tmp_path / 'missing.pkl'))

def test_open_url_uses_cache_without_network(tmp_path):
    url = 'https://unreachable.invalid/some/detector.pt'
    cached = util.url_cache_path(url, str(tmp_path))
    open(cached, 'wb').write(b'cached!')
    with util.open_url(url, cache_dir=str(tmp_path)) as fp:
        assert fp.read() == b'cached!'

def test_open_url_finds_original_whole_url_cache_name(tmp_path):
    url = 'https://unreachable.invalid/net.pkl'
    name = util.url_cache_key(url) + 'https___unreachable.invalid_net.pkl'
    (tmp_path / name).write_bytes(b'old')
    assert util.open_url(url, cache_dir=str(tmp_path), return_filename=True) == str(tmp_path / name)

def test_open_url_offline_error_names_file_and_place(tmp_path):
    url = 'http://127.0.0.1:9/inception-2015-12-05.pt'
    with pytest.raises(util.DownloadError) as e:
        util.open_url(url, cache_dir=str(tmp_path), num_attempts=1, verbose=False, timeout=1)
    msg = str(e.value)
    assert url in msg and util.url_cache_path(url, str(tmp_path)) in msg and '\n' not in msg
    assert os.listdir(tmp_path) == []

class _Handler(http.server.BaseHTTPRequestHandler):
    hits = 0
    def do_GET(self):
        type(self).hits += 1
        body = b'payload:' + self.path.encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

def test_open_url_downloads_once_then_caches(tmp_path):
    server = http.server.HTTPServer(('127.0.0.1', 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f'http://127.0.0.1:{server.server_port}/dir/file.pkl'
        for _ in range(2):
            with util.open_url(url, cache_dir=str(tmp_path), verbose=False) as fp:
                assert fp.read() == b'payload:/dir/file.pkl'
        assert _Handler.hits == 1
        assert os.listdir(tmp_path) == [os.path.basename(util.url_cache_path(url, str(tmp_path)))]
        with util.open_url(url + '?nocache', cache=False, verbose=False) as fp:
            assert isinstance(fp, io.BytesIO)
    finally:
        server.shutdown()

#----------------------------------------------------------------------------

def test_atomic_write_replaces_whole_file_with_normal_permissions(tmp_path):
    path = tmp_path / 'out.bin'
    path.write_bytes(b'old')
    old_mask = os.umask(0o022)
    try:
        with util.atomic_write(str(path)) as f:
            f.write(b'new')
            assert path.read_bytes() == b'old' # Not visible until the rename.
    finally:
        os.umask(old_mask)
    assert path.read_bytes() == b'new'
    assert (path.stat().st_mode & 0o777) == 0o644
    with pytest.raises(RuntimeError):
        with util.atomic_write(str(path)) as f:
            f.write(b'partial')
            raise RuntimeError('interrupted')
    assert path.read_bytes() == b'new' and os.listdir(tmp_path) == ['out.bin']

def test_atomic_folder_appears_whole_with_normal_permissions(tmp_path):
    dest = tmp_path / 'sub' / 'out'
    old_mask = os.umask(0o022)
    try:
        with util.atomic_folder(str(dest)) as tmp:
            (tmp_path / 'sub' / os.path.basename(tmp) / 'a.txt').write_text('a')
            assert not dest.exists()                       # Not visible until the rename.
    finally:
        os.umask(old_mask)
    assert os.listdir(dest) == ['a.txt'] and (dest.stat().st_mode & 0o777) == 0o755
    assert os.listdir(tmp_path / 'sub') == ['out']
    empty = tmp_path / 'empty'
    empty.mkdir()
    with util.atomic_folder(str(empty)) as tmp:             # An empty folder is replaced.
        open(os.path.join(tmp, 'b.txt'), 'w').close()
    assert os.listdir(empty) == ['b.txt']
    with pytest.raises(RuntimeError):
        with util.atomic_folder(str(tmp_path / 'failed')) as tmp:
            open(os.path.join(tmp, 'c.txt'), 'w').close()
            raise RuntimeError('interrupted')
    assert sorted(os.listdir(tmp_path)) == ['empty', 'sub']

#----------------------------------------------------------------------------
