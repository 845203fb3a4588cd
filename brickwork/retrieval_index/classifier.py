"""A per-library brick classifier, blended with nearest-row similarity into each brick's score.

Nearest-row cosine is good at requests that name a task and weak on bare inputs: a tweet only
loosely resembles the brick's other tweets, and the nearest row of some other brick often wins.
A multinomial logistic regression over the same index vectors, one class per active brick,
learns which directions of the space separate the bricks (the words of SMS spam against those
of tweets, the shape of an RGB triple against a date) from the library's own manifests:

- every row of a brick (description, examples) is a training point of its class;
- so is ``"<description> <example>"`` for each example, an instruction-plus-input text in the
  form users write requests in (built from the manifest, no outside data).

Nothing from any evaluation set is used, so the classifier is refitted from the manifests
whenever the set of active bricks changes. A brick's score is then

    score = (cos + beta * p) / (1 + beta)

where ``cos`` is the cosine of its best row, ``p`` the classifier's probability of the brick
and ``beta`` is `FeatureConfig.classifier_weight` (0 turns the classifier off). It stays on the
cosine's scale, is explainable as two numbers, and ``beta`` was chosen on the calibration half
of the routing eval (docs/retrieval.md).

Fitting is plain numpy (full-batch Adam on a convex loss, fixed steps: deterministic), about two
seconds for the starter library's ~850 texts on a busy core.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: logits are `TEMPERATURE * x @ W.T + b`: unit-length inputs need a scale to reach confident
#: probabilities with small weights (the L2 penalty then acts on directions, not on scale).
TEMPERATURE = 20.0
STEPS = 600


def training_texts(description: str, examples: Sequence[str]) -> list[str]:
    """The extra training texts of one brick: its description followed by each example."""
    description = description.strip()
    if not description:
        return []
    return [f"{description} {e}" for e in examples]


def fit(x: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float = 0.01, steps: int = STEPS) -> np.ndarray:
    """Weights `(n_classes, dim + 1)` (last column: bias) of a softmax regression of `y` on `x`.

    Minimises mean cross-entropy + ``l2 * ||W||^2``; one class needs no fit (probability 1).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x {x.shape} and y {y.shape} do not match")
    w = np.zeros((n_classes, x.shape[1] + 1), dtype=np.float64)
    if n_classes < 2 or len(x) == 0:
        return w.astype(np.float32)
    onehot = np.zeros((len(y), n_classes))
    onehot[np.arange(len(y)), y] = 1.0
    m, v = np.zeros_like(w), np.zeros_like(w)
    lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-8
    for t in range(1, steps + 1):
        p = _softmax(TEMPERATURE * x @ w[:, :-1].T + w[:, -1])
        g_logit = (p - onehot) / len(x)
        grad = np.empty_like(w)
        grad[:, :-1] = TEMPERATURE * g_logit.T @ x + 2 * l2 * w[:, :-1]
        grad[:, -1] = g_logit.sum(0)
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad**2
        w -= lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return w.astype(np.float32)


def probabilities(weights: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(queries, classes) probabilities under `weights` from `fit`."""
    q = np.asarray(q, dtype=np.float32)
    return _softmax(TEMPERATURE * q @ weights[:, :-1].T + weights[:, -1]).astype(np.float32)


def blend(cos: np.ndarray, probs: np.ndarray, beta: float) -> np.ndarray:
    """The brick score: ``(cos + beta * p) / (1 + beta)``."""
    return ((cos + beta * probs) / (1.0 + beta)).astype(np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
