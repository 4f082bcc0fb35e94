# Tests of the demo's parts that need no mlxtend and no training: idx files through dataset_tool,
# the class grid and the classifier-based check.

import os
import subprocess
import sys

import numpy as np
import PIL.Image
import torch

import demo
from training.dataset import ImageFolderDataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#----------------------------------------------------------------------------

def test_idx_files_become_a_labelled_32px_dataset(tmp_path):
    rnd = np.random.RandomState(0)
    images = rnd.randint(0, 256, size=[12, 28, 28]).astype(np.uint8)
    labels = (np.arange(12) % 10).astype(np.uint8)
    demo.write_idx_files(images, labels, str(tmp_path / 'idx'))
    dest = tmp_path / 'mnist32.zip'
    subprocess.run([sys.executable, 'dataset_tool.py', f'--source={tmp_path / "idx"}', f'--dest={dest}'],
        cwd=ROOT, check=True, capture_output=True)
    ds = ImageFolderDataset(str(dest), use_labels=True)
    assert len(ds) == 12 and ds.image_shape == [1, 32, 32] and ds.label_dim == 10
    img, label = ds[3]
    np.testing.assert_array_equal(img[0, 2:30, 2:30], images[3]) # Padded by 2 on each side.
    assert label.argmax() == 3

def test_grid_has_one_row_per_class(tmp_path):
    rows = np.zeros([10, 4, 1, 32, 32], dtype=np.uint8)
    for cls in range(10):
        rows[cls] = cls * 20
    demo.save_grid(rows, str(tmp_path / 'grid.png'))
    grid = np.asarray(PIL.Image.open(tmp_path / 'grid.png'))
    assert grid.shape == (10 * 64, 4 * 64)
    assert [int(grid[cls * 64 + 5, 7]) for cls in range(10)] == [cls * 20 for cls in range(10)]

def test_class_accuracy_counts_intended_classes():
    # A stand-in classifier that reads the class from the mean brightness.
    class Stub(torch.nn.Module):
        def forward(self, x):
            level = ((x.mean([1, 2, 3]) + 1) * 127.5 / 20).round().long()
            return torch.nn.functional.one_hot(level.clamp(0, 9), 10).float()
    rows = np.zeros([10, 5, 1, 32, 32], dtype=np.uint8)
    for cls in range(10):
        rows[cls] = cls * 20
    rows[2, :2] = 0 # Two of class 2 look like class 0.
    assert abs(demo.class_accuracy(Stub(), rows) - 48 / 50) < 1e-9

def test_classifier_learns_separable_classes():
    # Ten classes drawn as bars at different heights: the CNN must separate them almost perfectly.
    rnd = np.random.RandomState(0)
    labels = rnd.randint(0, 10, size=1000).astype(np.uint8)
    images = rnd.randint(0, 40, size=[1000, 1, 32, 32]).astype(np.uint8)
    for i, cls in enumerate(labels):
        images[i, 0, 3 * cls:3 * cls + 3, 4:28] = 255
    _net, accuracy = demo.train_classifier(images, labels, epochs=1)
    assert accuracy > 0.95

#----------------------------------------------------------------------------
