"""Routing policy: from retrieval scores to a decision per subgoal.

A decision is a list of `Route` (brick, version, weight), at most `max_bricks` long; an empty list
means no brick fits and the base model answers. The policy:

1. no hit, or the best hit scores below its threshold -> base model. The threshold depends on
   what the hit matched: `min_score` when its best row is the brick's description, and
   `min_score_example` when it is one of the brick's examples (a bare input looks like other
   inputs, scores lower than a request that names the task, and is held to its own bar);
2. otherwise the best brick, plus any further hit (up to `max_bricks`) that clears its own
   threshold and is within `margin` of the best;
3. weights: a softmax of the chosen scores at `temperature`, normalised to sum to 1 (one brick
   gets weight 1.0, exactly the brick as trained).

`min_score` is calibrated from data, not guessed: `calibration.calibrate()` picks the threshold
that keeps at most a target share of in-scope calibration queries off their bricks and rejects as
many out-of-scope ones as possible; the shipped default (``brickwork/data/routing/router.json``)
is its output and records the data, embedder and result it came from. Every field is configurable.

Example::

    router = Router.default()
    router.route(index.search("what's 45 minus 17?"))   # [Route(name='two_digit_subtraction', ...)]
    router.route(index.search("write a haiku"))          # [] -> base model
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from brickwork.bricks.refs import BrickRef
from brickwork.errors import ConfigError
from brickwork.retrieval_index.index import BrickIndex, Hit
from brickwork.retrieval_index.search import ASK_COST

log = logging.getLogger("brickwork.retrieval_index")
DEFAULT_ROUTER_FILE = Path(__file__).resolve().parent.parent / "data" / "routing" / "router.json"


# A routing decision's brick at a weight is the engines' own value (one class, `bricks.refs`).
Route = BrickRef


@dataclass(frozen=True, kw_only=True)
class RouterConfig:
    """The routing policy's knobs (see the module docstring)."""

    min_score: float = 0.45
    min_score_example: float | None = None  # None: same as min_score
    max_bricks: int = 1
    margin: float = 0.03
    temperature: float = 0.05
    calibration: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_score <= 1.0:
            raise ConfigError(f"`min_score` should be a cosine in [-1, 1], got {self.min_score!r}.")
        if self.min_score_example is not None and not -1.0 <= self.min_score_example <= 1.0:
            raise ConfigError(f"`min_score_example` should be a cosine in [-1, 1] or None, got {self.min_score_example!r}.")
        if not isinstance(self.max_bricks, int) or self.max_bricks < 1:
            raise ConfigError(f"`max_bricks` should be a positive integer, got {self.max_bricks!r}.")
        if self.margin < 0:
            raise ConfigError(f"`margin` should be >= 0, got {self.margin!r}.")
        if self.temperature <= 0:
            raise ConfigError(f"`temperature` should be positive, got {self.temperature!r}.")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RouterConfig:
        known = {"min_score", "min_score_example", "max_bricks", "margin", "temperature", "calibration"}
        unknown = sorted(set(d) - known - {"format_version"})
        if unknown:
            raise ConfigError(f"router config: unknown keys {unknown}")
        return cls(**{k: v for k, v in d.items() if k in known})


class Router:
    """Turns hits into routes; stateless apart from its config."""

    def __init__(self, config: RouterConfig | None = None, **overrides: Any) -> None:
        config = config or _default_config()
        self.config = RouterConfig(**{**asdict(config), **overrides}) if overrides else config

    @classmethod
    def default(cls, **overrides: Any) -> Router:
        """The router with the shipped, calibrated thresholds (overridable per field)."""
        return cls(_default_config(), **overrides)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> Router:
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read router config {path}: {exc}") from exc
        return cls(RouterConfig.from_json(d), **overrides)

    @classmethod
    def for_index(cls, index: BrickIndex, **overrides: Any) -> Router:
        """The router for `index`: the library's own calibration (``<library>/index/router.json``)
        when present, else the shipped default. A default calibrated for another embedder or
        feature space is still used, with a warning: its scores are on another scale."""
        local = index.dir / "router.json"
        if local.is_file():
            return cls.from_file(local, **overrides)
        router = cls.default(**overrides)
        cal = router.config.calibration
        fp, feats = cal.get("embedder_fingerprint"), cal.get("features")
        if index.rows and fp is not None and (fp != index.identity.fingerprint or feats != index.features.to_json()):
            log.warning(
                "the default routing thresholds were calibrated for another embedder or feature space; "
                "run `brickwork eval routing --calibrate` to calibrate them for this library"
            )
        return router

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"format_version": 1, **self.config.to_json()}, indent=2) + "\n", encoding="utf-8")

    def route(self, hits: Sequence[Hit]) -> list[Route]:
        c = self.config
        if not hits:
            return []
        ranked = sorted(hits, key=lambda h: -h.score)
        best = ranked[0].score
        if best < self.threshold(ranked[0]):
            return []
        chosen = [h for h in ranked[: c.max_bricks] if h.score >= self.threshold(h) and best - h.score <= c.margin]
        logits = np.array([h.score / c.temperature for h in chosen])
        w = np.exp(logits - logits.max())
        w = w / w.sum()
        return [Route(name=h.name, version=h.version, weight=float(x)) for h, x in zip(chosen, w, strict=True)]

    def explain(self, hits: Sequence[Hit]) -> dict[str, Any]:
        """Why `route(hits)` decides what it does, for the trace: ``decision`` (``brick`` or
        ``base``), the ``best`` hit with the threshold it was held to, a one-line ``reason``, and
        ``ambiguous``: other bricks that clear their threshold within `margin` of the best but are
        not chosen (the request fits several bricks; the best one is used, and the trace says so)."""
        c = self.config
        ranked = sorted(hits, key=lambda h: -h.score)
        if not ranked:
            return {"decision": "base", "reason": "no brick in the library", "best": None, "ambiguous": []}
        top = ranked[0]
        thr = self.threshold(top)
        best = {"name": top.name, "score": round(float(top.score), 4), "matched": top.matched, "threshold": round(float(thr), 4)}
        # bricks that must be asked for and would have outscored the best had the request asked for them
        passed = [h for h in ranked if h.declined and h.score + ASK_COST > top.score and h.score + ASK_COST >= self.threshold(h)]
        note = "".join(f"; {h.name} passed over: it must be asked for (bare_inputs false) and the request does not ask for its task"
                       for h in passed)
        if top.score < thr:
            reason = f"no brick fits: the closest, {top.name}, scores {top.score:.3f} < {thr:.3f} ({top.matched} match){note}"
            return {"decision": "base", "reason": reason, "best": best, "ambiguous": [], **_declined(passed)}
        chosen = {r.name for r in self.route(ranked)}
        rivals = [h for h in ranked[1:] if h.name not in chosen and h.score >= self.threshold(h) and top.score - h.score <= c.margin]
        reason = f"{top.name} scores {top.score:.3f} >= {thr:.3f} ({top.matched} match)"
        if rivals:
            reason += "; ambiguous, also fits: " + ", ".join(f"{h.name} {h.score:.3f}" for h in rivals)
        return {
            "decision": "brick",
            "reason": reason + note,
            "best": best,
            "ambiguous": [{"name": h.name, "score": round(float(h.score), 4)} for h in rivals],
            **_declined(passed),
        }

    def threshold(self, hit: Hit) -> float:
        """The score `hit` must reach to be routed to (see the module docstring)."""
        c = self.config
        if hit.matched == "example" and c.min_score_example is not None:
            return c.min_score_example
        return c.min_score

    def route_batch(self, hits: Sequence[Sequence[Hit]]) -> list[list[Route]]:
        return [self.route(h) for h in hits]


def _declined(passed: Sequence[Hit]) -> dict[str, Any]:
    """The trace's ``declined`` key: bricks passed over for not being asked for (absent when none)."""
    return {"declined": [h.name for h in passed]} if passed else {}


@cache
def _default_config() -> RouterConfig:
    if DEFAULT_ROUTER_FILE.is_file():
        return RouterConfig.from_json(json.loads(DEFAULT_ROUTER_FILE.read_text(encoding="utf-8")))
    return RouterConfig()


def retrieve(
    index: BrickIndex, router: Router, queries: Sequence[str], *, k: int = 5, inputs: Sequence[str | None] | None = None
) -> list[tuple[list[Hit], list[Route]]]:
    """Search and route every query (one embedding batch): [(hits, routes)] in input order.

    This is the orchestrator's entry point; an empty `routes` means "base model". `inputs`: each
    query's task input, when known (see `BrickIndex.search_batch`).
    """
    hits = index.search_batch(list(queries), k=k, inputs=inputs)
    return [(h, router.route(h)) for h in hits]
