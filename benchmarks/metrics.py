# Time of fid50k_full on the CPU, measured on a scaled-down run and extrapolated to 50k
# generated images and the whole dataset. Stages: dataset statistics, generation, features,
# and the Frechet distance itself. See docs/metrics.md for the numbers and what they mean.
#
#   python benchmarks/metrics.py                        # random 32x32 generator, stand-in detector if offline
#   python benchmarks/metrics.py --num-gen=512 --res=64 --dataset-size=70000

import os
import sys
import tempfile
import time
import warnings

import click
import numpy as np
import PIL.Image
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import dnnlib                                                   # pylint: disable=wrong-import-position
from metrics import frechet_inception_distance, metric_utils    # pylint: disable=wrong-import-position
from training import networks                                   # pylint: disable=wrong-import-position

#----------------------------------------------------------------------------
# Stand-in for the Inception detector when the real file is unavailable: resizes to 299x299
# like the real one and returns 2048 features, but costs far less than Inception-v3.

class StandInInception(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 32, kernel_size=3, stride=4)
        self.fc = torch.nn.Linear(32 * 8 * 8, 2048)

    def forward(self, images: torch.Tensor, return_features: bool = False, no_output_bias: bool = False,
            resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        x = images.to(torch.float32) / 127.5 - 1
        if resize_images:
            x = torch.nn.functional.interpolate(x, size=[299, 299], mode='bilinear', align_corners=False)
        x = torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), [8, 8]).flatten(1)
        return self.fc(x)

#----------------------------------------------------------------------------
# The real detector if it can be found offline, else a stand-in written to a temporary folder.

def find_detector(tmp_dir):
    try:
        metric_utils.get_feature_detector(metric_utils.INCEPTION_URL)
        return 'inception-2015-12-05.pt (real)'
    except FileNotFoundError as err:
        print(f'Real detector unavailable ({err}); the features stage uses a cheap stand-in.')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning) # torch.jit.script: the detector format is TorchScript.
        torch.jit.script(StandInInception().eval()).save(os.path.join(tmp_dir, 'inception-2015-12-05.pt'))
    os.environ[metric_utils.DETECTOR_DIR_ENV] = tmp_dir
    metric_utils.clear_feature_detector_cache()
    return 'stand-in (NOT Inception-v3: features time is a lower bound)'

#----------------------------------------------------------------------------
# Seconds taken by fn().

def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result

#----------------------------------------------------------------------------

@click.command()
@click.option('--res', help='Generator and dataset resolution', type=int, default=32, show_default=True)
@click.option('--channel-base', help='Generator channel_base (channels per layer = min(base / res, 512))', type=int, default=4096, show_default=True)
@click.option('--num-gen', help='Generated images actually timed', type=click.IntRange(min=16), default=256, show_default=True)
@click.option('--num-real', help='Dataset images actually timed', type=click.IntRange(min=16), default=256, show_default=True)
@click.option('--dataset-size', help='Dataset size to extrapolate to (fid50k_full uses all images)', type=int, default=70000, show_default=True)
@click.option('--threads', help='torch.set_num_threads (0 = leave as is)', type=int, default=0, show_default=True)
def main(res, channel_base, num_gen, num_real, dataset_size, threads):
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    G = networks.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
        synthesis_kwargs=dict(channel_base=channel_base, channel_max=512)).eval().requires_grad_(False)
    with tempfile.TemporaryDirectory() as tmp_dir:
        detector_name = find_detector(tmp_dir)
        data_dir = os.path.join(tmp_dir, 'data')
        os.makedirs(data_dir)
        rnd = np.random.RandomState(0)
        for i in range(num_real):
            PIL.Image.fromarray(rnd.randint(0, 256, [res, res, 3]).astype(np.uint8)).save(os.path.join(data_dir, f'{i:06d}.png'))
        opts = metric_utils.MetricOptions(G=G, dataset_kwargs=dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=data_dir), cache=False)
        detector = metric_utils.get_feature_detector(metric_utils.INCEPTION_URL)

        # Dataset statistics: decoding, detector and moment accumulation, as compute_fid runs them.
        t_data, real_stats = timed(lambda: metric_utils.compute_feature_stats_for_dataset(opts, metric_utils.INCEPTION_URL,
            dict(return_features=True), capture_mean_cov=True, max_items=num_real))

        # Generation alone, 4 images per G call as in compute_feature_stats_for_generator.
        def generate():
            with torch.no_grad():
                return torch.cat([metric_utils.generate_images(G, torch.randn([4, G.z_dim]), torch.zeros([4, 0]), {})
                    for _ in range(num_gen // 4)])
        t_gen, images = timed(generate)

        # Features of the generated images plus moment accumulation, 64 per detector call.
        def features():
            stats = metric_utils.FeatureStats(capture_mean_cov=True)
            with torch.no_grad():
                for batch in images.split(64):
                    stats.append_torch(metric_utils.run_detector(detector, batch, return_features=True))
            return stats
        t_feat, gen_stats = timed(features)

        # The Frechet distance on 2048-dimensional statistics (sqrtm dominates).
        t_fid, _ = timed(lambda: frechet_inception_distance.frechet_distance(*gen_stats.get_mean_cov(), *real_stats.get_mean_cov()))

    n_gen = num_gen // 4 * 4
    per_real, per_gen, per_feat = t_data / num_real, t_gen / n_gen, t_feat / n_gen
    total = per_real * dataset_size + (per_gen + per_feat) * 50000 + t_fid
    print(f'fid50k_full timing on CPU ({torch.get_num_threads()} threads), G {res}x{res} channel_base {channel_base}, detector: {detector_name}')
    print(f'{"stage":<22s} {"measured":>14s} {"ms/item":>9s} {"extrapolated":>14s}')
    rows = [('dataset statistics', t_data, num_real, per_real * dataset_size),
        ('generation', t_gen, n_gen, per_gen * 50000), ('generated features', t_feat, n_gen, per_feat * 50000),
        ('frechet distance', t_fid, 1, t_fid)]
    for name, t, n, extrapolated in rows:
        print(f'{name:<22s} {t:>8.2f}s/{n:<5d} {t / n * 1e3:>9.2f} {dnnlib.util.format_time(extrapolated):>14s}')
    print(f'{"total (fid50k_full)":<22s} {"":>14s} {"":>9s} {dnnlib.util.format_time(total):>14s}  ({dataset_size} real + 50000 generated)')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main() # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
