"""Statistics over per-instance neuron values: FuncScore, top sets, overlaps, resident neurons, clusters.

`values` below is always an (instances, layers, neurons) tensor of mean |activation| over each
instance's prompt tokens.
"""

from __future__ import annotations

import math
from typing import Any


def _ap(order: Any, labels: Any, ranks: Any) -> Any:
    hits = labels.float()[order]
    return ((hits.cumsum(0) / ranks) * hits).sum(0) / labels.float().sum().clamp_min(1)


def average_precision(x: Any, labels: Any) -> Any:
    """AP of each column of `x` (instances, neurons) as a ranking score for boolean `labels`.

    Vectorised: one sort per column; ties are broken by order (activations are continuous).
    """
    import torch

    order = torch.argsort(x, dim=0, descending=True)
    ranks = torch.arange(1, x.shape[0] + 1, dtype=torch.float32).unsqueeze(1)
    return _ap(order, labels, ranks)


def funcscore(values: Any, cat_ids: Any, n_categories: int, *, shuffles: int = 3, seed: int = 0) -> dict[str, Any]:
    """FuncScore (AP of a neuron's values against a category's labels) for every neuron.

    Returns ``scores`` (categories, layers, neurons) and, per layer, the best and mean score
    (averaged over categories) with the same statistics under `shuffles` label permutations.
    """
    import torch

    n, n_layers, width = values.shape
    g = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(n, generator=g) for _ in range(shuffles)]
    scores = torch.zeros(n_categories, n_layers, width)
    shuf_best = torch.zeros(n_layers)
    shuf_mean = torch.zeros(n_layers)
    for layer in range(n_layers):
        x = values[:, layer, :]
        order = torch.argsort(x, dim=0, descending=True)
        ranks = torch.arange(1, n + 1, dtype=torch.float32).unsqueeze(1)
        for labels_set, target in [(cat_ids, "real")] + [(cat_ids[p], "shuffled") for p in perms]:
            for c in range(n_categories):
                ap = _ap(order, labels_set == c, ranks)
                if target == "real":
                    scores[c, layer] = ap
                else:
                    shuf_best[layer] += ap.max() / (shuffles * n_categories)
                    shuf_mean[layer] += ap.mean() / (shuffles * n_categories)
    return {
        "scores": scores,
        "best": scores.amax(-1).mean(0),
        "mean": scores.mean(-1).mean(0),
        "best_shuffled": shuf_best,
        "mean_shuffled": shuf_mean,
    }


def top_sets(scores: Any, fraction: float) -> Any:
    """Boolean (..., layers, neurons) mask of the top `fraction` of neurons per layer."""
    import torch

    k = max(1, math.ceil(fraction * scores.shape[-1]))
    idx = scores.topk(k, dim=-1).indices
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask.scatter_(-1, idx, True)
    return mask


def overlap_matrix(sets: Any) -> list[list[float]]:
    """|A ∩ B| / |A| pooled over layers, for every pair of (categories, layers, neurons) sets."""
    sizes = sets.flatten(1).sum(1).float()
    inter = sets.flatten(1).float() @ sets.flatten(1).float().T
    return (inter / sizes.unsqueeze(1)).tolist()


def random_overlap(n_sets: int, n_layers: int, width: int, fraction: float, *, seed: int = 0) -> float:
    """Mean off-diagonal overlap of random top-`fraction` sets of the same sizes (≈ fraction)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    sets = top_sets(torch.rand(n_sets, n_layers, width, generator=g), fraction)
    m = overlap_matrix(sets)
    off = [m[i][j] for i in range(n_sets) for j in range(n_sets) if i != j]
    return sum(off) / len(off)


def off_diagonal(m: list[list[float]]) -> tuple[float, float]:
    """(mean of the diagonal, mean off the diagonal)."""
    n = len(m)
    diag = [m[i][i] for i in range(n)]
    off = [m[i][j] for i in range(n) for j in range(n) if i != j]
    return sum(diag) / n, sum(off) / max(1, len(off))


def resident_neurons(values: Any, cat_ids: Any, n_categories: int, *, quantile: float = 0.9, min_freq: float = 0.9) -> Any:
    """Always-on neurons: in their layer's top (1 - quantile) on >= `min_freq` of the instances
    of *every* category. Returns (freq (categories, layers, neurons), resident mask (layers, neurons))."""
    import torch

    thr = torch.quantile(values, quantile, dim=-1, keepdim=True)
    high = (values >= thr).float()
    freq = torch.stack([high[cat_ids == c].mean(0) for c in range(n_categories)])
    return freq, freq.amin(0) >= min_freq


def cluster_neurons(values: Any, k: int, *, iters: int = 25, seed: int = 0) -> Any:
    """Co-activation clusters (MoEfication-style): spherical k-means on each neuron's z-scored
    profile over the instances, all layers together. Returns (layers, neurons) cluster ids."""
    import torch

    n, n_layers, width = values.shape
    x = values.reshape(n, -1).T.clone()  # neurons x instances
    x = x - x.mean(1, keepdim=True)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)
    g = torch.Generator().manual_seed(seed)
    # k-means++ style seeding on cosine distance
    centers = [x[torch.randint(len(x), (1,), generator=g)].squeeze(0)]
    for _ in range(1, k):
        d = 1 - (x @ torch.stack(centers).T).amax(1)
        p = d.clamp_min(0) ** 2
        centers.append(x[torch.multinomial(p / p.sum(), 1, generator=g)].squeeze(0))
    c = torch.stack(centers)
    assign = torch.zeros(len(x), dtype=torch.long)
    for _ in range(iters):
        new = (x @ c.T).argmax(1)
        if torch.equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = x[assign == j]
            if len(members):
                v = members.sum(0)
                c[j] = v / v.norm().clamp_min(1e-8)
    return assign.reshape(n_layers, width)
