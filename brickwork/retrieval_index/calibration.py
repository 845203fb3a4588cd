"""Router calibration: the one rule that turns scored calibration queries into a router config.

The product, the CLI (``brickwork eval routing --calibrate``) and the routing evals all use
`calibrate`; the shipped ``brickwork/data/routing/router.json`` is its output on the bundled
calibration half. Inputs are the index's own scores (`BrickIndex.scores` / `BrickTable.scores`)
of labelled calibration queries, each of one kind:

- ``instruction`` and ``bare``: in scope (a request naming a brick's task, a bare input);
- ``out_of_scope``: no brick serves it.

The rule (`calibrate_thresholds`): every in-scope kind keeps at most `max_to_base` of its
queries off the bricks; among such thresholds, those sending within one standard error of the
most out-of-scope queries to the base model (a smaller difference is noise on a calibration set
of a few hundred requests); among those, the one losing the fewest in-scope queries; ties at
the middle of their range. One threshold serves both kinds of match (description or example):
two fit the calibration half better but held up worse on new queries (docs/retrieval.md).

Example::

    scores, field = index.scores(index.embed_queries(texts), texts)
    top = field[np.arange(len(texts)), scores.argmax(1)]
    config, result = calibrate(scores, top, kinds, data="my labelled requests")
    Router(config).save(index.dir / "router.json")
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from brickwork.errors import ConfigError

KINDS = ("instruction", "bare", "out_of_scope")
#: accepted and not counted: bare inputs of bricks that must be asked for go to the base model by design
IGNORED_KINDS = ("bare_asked",)
OBJECTIVE = (
    "instruction and bare queries each send <= 5% to the base model; among such thresholds (one for both "
    "kinds of match), of those within one standard error of the most out-of-scope queries sent to the base "
    "model, the one losing the fewest in-scope queries to it"
)


def to_base(scores: np.ndarray, field: np.ndarray, thresholds: tuple[float, float] | None) -> np.ndarray:
    """Which queries the router sends to the base model: the top score below the threshold for the
    kind of row it matched (`field` per query: 0 description, 1 example; thresholds (description,
    example); None: never)."""
    if thresholds is None:
        return np.zeros(len(scores), bool)
    thr = np.where(np.asarray(field) == 0, thresholds[0], thresholds[1])
    return np.asarray(scores).max(1) < thr


def _kinds(queries: Sequence[Any]) -> np.ndarray:
    """Kinds of calibration queries: strings, or objects with a `set` attribute (the evals' Query)."""
    kinds = np.array([q if isinstance(q, str) else q.set for q in queries])
    bad = sorted(set(kinds.tolist()) - set(KINDS) - set(IGNORED_KINDS))
    if bad:
        raise ConfigError(f"calibration query kinds should be among {KINDS + IGNORED_KINDS}, got {bad}")
    return kinds


def calibrate_thresholds(
    scores: np.ndarray,
    field: np.ndarray,
    queries: Sequence[Any],
    *,
    max_to_base: float = 0.05,
    single: bool = False,
    one_se: bool = True,
) -> tuple[tuple[float, float], dict[str, Any]]:
    """Thresholds (description-matched, example-matched) by the module's rule, and what they achieve
    on the calibration queries. `queries`: each query's kind (or objects with `.set`).
    `single=True` fits one threshold for both kinds of match. `one_se=False` is the rule before
    2026-12-02 (the most out-of-scope queries, middle of ties; kept for side-by-side comparison)."""
    sets = _kinds(queries)
    n_oos = int((sets == "out_of_scope").sum())
    grid = np.round(np.arange(-0.10, 0.80, 0.005), 4)
    pairs = ((t, t) for t in grid) if single else ((d, e) for d in grid for e in grid)
    ok: list[tuple[float, float, float, float]] = []  # (out-of-scope share, in-scope loss, d, e) within the budget
    for d, e in pairs:
        based = to_base(scores, field, (d, e))
        instr, bare = _share(based, sets, "instruction"), _share(based, sets, "bare")
        if instr > max_to_base or bare > max_to_base:
            continue
        ok.append((_share(based, sets, "out_of_scope"), instr + bare, float(d), float(e)))
    if not ok:
        raise ConfigError("no threshold keeps the in-scope calibration queries within the budget")
    top = max(r[0] for r in ok)
    se = float(np.sqrt(top * (1 - top) / n_oos)) if n_oos and one_se else 0.0
    near = [r for r in ok if r[0] >= top - se - 1e-9]
    low = min(r[1] for r in near) if one_se else float("inf")
    tied = sorted((r for r in near if r[1] <= low + 1e-9), key=lambda r: (r[2] + r[3], r[2]))
    best = tied[(len(tied) - 1) // 2]
    based = to_base(scores, field, (best[2], best[3]))
    return (best[2], best[3]), {f"{k}_to_base": _share(based, sets, k) for k in KINDS}


def _share(based: np.ndarray, sets: np.ndarray, kind: str) -> float:
    m = sets == kind
    return float(based[m].mean()) if m.any() else 0.0


def calibrate(
    scores: np.ndarray,
    field: np.ndarray,
    queries: Sequence[Any],
    *,
    base: Any = None,
    max_to_base: float = 0.05,
    **provenance: Any,
) -> tuple[Any, dict[str, Any]]:
    """The router config calibrated on scored queries (one threshold, `calibrate_thresholds`), and
    what it achieves there. `base`: the `RouterConfig` whose other fields are kept (default: the
    shipped one). `provenance` (data, embedder, features, library, ...) is recorded in the
    config's `calibration` with the objective, the counts and the result."""
    from brickwork.retrieval_index.router import Router

    base = base or Router.default().config
    thr, result = calibrate_thresholds(scores, field, queries, max_to_base=max_to_base, single=True)
    sets = _kinds(queries)
    calibration = {
        **provenance,
        "objective": OBJECTIVE.replace("5%", f"{max_to_base:.0%}"),
        "n_calib": {k: int((sets == k).sum()) for k in KINDS},
        "calib_result": result,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return replace(base, min_score=thr[0], min_score_example=thr[1], calibration=calibration), result
