# Tests of calc_metrics.py: a tiny StyleGAN2 snapshot in a run directory, stand-in detectors,
# scaled-down item counts (--max-items), and the one-line errors for bad arguments.

import json
import os
import sys

import click.testing
import numpy as np
import pytest
import torch

import dnnlib
import legacy
import calc_metrics
from metrics import metric_utils
from training import networks

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_metrics import make_image_folder, write_stand_in_detectors # pylint: disable=wrong-import-position

#----------------------------------------------------------------------------
# A run directory with training_options.json, a 16x16 dataset and a tiny snapshot.

@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.setenv('DNNLIB_DETECTOR_DIR', str(tmp_path / 'unused'))
    det_dir = write_stand_in_detectors(tmp_path / 'detectors')
    dataset_kwargs = make_image_folder(tmp_path / 'data', num_images=12)
    dataset_kwargs.update(use_labels=False, max_size=None, xflip=False, resolution=16)
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    (run_dir / 'training_options.json').write_text(json.dumps(dict(training_set_kwargs=dataset_kwargs)))
    torch.manual_seed(0)
    G = networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
    pkl = run_dir / 'network-snapshot-000000.pkl'
    legacy.save_network_pkl(str(pkl), dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None))
    yield dnnlib.EasyDict(tmp=tmp_path, det_dir=det_dir, pkl=str(pkl), run_dir=run_dir, data=dataset_kwargs.path)
    metric_utils.clear_feature_detector_cache() # Later tests must not see the stand-ins.

def invoke(*args):
    return click.testing.CliRunner().invoke(calc_metrics.calc_metrics, list(args))

#----------------------------------------------------------------------------

def test_snapshot_in_run_dir_appends_jsonl(run):
    result = invoke('--network', run.pkl, '--metrics', 'fid50k_full,pr50k3_full,ppl2_wend', '--detector-dir', run.det_dir,
        '--max-items', '8', '--verbose', 'false', '--device', 'cpu')
    assert result.exit_code == 0, result.output
    for metric, keys in [('fid50k_full', ['fid50k_full']), ('pr50k3_full', ['pr50k3_full_precision', 'pr50k3_full_recall']), ('ppl2_wend', ['ppl2_wend'])]:
        lines = (run.run_dir / f'metric-{metric}.jsonl').read_text().splitlines()
        entry = json.loads(lines[-1])
        assert entry['metric'] == metric and entry['snapshot_pkl'] == 'network-snapshot-000000.pkl'
        assert entry['max_items'] == 8
        assert all(np.isfinite(entry['results'][k]) for k in keys)

def test_network_outside_run_dir_prints_results(run):
    other = run.tmp / 'elsewhere.pkl'
    os.replace(run.pkl, other)
    result = invoke('--network', str(other), '--data', run.data, '--metrics', 'kid50k', '--mirror', '1',
        '--detector-dir', run.det_dir, '--max-items', '6', '--verbose', 'false', '--device', 'cpu')
    assert result.exit_code == 0, result.output
    entry = json.loads(result.output.strip().splitlines()[-1])
    assert entry['metric'] == 'kid50k' and np.isfinite(entry['results']['kid50k'])
    assert not any(p.name.startswith('metric-') for p in run.tmp.iterdir())

@pytest.mark.slow
def test_two_cpu_processes(run):
    result = invoke('--network', run.pkl, '--metrics', 'fid50k_full', '--detector-dir', run.det_dir,
        '--max-items', '8', '--verbose', 'false', '--device', 'cpu', '--gpus', '2')
    assert result.exit_code == 0, result.output
    entry = json.loads((run.run_dir / 'metric-fid50k_full.jsonl').read_text().splitlines()[-1])
    assert entry['num_gpus'] == 2 and np.isfinite(entry['results']['fid50k_full'])

    # The two processes' dataset statistics (left in the cache) cover items 0..7 exactly once.
    cache_files = os.listdir(dnnlib.make_cache_dir_path('gan-metrics'))
    assert len(cache_files) == 1
    shared = metric_utils.FeatureStats.load(dnnlib.make_cache_dir_path('gan-metrics', cache_files[0]))
    opts = metric_utils.MetricOptions(dataset_kwargs=dict(json.loads((run.run_dir / 'training_options.json').read_text())['training_set_kwargs']), cache=False)
    single = metric_utils.compute_feature_stats_for_dataset(opts, metric_utils.INCEPTION_URL, dict(return_features=True),
        capture_mean_cov=True, max_items=8)
    assert shared.num_items == single.num_items == 8
    for a, b in zip(shared.get_mean_cov(), single.get_mean_cov()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('args, message', [
    (['--metrics', 'fid5k'], 'unknown metric fid5k; valid metrics: fid50k_full'),
    (['--network', 'missing.pkl'], 'file not found: missing.pkl'),
    (['--data', 'no/such/data'], 'dataset not found: no/such/data'),
    (['--detector-dir', 'no/such/dir'], 'not a folder: no/such/dir'),
])
def test_bad_arguments(run, args, message):
    base = dict(zip(['--network', '--metrics'], [run.pkl, 'fid50k_full']))
    for key, value in zip(args[::2], args[1::2]):
        base[key] = value
    result = invoke(*[x for kv in base.items() for x in kv], '--verbose', 'false', '--device', 'cpu')
    assert result.exit_code == 2 and message in result.output, result.output

def test_missing_data_outside_run_dir(run):
    (run.run_dir / 'training_options.json').unlink()
    result = invoke('--network', run.pkl, '--verbose', 'false', '--device', 'cpu')
    assert result.exit_code != 0 and 'give --data' in result.output

def test_missing_detector_is_one_line(run, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError('network is unreachable')
    monkeypatch.setattr(dnnlib.util, '_download', offline)
    result = invoke('--network', run.pkl, '--metrics', 'is50k', '--max-items', '10', '--verbose', 'false', '--device', 'cpu',
        '--detector-dir', str(run.tmp))
    assert result.exit_code == 1, result.output
    error = [line for line in result.output.splitlines() if line.startswith('Error:')]
    assert len(error) == 1 and 'inception-2015-12-05.pt' in error[0] and str(run.tmp) in error[0]

#----------------------------------------------------------------------------

def test_conditional_network_uses_dataset_labels(run):
    torch.manual_seed(1)
    G = networks.Generator(z_dim=8, c_dim=2, w_dim=8, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
    pkl = str(run.tmp / 'cond.pkl')
    legacy.save_network_pkl(pkl, dict(G=None, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None))
    common = ['--network', pkl, '--metrics', 'fid50k_full', '--detector-dir', run.det_dir, '--max-items', '6', '--verbose', 'false', '--device', 'cpu']

    # Without labels in the dataset: one clear error.
    result = invoke(*common, '--data', run.data)
    assert result.exit_code == 2 and 'Error:' in result.output, result.output

    # With two classes: the metric runs.
    names = sorted(os.listdir(run.data))
    with open(os.path.join(run.data, 'dataset.json'), 'w') as f:
        json.dump(dict(labels=[[name, i % 2] for i, name in enumerate(names)]), f)
    result = invoke(*common, '--data', run.data)
    assert result.exit_code == 0, result.output
    assert np.isfinite(json.loads(result.output.strip().splitlines()[-1])['results']['fid50k_full'])

#----------------------------------------------------------------------------
# The *_custom metrics with a user's TorchScript feature network (--detector).

def test_custom_detector_metrics(run, monkeypatch):
    monkeypatch.delenv('DNNLIB_CUSTOM_DETECTOR', raising=False) # Restored after the test: --detector sets it.
    detector = os.path.join(run.det_dir, 'vgg16.pt') # Any TorchScript file with the detector call signature.
    result = invoke('--network', run.pkl, '--metrics', 'fd_custom,pr_custom', '--detector', detector,
        '--max-items', '8', '--verbose', 'false', '--device', 'cpu')
    assert result.exit_code == 0, result.output
    fd = json.loads((run.run_dir / 'metric-fd_custom.jsonl').read_text().splitlines()[-1])['results']
    pr = json.loads((run.run_dir / 'metric-pr_custom.jsonl').read_text().splitlines()[-1])['results']
    assert fd['fd_custom'] >= 0 and fd['fd_custom_real'] >= 0
    assert all(0 <= pr[k] <= 1 for k in ['pr_custom_precision', 'pr_custom_recall', 'pr_custom_real_precision', 'pr_custom_real_recall'])

def test_custom_metrics_need_a_detector(run, monkeypatch):
    monkeypatch.delenv('DNNLIB_CUSTOM_DETECTOR', raising=False)
    result = invoke('--network', run.pkl, '--metrics', 'fd_custom', '--verbose', 'false', '--device', 'cpu')
    assert result.exit_code != 0 and 'give --detector=PATH' in result.output and 'Traceback' not in result.output
    result = invoke('--network', run.pkl, '--metrics', 'pr_custom', '--detector', str(run.tmp / 'nope.pt'), '--device', 'cpu')
    assert result.exit_code != 0 and 'file not found' in result.output
