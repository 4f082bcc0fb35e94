# Tests for training/dataset.py: reading folders and ZIPs, labels, subsets, x-flip,
# DataLoader workers and the error messages for bad datasets.

import json
import pickle
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib
from training.dataset import DatasetError, ImageFolderDataset

#----------------------------------------------------------------------------
# Random uint8 images [N, H, W, C] (C = 1 is stored as grayscale).

def _random_images(num, res=8, channels=3, seed=0):
    return np.random.RandomState(seed).randint(0, 256, size=[num, res, res, channels], dtype=np.uint8)

def _to_pil(image):
    return PIL.Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)

#----------------------------------------------------------------------------
# Write images (and labels, when given) as a folder or ZIP; returns the path and the
# file names in sorted order.

def _make_dataset(tmp_path, images, labels=None, kind='dir', subdirs=True):
    tmp_path.mkdir(parents=True, exist_ok=True)
    root = tmp_path / 'data'
    fnames = [(f'{i % 2}/' if subdirs else '') + f'img{i:03d}.png' for i in range(len(images))]
    files = {}
    for fname, image in zip(fnames, images):
        path = tmp_path / 'tmp.png'
        _to_pil(image).save(path)
        files[fname] = path.read_bytes()
    if labels is not None:
        files['dataset.json'] = json.dumps({'labels': [[f, l] for f, l in zip(fnames, labels)]}).encode()
    if kind == 'zip':
        root = tmp_path / 'data.zip'
        with zipfile.ZipFile(root, 'w', compression=zipfile.ZIP_STORED) as zf:
            for fname, data in files.items():
                zf.writestr(fname, data)
    else:
        for fname, data in files.items():
            (root / fname).parent.mkdir(parents=True, exist_ok=True)
            (root / fname).write_bytes(data)
    order = sorted(range(len(fnames)), key=lambda i: fnames[i])
    return str(root), order

#----------------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['dir', 'zip'])
def test_int_labels(tmp_path, kind):
    images = _random_images(5)
    labels = [0, 2, 1, 2, 0]
    path, order = _make_dataset(tmp_path, images, labels, kind=kind)
    ds = ImageFolderDataset(path, use_labels=True)
    assert ds.name == 'data' and len(ds) == 5
    assert ds.image_shape == [3, 8, 8] and ds.num_channels == 3 and ds.resolution == 8
    assert ds.label_shape == [3] and ds.label_dim == 3
    assert ds.has_labels and ds.has_onehot_labels
    for idx, src in enumerate(order):
        image, label = ds[idx]
        assert image.dtype == np.uint8 and label.dtype == np.float32
        np.testing.assert_array_equal(image, images[src].transpose(2, 0, 1))
        np.testing.assert_array_equal(label, np.eye(3, dtype=np.float32)[labels[src]])
        details = ds.get_details(idx)
        assert details.raw_idx == idx and details.xflip is False and details.raw_label == labels[src]
    ds.close()

@pytest.mark.parametrize('kind', ['dir', 'zip'])
def test_float_labels(tmp_path, kind):
    images = _random_images(4)
    labels = [[0.5, -1.0], [1.5, 2.0], [0.0, 0.25], [3.0, 4.0]]
    path, order = _make_dataset(tmp_path, images, labels, kind=kind)
    ds = ImageFolderDataset(path, use_labels=True, resolution=8)
    assert ds.label_shape == [2] and ds.has_labels and not ds.has_onehot_labels
    for idx, src in enumerate(order):
        np.testing.assert_array_equal(ds.get_label(idx), np.float32(labels[src]))

def test_xflip(tmp_path):
    images = _random_images(3)
    path, order = _make_dataset(tmp_path, images, [0, 1, 2], kind='zip')
    ds = ImageFolderDataset(path, use_labels=True, xflip=True)
    assert len(ds) == 6
    for idx in range(3):
        image, label = ds[idx]
        flipped, flipped_label = ds[idx + 3]
        np.testing.assert_array_equal(flipped, images[order[idx]].transpose(2, 0, 1)[:, :, ::-1])
        np.testing.assert_array_equal(flipped, image[:, :, ::-1])
        np.testing.assert_array_equal(label, flipped_label)
        assert ds.get_details(idx + 3).xflip is True and ds.get_details(idx).xflip is False
        assert ds.get_details(idx + 3).raw_idx == idx

def test_max_size(tmp_path):
    images = _random_images(10, res=4)
    path, _order = _make_dataset(tmp_path, images, subdirs=False)
    raw_idx = lambda ds: [ds.get_details(i).raw_idx for i in range(len(ds))]
    expected = sorted(np.random.RandomState(0).permutation(10)[:4].tolist())
    assert raw_idx(ImageFolderDataset(path, max_size=4)) == expected
    assert raw_idx(ImageFolderDataset(path, max_size=4)) == expected
    other = sorted(np.random.RandomState(5).permutation(10)[:4].tolist())
    assert raw_idx(ImageFolderDataset(path, max_size=4, random_seed=5)) == other
    assert raw_idx(ImageFolderDataset(path, max_size=100)) == list(range(10))
    ds = ImageFolderDataset(path, max_size=4, xflip=True)
    assert raw_idx(ds) == expected * 2
    np.testing.assert_array_equal(ds[1][0], images[expected[1]].transpose(2, 0, 1))

def test_no_labels(tmp_path):
    path, _order = _make_dataset(tmp_path, _random_images(2), labels=[3, 4])
    for ds in [ImageFolderDataset(path), ImageFolderDataset(path, use_labels=False)]:
        assert ds.label_shape == [0] and ds.label_dim == 0 and not ds.has_labels
        assert ds[0][1].shape == (0,) and ds[0][1].dtype == np.float32
    path, _order = _make_dataset(tmp_path / 'nolabels', _random_images(2))
    assert ImageFolderDataset(path).get_label(1).shape == (0,)

def test_grayscale(tmp_path):
    images = _random_images(3, channels=1)
    path, order = _make_dataset(tmp_path, images)
    ds = ImageFolderDataset(path)
    assert ds.image_shape == [1, 8, 8] and ds.num_channels == 1
    np.testing.assert_array_equal(ds[2][0], images[order[2]].transpose(2, 0, 1))

def test_construct_by_name(tmp_path):
    if not hasattr(dnnlib.util, 'construct_class_by_name'):
        pytest.skip('dnnlib.util.construct_class_by_name not available yet')
    path, _order = _make_dataset(tmp_path, _random_images(4), [1, 0, 1, 0], kind='zip')
    kwargs = dict(class_name='training.dataset.ImageFolderDataset', path=path, use_labels=True,
        max_size=None, xflip=False, resolution=8)
    ds = dnnlib.util.construct_class_by_name(**kwargs)
    assert isinstance(ds, ImageFolderDataset) and len(ds) == 4 and ds.label_dim == 2

#----------------------------------------------------------------------------
# Workers each open their own ZIP handle; the dataset pickles without the handle.

def _all_items(loader):
    images, labels = zip(*[(img, lbl) for img, lbl in loader])
    return torch.cat(images), torch.cat(labels)

def test_dataloader_workers(tmp_path):
    images = _random_images(12)
    path, _order = _make_dataset(tmp_path, images, [i % 4 for i in range(12)], kind='zip')
    ds = ImageFolderDataset(path, use_labels=True, xflip=True)
    ds[0] # Open the ZIP in this process before the workers fork.
    ref_images, ref_labels = _all_items(torch.utils.data.DataLoader(ds, batch_size=5, num_workers=0))
    images, labels = _all_items(torch.utils.data.DataLoader(ds, batch_size=5, num_workers=2))
    assert torch.equal(images, ref_images) and torch.equal(labels, ref_labels)
    assert ref_images.shape == (24, 3, 8, 8) and ref_labels.shape == (24, 4)

    # A pickled copy carries no open file and reopens the ZIP on demand.
    state = ds.__getstate__()
    assert state['_zipfile'] is None
    copy = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(copy[5][0], ds[5][0])

@pytest.mark.slow
def test_dataloader_spawn(tmp_path):
    images = _random_images(6)
    path, _order = _make_dataset(tmp_path, images, kind='zip')
    ds = ImageFolderDataset(path)
    ds[0]
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, multiprocessing_context='spawn')
    ref = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=0)
    assert torch.equal(_all_items(loader)[0], _all_items(ref)[0])

#----------------------------------------------------------------------------
# Each bad dataset ends in a DatasetError naming what is wrong.

def _write_image(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    _to_pil(image).save(path)

def test_error_path(tmp_path):
    with pytest.raises(DatasetError, match='does not exist'):
        ImageFolderDataset(str(tmp_path / 'missing.zip'))
    (tmp_path / 'file.txt').write_text('x')
    with pytest.raises(DatasetError, match='folder or a .zip'):
        ImageFolderDataset(str(tmp_path / 'file.txt'))
    (tmp_path / 'bad.zip').write_text('not a zip')
    with pytest.raises(DatasetError, match='ZIP'):
        ImageFolderDataset(str(tmp_path / 'bad.zip'))

def test_error_no_images(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('x')
    with pytest.raises(DatasetError, match='No image files'):
        ImageFolderDataset(str(tmp_path / 'empty'))

@pytest.mark.parametrize('size', [(8, 16), (12, 12)])
def test_error_bad_size(tmp_path, size):
    image = np.zeros([size[1], size[0], 3], dtype=np.uint8)
    _write_image(tmp_path / 'd' / 'a.png', image)
    with pytest.raises(DatasetError, match=f'a.png is {size[0]}x{size[1]}.*power-of-two'):
        ImageFolderDataset(str(tmp_path / 'd'))

def test_error_resolution(tmp_path):
    path, _order = _make_dataset(tmp_path, _random_images(2))
    with pytest.raises(DatasetError, match='resolution=16'):
        ImageFolderDataset(path, resolution=16)

def test_error_mixed_shapes(tmp_path):
    _write_image(tmp_path / 'd' / 'a.png', _random_images(1)[0])
    _write_image(tmp_path / 'd' / 'b.png', _random_images(1, res=16)[0])
    _write_image(tmp_path / 'd' / 'c.png', _random_images(1, channels=1)[0])
    ds = ImageFolderDataset(str(tmp_path / 'd'))
    with pytest.raises(DatasetError, match='b.png .* 3x16x16 .* a.png has 3x8x8'):
        ds[1]
    with pytest.raises(DatasetError, match='c.png .* 1x8x8'):
        ds[2]

def test_error_labels(tmp_path):
    path, _order = _make_dataset(tmp_path / 'a', _random_images(2))
    with pytest.raises(DatasetError, match='no dataset.json'):
        ImageFolderDataset(path, use_labels=True)
    path, _order = _make_dataset(tmp_path / 'b', _random_images(3), labels=[0, 1, 2], kind='zip')
    with zipfile.ZipFile(path, 'a') as zf:
        zf.writestr('extra/new.png', (tmp_path / 'b' / 'tmp.png').read_bytes())
    with pytest.raises(DatasetError, match='no label for extra/new.png'):
        ImageFolderDataset(path, use_labels=True)
    for labels, pattern in [([0, -1], 'non-negative'), ([0.5, 1], 'non-negative'), ([[1.0], [1.0, 2.0]], 'equal length')]:
        path, _order = _make_dataset(tmp_path / str(labels), _random_images(2), labels=labels)
        with pytest.raises(DatasetError, match=pattern):
            ImageFolderDataset(path, use_labels=True)
    path, _order = _make_dataset(tmp_path / 'c', _random_images(2))
    (tmp_path / 'c' / 'data' / 'dataset.json').write_text('{"labels": null}')
    with pytest.raises(DatasetError, match='null'):
        ImageFolderDataset(path, use_labels=True)
    assert not ImageFolderDataset(path).has_labels

def test_error_corrupt_image(tmp_path):
    path, _order = _make_dataset(tmp_path, _random_images(3), subdirs=False)
    (tmp_path / 'data' / 'img001.png').write_bytes(b'\x89PNG\r\n\x1a\n garbage')
    ds = ImageFolderDataset(path)
    with pytest.raises(DatasetError, match='Cannot read image img001.png'):
        ds[1]
    (tmp_path / 'data' / 'img000.png').write_bytes(b'')
    with pytest.raises(DatasetError, match='Cannot read image img000.png'):
        ImageFolderDataset(path)

def test_error_rgba(tmp_path):
    (tmp_path / 'd').mkdir()
    PIL.Image.new('RGBA', (8, 8)).save(tmp_path / 'd' / 'a.png')
    with pytest.raises(DatasetError, match='a.png has mode RGBA'):
        ImageFolderDataset(str(tmp_path / 'd'))

def test_error_bad_kwargs(tmp_path):
    path, _order = _make_dataset(tmp_path, _random_images(2))
    with pytest.raises(TypeError):
        ImageFolderDataset(path, use_label=True)
    with pytest.raises(DatasetError, match='max_size'):
        ImageFolderDataset(path, max_size=0)

#----------------------------------------------------------------------------
