"""Choosing which neurons and layers to keep, from scores or from emergent bricks, and applying it.

Example (what an engine does for a step routed to emergent bricks)::

    masks = [load_mask(store.get(n).path) for n in ("emergent-arithmetic", "emergent-resident")]
    with apply_masks(model, masks, fraction=0.5):
        generate(...)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from brickwork.bricks.emergent.masks import NeuronMask
from brickwork.bricks.emergent.slicing import Patch, skip_layers, slice_ffn
from brickwork.errors import ConfigError


def _check_fraction(fraction: float) -> None:
    if not 0 < fraction <= 1:
        raise ConfigError(f"`fraction` should be in (0, 1], got {fraction!r}.")


def keep_from_scores(scores: Any, fraction: float, *, resident: Any = None) -> dict[int, list[int]]:
    """Per layer, the `fraction` of neurons with the highest `scores` (layers, neurons), resident
    neurons (a boolean (layers, neurons) mask) first."""
    import torch

    _check_fraction(fraction)
    scores = torch.as_tensor(scores, dtype=torch.float32)
    n_layers, width = scores.shape
    k = max(1, round(fraction * width))
    ranked = scores.clone()
    if resident is not None:
        ranked[torch.as_tensor(resident, dtype=torch.bool)] = float("inf")
    idx = ranked.topk(k, dim=-1).indices
    return {layer: sorted(idx[layer].tolist()) for layer in range(n_layers)}


def keep_from_masks(masks: Sequence[NeuronMask], *, fraction: float | None = None) -> dict[int, list[int]]:
    """The union of the bricks' neurons per layer; with `fraction`, each layer is cut (or filled)
    to that share by the bricks' best score (bricks without scores rank by membership only).

    Layers no brick mentions are left whole (absent from the result)."""
    import numpy as np

    masks = [m for m in masks if m.neurons]
    if not masks:
        return {}
    sizes = masks[0].sizes
    if any(m.sizes != sizes for m in masks):
        raise ConfigError("emergent bricks were made for different FFN shapes")
    if fraction is not None:
        _check_fraction(fraction)
    keep: dict[int, list[int]] = {}
    layers = sorted({layer for m in masks for layer in m.neurons})
    for layer in layers:
        width = sizes[layer]
        member = np.zeros(width, dtype=bool)
        score = np.full(width, -np.inf, dtype=np.float64)
        for m in masks:
            if layer in m.neurons:
                member[m.neurons[layer]] = True
            if layer in m.scores:
                score = np.maximum(score, m.scores[layer])
        if fraction is None:
            keep[layer] = np.flatnonzero(member).tolist()
            continue
        k = max(1, math.ceil(fraction * width))
        rank = np.where(member, 1e30 + np.nan_to_num(score, neginf=0.0), np.nan_to_num(score, neginf=-1e30))
        keep[layer] = sorted(np.argsort(-rank, kind="stable")[:k].tolist())
    return keep


def apply_masks(model: Any, masks: Sequence[NeuronMask], *, fraction: float | None = None) -> Patch:
    """Slice `model`'s FFNs to the bricks' neurons and skip the layers of layer bricks.

    Returns one `Patch` undoing both (use as a context manager)."""
    keep = keep_from_masks(masks, fraction=fraction)
    skip = sorted({layer for m in masks for layer in m.layers})
    patch = Patch(f"emergent({len(masks)} bricks)")
    parts: list[Patch] = []
    try:
        if keep:
            parts.append(slice_ffn(model, keep))
        if skip:
            parts.append(skip_layers(model, skip))
    except BaseException:
        for p in reversed(parts):
            p.restore()
        raise
    for p in parts:
        patch._undo.append(p.restore)
    return patch
