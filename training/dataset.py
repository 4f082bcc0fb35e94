# Training datasets: images with optional class labels or label vectors, read lazily
# from an uncompressed ZIP archive or a folder (the format written by dataset_tool.py).

import json
import os
import struct
import zipfile
import zlib

import numpy as np
import PIL.Image
import torch

import dnnlib

#----------------------------------------------------------------------------
# A problem with the dataset itself (missing path, bad images, bad labels): one line,
# naming the path or file at fault.

class DatasetError(ValueError):
    pass

#----------------------------------------------------------------------------
# Base class: index bookkeeping (subset, x-flip) and labels over a fixed number of raw
# images. Subclasses implement _load_raw_image(raw_idx) and _load_raw_labels().

class Dataset(torch.utils.data.Dataset):
    def __init__(self,
        name,                   # Name of the dataset, e.g. the archive name without extension.
        raw_shape,              # Shape of the raw image data: [N, C, H, W].
        max_size    = None,     # Keep at most this many images (seeded random subset), None = all.
        use_labels  = False,    # False = every label is a zero-size array.
        xflip       = False,    # True = append a mirrored copy of every image (doubles the length).
        random_seed = 0,        # Seed of the random subset chosen by max_size.
    ):
        if len(raw_shape) != 4 or raw_shape[0] < 1:
            raise DatasetError(f'raw_shape must be [N, C, H, W] with N >= 1, got {list(raw_shape)}')
        if max_size is not None and (int(max_size) != max_size or max_size < 1):
            raise DatasetError(f'max_size must be a positive integer or None, got {max_size!r}')
        self._name = name
        self._raw_shape = [int(s) for s in raw_shape]
        self._use_labels = bool(use_labels)
        self._raw_labels = None
        self._label_shape = None

        # Choose the subset: shuffle all raw indices with the seed, keep the first max_size, sort.
        self._raw_idx = np.arange(self._raw_shape[0], dtype=np.int64)
        if max_size is not None and self._raw_idx.size > max_size:
            np.random.RandomState(random_seed).shuffle(self._raw_idx)
            self._raw_idx = np.sort(self._raw_idx[:int(max_size)])

        # Mirrored copies form the second half.
        self._xflip = np.zeros(self._raw_idx.size, dtype=np.uint8)
        if xflip:
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

    # Raw labels of all raw images: int64 [N] class indices, float32 [N, L] vectors, or
    # float32 [N, 0] when labels are not used.
    def _get_raw_labels(self):
        if self._raw_labels is None:
            labels = self._load_raw_labels() if self._use_labels else None
            if labels is None:
                labels = np.zeros([self._raw_shape[0], 0], dtype=np.float32)
            self._raw_labels = _check_raw_labels(labels, self._raw_shape[0])
        return self._raw_labels

    def close(self): # Release open files (reopened on demand).
        pass

    def _load_raw_image(self, raw_idx): # To be overridden: uint8 [C, H, W].
        raise NotImplementedError

    def _load_raw_labels(self): # To be overridden: int or float array with N rows, or None.
        raise NotImplementedError

    def __len__(self):
        return self._raw_idx.size

    def __getitem__(self, idx):
        image = self._load_raw_image(self._raw_idx[idx])
        assert isinstance(image, np.ndarray) and image.dtype == np.uint8
        assert list(image.shape) == self.image_shape
        if self._xflip[idx]:
            image = image[:, :, ::-1] # [CHW]: mirror along W.
        return image.copy(), self.get_label(idx)

    # Label of item idx: one-hot float32 for class indices, the float32 vector otherwise.
    def get_label(self, idx):
        label = self._get_raw_labels()[self._raw_idx[idx]]
        if label.dtype == np.int64:
            onehot = np.zeros(self.label_shape, dtype=np.float32)
            onehot[label] = 1
            return onehot
        return label.copy()

    # Raw labels of all items in index order, as _get_raw_labels (one array instead of N get_label calls).
    def raw_labels(self):
        return self._get_raw_labels()[self._raw_idx]

    # Where item idx comes from: raw index, whether it is mirrored, the raw label.
    def get_details(self, idx):
        return dnnlib.EasyDict(
            raw_idx   = int(self._raw_idx[idx]),
            xflip     = (int(self._xflip[idx]) != 0),
            raw_label = self._get_raw_labels()[self._raw_idx[idx]].copy(),
        )

    @property
    def name(self):
        return self._name

    @property
    def image_shape(self): # [C, H, W]
        return list(self._raw_shape[1:])

    @property
    def num_channels(self):
        return self.image_shape[0]

    @property
    def resolution(self):
        c, h, w = self.image_shape
        if h != w:
            raise DatasetError(f'Dataset {self._name} has non-square images ({w}x{h}); resolution is undefined')
        return h

    @property
    def label_shape(self):
        if self._label_shape is None:
            raw_labels = self._get_raw_labels()
            if raw_labels.dtype == np.int64:
                self._label_shape = [int(np.max(raw_labels)) + 1]
            else:
                self._label_shape = list(raw_labels.shape[1:])
        return list(self._label_shape)

    @property
    def label_dim(self):
        assert len(self.label_shape) == 1
        return self.label_shape[0]

    @property
    def has_labels(self):
        return any(s != 0 for s in self.label_shape)

    @property
    def has_onehot_labels(self):
        return self._get_raw_labels().dtype == np.int64

#----------------------------------------------------------------------------
# Validate raw labels: int class indices [N] >= 0, or float vectors [N, L].

def _check_raw_labels(labels, num_images):
    labels = np.asarray(labels)
    if labels.shape[0] != num_images:
        raise DatasetError(f'Expected {num_images} labels, got {labels.shape[0]}')
    if labels.ndim == 1:
        if not np.issubdtype(labels.dtype, np.number) or np.any(labels != np.round(labels)) or np.any(labels < 0):
            raise DatasetError('Class labels must be non-negative integers')
        return labels.astype(np.int64)
    if labels.ndim == 2 and np.issubdtype(labels.dtype, np.number):
        return labels.astype(np.float32)
    raise DatasetError(f'Labels must be integers or equal-length number lists, got an array of shape {list(labels.shape)}')

#----------------------------------------------------------------------------
# Images in a folder (searched recursively) or a ZIP archive, in sorted path order, with
# labels from dataset.json at its root: {"labels": [["dir/img.png", 3], ...]} or null.

class ImageFolderDataset(Dataset):
    def __init__(self,
        path,                   # Folder or .zip file.
        resolution  = None,     # Expected resolution, None = accept the images' own.
        **super_kwargs,         # Forwarded to Dataset: max_size, use_labels, xflip, random_seed.
    ):
        self._path = str(path)
        self._zipfile = None
        self._zipfile_pid = None
        self._type = _path_type(self._path)
        self._image_fnames = sorted(f for f in self._all_fnames() if is_image_fname(f))
        if len(self._image_fnames) == 0:
            raise DatasetError(f'No image files found in {self._path}')

        # The first image fixes the shape; every image read later is checked against it.
        name = os.path.splitext(os.path.basename(self._path.rstrip('/\\')))[0]
        self._raw_shape = None
        first = self._load_raw_image(0)
        raw_shape = [len(self._image_fnames)] + list(first.shape)
        _check_image_shape(self._image_fnames[0], first.shape, resolution)
        super().__init__(name=name, raw_shape=raw_shape, **super_kwargs)
        if self._use_labels:
            self._get_raw_labels() # Fail now rather than in the middle of training.

    # Every file name relative to the root, with '/' separators.
    def _all_fnames(self):
        if self._type == 'dir':
            return [os.path.relpath(os.path.join(root, fname), start=self._path).replace(os.sep, '/')
                for root, _dirs, files in os.walk(self._path) for fname in files]
        return [name for name in self._get_zipfile().namelist() if not name.endswith('/')]

    # One ZipFile per process: a handle inherited through fork (or unpickled) is replaced.
    def _get_zipfile(self):
        assert self._type == 'zip'
        if self._zipfile is None or self._zipfile_pid != os.getpid():
            try:
                self._zipfile = zipfile.ZipFile(self._path)
            except (OSError, zipfile.BadZipFile) as e:
                raise DatasetError(f'Cannot open {self._path} as a ZIP archive: {e}') from e
            self._zipfile_pid = os.getpid()
        return self._zipfile

    # Whether a file (e.g. dataset.json) exists at the root.
    def _has_file(self, fname):
        if self._type == 'dir':
            return os.path.isfile(os.path.join(self._path, fname))
        try:
            self._get_zipfile().getinfo(fname)
        except KeyError:
            return False
        return True

    # Binary file object for a name relative to the root.
    def _open_file(self, fname):
        if self._type == 'dir':
            return open(os.path.join(self._path, fname), 'rb')
        return self._get_zipfile().open(fname, 'r')

    # Close this process's ZIP handle (reopened on demand).
    def close(self):
        if self._zipfile is not None and self._zipfile_pid == os.getpid():
            self._zipfile.close()
        self._zipfile = None
        self._zipfile_pid = None

    # Pickled (e.g. for spawned workers) without the open file.
    def __getstate__(self):
        return dict(self.__dict__, _zipfile=None, _zipfile_pid=None)

    def __del__(self):
        self.close()

    # Decode one image, naming the file in any error.
    def _load_raw_image(self, raw_idx):
        fname = self._image_fnames[raw_idx]
        try:
            with self._open_file(fname) as f:
                image = _decode_image(PIL.Image.open(f), fname)
        except DatasetError:
            raise
        except PIL.UnidentifiedImageError as e:
            raise DatasetError(f'Cannot read image {fname} in {self._path}: not a known image format, or corrupt') from e
        except (OSError, SyntaxError, EOFError, ValueError, struct.error, zlib.error, zipfile.BadZipFile,
                PIL.Image.DecompressionBombError) as e:
            raise DatasetError(f'Cannot read image {fname} in {self._path}: {e}') from e
        if self._raw_shape is not None and list(image.shape) != self._raw_shape[1:]:
            got, want = 'x'.join(map(str, image.shape)), 'x'.join(map(str, self._raw_shape[1:]))
            raise DatasetError(f'Image {fname} in {self._path} has shape {got} (CxHxW) but '
                f'{self._image_fnames[0]} has {want}: all images must have the same shape')
        return image

    # Labels of all images from dataset.json, in image order.
    def _load_raw_labels(self):
        if not self._has_file('dataset.json'):
            raise DatasetError(f'Labels requested (use_labels=True) but {self._path} has no dataset.json')
        try:
            with self._open_file('dataset.json') as f:
                labels = json.load(f)['labels']
            if labels is not None:
                labels = {str(fname).replace('\\', '/'): label for fname, label in dict(labels).items()}
        except (ValueError, KeyError, TypeError) as e:
            raise DatasetError(f'{self._path}/dataset.json is not of the form {{"labels": [["file.png", label], ...]}}: {e!r}') from e
        if labels is None:
            raise DatasetError(f'Labels requested (use_labels=True) but {self._path}/dataset.json has "labels": null')
        missing = [fname for fname in self._image_fnames if fname not in labels]
        if missing:
            raise DatasetError(f'{self._path}/dataset.json has no label for {missing[0]} ({len(missing)} images unlabelled)')
        try:
            return np.array([labels[fname] for fname in self._image_fnames])
        except ValueError as e:
            raise DatasetError(f'{self._path}/dataset.json: labels must all be integers or all lists of equal length ({e})') from e

#----------------------------------------------------------------------------
# 'dir' or 'zip' for a dataset path; anything else is an error.

def _path_type(path):
    if os.path.isdir(path):
        return 'dir'
    if not os.path.exists(path):
        raise DatasetError(f'Dataset path {path} does not exist')
    if os.path.splitext(path)[1].lower() == '.zip':
        return 'zip'
    raise DatasetError(f'Dataset path {path} must be a folder or a .zip file')

#----------------------------------------------------------------------------
# Whether a file name has an image extension known to Pillow (macOS resource forks excluded).

def is_image_fname(fname):
    if fname.startswith('__MACOSX/') or os.path.basename(fname).startswith('._'):
        return False
    PIL.Image.init()
    return os.path.splitext(fname)[1].lower() in PIL.Image.EXTENSION

#----------------------------------------------------------------------------
# A decoded PIL image as uint8 [C, H, W] with C = 1 (grayscale) or 3 (RGB).

def _decode_image(image, fname):
    if image.mode == '1':
        image = image.convert('L')
    elif image.mode == 'P' and 'transparency' not in image.info:
        image = image.convert('RGB')
    if image.mode not in ('L', 'RGB'):
        raise DatasetError(f'Image {fname} has mode {image.mode}; datasets need 8-bit grayscale (L) or RGB '
            f'images: convert them with dataset_tool.py')
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, np.newaxis] # [HW] => [HWC]
    return np.ascontiguousarray(array.transpose(2, 0, 1)) # [HWC] => [CHW]

#----------------------------------------------------------------------------
# The first image must be square, a power of two, and of the requested resolution.

def _check_image_shape(fname, shape, resolution):
    c, h, w = shape
    if h != w or h < 1 or (h & (h - 1)) != 0:
        raise DatasetError(f'Image {fname} is {w}x{h}: images must be square with a power-of-two side; '
            f'resize them with dataset_tool.py --transform=center-crop --resolution=256x256')
    if resolution is not None and h != resolution:
        raise DatasetError(f'Image {fname} is {w}x{h} but resolution={resolution} was requested')

#----------------------------------------------------------------------------
