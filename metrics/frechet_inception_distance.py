# Frechet Inception Distance (FID) from "GANs Trained by a Two Time-Scale Update Rule Converge
# to a Local Nash Equilibrium", Heusel et al. 2017: the Frechet distance between Gaussians
# fitted to the Inception-v3 pool features of real and generated images.

import numpy as np
import scipy.linalg

from . import metric_utils

#----------------------------------------------------------------------------
# Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al., eq. 6).

def frechet_distance(mu1, sigma1, mu2, sigma2):
    """Args: means [F] and covariances [F, F] of the two Gaussians.
    Returns: |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)) as a float."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f'Mismatched statistics: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}')
    mean_term = np.square(mu1 - mu2).sum()
    sqrt_prod = scipy.linalg.sqrtm(np.dot(sigma1, sigma2))
    return float(np.real(mean_term + np.trace(sigma1 + sigma2 - sqrt_prod * 2)))

#----------------------------------------------------------------------------
# FID of opts.G against the dataset: max_real real images (None = all), num_gen generated ones.

def compute_fid(opts, max_real, num_gen):
    real, gen = metric_utils.compute_real_and_generated_stats(opts, metric_utils.INCEPTION_URL, max_real, num_gen,
        capture_mean_cov=True)
    mu_real, sigma_real = real.get_mean_cov()
    mu_gen, sigma_gen = gen.get_mean_cov()
    if opts.rank != 0:
        return float('nan')
    return frechet_distance(mu_gen, sigma_gen, mu_real, sigma_real)
