# Tests of the demo: idx files through dataset_tool, the class grid, the judging classifier and its
# TorchScript feature network, the learning-curve picture, and the whole demo at tiny size on
# synthetic digits (every stage runs and every number is computed; their values are not checked).

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import PIL.Image
import click.testing
import pytest
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

#----------------------------------------------------------------------------
# Ten classes drawn as bars at different heights (28x28 like MNIST).

def bar_digits(num, seed=0):
    rnd = np.random.RandomState(seed)
    labels = (np.arange(num) % 10).astype(np.uint8)
    images = rnd.randint(0, 40, size=[num, 28, 28]).astype(np.uint8)
    for i, cls in enumerate(labels):
        images[i, 2 + 2 * cls:4 + 2 * cls, 4:24] = 255
    return images, labels

def test_feature_net_matches_the_classifier(tmp_path):
    torch.manual_seed(0)
    net = demo.DigitClassifier().eval()
    demo.save_feature_net(net, str(tmp_path / 'f.pt'))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning) # torch.jit.load is deprecated; the file is TorchScript.
        scripted = torch.jit.load(str(tmp_path / 'f.pt'))
    images = torch.randint(0, 256, [5, 1, 32, 32], dtype=torch.uint8)
    x = images.to(torch.float32) / 127.5 - 1
    with torch.no_grad():
        np.testing.assert_allclose(scripted(images.repeat([1, 3, 1, 1])).numpy(), net(x).numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(scripted(images, return_features=True).numpy(), net.features(x).numpy(), rtol=1e-5, atol=1e-5)
    assert scripted(images, return_features=True).shape == (5, 128)

def test_curve_reads_the_metric_lines_and_draws(tmp_path):
    for metric, keys in demo.CURVE_KEYS.items():
        with open(tmp_path / f'metric-{metric}.jsonl', 'w') as f:
            for kimg in (0, 4, 8):
                results = {k: 0.5 + kimg + i for i, k in enumerate(keys)}
                f.write(json.dumps(dict(metric=metric, results=results, snapshot_pkl=f'network-snapshot-{kimg:06d}.pkl')) + '\n')
    curve = demo.read_curve(str(tmp_path))
    assert [row['kimg'] for row in curve] == [0, 4, 8]
    assert curve[1]['fd_custom'] == 4.5 and curve[1]['fd_custom_real'] == 5.5 and curve[2]['acc_custom_real'] == 9.5
    demo.save_curve(curve, str(tmp_path / 'curve.png'))
    img = np.asarray(PIL.Image.open(tmp_path / 'curve.png'))
    assert img.shape == (260, 900, 3) and (img == 255).mean() < 0.995 # Something was drawn.

@pytest.mark.slow
def test_whole_demo_at_tiny_size(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, 'load_mnist_5k', lambda: bar_digits(200))
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.chdir(ROOT)
    out = tmp_path / 'out'
    result = click.testing.CliRunner().invoke(demo.main, [f'--outdir={out}', '--kimg=0.1', '--eval-kimg=0.05',
        '--classifier-epochs=1', '--processes=2', '--', '--cmax=8', '--map=1'])
    assert result.exit_code == 0, result.output
    report = json.loads((out / 'check.json').read_text())
    for key in ['fd', 'fd_real_vs_real', 'fd_ratio', 'precision', 'recall', 'class_accuracy', 'classifier_accuracy_on_held_out_real']:
        assert np.isfinite(report[key]), key
    assert len(report['curve']) >= 1 # Snapshots under 1 kimg apart share one file name.
    assert PIL.Image.open(out / 'grid.png').size == (12 * 64, 10 * 64)
    assert PIL.Image.open(out / 'curve.png').size == (900, 260)

# Two training processes where the machine has two cores or more, one on a one-core machine; the
# default length follows (docs/demo.md's time budget).
def test_processes_follow_the_cores(monkeypatch):
    for cores, expected in [({0}, 1), ({0, 1}, 2), (set(range(16)), 2)]:
        monkeypatch.setattr(demo.os, 'sched_getaffinity', lambda pid, cores=cores: cores, raising=False)
        assert demo.default_processes() == expected
    assert demo.DEMO_KIMG[1] < demo.DEMO_KIMG[2]

# The demo trains with --cfg=small and no overrides: the preset carries the settings docs/demo.md chose.
def test_small_preset_is_the_demo_recipe():
    from training import presets
    c = presets.get('small').config(resolution=32, gpus=1)
    assert (c.batch_size, c.G_kwargs.synthesis_kwargs.channel_max, c.loss_kwargs.r1_gamma, c.ada_kimg) == (8, 32, 1, 100)
    c2 = presets.get('small').config(resolution=32, gpus=2) # The demo's two processes: 8 images each.
    assert (c2.batch_size, c2.batch_gpu) == (16, 8)
    assert c2.G_opt_kwargs.lr == pytest.approx(0.0035 * 2 ** 0.5) and c2.D_opt_kwargs.lr == pytest.approx(0.006 * 2 ** 0.5)
    assert presets.get('cifar').config(resolution=32, gpus=1).batch_size == 64 # Other presets keep their total batch.
    assert presets.get('paper256').config(resolution=256, gpus=8).ada_kimg == 500 # Published presets keep ADA's 500.
