"""A per-library brick classifier, blended with nearest-row similarity into each brick's score.

Nearest-row cosine is good at requests that name a task and weak on bare inputs: a tweet only
loosely resembles the brick's other tweets, and the nearest row of some other brick often wins.
A multinomial logistic regression over the same index vectors, one class per active brick,
learns which directions of the space separate the bricks (the words of SMS spam against those
of tweets, the shape of an RGB triple against a date) from the library's own manifests:

- every row of a brick (description, examples) is a training point of its class;
- so is ``"<description> <example>"`` for each example, an instruction-plus-input text in the
  form users write requests in (built from the manifest, no outside data).

With a *none* class (`FeatureConfig.none_class`, on by default) the classifier also learns what
no brick serves, from a fixed set of written out-of-scope requests shipped with Brickwork
(``brickwork/data/routing/none_train.jsonl``: near misses of the starter tasks and everyday
requests, from several independent writers; never used by any evaluation). Its probability is not
a brick's, so a request that looks like "none" lowers every brick's score and the router's
calibrated threshold sends it to the base model. Texts of that set that a library's own bricks
describe (cosine to one of the brick's rows at least `NONE_MAX_COS`) are left out for that
library, so a library that grows a brick for such requests is not fought by the none class. The
none class weighs as much as an average brick.

The none texts also act on their own, as nearest neighbours (`none_penalty`): a logistic class
learns a few directions and smooths over the near misses it was shown; a request written almost
like one of them ("Is 2024 a leap year?" beside "Is 2100 a leap year?") is better caught by
direct comparison. When a request's nearest none text is closer than its nearest brick row by
more than a margin, every brick's score drops by the excess (times a weight). The ranking of
bricks is unchanged; only the router's threshold sees the drop.

Nothing from any evaluation set is used, so the classifier is refitted from the manifests
whenever the set of active bricks changes. A brick's score is then

    score = (cos + beta * p) / (1 + beta) - gamma * max(0, n - c - delta)

where ``cos`` is the cosine of its best row, ``p`` the classifier's probability of the brick,
``beta`` is `FeatureConfig.classifier_weight` (0 turns the classifier off), ``n`` the cosine
of the request's nearest kept none text, ``c`` that of its nearest brick row (any brick), and
``gamma``/``delta`` are `FeatureConfig.none_neighbour_weight`/`none_neighbour_margin` (gamma 0
turns it off). It stays on the cosine's scale, is explainable as a few numbers, and ``beta``,
``gamma`` and ``delta`` were chosen on the calibration half of the routing eval (docs/retrieval.md).

Fitting is plain numpy (full-batch Adam on a convex loss, fixed steps, float32: deterministic),
about six seconds for the starter library (~1,200 brick texts and ~2,350 none texts) on two cores.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np

#: logits are `TEMPERATURE * x @ W.T + b`: unit-length inputs need a scale to reach confident
#: probabilities with small weights (the L2 penalty then acts on directions, not on scale).
TEMPERATURE = 20.0
STEPS = 600
#: a none text this close (index-space cosine) to one of a library's brick rows is left out
NONE_MAX_COS = 0.8


def none_texts() -> tuple[str, ...]:
    """The shipped out-of-scope requests the none class is trained on (the train split of every
    source in `none_data`: written near misses and real user requests)."""
    from brickwork.retrieval_index import none_data

    return none_data.none_texts()


def none_fingerprint() -> str:
    """A short hash of the none-class texts; an index records it, and one fitted on other texts is
    refitted on open (the shipped set grows between releases)."""
    return hashlib.sha256("\n".join(none_texts()).encode("utf-8")).hexdigest()[:16]


def fit_library(
    rows: np.ndarray,
    row_owner: np.ndarray,
    extra: np.ndarray,
    extra_owner: np.ndarray,
    n_bricks: int,
    none: np.ndarray | None = None,
    *,
    none_weight: float = 1.0,
) -> np.ndarray:
    """The brick classifier of a library: its bricks' index rows and extra texts (vectors and owning
    brick), plus, when `none` vectors are given, a last class for requests no brick serves.

    Weights have `n_bricks` rows, or `n_bricks + 1` with the none class (see the module docstring).
    """
    x = np.concatenate([rows, extra]) if len(extra) else np.asarray(rows)
    y = np.concatenate([row_owner, extra_owner]).astype(np.int64) if len(extra) else np.asarray(row_owner, np.int64)
    if none is None:
        return fit(x, y, n_bricks)
    none = kept_none(none, rows)
    sw = np.ones(len(x) + len(none))
    if len(none):
        # the none class weighs `none_weight` average bricks
        sw[len(x) :] = none_weight * (len(x) / max(n_bricks, 1)) / len(none)
    x = np.concatenate([x, none]) if len(none) else x
    y = np.concatenate([y, np.full(len(none), n_bricks, np.int64)])
    return fit(x, y, n_bricks + 1, sample_weight=sw)


def kept_none(none: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The none vectors a library keeps: those below `NONE_MAX_COS` to every row of its bricks."""
    none = np.asarray(none, dtype=np.float32)
    if len(none) and len(rows):
        none = none[(none @ np.asarray(rows, np.float32).T).max(1) < NONE_MAX_COS]
    return none


def none_penalty(q: np.ndarray, none: np.ndarray, nearest_row: np.ndarray, weight: float, margin: float) -> np.ndarray:
    """(queries,) what every brick's score loses: ``weight * max(0, n - nearest_row - margin)``, with
    ``n`` each query's cosine to its nearest `none` vector (see the module docstring)."""
    if weight == 0 or len(none) == 0:
        return np.zeros(len(q), dtype=np.float32)
    n = (np.asarray(q, dtype=np.float32) @ none.T).max(1)
    return (weight * np.maximum(0.0, n - np.asarray(nearest_row) - margin)).astype(np.float32)


def training_texts(description: str, examples: Sequence[str]) -> list[str]:
    """The extra training texts of one brick: its description followed by each example."""
    description = description.strip()
    if not description:
        return []
    return [f"{description} {e}" for e in examples]


def fit(
    x: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float = 0.01, steps: int = STEPS, sample_weight: np.ndarray | None = None
) -> np.ndarray:
    """Weights `(n_classes, dim + 1)` (last column: bias) of a softmax regression of `y` on `x`.

    Minimises (weighted) mean cross-entropy + ``l2 * ||W||^2``; one class needs no fit (probability 1).
    """
    x = np.asarray(x, dtype=np.float32)  # float32 halves the fit's time; its result is a float32 array anyway
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x {x.shape} and y {y.shape} do not match")
    w = np.zeros((n_classes, x.shape[1] + 1), dtype=np.float32)
    if n_classes < 2 or len(x) == 0:
        return w.astype(np.float32)
    onehot = np.zeros((len(y), n_classes), dtype=np.float32)
    onehot[np.arange(len(y)), y] = 1.0
    sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    sw = (sw / sw.sum())[:, None].astype(np.float32)
    m, v = np.zeros_like(w), np.zeros_like(w)
    lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-8
    for t in range(1, steps + 1):
        p = _softmax(TEMPERATURE * x @ w[:, :-1].T + w[:, -1])
        g_logit = (p - onehot) * sw
        grad = np.empty_like(w)
        grad[:, :-1] = TEMPERATURE * g_logit.T @ x + 2 * l2 * w[:, :-1]
        grad[:, -1] = g_logit.sum(0)
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad**2
        w -= lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return w.astype(np.float32)


def probabilities(weights: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(queries, classes) probabilities under `weights` from `fit` (with a none class: its last column)."""
    q = np.asarray(q, dtype=np.float32)
    return _softmax(TEMPERATURE * q @ weights[:, :-1].T + weights[:, -1]).astype(np.float32)


def brick_probabilities(weights: np.ndarray, q: np.ndarray, n_bricks: int) -> np.ndarray:
    """(queries, bricks) probabilities of the bricks alone (a none class's column dropped)."""
    return probabilities(weights, q)[:, :n_bricks]


def blend(cos: np.ndarray, probs: np.ndarray, beta: float) -> np.ndarray:
    """The brick score: ``(cos + beta * p) / (1 + beta)``."""
    return ((cos + beta * probs) / (1.0 + beta)).astype(np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
