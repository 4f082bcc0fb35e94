# Tests for training.augment: the pipe's random draws, its probability p (clamping, pickles,
# state_dict) and its errors. The image arithmetic is tested in test_augment.py.

import copy
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch

from training import augment
from training.augment import AugmentPipe, augpipe_specs

from test_augment import make_pipe, smooth_images # pylint: disable=wrong-import-order

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#----------------------------------------------------------------------------
# Randomness: reproducible under a seed, independent per image, debug_percentile fixed.

def test_reproducible_and_per_image():
    pipe = make_pipe(**augpipe_specs['bgcfnc'])
    x = smooth_images(1, 3, 16).expand(8, 3, 16, 16)
    torch.manual_seed(13)
    a = pipe(x)
    torch.manual_seed(13)
    b = pipe(x)
    torch.manual_seed(14)
    c = pipe(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not any(torch.equal(a[0], a[i]) for i in range(1, 8))

def test_debug_percentile_is_deterministic():
    pipe = make_pipe(**augpipe_specs['bgc'])
    x = smooth_images(2, 3, 16)
    torch.manual_seed(15)
    a = pipe(x, debug_percentile=0.7)
    torch.manual_seed(16)
    b = pipe(x, debug_percentile=0.7)
    assert torch.equal(a, b) and torch.equal(a[0:1], pipe(x[0:1], debug_percentile=0.7))

#----------------------------------------------------------------------------
# p: clamped by adjust_p, saved in pickles and state_dict.

def test_adjust_p_clamps():
    pipe = AugmentPipe(xflip=1)
    assert pipe.adjust_p(0.7) == pytest.approx(0.7)
    assert pipe.adjust_p(0.7) == 1.0
    assert pipe.adjust_p(-5) == 0.0
    assert pipe.p.dtype == torch.float32 and pipe.p.shape == ()
    assert augment.ada_p_delta(0.8, target=0.6, num_images=256, ada_kimg=500) == pytest.approx(256 / 500e3)
    assert augment.ada_p_delta(0.1, target=0.6, num_images=500e3, ada_kimg=500) == -1

def test_p_above_one_acts_as_one():
    x = smooth_images(4, 3, 16)
    torch.manual_seed(17)
    a = make_pipe(1.0, **augpipe_specs['bgc'])(x)
    torch.manual_seed(17)
    b = make_pipe(1.5, **augpipe_specs['bgc'])(x)
    assert torch.equal(a, b)

def test_pickle_round_trip_keeps_p():
    pipe = make_pipe(0.37, **augpipe_specs['bgcfnc'])
    clone = pickle.loads(pickle.dumps(pipe))
    assert float(clone.p) == pytest.approx(0.37) and clone.init_kwargs == augpipe_specs['bgcfnc']
    assert list(clone.state_dict()) == ['p']
    x = smooth_images(3, 3, 16)
    for other in (clone, copy.deepcopy(pipe)):
        torch.manual_seed(18)
        a = pipe(x)
        torch.manual_seed(18)
        assert torch.equal(other(x), a)

@pytest.mark.slow
def test_pickle_loads_in_fresh_process(tmp_path):
    pipe = make_pipe(0.25, **augpipe_specs['bgc'])
    x = smooth_images(2, 3, 16)
    torch.manual_seed(23)
    expect = pipe(x)
    torch.save(dict(x=x, expect=expect), tmp_path / 'data.pt')
    (tmp_path / 'pipe.pkl').write_bytes(pickle.dumps(pipe))
    code = textwrap.dedent(f"""
        import pickle, sys, torch
        pipe = pickle.loads(open({str(tmp_path / 'pipe.pkl')!r}, 'rb').read())
        assert 'training.augment' not in sys.modules, 'defining module was imported'
        data = torch.load({str(tmp_path / 'data.pt')!r})
        torch.manual_seed(23)
        assert float(pipe.p) == 0.25 and torch.equal(pipe(data['x']), data['expect'])
    """)
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

#----------------------------------------------------------------------------
# Bad input ends in one clear error.

def test_errors():
    with pytest.raises(ValueError, match='scale_std'):
        AugmentPipe(scale_std=-1)
    with pytest.raises(ValueError, match='xflip'):
        AugmentPipe(xflip='yes')
    with pytest.raises(ValueError, match='imgfilter_bands'):
        AugmentPipe(imgfilter_bands=[1, 1, 1])
    with pytest.raises(TypeError):
        AugmentPipe(xflp=1)
    pipe = make_pipe(**augpipe_specs['bgc'])
    with pytest.raises(ValueError, match='channels'):
        pipe(torch.zeros([2, 2, 8, 8]))
    with pytest.raises(ValueError, match=r'\[N, C, H, W\]'):
        pipe(torch.zeros([2, 3, 8]))
    with pytest.raises(ValueError, match=r'\[N, C, H, W\]'):
        pipe(torch.zeros([2, 3, 8, 8], dtype=torch.int64))
    with pytest.raises(ValueError, match='square'):
        pipe(torch.zeros([2, 3, 8, 16]))
    with pytest.raises(ValueError, match='debug_percentile'):
        pipe(torch.zeros([2, 3, 8, 8]), debug_percentile=2)

