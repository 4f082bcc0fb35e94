# Kernel Inception Distance (KID) from "Demystifying MMD GANs", Binkowski et al. 2018: the
# unbiased estimate of the squared MMD between Inception-v3 features of real and generated
# images under the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over subsets.

import numpy as np

from . import metric_utils

#----------------------------------------------------------------------------
# Unbiased MMD^2 estimate averaged over random equal-size subsets (Binkowski et al., eq. 3).

def kernel_distance(real_features, gen_features, num_subsets=100, max_subset_size=1000, rng=None):
    """Args: real [N, d] and generated [M, d] features; subsets of m = min(N, M, max_subset_size)
    items drawn without replacement (rng: np.random.RandomState, None = numpy's global one).
    Returns: mean over subsets of (1/(m(m-1))) sum_{i!=j} [k(x_i,x_j) + k(y_i,y_j)] - (2/m^2) sum_{i,j} k(x_i,y_j)."""
    real = np.asarray(real_features, np.float64)
    gen = np.asarray(gen_features, np.float64)
    if real.ndim != 2 or gen.ndim != 2 or real.shape[1] != gen.shape[1]:
        raise ValueError(f'Features must be [N, d] with equal d: got {real.shape} and {gen.shape}')
    rng = np.random if rng is None else rng
    d = real.shape[1]
    m = min(real.shape[0], gen.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f'KID needs at least 2 real and 2 generated items: got {real.shape[0]} and {gen.shape[0]}')
    total = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(gen.shape[0], m, replace=False)]
        y = real[rng.choice(real.shape[0], m, replace=False)]
        k_xx = (x @ x.T / d + 1) ** 3
        k_yy = (y @ y.T / d + 1) ** 3
        k_xy = (x @ y.T / d + 1) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        total += within - k_xy.sum() * 2 / (m * m)
    return float(total / num_subsets)

#----------------------------------------------------------------------------
# KID of opts.G against the dataset.

def compute_kid(opts, max_real, num_gen, num_subsets, max_subset_size):
    real, gen = metric_utils.compute_real_and_generated_stats(opts, metric_utils.INCEPTION_URL, max_real, num_gen,
        capture_all=True)
    real_features, gen_features = real.get_all(), gen.get_all()
    if opts.rank != 0:
        return float('nan')
    return kernel_distance(real_features, gen_features, num_subsets=num_subsets, max_subset_size=max_subset_size)
