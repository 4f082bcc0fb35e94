# Improved precision and recall from "Improved Precision and Recall Metric for Assessing
# Generative Models", Kynkaanniemi et al. 2019: each set's manifold is the union of
# hyperspheres around its VGG16 features reaching the k-th nearest neighbour; precision is the
# fraction of generated features inside the real manifold, recall the converse.

import torch

from . import metric_utils

#----------------------------------------------------------------------------
# Pairwise Euclidean distances [R, C] between rows, split over ranks by column blocks.

def _distance_block(row_features, col_features, num_gpus, rank, col_batch_size):
    col_batches = col_features.split(col_batch_size)
    num_batches = ((len(col_batches) - 1) // num_gpus + 1) * num_gpus
    dist_batches = []
    for col_batch in (col_batches + (col_batches[0],) * (num_batches - len(col_batches)))[rank :: num_gpus]:
        dist_batches.append(torch.cdist(row_features.unsqueeze(0), col_batch.unsqueeze(0))[0])
    if num_gpus == 1:
        return torch.cat(dist_batches, dim=1)
    gathered = []
    for d in dist_batches:
        parts = [torch.empty_like(d) for _ in range(num_gpus)]
        torch.distributed.all_gather(parts, d)
        gathered.extend(parts)
    # Column block b was computed by rank b % num_gpus as its (b // num_gpus)-th batch.
    ordered = [gathered[(b % num_gpus) + (b // num_gpus) * num_gpus] for b in range(len(col_batches))]
    return torch.cat(ordered, dim=1)

#----------------------------------------------------------------------------
# For every probe feature: is it within the k-NN radius of at least one manifold feature?

def manifold_coverage(manifold, probes, nhood_size=3, row_batch_size=10000, col_batch_size=10000, num_gpus=1, rank=0):
    """Args: manifold [N, F] and probe [M, F] feature tensors; nhood_size k.
    Returns: fraction (float) of probes p with |p - m| <= r_k(m) for some manifold item m, where
    r_k(m) is the distance from m to its k-th nearest other manifold item."""
    if manifold.shape[0] <= nhood_size:
        raise ValueError(f'Need more than nhood_size={nhood_size} items: got {manifold.shape[0]}')
    radii = []
    for rows in manifold.split(row_batch_size):
        dist = _distance_block(rows, manifold, num_gpus, rank, col_batch_size)
        radii.append(dist.kthvalue(nhood_size + 1, dim=1).values) # The item itself is the 1st.
    radii = torch.cat(radii)
    covered = []
    for rows in probes.split(row_batch_size):
        dist = _distance_block(rows, manifold, num_gpus, rank, col_batch_size)
        covered.append((dist <= radii.unsqueeze(0)).any(dim=1))
    return float(torch.cat(covered).to(torch.float64).mean())

#----------------------------------------------------------------------------
# L2-normalise features; float16 on CUDA to halve memory (as the original), float32 elsewhere (no half cdist on CPU).

def prepare_features(features, device):
    features = torch.nn.functional.normalize(features.to(torch.float32), dim=1)
    dtype = torch.float16 if torch.device(device).type == 'cuda' else torch.float32
    return features.to(dtype).to(device)

#----------------------------------------------------------------------------
# Precision and recall of opts.G against the dataset.

def compute_pr(opts, max_real, num_gen, nhood_size, row_batch_size, col_batch_size):
    real, gen = metric_utils.compute_real_and_generated_stats(opts, metric_utils.VGG16_URL, max_real, num_gen,
        capture_all=True)
    real_features, gen_features = real.get_all_torch(), gen.get_all_torch()
    real_features = prepare_features(real_features, opts.device)
    gen_features = prepare_features(gen_features, opts.device)
    kw = dict(nhood_size=nhood_size, row_batch_size=row_batch_size, col_batch_size=col_batch_size, num_gpus=opts.num_gpus, rank=opts.rank)
    precision = manifold_coverage(real_features, gen_features, **kw)
    recall = manifold_coverage(gen_features, real_features, **kw)
    if opts.rank != 0:
        return float('nan'), float('nan')
    return precision, recall
