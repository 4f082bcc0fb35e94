# Class groups (the small preset's conditional runs): every minibatch-stddev group of D holds reals
# of one class and fakes of one class (misc.ClassGroupedSampler and training_loop._fake_labels).

import json
import os

import numpy as np
import PIL.Image
import pytest
import torch

from torch_utils import misc
from training import dataset as dataset_module
from training import networks_stylegan2
from training import training_loop

#----------------------------------------------------------------------------
# 30 labelled 8x8 greyscale images of 3 classes.

@pytest.fixture(scope='module')
def labelled(tmp_path_factory):
    path = tmp_path_factory.mktemp('groups')
    rnd = np.random.RandomState(5)
    labels = []
    for i in range(30):
        PIL.Image.fromarray(rnd.randint(0, 256, size=[8, 8], dtype=np.uint8)).save(path / f'{i:02d}.png')
        labels.append([f'{i:02d}.png', int(rnd.randint(3))])
    (path / 'dataset.json').write_text(json.dumps(dict(labels=labels)))
    return dataset_module.ImageFolderDataset(path=str(path), use_labels=True)

# Group spread of one-hot labels through D's own minibatch-stddev layer: zero iff a group shares a class.
def _label_spread(c, group_size):
    y = networks_stylegan2.MinibatchStdLayer(group_size=group_size)(c.to(torch.float64)[:, :, None, None])
    return y[:, -1, 0, 0]

#----------------------------------------------------------------------------

def test_step_data_groups_hold_one_class(labelled):
    iterator = training_loop._data_iterator(labelled, dict(num_workers=0), rank=0, num_gpus=1, random_seed=0,
        batch_per_rank=16, start=0, groups=(4, 8))
    spread = []
    for _step in range(5):
        batch = training_loop._fetch_step_data(iterator, labelled, num_phases=3, batch_per_rank=16, batch_gpu=8, z_dim=4,
            device=torch.device('cpu'), class_group_size=4)
        rounds = list(batch.real_c) + [c for phase_c in batch.gen_c for c in phase_c]
        assert len(rounds) == 2 + 3 * 2 and all(c.shape == (8, 3) for c in rounds)
        for c in rounds:
            assert _label_spread(c, 4).max() < 1e-3 # sqrt(1e-8): no spread within any group.
            spread.append(_label_spread(c, 8).max()) # Across the two groups of a round, classes may differ.
    assert max(spread) > 0.1

def test_without_groups_classes_mix(labelled):
    iterator = training_loop._data_iterator(labelled, dict(num_workers=0), 0, 1, 0, batch_per_rank=8, start=0)
    batch = training_loop._fetch_step_data(iterator, labelled, 1, 8, 8, 4, torch.device('cpu'))
    assert _label_spread(batch.real_c[0], 4).max() > 0.1

def test_fake_label_layout(labelled):
    np.random.seed(0)
    labels = np.argmax(training_loop._fake_labels(labelled, count=24, round_size=12, class_group_size=3), axis=1)
    slots = labels.reshape(2, 3, 4) # [round, member, slot]
    assert (slots == slots[:, :1, :]).all()

def test_class_group_errors(labelled):
    with pytest.raises(ValueError, match='divide batch_gpu'):
        training_loop._check_class_groups(3, 8, labelled)
    unlabelled = dataset_module.ImageFolderDataset(path=labelled._path, use_labels=False)
    with pytest.raises(ValueError, match='labels'):
        training_loop._check_class_groups(2, 8, unlabelled)
    training_loop._check_class_groups(0, 8, unlabelled) # Off: nothing to check.

#----------------------------------------------------------------------------
# class_group_kimg: mixed-class groups until the start, class groups from the step at that kimg on; a run
# continued at any step (before, at or after the start) draws the reals the uninterrupted run drew.

def _reals_of_steps(reals, first, count, batch=8):
    steps = []
    for step in range(first, first + count):
        nimg = step * batch
        img, c = next(reals.iterator(nimg, start=nimg))
        steps.append((reals.group_size(nimg), img, c.to(torch.float32)))
    return steps

def test_class_groups_start_at_their_kimg_and_resume(labelled):
    make = lambda: training_loop._Reals(labelled, dict(num_workers=0), rank=0, num_gpus=1, seed=0, batch_per_rank=8,
        batch_gpu=8, group_size=4, group_kimg=0.04) # From image 40: step 5 of 8 images.
    straight = _reals_of_steps(make(), 0, 10)
    assert [size for size, _, _ in straight] == [0] * 5 + [4] * 5
    assert max(float(_label_spread(c, 4).max()) for _, _, c in straight[:5]) > 0.1
    assert all(float(_label_spread(c, 4).max()) < 1e-3 for _, _, c in straight[5:])
    for first in (3, 5, 7):
        continued = _reals_of_steps(make(), first, 10 - first)
        assert all(torch.equal(a[1], b[1]) and torch.equal(a[2], b[2]) for a, b in zip(straight[first:], continued))

def test_class_groups_from_the_start(labelled):
    reals = training_loop._Reals(labelled, dict(num_workers=0), 0, 1, 0, batch_per_rank=8, batch_gpu=8, group_size=4, group_kimg=0)
    assert all(size == 4 and float(_label_spread(c, 4).max()) < 1e-3 for size, _, c in _reals_of_steps(reals, 0, 3))

# The loop hands the sampler the dataset's raw class ids (Dataset.raw_labels, one array, mirrored items
# included); the draws equal those from the one-hot labels of get_label, item by item.
def test_raw_labels_give_the_one_hot_draws(labelled):
    mirrored = dataset_module.ImageFolderDataset(path=labelled._path, use_labels=True, xflip=True)
    raw = mirrored.raw_labels()
    one_hot = np.stack([mirrored.get_label(i) for i in range(len(mirrored))])
    assert raw.shape == (60,) and (np.argmax(one_hot, axis=1) == raw).all()
    a = misc.ClassGroupedSampler(raw, group_size=4, round_size=8, seed=3)
    b = misc.ClassGroupedSampler(one_hot, group_size=4, round_size=8, seed=3)
    assert all((a.round_indices(u) == b.round_indices(u)).all() for u in range(20))
