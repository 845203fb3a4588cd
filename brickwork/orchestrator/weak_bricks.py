"""Weak bricks: a routed step whose brick is often wrong on its own task says so in its trace.

Each brick's ``brick.json`` records its held-out exact match (``metrics.exact_match``, on its
test split) and, for most bricks, the base model's on the same examples
(``metrics.base_exact_match``). A routed step whose brick scores below `WEAK_BELOW` gets a
``weak`` note in its ``why``::

    {"weak": [{"brick": "country_capital", "exact_match": 0.18, "base_exact_match": 0.0,
               "threshold": 0.5, "note": "country_capital is weak: held-out exact match 0.18 < 0.5
               (base model 0.00 on the same task)"}]}

The step still runs on the brick. Falling back to the base model instead was measured and did
not help: the base model's own held-out score is lower than the weak brick's on every starter
brick (0.00 vs 0.18 country_capital, 0.01 vs 0.22 word_sorting, 0.00 vs 0.24 spell_word, 0.00 vs
0.485 color_from_rgb), and on 120 composite instructions (``brickwork eval compose --n 120
--seed 1 --planner rules --configs routed --weak-fallback 0.3,0.5``) whole-answer accuracy fell
from 0.350 routed to 0.292 (fallback below 0.3) and 0.283 (below 0.5). So the fallback is only
an option of that eval (docs/orchestrator.md, "Weak bricks").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from brickwork.errors import BrickNotFound
from brickwork.orchestrator.types import BrickChoice

#: held-out exact match under which a brick is called weak (wrong more often than right)
WEAK_BELOW = 0.5


def brick_metrics(store: Any, name: str, version: int | None = None) -> dict[str, Any]:
    """The brick's recorded metrics; empty when the store has none for it."""
    try:
        brick = store.get(name, version)
    except BrickNotFound:
        return {}
    return dict(getattr(brick.manifest, "metrics", None) or {})  # test fakes' manifests carry no metrics


def weak_notes(bricks: Sequence[BrickChoice], store: Any, threshold: float = WEAK_BELOW) -> list[dict[str, Any]]:
    """One note per brick in `bricks` whose held-out exact match is below `threshold`."""
    notes = []
    for b in bricks:
        m = brick_metrics(store, b.name, b.version)
        em = m.get("exact_match")
        if not isinstance(em, int | float) or em >= threshold:
            continue
        base = m.get("base_exact_match")
        note = f"{b.name} is weak: held-out exact match {em:.2f} < {threshold}"
        if isinstance(base, int | float):
            note += f" (base model {base:.2f} on the same task)"
        notes.append({"brick": b.name, "exact_match": em, "base_exact_match": base, "threshold": threshold, "note": note})
    return notes


def note_weak(why: dict[str, Any] | None, bricks: Sequence[BrickChoice], store: Any) -> dict[str, Any] | None:
    """`why` with a ``weak`` entry added when a chosen brick is weak (`why` itself is not changed)."""
    notes = weak_notes(bricks, store)
    if not notes:
        return why
    return {**(why or {}), "weak": notes}

