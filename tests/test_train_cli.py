# train.py's command line: every --cfg resolves to classes and keyword arguments that exist, the
# published hyper-parameters, --help kept in docs/train-help.txt, and one-line errors for bad options.

import inspect
import json
import os
import subprocess
import sys

import click.testing
import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib
import train
from torch_utils import persistence
from training import presets
from training import training_loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#----------------------------------------------------------------------------
# Datasets: 16x16 RGB with three classes, and the same without dataset.json.

def make_dataset(path, num_images=8, resolution=16, labels=True):
    os.makedirs(path, exist_ok=True)
    rnd = np.random.RandomState(1)
    for i in range(num_images):
        PIL.Image.fromarray(rnd.randint(0, 256, size=[resolution, resolution, 3], dtype=np.uint8)).save(os.path.join(path, f'{i}.png'))
    if labels:
        with open(os.path.join(path, 'dataset.json'), 'w') as f:
            json.dump(dict(labels=[[f'{i}.png', i % 3] for i in range(num_images)]), f)
    return str(path)

# Shared datasets of this file.
@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp('data') / 'labelled')

@pytest.fixture(scope='module')
def data_nolabels(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp('data') / 'plain', labels=False)

# train.py in this process (click's runner): exit code and output.
def invoke(args):
    return click.testing.CliRunner().invoke(train.main, [str(a) for a in args])

# The options --dry-run prints, as EasyDicts.
def dry_run(args):
    result = invoke(list(args) + ['--dry-run'])
    assert result.exit_code == 0, result.output
    return json.loads(result.output, object_hook=dnnlib.EasyDict)

#----------------------------------------------------------------------------
# Every class_name of a config resolves, and its kwargs bind to the constructor's signature. Nested
# *_kwargs dicts bind to the named sub-part; what a **kwargs forwards binds to the next class down.

SUB_PARTS = {
    'training.networks_stylegan2.Generator': dict(mapping_kwargs=['training.networks_stylegan2.MappingNetwork'],
        synthesis_kwargs=['training.networks_stylegan2.SynthesisNetwork', 'training.networks_stylegan2.SynthesisBlock', 'training.networks_stylegan2.SynthesisLayer']),
    'training.networks_stylegan2.Discriminator': dict(block_kwargs=['training.networks_stylegan2.DiscriminatorBlock'],
        mapping_kwargs=['training.networks_stylegan2.MappingNetwork'], epilogue_kwargs=['training.networks_stylegan2.DiscriminatorEpilogue']),
    'training.networks_stylegan3.Generator': dict(mapping_kwargs=['training.networks_stylegan3.MappingNetwork']),
    'training.dataset.ImageFolderDataset': dict(),
}
FORWARDS = {'training.dataset.ImageFolderDataset': ['training.dataset.Dataset'],
    'training.networks_stylegan3.Generator': ['training.networks_stylegan3.SynthesisNetwork', 'training.networks_stylegan3.SynthesisLayer']}

# Signature of a class's constructor; persistent classes report their wrapper's (*args, **kwargs),
# so the original class (the next in the MRO) is asked.
def constructor_signature(name):
    obj = dnnlib.util.get_obj_by_name(name)
    if isinstance(obj, type) and persistence.is_persistent(obj):
        obj = obj.__mro__[1]
    return inspect.signature(obj)

def bind_chain(names, kwargs):
    kwargs = dict(kwargs)
    for name in names:
        signature = constructor_signature(name)
        params = signature.parameters
        named = {k: v for k, v in kwargs.items() if k in params and params[k].kind != inspect.Parameter.VAR_KEYWORD}
        signature.bind_partial(**named)
        kwargs = {k: v for k, v in kwargs.items() if k not in named}
        if not any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values()):
            break
    assert not kwargs, f'{names}: unknown keyword arguments {sorted(kwargs)}'

# A class_name dict: its class and every nested sub-part accept the keywords.
def check_class_kwargs(kwargs):
    kwargs = dict(kwargs)
    name = kwargs.pop('class_name')
    for key, chain in SUB_PARTS.get(name, {}).items():
        bind_chain(chain, kwargs.pop(key, {}))
    bind_chain([name] + FORWARDS.get(name, []), kwargs)

@pytest.mark.parametrize('cfg', list(presets.configs))
def test_every_cfg_resolves(tmp_path, data, cfg):
    c = dry_run([f'--outdir={tmp_path}', f'--data={data}', f'--cfg={cfg}', '--cond=1', '--device=cpu', '--gamma=1']) # StyleGAN3 needs --gamma.
    inspect.signature(training_loop.training_loop).bind_partial(**c) # Exactly the loop's keywords.
    assert set(c) == set(inspect.signature(training_loop.training_loop).parameters) - {'rank', 'abort_fn', 'progress_fn'}
    for key in ('training_set_kwargs', 'G_kwargs', 'D_kwargs', 'augment_kwargs', 'loss_kwargs'):
        check_class_kwargs(c[key])
    for key in ('G_opt_kwargs', 'D_opt_kwargs'):
        check_class_kwargs(dict(c[key], params=[torch.zeros([1])]))
    assert not os.listdir(tmp_path) # A dry run creates nothing.

#----------------------------------------------------------------------------
# The published hyper-parameters (ADA paper, Appendix A; train.py of the original code), at 1 GPU.
#   cfg: (batch, batch_gpu, mbstd group, channel_base, lr, gamma, ema_kimg, ema_rampup, mapping layers)

PUBLISHED = {
    'stylegan2': (32, 4, 4, 32768, 0.002, 10, 10, None, 8),
    'paper256':  (64, 8, 8, 16384, 0.0025, 1, 20, None, 8),
    'paper512':  (64, 8, 8, 32768, 0.0025, 0.5, 20, None, 8),
    'paper1024': (32, 4, 4, 32768, 0.002, 2, 10, None, 8),
    'cifar':     (64, 32, 32, 32768, 0.0025, 0.01, 500, 0.05, 2),
    'auto':      (32, 32, 4, 16384, 0.0025, 0.0002 * 16 ** 2 / 32, 10, 0.05, 2), # At 16x16 on 1 GPU.
}

@pytest.mark.parametrize('cfg', list(PUBLISHED))
def test_published_hyperparameters(tmp_path, data, cfg):
    c = dry_run([f'--outdir={tmp_path}', f'--data={data}', f'--cfg={cfg}', '--device=cpu'])
    batch, batch_gpu, mbstd, cbase, lr, gamma, ema, rampup, num_map = PUBLISHED[cfg]
    assert (c.batch_size, c.batch_gpu) == (batch, min(batch_gpu, batch))
    assert c.D_kwargs.epilogue_kwargs.mbstd_group_size == min(mbstd, c.batch_gpu)
    assert c.G_kwargs.synthesis_kwargs.channel_base == c.D_kwargs.channel_base == cbase
    assert c.G_opt_kwargs.lr == c.D_opt_kwargs.lr == lr and c.G_opt_kwargs.betas == [0, 0.99]
    assert c.loss_kwargs.r1_gamma == pytest.approx(gamma, rel=1e-12)
    assert (c.ema_kimg, c.ema_rampup, c.G_kwargs.mapping_kwargs.num_layers) == (ema, rampup, num_map)
    assert (c.G_reg_interval, c.D_reg_interval) == (4, 16)
    if cfg == 'cifar':
        assert c.loss_kwargs.pl_weight == 0 and c.loss_kwargs.style_mixing_prob == 0 and c.D_kwargs.architecture == 'orig'

# Minibatch-stddev features and class groups: the published presets keep the original's single feature and
# mixed groups; small has one feature per channel of D's 4x4 block (following --cbase/--cmax) and, with labels,
# class groups the size of the stddev groups (docs/demo.md, runs 18-21).
@pytest.mark.parametrize('cfg,extra,features,groups', [('paper256', ['--cond=1'], 1, 0), ('cifar', ['--cond=1'], 1, 0),
    ('small', ['--cond=1'], 32, 4), ('small', [], 32, 0), ('small', ['--cond=1', '--cmax=16', '--batch=2'], 16, 2),
    ('small', ['--cond=1', '--cmax=64', '--cbase=128'], 32, 4), ('small', ['--cond=1', '--mbstd-ch=1'], 1, 4),
    ('paper256', ['--mbstd-ch=0'], 512, 0)])
def test_mbstd_features_and_class_groups(tmp_path, data, cfg, extra, features, groups):
    c = dry_run([f'--outdir={tmp_path}', f'--data={data}', f'--cfg={cfg}', '--device=cpu'] + extra)
    assert c.D_kwargs.epilogue_kwargs.mbstd_num_channels == features
    assert c.class_group_size == groups
    if groups:
        assert c.D_kwargs.epilogue_kwargs.mbstd_group_size == groups

# small: learning rates G 0.0035, D 0.006 (docs/demo.md runs 41-43, 57-58, 61-62), G_ema follows the ramp-up, Dmain is one D pass;
# --glr / --dlr still set each.
def test_small_learning_rates_and_loss(tmp_path, data):
    base = [f'--outdir={tmp_path}', f'--data={data}', '--device=cpu', '--cfg=small']
    c = dry_run(base)
    assert (c.G_opt_kwargs.lr, c.D_opt_kwargs.lr) == (0.0035, 0.006)
    assert (c.ema_kimg, c.ema_rampup) == (10, 0.05) and c.loss_kwargs.d_joint_pass is True
    c = dry_run(base + ['--glr=0.001', '--dlr=0.002'])
    assert (c.G_opt_kwargs.lr, c.D_opt_kwargs.lr) == (0.001, 0.002)
    assert 'd_joint_pass' not in dry_run([f'--outdir={tmp_path}', f'--data={data}', '--device=cpu', '--cfg=paper256']).loss_kwargs

# The class groups of small start after class_group_kimg (docs/demo.md); --class-group-kimg moves the start,
# and is an error where a run has no class groups.
def test_class_group_start(tmp_path, data):
    base = [f'--outdir={tmp_path}', f'--data={data}', '--device=cpu']
    assert dry_run(base + ['--cfg=small', '--cond=1']).class_group_kimg == presets.stylegan2_specs['small'].class_group_kimg > 0
    assert dry_run(base + ['--cfg=small', '--cond=1', '--class-group-kimg=0']).class_group_kimg == 0
    assert dry_run(base + ['--cfg=small', '--cond=1', '--class-group-kimg=12.5']).class_group_kimg == 12.5
    for extra in (['--cfg=small'], ['--cfg=paper256', '--cond=1']):
        result = click.testing.CliRunner().invoke(train.main, base + extra + ['--class-group-kimg=5', '--dry-run'])
        assert result.exit_code != 0 and 'Traceback' not in result.output
        assert '--class-group-kimg needs class groups' in result.output.strip().splitlines()[-1]

# --aux: D's auxiliary classifier and its loss weight in conditional runs; an error without labels.
def test_aux_classifier_option(tmp_path, data):
    base = [f'--outdir={tmp_path}', f'--data={data}', '--device=cpu', '--cfg=small']
    c = dry_run(base + ['--cond=1', '--aux=0.25'])
    assert c.D_kwargs.aux_classifier is True and c.loss_kwargs.aux_weight == 0.25
    c = dry_run(base + ['--cond=1', '--aux=0'])
    assert 'aux_classifier' not in c.D_kwargs and 'aux_weight' not in c.loss_kwargs
    c = dry_run(base + ['--cond=1']) # small's own weight, in conditional runs only.
    assert c.D_kwargs.aux_classifier is True and c.loss_kwargs.aux_weight == presets.stylegan2_specs['small'].aux > 0
    c = dry_run(base)
    assert 'aux_classifier' not in c.D_kwargs and 'aux_weight' not in c.loss_kwargs
    assert 'aux_weight' not in dry_run([f'--outdir={tmp_path}', f'--data={data}', '--device=cpu', '--cfg=paper256', '--cond=1']).loss_kwargs
    result = click.testing.CliRunner().invoke(train.main, base + ['--aux=0.5', '--dry-run'])
    assert result.exit_code != 0 and 'Traceback' not in result.output
    assert '--aux needs a conditional run' in result.output.strip().splitlines()[-1]

def test_mbstd_ch_must_divide_channels(tmp_path, data):
    result = click.testing.CliRunner().invoke(train.main, [f'--outdir={tmp_path}', f'--data={data}', '--cfg=small',
        '--device=cpu', '--cmax=16', '--mbstd-ch=3', '--dry-run'])
    assert result.exit_code != 0 and 'Traceback' not in result.output
    assert '--mbstd-ch=3 must divide the 16 channels' in result.output.strip().splitlines()[-1]

def test_biggan_presets(tmp_path, data):
    c = dry_run([f'--outdir={tmp_path}', f'--data={data}', '--cfg=biggan32', '--cond=1', '--device=cpu', '--ch=8', '--batch=8'])
    assert c.G_kwargs.ch == c.D_kwargs.ch == 8 and c.G_kwargs.mybn is True
    assert (c.G_opt_kwargs.lr, c.D_opt_kwargs.lr, c.G_opt_kwargs.betas) == (1e-4, 4e-4, [0, 0.999])
    assert (c.D_steps_per_G, c.G_reg_interval, c.D_reg_interval) == (2, None, None)
    assert c.loss_kwargs.class_name == 'training.loss.HingeLoss'
    assert c.snapshot_hooks == [dict(func_name='training.networks_biggan.accumulate_standing_stats', num_batches=16)]

# Options reach the resolved config.
def test_overrides(tmp_path, data):
    c = dry_run([f'--outdir={tmp_path}', f'--data={data}', '--cfg=small', '--device=cpu', '--gpus=2', '--batch=8',
        '--batch-gpu=2', '--kimg=3', '--tick=0.5', '--snap=7', '--seed=5', '--mirror=1', '--subset=4', '--gamma=3',
        '--glr=0.01', '--dlr=0.02', '--ema=4', '--cbase=2048', '--cmax=64', '--map=3', '--freezed=1',
        '--aug=fixed', '--p=0.25', '--augpipe=blit', '--workers=0'])
    assert (c.num_gpus, c.batch_size, c.batch_gpu, c.total_kimg, c.kimg_per_tick) == (2, 8, 2, 3, 0.5)
    assert (c.image_snapshot_ticks, c.network_snapshot_ticks, c.random_seed) == (7, 7, 5)
    assert c.training_set_kwargs.xflip is True and c.training_set_kwargs.max_size == 4
    assert (c.loss_kwargs.r1_gamma, c.G_opt_kwargs.lr, c.D_opt_kwargs.lr, c.ema_kimg) == (3, 0.01, 0.02, 4)
    assert (c.D_kwargs.channel_base, c.D_kwargs.channel_max, c.G_kwargs.mapping_kwargs.num_layers) == (2048, 64, 3)
    assert c.D_kwargs.block_kwargs.freeze_layers == 1
    assert (c.augment_p, c.ada_target, c.augment_kwargs.xflip, c.augment_kwargs.get('brightness', 0)) == (0.25, None, 1, 0)
    assert c.data_loader_kwargs.num_workers == 0 # Mixed precision on the CPU: tests/test_precision.py.
    c = dry_run([f'--outdir={tmp_path}', f'--data={data}', '--device=cpu', '--aug=noaug', '--freeze-d=2'])
    assert c.augment_kwargs is None and c.ada_target is None and c.D_kwargs.block_kwargs.freeze_layers == 2

#----------------------------------------------------------------------------
# --help is docs/train-help.txt; --list-classes lists what configs name.

@pytest.mark.slow
def test_help_matches_docs():
    result = subprocess.run([sys.executable, 'train.py', '--help'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with open(os.path.join(ROOT, 'docs', 'train-help.txt')) as f:
        assert result.stdout == f.read(), 'docs/train-help.txt is stale: python train.py --help > docs/train-help.txt'
    assert max(len(line) for line in result.stdout.splitlines()) <= 100

def test_list_classes():
    result = invoke(['--list-classes'])
    assert result.exit_code == 0, result.output
    names = result.output.split()
    for name in ('training.networks_stylegan2.Generator', 'training.networks_biggan.Discriminator', 'training.loss.StyleGAN2Loss',
                 'training.loss.HingeLoss', 'training.augment.AugmentPipe', 'training.dataset.ImageFolderDataset'):
        assert name in names
    assert all(dnnlib.util.get_obj_by_name(name) is not None for name in names)

#----------------------------------------------------------------------------
# Bad options: exit code 1, one line "Error: ...", no traceback, nothing created.

def assert_error(result, *fragments):
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('Error: '), result.output
    for fragment in fragments:
        assert fragment in lines[0]

@pytest.mark.parametrize('extra, fragments', [
    (['--batch=5', '--gpus=2'], ['--batch=5', 'divisible by --gpus=2']),
    (['--batch=8', '--batch-gpu=3'], ['multiple of --batch-gpu=3']),
    (['--metrics=fid_bogus'], ["unknown metric 'fid_bogus'", 'fid50k_full']),
    (['--p=0.3'], ['--p applies only with --aug=fixed']),
    (['--aug=fixed'], ['--aug=fixed needs --p']),
    (['--resume=/nonexistent/network.pkl'], ['/nonexistent/network.pkl is neither']),
    (['--cfg=biggan', '--cbase=1024'], ['--cbase applies to the StyleGAN2', '--ch']),
    (['--cfg=biggan32', '--map=2'], ['--map applies to the StyleGAN2']),
    (['--cfg=small', '--ch=8'], ['--ch applies to the BigGAN configs']),
])
def test_bad_option(tmp_path, data, extra, fragments):
    assert_error(invoke([f'--outdir={tmp_path}', f'--data={data}', '--device=cpu'] + extra), *fragments)
    assert not os.path.exists(tmp_path / '00000') and not os.listdir(tmp_path)

def test_bad_data(tmp_path, data_nolabels):
    assert_error(invoke([f'--outdir={tmp_path}']), '--data is required')
    assert_error(invoke([f'--outdir={tmp_path}', f'--data={data_nolabels}', '--cond=1']), '--cond=1 needs labels')
    assert_error(invoke([f'--outdir={tmp_path}', f'--data={tmp_path}/missing.zip']), '--data:', 'does not exist')

@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is present')
def test_cuda_without_cuda(tmp_path, data):
    assert_error(invoke([f'--outdir={tmp_path}', f'--data={data}', '--device=cuda']), '--device=cuda', 'no CUDA device')

# Continuing a run directory: its options are fixed; only a few may change.
def test_continue_errors(tmp_path, data):
    c = dry_run([f'--outdir={tmp_path}', f'--data={data}', '--cfg=small', '--device=cpu'])
    run_dir = tmp_path / '00000-run'
    os.makedirs(run_dir)
    with open(run_dir / 'training_options.json', 'w') as f:
        json.dump(c, f)
    assert_error(invoke([f'--outdir={tmp_path}', f'--resume={run_dir}', '--cfg=auto']), '--cfg cannot change', '--kimg')
    assert_error(invoke([f'--outdir={tmp_path}', f'--resume={run_dir}', '--kimg=5']), 'has no training-state-*.pt')
    assert_error(invoke([f'--outdir={tmp_path}', f'--resume={tmp_path}']), 'has no training_options.json')

# Continuing a run directory applies each changeable option that is given (here --keep-states too).
def test_continue_applies_changeable_options(tmp_path, data):
    c = dry_run([f'--outdir={tmp_path}', f'--data={data}', '--cfg=small', '--device=cpu', '--metrics=none'])
    run_dir = tmp_path / '00000-run'
    os.makedirs(run_dir)
    with open(run_dir / 'training_options.json', 'w') as f:
        json.dump(c, f)
    (run_dir / 'training-state-000000.pt').write_bytes(b'')
    c = dry_run([f'--outdir={tmp_path}', f'--resume={run_dir}', '--kimg=3', '--tick=2', '--snap=5', '--keep-states=7', '--workers=1'])
    assert (c.total_kimg, c.kimg_per_tick, c.network_snapshot_ticks, c.keep_states) == (3, 2, 5, 7)
    assert c.data_loader_kwargs.num_workers == 1 and c.resume_state.endswith('training-state-000000.pt')
    torch.save(dict(cur_nimg=3000), run_dir / 'training-state-000003.pt') # A finished run: only a longer --kimg continues it.
    assert_error(invoke([f'--outdir={tmp_path}', f'--resume={run_dir}', '--kimg=3']), 'has already trained 3 of its 3 kimg', 'larger --kimg')
    assert dry_run([f'--outdir={tmp_path}', f'--resume={run_dir}', '--kimg=4']).resume_state.endswith('training-state-000003.pt')

# --resume=<network> that the configuration cannot take (other sizes, another family) or a training
# state instead of its run directory: one line before a run directory exists (the loop would raise
# mid-start, or copy nothing and train from scratch).
def test_resume_network_must_fit(tmp_path, data):
    from training import network_files, networks_biggan, networks_stylegan2
    G = networks_stylegan2.Generator(z_dim=128, c_dim=3, w_dim=128, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=256, channel_max=16))
    network_files.save_network_pkl(str(tmp_path / 'sg2.pkl'), dict(G=G, G_ema=G))
    G = networks_biggan.Generator(z_dim=16, c_dim=3, img_resolution=16, img_channels=3, ch=2)
    network_files.save_network_pkl(str(tmp_path / 'biggan.pkl'), dict(G=G, G_ema=G))
    outdir = tmp_path / 'runs'
    args = [f'--outdir={outdir}', f'--data={data}', '--device=cpu', '--metrics=none', '--cond=1', '--map=1']
    ok = dry_run(args + ['--cfg=small', '--cbase=256', '--cmax=16', f'--resume={tmp_path / "sg2.pkl"}'])
    assert ok.resume_pkl == str(tmp_path / 'sg2.pkl')
    assert_error(invoke(args + ['--cfg=small', '--cbase=256', '--cmax=32', f'--resume={tmp_path / "sg2.pkl"}']),
        'the G in', 'does not fit this configuration', 'shape mismatch', '--cbase')
    assert_error(invoke(args + ['--cfg=small', f'--resume={tmp_path / "biggan.pkl"}']),
        'shares no weights with --cfg=small', 'training.networks_biggan.Generator')
    (tmp_path / 'run').mkdir()
    torch.save(dict(cur_nimg=0), tmp_path / 'run' / 'training-state-000000.pt')
    assert_error(invoke(args + ['--cfg=small', f'--resume={tmp_path / "run" / "training-state-000000.pt"}']),
        'is a training state', f'--resume={tmp_path / "run"}')
    assert not outdir.exists()

#----------------------------------------------------------------------------
# The preset interface: every family option is an option of train.py, and each belongs to its family.
def test_family_options_are_train_options():
    params = {param.name for param in train.main.params}
    owners = presets.family_options()
    assert set(owners) <= params, sorted(set(owners) - params)
    assert owners['cbase'] == ['StyleGAN2', 'StyleGAN3'] and owners['ch'] == ['BigGAN']
    for name, preset in presets.configs.items():
        assert preset.name == name and isinstance(preset, presets.Preset) and preset.description

# Options of runs written before snapshot hooks existed continue with the equivalent hook.
def test_old_options_upgrade():
    old = dnnlib.EasyDict(standing_stats_batches=16, G_kwargs=dict(class_name='training.networks_biggan.Generator'))
    c = train._upgrade_options(old)
    assert 'standing_stats_batches' not in c and c.image_grid_kwargs == {}
    assert c.snapshot_hooks == [dict(func_name='training.networks_biggan.accumulate_standing_stats', num_batches=16)]
    c = train._upgrade_options(dnnlib.EasyDict(standing_stats_batches=0, G_kwargs=dict(class_name='training.networks.Generator')))
    assert c.snapshot_hooks == [] and c.image_grid_kwargs == dict(noise_mode='const')

#----------------------------------------------------------------------------
# --subset draws its images with --seed (the ADA paper's limited-data protocol): other seeds, other subsets.
def test_subset_drawn_with_seed(tmp_path, data):
    def subset(seed):
        c = dry_run([f'--outdir={tmp_path}', f'--data={data}', '--cfg=small', '--device=cpu', '--subset=4', f'--seed={seed}'])
        dataset = dnnlib.util.construct_class_by_name(**c.training_set_kwargs)
        return tuple(sorted(dataset.get_details(i).raw_idx for i in range(len(dataset))))
    subsets = [subset(seed) for seed in range(4)]
    assert all(len(s) == 4 for s in subsets) and subset(2) == subsets[2]
    assert len(set(subsets)) > 1

# Defaults as in the original: fid50k_full at each snapshot; the newest 2 training states kept.
def test_metrics_and_state_defaults(tmp_path, data):
    c = dry_run([f'--outdir={tmp_path}', f'--data={data}', '--cfg=small', '--device=cpu'])
    assert c.metrics == ['fid50k_full'] and c.keep_states == 2
    c = dry_run([f'--outdir={tmp_path}', f'--data={data}', '--cfg=small', '--device=cpu', '--metrics=none', '--keep-states=0'])
    assert c.metrics == [] and c.keep_states == 0

# An offline machine without the metric's detector stops at once, with one line, before anything is written.
def test_missing_detector_stops_at_start(tmp_path, data, monkeypatch):
    from metrics import metric_utils
    monkeypatch.setenv('DNNLIB_DETECTOR_DIR', str(tmp_path / 'detectors'))
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    def offline(*args, **kwargs):
        raise OSError('network is unreachable')
    monkeypatch.setattr(dnnlib.util, '_download', offline)
    metric_utils.clear_feature_detector_cache()
    outdir = tmp_path / 'runs'
    result = invoke([f'--outdir={outdir}', f'--data={data}', '--cfg=small', '--device=cpu', '--kimg=0', '--workers=0'])
    assert_error(result, '--metrics=fid50k_full', 'inception-2015-12-05.pt', str(tmp_path / 'detectors'), '--detector-dir); or pass --metrics=none')
    assert not os.path.exists(outdir)

#----------------------------------------------------------------------------

# --reuse-fakes: StyleGAN2Loss(reuse_fakes) on or off; no preset turns it on (docs/demo.md runs 59-60).
def test_reuse_fakes_option(tmp_path, data):
    base = [f'--outdir={tmp_path}', f'--data={data}', '--device=cpu', '--cfg=small']
    assert dry_run(base + ['--reuse-fakes=1']).loss_kwargs.reuse_fakes is True
    assert dry_run(base + ['--reuse-fakes=0']).loss_kwargs.reuse_fakes is False
    assert 'reuse_fakes' not in dry_run(base).loss_kwargs
    assert 'reuse_fakes' not in dry_run(base[:-1] + ['--cfg=paper256']).loss_kwargs
