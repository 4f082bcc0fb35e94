# Convert image folders, ZIP archives, CIFAR-10, MNIST and LSUN into training datasets:
# uncompressed ZIPs (or folders) of PNGs with labels in dataset.json, read by
# training.dataset.ImageFolderDataset. See docs/datasets.md.

import contextlib
import gzip
import io
import json
import os
import pickle
import re
import struct
import tarfile
import zipfile
import zlib

import click
import numpy as np
import PIL.Image
from tqdm import tqdm

import dnnlib
from training.dataset import is_image_fname

#----------------------------------------------------------------------------
# A problem with the inputs or options: printed by click as one line "Error: ...".

class ToolError(click.ClickException):
    pass

#----------------------------------------------------------------------------
# Decode an opened image file into uint8 [H, W, C] with C = 1 or 3: 16-bit grayscale is
# scaled to 8 bits, alpha is dropped, palette and other colour modes become RGB.

def read_image(f, name):
    try:
        image = PIL.Image.open(f)
        image.load()
        if image.mode in ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I'):
            array = np.round(np.asarray(image, dtype=np.float64) / 257).clip(0, 255).astype(np.uint8)
        elif image.mode in ('1', 'L', 'LA', 'F'):
            array = np.asarray(image.convert('L'))
        else:
            array = np.asarray(image.convert('RGB'))
    except PIL.UnidentifiedImageError as e:
        raise ToolError(f'Cannot read image {name}: not a known image format, or corrupt') from e
    except (OSError, SyntaxError, EOFError, ValueError, struct.error, zlib.error, zipfile.BadZipFile,
            PIL.Image.DecompressionBombError) as e:
        raise ToolError(f'Cannot read image {name}: {e}') from e
    return array[:, :, np.newaxis] if array.ndim == 2 else array

#----------------------------------------------------------------------------
# Images of a folder or ZIP in sorted path order, with labels from its dataset.json.
# Returns (number of images, iterator of (name, uint8 [H, W, C], label or None)).

def open_image_collection(source, names, open_file, max_images):
    fnames = sorted(name for name in names if is_image_fname(name))[:max_images]
    if len(fnames) == 0:
        raise ToolError(f'No image files found in {source}')
    labels = None
    if 'dataset.json' in names:
        try:
            with open_file('dataset.json') as f:
                labels = json.load(f)['labels']
            labels = None if labels is None else {str(k).replace('\\', '/'): v for k, v in dict(labels).items()}
        except (ValueError, KeyError, TypeError) as e:
            raise ToolError(f'{source}/dataset.json is not of the form {{"labels": [["file.png", label], ...]}}: {e!r}') from e
    if labels is not None:
        missing = [fname for fname in fnames if fname not in labels]
        if missing:
            raise ToolError(f'{source}/dataset.json has no label for {missing[0]} ({len(missing)} images unlabelled)')

    def iterate():
        for fname in fnames:
            with open_file(fname) as f:
                image = read_image(f, f'{source}/{fname}')
            yield fname, image, (None if labels is None else labels[fname])
    return len(fnames), iterate()

# A folder of images, searched recursively.
def open_image_folder(source, max_images):
    names = [os.path.relpath(os.path.join(root, fname), source).replace(os.sep, '/')
        for root, _dirs, files in os.walk(source) for fname in files]
    open_file = lambda fname: open(os.path.join(source, fname), 'rb')
    return open_image_collection(source, set(names), open_file, max_images)

# A ZIP archive of images.
def open_image_zip(source, max_images):
    try:
        archive = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as e:
        raise ToolError(f'Cannot open {source} as a ZIP archive: {e}') from e
    names = set(name for name in archive.namelist() if not name.endswith('/'))
    return open_image_collection(source, names, lambda fname: archive.open(fname, 'r'), max_images)

#----------------------------------------------------------------------------
# Unpickler for CIFAR-10 batches that builds only numpy arrays and dtypes, so that a
# tarball cannot run code when it is read.

class _ArrayUnpickler(pickle.Unpickler):
    _allowed = {
        ('numpy', 'ndarray'): np.ndarray,
        ('numpy', 'dtype'): np.dtype,
        ('_reconstruct', None): np.ndarray.__reduce__(np.zeros(1))[0],
        ('_frombuffer', None): np.ndarray.__reduce_ex__(np.zeros(1), 5)[0],
        ('scalar', None): np.int64(0).__reduce__()[0],
    }

    def find_class(self, module, name):
        if module.split('.')[0] == 'numpy' and name in ('_reconstruct', '_frombuffer', 'scalar'):
            return self._allowed[(name, None)]
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        if (module, name) == ('_codecs', 'encode'):
            return lambda text, encoding='latin1': text.encode(encoding)
        raise pickle.UnpicklingError(f'refusing to load {module}.{name}')

#----------------------------------------------------------------------------
# The training batches data_batch_1..5 of the CIFAR-10 python tarball (32x32 RGB, 10 classes).

def open_cifar10(source, max_images):
    images, labels = [], []
    try:
        with tarfile.open(source) as tar:
            members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
            for batch in [f'data_batch_{i}' for i in range(1, 6) if f'data_batch_{i}' in members]:
                data = _ArrayUnpickler(tar.extractfile(members[batch]), encoding='bytes').load()
                images.append(np.asarray(data[b'data'], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels.append(np.asarray(data[b'labels'], dtype=np.int64).reshape(-1))
                if images[-1].shape[0] != labels[-1].shape[0]:
                    raise ValueError(f'{batch} has {images[-1].shape[0]} images but {labels[-1].shape[0]} labels')
    except (OSError, EOFError, tarfile.TarError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as e:
        raise ToolError(f'Cannot read {source} as a CIFAR-10 python tarball: {e!r}') from e
    if not images:
        raise ToolError(f'{source} contains no CIFAR-10 training batches (cifar-10-batches-py/data_batch_1..5)')
    images = np.concatenate(images).transpose(0, 2, 3, 1)[:max_images] # [NCHW] => [NHWC]
    labels = np.concatenate(labels)[:max_images]
    return len(images), ((f'{source}[{i}]', image, int(label)) for i, (image, label) in enumerate(zip(images, labels)))

#----------------------------------------------------------------------------
# One IDX file (the MNIST format): magic 0, 0, type 0x08 (uint8), number of dimensions,
# then the big-endian uint32 sizes and the data.

def read_idx(path, ndim):
    try:
        with (gzip.open(path, 'rb') if path.endswith('.gz') else open(path, 'rb')) as f:
            data = f.read()
        zero, dtype, file_ndim = struct.unpack('>HBB', data[:4])
        if zero != 0 or dtype != 0x08 or file_ndim != ndim:
            raise ValueError(f'expected an IDX file of {ndim}-dimensional uint8 data')
        shape = struct.unpack(f'>{ndim}I', data[4:4 + 4 * ndim])
        array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        if array.size != np.prod(shape):
            raise ValueError(f'header says {list(shape)} but the file holds {array.size} values')
    except (OSError, EOFError, struct.error, ValueError) as e:
        raise ToolError(f'Cannot read {path} as an MNIST IDX file: {e}') from e
    return array.reshape(shape)

#----------------------------------------------------------------------------
# The MNIST training set, from a folder holding train-images-idx3-ubyte[.gz] and
# train-labels-idx1-ubyte[.gz] or from the path of the images file. The 28x28 digits are
# zero-padded to 32x32 (the next power of two), centred.

def find_mnist_files(source):
    folder = source if os.path.isdir(source) else os.path.dirname(source)
    found = []
    for stem in ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte']:
        paths = [os.path.join(folder, stem + ext) for ext in ['', '.gz'] if os.path.isfile(os.path.join(folder, stem + ext))]
        if not paths:
            return None
        found.append(paths[0])
    return found

def open_mnist(source, max_images):
    files = find_mnist_files(source)
    if files is None:
        raise ToolError(f'{source}: MNIST needs train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] in one folder')
    images = read_idx(files[0], ndim=3)[:max_images]
    labels = read_idx(files[1], ndim=1)[:max_images]
    if images.shape[0] != labels.shape[0]:
        raise ToolError(f'{files[0]} has {images.shape[0]} images but {files[1]} has {labels.shape[0]} labels')
    h, w = images.shape[1:]
    side = 1 << (max(h, w) - 1).bit_length()
    images = np.pad(images, [(0, 0), ((side - h) // 2, (side - h + 1) // 2), ((side - w) // 2, (side - w + 1) // 2)])
    items = ((f'{files[0]}[{i}]', image[:, :, np.newaxis], int(label)) for i, (image, label) in enumerate(zip(images, labels)))
    return len(images), items

#----------------------------------------------------------------------------
# An LSUN category exported as an LMDB folder (data.mdb): values are encoded images.

def open_lsun(source, max_images):
    try:
        import lmdb
    except ImportError as e:
        raise ToolError(f'{source} is an LMDB database; reading it needs the lmdb package: pip install lmdb') from e
    try:
        env = lmdb.open(source, readonly=True, lock=False, readahead=False, meminit=False, subdir=True)
        with env.begin(write=False) as txn:
            count = min(txn.stat()['entries'], max_images or np.inf)
    except lmdb.Error as e:
        raise ToolError(f'Cannot open {source} as an LMDB database: {e}') from e

    def iterate():
        with env.begin(write=False) as txn:
            for idx, (key, value) in enumerate(txn.cursor()):
                if idx >= count:
                    break
                name = f'{source}[{key.decode(errors="replace")}]'
                yield name, read_image(io.BytesIO(value), name), None
        env.close()
    return int(count), iterate()

#----------------------------------------------------------------------------
# The reader for a source path: (number of images, iterator of (name, image, label)).

def open_source(source, max_images):
    if not os.path.exists(source):
        raise ToolError(f'Source {source} does not exist')
    if os.path.isdir(source):
        if os.path.isfile(os.path.join(source, 'data.mdb')):
            return open_lsun(source, max_images)
        if find_mnist_files(source) is not None:
            return open_mnist(source, max_images)
        return open_image_folder(source, max_images)
    name = os.path.basename(source).lower()
    if name.endswith('.zip'):
        return open_image_zip(source, max_images)
    if name.startswith('train-images-idx3-ubyte'):
        return open_mnist(source, max_images)
    if name.endswith(('.tar.gz', '.tgz', '.tar')):
        return open_cifar10(source, max_images)
    raise ToolError(f'Source {source} is not a folder, .zip, CIFAR-10 tarball (.tar.gz), MNIST train-images-idx3-ubyte[.gz] or LMDB folder')

#----------------------------------------------------------------------------
# Resize uint8 [H, W, C] to width x height with a Pillow filter (unchanged if already that size).

def resize(image, width, height, resample):
    if image.shape[1] == width and image.shape[0] == height:
        return image
    pil_image = PIL.Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    return np.asarray(pil_image.resize((width, height), resample)).reshape(height, width, image.shape[2])

#----------------------------------------------------------------------------
# The function applied to every image: None = unchanged or resized to --resolution;
# center-crop = central square, resized; center-crop-wide = central region of aspect
# width:height, resized to width x height and centred on a black width x width canvas
# (images smaller than that region are skipped: the function returns None).

def make_transform(transform, width, height, resize_filter):
    resample = {'box': PIL.Image.BOX, 'lanczos': PIL.Image.LANCZOS}[resize_filter]

    def center_crop(image):
        h, w = image.shape[:2]
        side = min(h, w)
        return resize(image[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2], width, height, resample)

    def center_crop_wide(image):
        h, w = image.shape[:2]
        crop_w, crop_h = min(w, int(round(h * width / height))), min(h, int(round(w * height / width)))
        if crop_w < width or crop_h < height:
            return None
        image = image[(h - crop_h) // 2 : (h + crop_h) // 2, (w - crop_w) // 2 : (w + crop_w) // 2]
        canvas = np.zeros([width, width, image.shape[2]], dtype=np.uint8)
        canvas[(width - height) // 2 : (width - height) // 2 + height] = resize(image, width, height, resample)
        return canvas

    if transform == 'center-crop':
        return center_crop
    if transform == 'center-crop-wide':
        return center_crop_wide
    if width is None:
        return lambda image: image
    return lambda image: resize(image, width, height, resample)

#----------------------------------------------------------------------------
# Check the options before reading anything: the output must be square with a
# power-of-two side for training.

def check_options(transform, resolution):
    if transform is not None and resolution is None:
        raise ToolError(f'--transform={transform} needs --resolution=WxH')
    if resolution is None:
        return
    width, height = resolution
    if transform == 'center-crop-wide' and height > width:
        raise ToolError(f'--transform=center-crop-wide needs width >= height, got --resolution={width}x{height}')
    if transform != 'center-crop-wide' and width != height:
        raise ToolError(f'--resolution={width}x{height} is not square; training needs square power-of-two images '
            f'(e.g. 256x256), or use --transform=center-crop-wide for wide images')
    if not _is_power_of_two(width):
        raise ToolError(f'--resolution={width}x{height}: the output side {width} must be a power of two')

# Whether n is 1, 2, 4, 8, ...
def _is_power_of_two(n):
    return n >= 1 and (n & (n - 1)) == 0

#----------------------------------------------------------------------------
# Every image must have the shape of the first, which must be square, power-of-two side.

def check_image(name, image, first):
    h, w, c = image.shape
    if first is None:
        if h != w or not _is_power_of_two(w):
            raise ToolError(f'Image {name} is {w}x{h}; training needs square power-of-two images: pass for example '
                f'--transform=center-crop --resolution=256x256')
    elif image.shape != first[1].shape:
        fh, fw, fc = first[1].shape
        raise ToolError(f'Image {name} is {w}x{h} with {c} channel(s) but the first image {first[0]} is {fw}x{fh} with '
            f'{fc}: pass --resolution to resize all images, and give all images the same colour mode')

#----------------------------------------------------------------------------
# Where the output goes: a ZIP (stored, not compressed) or a folder, written through a
# function write(archive_name, data_bytes).

# A destination is refused if it exists, unless it is an empty folder.
def check_dest(dest):
    if os.path.isdir(dest) and os.listdir(dest):
        raise ToolError(f'Destination folder {dest} is not empty; remove it or choose another --dest')
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise ToolError(f'Destination {dest} already exists; remove it or choose another --dest')

# Open dest for writing: a ZIP through dnnlib.util.atomic_write, a folder through
# dnnlib.util.atomic_folder. On error nothing is left, not even new parent folders.
@contextlib.contextmanager
def open_dest(dest):
    check_dest(dest)
    parent = os.path.dirname(os.path.abspath(dest))
    new_dirs = _missing_dirs(parent)
    try:
        if dest.lower().endswith('.zip'):
            with dnnlib.util.atomic_write(dest) as f, zipfile.ZipFile(f, 'w', compression=zipfile.ZIP_STORED) as archive:
                yield lambda name, data: archive.writestr(_zip_info(name), data)
        else:
            with dnnlib.util.atomic_folder(dest) as tmp:
                yield lambda name, data: _write_file(os.path.join(tmp, name), data)
    except BaseException:
        for path in new_dirs:
            os.rmdir(path)
        raise

# Folders that do not exist yet on the way to path, deepest first.
def _missing_dirs(path):
    missing = []
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing

def _zip_info(name): # Fixed time stamp: the same input gives the same archive.
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = 0o644 << 16 # rw-r--r-- when unpacked.
    return info

# Write one file of the output folder, creating its sub-folder.
def _write_file(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)

#----------------------------------------------------------------------------
# uint8 [H, W, C] as PNG bytes, uncompressed (fast to decode during training).

def encode_png(image):
    png = io.BytesIO()
    PIL.Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(png, format='png', compress_level=0)
    return png.getvalue()

#----------------------------------------------------------------------------
# Convert source into dest; the Python entry point behind the command line.

def convert_dataset(source, dest, max_images=None, transform=None, resolution=None, resize_filter='lanczos'):
    source, dest = os.path.expanduser(str(source)), os.path.normpath(os.path.expanduser(str(dest)))
    check_options(transform, resolution)
    check_dest(dest)
    num_images, items = open_source(source, max_images)
    width, height = resolution if resolution is not None else (None, None)
    transform_fn = make_transform(transform, width, height, resize_filter)
    labels = []
    first = None
    with open_dest(dest) as write, tqdm(items, total=num_images, unit='img', desc='Converting') as progress:
        for name, image, label in progress:
            image = transform_fn(image)
            if image is None:
                continue
            check_image(name, image, first)
            first = first or (name, image)
            idx_str = f'{len(labels):08d}'
            archive_fname = f'{idx_str[:5]}/img{idx_str}.png'
            write(archive_fname, encode_png(image))
            labels.append([archive_fname, label])
        if not labels:
            raise ToolError(f'No image of {source} is large enough for --transform={transform} --resolution={width}x{height}')
        has_labels = all(label is not None for _fname, label in labels)
        write('dataset.json', json.dumps({'labels': labels if has_labels else None}).encode('utf-8'))
    if len(labels) < num_images:
        click.echo(f'Skipped {num_images - len(labels)} images smaller than {width}x{height}', err=True)
    return len(labels)

#----------------------------------------------------------------------------
# Click type for --resolution: WxH, or N for NxN.

class Resolution(click.ParamType):
    name = 'WxH'

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        match = re.fullmatch(r'\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?', str(value))
        if match is None or int(match.group(1)) < 1 or int(match.group(2) or match.group(1)) < 1:
            self.fail(f'{value!r} is not of the form WxH with positive integers, e.g. 256x256', param, ctx)
        return int(match.group(1)), int(match.group(2) or match.group(1))

#----------------------------------------------------------------------------

# Command line.

@click.command()
@click.option('--source', help='Folder, ZIP, CIFAR-10 tarball, MNIST folder/file or LMDB folder', metavar='PATH', required=True)
@click.option('--dest', help='Output .zip (or folder) to create', metavar='PATH', required=True)
@click.option('--max-images', help='Convert at most this many images', type=click.IntRange(min=1), default=None)
@click.option('--transform', help='Crop before resizing', type=click.Choice(['center-crop', 'center-crop-wide']))
@click.option('--resolution', help='Output size WxH, e.g. 256x256', type=Resolution(), metavar='WxH', default=None)
@click.option('--resize-filter', help='Filter used when resizing', type=click.Choice(['box', 'lanczos']), default='lanczos', show_default=True)
def main(source, dest, max_images, transform, resolution, resize_filter):
    """Convert an image folder, ZIP, CIFAR-10 tarball, MNIST or LSUN LMDB into a training dataset.

    \b
    python dataset_tool.py --source=~/downloads/cifar-10-python.tar.gz --dest=~/datasets/cifar10.zip
    python dataset_tool.py --source=~/photos --dest=~/datasets/photos256.zip --transform=center-crop --resolution=256x256

    See docs/datasets.md.
    """
    count = convert_dataset(source=source, dest=dest, max_images=max_images, transform=transform,
        resolution=resolution, resize_filter=resize_filter)
    click.echo(f'Wrote {count} images to {dest}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main() # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
