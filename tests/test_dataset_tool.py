# Tests for dataset_tool.py: every source kind, transforms, labels, and the errors that
# must leave no partial output behind.

import gzip
import io
import json
import os
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import dataset_tool
from training.dataset import ImageFolderDataset

#----------------------------------------------------------------------------
# Run the command line; returns click's result.

def _run(*args):
    return CliRunner().invoke(dataset_tool.main, [str(a) for a in args])

def _ok(*args):
    result = _run(*args)
    assert result.exit_code == 0, result.output
    return result

def _fails(pattern, *args):
    result = _run(*args)
    assert result.exit_code != 0 and isinstance(result.exception, (SystemExit, type(None))), result.output
    lines = [line for line in result.output.splitlines() if line.startswith('Error: ')]
    assert len(lines) == 1 and 'Traceback' not in result.output, result.output
    assert pattern in lines[0], lines[0]
    return lines[0]

def _load(path, **kwargs):
    ds = ImageFolderDataset(str(path), **kwargs)
    images, labels = zip(*[ds[i] for i in range(len(ds))])
    return ds, np.stack(images), np.stack(labels)

def _rand(shape, seed=0):
    return np.random.RandomState(seed).randint(0, 256, size=shape, dtype=np.uint8)

#----------------------------------------------------------------------------
# Folder of non-square JPEGs: the central square is red, the margins blue, so a correct
# center crop is all red whatever the resize.

def test_folder_center_crop(tmp_path):
    src = tmp_path / 'photos'
    sizes = [(96, 64), (64, 100), (128, 80)]
    labels = []
    for i, (w, h) in enumerate(sizes):
        image = np.zeros([h, w, 3], dtype=np.uint8)
        image[:, :, 2] = 255
        side = min(w, h)
        image[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2] = [255, 0, 0]
        (src / f'sub{i}').mkdir(parents=True)
        PIL.Image.fromarray(image).save(src / f'sub{i}' / f'photo{i}.jpg', quality=95)
        labels.append([f'sub{i}/photo{i}.jpg', [float(i), 0.5]])
    (src / 'dataset.json').write_text(json.dumps({'labels': labels}))
    dest = tmp_path / 'out' / 'photos64.zip'
    _ok('--source', src, '--dest', dest, '--transform=center-crop', '--resolution=64x64')
    ds, images, out_labels = _load(dest, use_labels=True)
    assert ds.image_shape == [3, 64, 64] and len(ds) == 3
    red = np.array([255, 0, 0], dtype=np.float64).reshape(1, 3, 1, 1)
    assert np.abs(images[:, :, 4:-4, 4:-4] - red).max() <= 12
    np.testing.assert_array_equal(out_labels, np.float32([[0, 0.5], [1, 0.5], [2, 0.5]]))
    with zipfile.ZipFile(dest) as zf:
        assert sorted(zf.namelist())[:2] == ['00000/img00000000.png', '00000/img00000001.png']
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
    assert os.listdir(tmp_path / 'out') == ['photos64.zip']

def test_center_crop_wide(tmp_path):
    src = tmp_path / 'wide'
    src.mkdir()
    PIL.Image.fromarray(np.full([60, 160, 3], 200, dtype=np.uint8)).save(src / 'a.png')
    PIL.Image.fromarray(np.full([20, 30, 3], 100, dtype=np.uint8)).save(src / 'b.png') # Too small: skipped.
    result = _ok('--source', src, '--dest', tmp_path / 'out', '--transform=center-crop-wide', '--resolution=64x48')
    assert 'Skipped 1' in result.output
    _ds, images, _labels = _load(tmp_path / 'out')
    assert images.shape == (1, 3, 64, 64)
    assert np.all(images[0, :, :8] == 0) and np.all(images[0, :, -8:] == 0) and np.all(images[0, :, 8:-8] == 200)

def test_resize_box_filter(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    image = _rand([16, 16, 3])
    PIL.Image.fromarray(image).save(src / 'a.png')
    _ok('--source', src, '--dest', tmp_path / 'out.zip', '--resolution=8', '--resize-filter=box')
    _ds, images, _labels = _load(tmp_path / 'out.zip')
    expected = image.astype(np.float64).reshape(8, 2, 8, 2, 3).mean(axis=(1, 3)).transpose(2, 0, 1)
    assert np.abs(images[0] - expected).max() <= 1

def test_colour_modes(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    rgba = _rand([8, 8, 4])
    PIL.Image.fromarray(rgba, 'RGBA').save(src / 'a.png')
    PIL.Image.fromarray(rgba[:, :, :3]).convert('P').save(src / 'b.png')
    _ok('--source', src, '--dest', tmp_path / 'rgb.zip')
    _ds, images, labels = _load(tmp_path / 'rgb.zip')
    np.testing.assert_array_equal(images[0], rgba[:, :, :3].transpose(2, 0, 1))
    assert images.shape == (2, 3, 8, 8) and labels.shape == (2, 0)

    gray = tmp_path / 'gray'
    gray.mkdir()
    PIL.Image.fromarray(rgba[:, :, 0]).save(gray / 'a.png')
    PIL.Image.fromarray(rgba[:, :, :2], 'LA').save(gray / 'b.png')
    _ok('--source', gray, '--dest', tmp_path / 'gray.zip')
    _ds, images, _labels = _load(tmp_path / 'gray.zip')
    assert images.shape == (2, 1, 8, 8)
    np.testing.assert_array_equal(images[:, 0], rgba[None, :, :, 0].repeat(2, axis=0))

def test_zip_source(tmp_path):
    images = _rand([3, 16, 16, 3])
    src = tmp_path / 'src.zip'
    with zipfile.ZipFile(src, 'w') as zf:
        for i, image in enumerate(images):
            png = io.BytesIO()
            PIL.Image.fromarray(image).save(png, format='png')
            zf.writestr(f'dir/{i}.png', png.getvalue())
        zf.writestr('dataset.json', json.dumps({'labels': [[f'dir/{i}.png', 2 - i] for i in range(3)]}))
    _ok('--source', src, '--dest', tmp_path / 'out', '--max-images=2')
    ds, out_images, out_labels = _load(tmp_path / 'out', use_labels=True)
    np.testing.assert_array_equal(out_images, images[:2].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(out_labels, np.eye(3, dtype=np.float32)[[2, 1]])
    meta = json.loads((tmp_path / 'out' / 'dataset.json').read_text())
    assert meta['labels'][0] == ['00000/img00000000.png', 2]

#----------------------------------------------------------------------------
# CIFAR-10 python tarball with two batches of 10 images.

def test_cifar10(tmp_path):
    data = _rand([20, 3072])
    labels = np.random.RandomState(1).randint(0, 10, size=20).tolist()
    src = tmp_path / 'cifar-10-python.tar.gz'
    with tarfile.open(src, 'w:gz') as tar:
        for b in range(2):
            batch = pickle.dumps({b'data': data[b * 10 : (b + 1) * 10], b'labels': labels[b * 10 : (b + 1) * 10]}, protocol=2)
            info = tarfile.TarInfo(f'cifar-10-batches-py/data_batch_{b + 1}')
            info.size = len(batch)
            tar.addfile(info, io.BytesIO(batch))
    _ok('--source', src, '--dest', tmp_path / 'cifar.zip')
    ds, images, onehot = _load(tmp_path / 'cifar.zip', use_labels=True)
    assert ds.image_shape == [3, 32, 32] and len(ds) == 20
    np.testing.assert_array_equal(images, data.reshape(20, 3, 32, 32))
    np.testing.assert_array_equal(onehot.argmax(axis=1), labels)
    _ok('--source', src, '--dest', tmp_path / 'cifar15.zip', '--max-images=15')
    assert len(ImageFolderDataset(str(tmp_path / 'cifar15.zip'))) == 15

def test_cifar10_refuses_code(tmp_path):
    src = tmp_path / 'evil.tar.gz'
    batch = pickle.dumps({b'data': os.system})
    with tarfile.open(src, 'w:gz') as tar:
        info = tarfile.TarInfo('cifar-10-batches-py/data_batch_1')
        info.size = len(batch)
        tar.addfile(info, io.BytesIO(batch))
    _fails('refusing to load', '--source', src, '--dest', tmp_path / 'out.zip')

#----------------------------------------------------------------------------
# MNIST IDX files, gzipped and plain.

def _write_idx(path, array, compress):
    data = struct.pack('>HBB', 0, 0x08, array.ndim) + struct.pack(f'>{array.ndim}I', *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)

@pytest.mark.parametrize('compress', [True, False])
def test_mnist(tmp_path, compress):
    images = _rand([6, 28, 28])
    labels = np.uint8([3, 1, 4, 1, 5, 9])
    ext = '.gz' if compress else ''
    (tmp_path / 'mnist').mkdir()
    _write_idx(tmp_path / 'mnist' / f'train-images-idx3-ubyte{ext}', images, compress)
    _write_idx(tmp_path / 'mnist' / f'train-labels-idx1-ubyte{ext}', labels, compress)
    source = tmp_path / 'mnist' if compress else tmp_path / 'mnist' / 'train-images-idx3-ubyte'
    _ok('--source', source, '--dest', tmp_path / 'mnist.zip')
    ds, out_images, onehot = _load(tmp_path / 'mnist.zip', use_labels=True)
    assert ds.image_shape == [1, 32, 32] and ds.label_dim == 10
    expected = np.zeros([6, 1, 32, 32], dtype=np.uint8)
    expected[:, 0, 2:30, 2:30] = images
    np.testing.assert_array_equal(out_images, expected)
    np.testing.assert_array_equal(onehot.argmax(axis=1), labels)

def test_mnist_errors(tmp_path):
    _write_idx(tmp_path / 'train-images-idx3-ubyte', _rand([3, 28, 28]), False)
    _fails('train-labels-idx1-ubyte', '--source', tmp_path / 'train-images-idx3-ubyte', '--dest', tmp_path / 'o.zip')
    _write_idx(tmp_path / 'train-labels-idx1-ubyte', np.uint8([1, 2]), False)
    _fails('has 3 images but', '--source', tmp_path, '--dest', tmp_path / 'o.zip')
    (tmp_path / 'train-labels-idx1-ubyte').write_bytes(b'\x00\x00\x08\x01\x00\x00\x00\x09\x01')
    _fails('MNIST IDX', '--source', tmp_path, '--dest', tmp_path / 'o.zip')
    assert not (tmp_path / 'o.zip').exists()

#----------------------------------------------------------------------------
# LSUN needs the optional lmdb package.

def test_lsun(tmp_path):
    (tmp_path / 'cat_lmdb').mkdir()
    images = _rand([2, 16, 16, 3])
    try:
        import lmdb
    except ImportError:
        (tmp_path / 'cat_lmdb' / 'data.mdb').write_bytes(b'')
        _fails('pip install lmdb', '--source', tmp_path / 'cat_lmdb', '--dest', tmp_path / 'o.zip')
        return
    env = lmdb.open(str(tmp_path / 'cat_lmdb'), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, image in enumerate(images):
            webp = io.BytesIO()
            PIL.Image.fromarray(image).save(webp, format='webp', lossless=True)
            txn.put(f'key{i}'.encode(), webp.getvalue())
    env.close()
    _ok('--source', tmp_path / 'cat_lmdb', '--dest', tmp_path / 'o.zip')
    _ds, out_images, _labels = _load(tmp_path / 'o.zip')
    np.testing.assert_array_equal(out_images, images.transpose(0, 3, 1, 2))

#----------------------------------------------------------------------------
# Errors: one line, nonzero exit, nothing left at the destination.

def _image_folder(path, sizes):
    path.mkdir(parents=True)
    for i, (w, h) in enumerate(sizes):
        PIL.Image.fromarray(_rand([h, w, 3], seed=i)).save(path / f'img{i}.png')
    return path

@pytest.mark.parametrize('dest_name', ['out.zip', 'out'])
def test_corrupt_image(tmp_path, dest_name):
    src = _image_folder(tmp_path / 'src', [(8, 8)] * 3)
    (src / 'img1.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')
    _fails('img1.png', '--source', src, '--dest', tmp_path / 'dest' / dest_name)
    assert not (tmp_path / 'dest').exists()
    (tmp_path / 'dest').mkdir()
    _fails('img1.png', '--source', src, '--dest', tmp_path / 'dest' / dest_name)
    assert os.listdir(tmp_path / 'dest') == []

def test_missing_source(tmp_path):
    _fails('does not exist', '--source', tmp_path / 'nothing', '--dest', tmp_path / 'out.zip')
    (tmp_path / 'empty').mkdir()
    _fails('No image files', '--source', tmp_path / 'empty', '--dest', tmp_path / 'out.zip')
    (tmp_path / 'notes.txt').write_text('x')
    _fails('is not a folder, .zip', '--source', tmp_path / 'notes.txt', '--dest', tmp_path / 'out.zip')
    assert not (tmp_path / 'out.zip').exists()

def test_existing_dest(tmp_path):
    src = _image_folder(tmp_path / 'src', [(8, 8)])
    (tmp_path / 'out.zip').write_bytes(b'old')
    _fails('already exists', '--source', src, '--dest', tmp_path / 'out.zip')
    assert (tmp_path / 'out.zip').read_bytes() == b'old'
    (tmp_path / 'full').mkdir()
    (tmp_path / 'full' / 'x').write_text('x')
    _fails('not empty', '--source', src, '--dest', tmp_path / 'full')
    (tmp_path / 'empty').mkdir()
    _ok('--source', src, '--dest', tmp_path / 'empty')
    assert len(ImageFolderDataset(str(tmp_path / 'empty'))) == 1

def test_option_errors(tmp_path):
    src = _image_folder(tmp_path / 'src', [(8, 8)])
    dest = tmp_path / 'out.zip'
    _fails('needs --resolution', '--source', src, '--dest', dest, '--transform=center-crop')
    _fails('not square', '--source', src, '--dest', dest, '--resolution=64x32')
    _fails('power of two', '--source', src, '--dest', dest, '--resolution=48x48')
    _fails('width >= height', '--source', src, '--dest', dest, '--transform=center-crop-wide', '--resolution=32x64')
    _fails('WxH', '--source', src, '--dest', dest, '--resolution=big')
    assert not dest.exists()

def test_shape_errors(tmp_path):
    src = _image_folder(tmp_path / 'a', [(16, 8)])
    _fails('img0.png is 16x8', '--source', src, '--dest', tmp_path / 'out.zip')
    src = _image_folder(tmp_path / 'b', [(8, 8), (16, 16)])
    _fails('img1.png is 16x16', '--source', src, '--dest', tmp_path / 'out.zip')
    assert sorted(os.listdir(tmp_path)) == ['a', 'b']
    _ok('--source', src, '--dest', tmp_path / 'out.zip', '--resolution=8x8')

def test_label_errors(tmp_path):
    src = _image_folder(tmp_path / 'src', [(8, 8)] * 2)
    (src / 'dataset.json').write_text(json.dumps({'labels': [['img0.png', 1]]}))
    _fails('no label for img1.png', '--source', src, '--dest', tmp_path / 'out.zip')
    (src / 'dataset.json').write_text('{"labels": 5}')
    _fails('dataset.json is not of the form', '--source', src, '--dest', tmp_path / 'out.zip')

#----------------------------------------------------------------------------
