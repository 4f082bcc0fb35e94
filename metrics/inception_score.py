# Inception Score (IS) from "Improved Techniques for Training GANs", Salimans et al. 2016:
# exp(E_x KL(p(y|x) || p(y))) over Inception-v3 class probabilities, mean and std over splits.

import numpy as np
import scipy.special

from . import metric_utils

#----------------------------------------------------------------------------
# IS of class probabilities, split into num_splits consecutive parts (Salimans et al., sec. 4).

def inception_score(probs, num_splits=10):
    """Args: probs [N, K], rows summing to 1; num_splits parts of items [i*N//s, (i+1)*N//s).
    Returns: (mean, std) over splits of exp(mean_x sum_y p(y|x) (log p(y|x) - log p(y)))."""
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or probs.shape[0] < num_splits:
        raise ValueError(f'IS needs probabilities [N, K] with N >= num_splits ({num_splits}): got {probs.shape}')
    n = probs.shape[0]
    scores = []
    for i in range(num_splits):
        part = probs[i * n // num_splits : (i + 1) * n // num_splits]
        marginal = part.mean(axis=0, keepdims=True)
        kl = scipy.special.xlogy(part, part) - scipy.special.xlogy(part, marginal) # 0 log 0 = 0.
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))

#----------------------------------------------------------------------------
# IS of opts.G: num_gen generated images.

def compute_is(opts, num_gen, num_splits):
    detector_url = metric_utils.INCEPTION_URL
    detector_kwargs = dict(no_output_bias=True) # Match the original TensorFlow Inception model.
    num_gen = opts.cap(num_gen)

    gen_probs = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs,
        capture_all=True, max_items=num_gen).get_all()
    if opts.rank != 0:
        return float('nan'), float('nan')
    return inception_score(gen_probs, num_splits=num_splits)
