"""The graph's state: plain JSON values only, so checkpoints stay readable across versions.

Parallel branches (one ``route`` task per ready step, sent with `Send`) write disjoint keys of
``routes``; the reducers merge them. ``timings`` and ``seconds`` add up across nodes and across
a resumed run's invocations.
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    return {**(left or {}), **(right or {})}


def add_timings(left: dict[str, float] | None, right: dict[str, float] | None) -> dict[str, float]:
    out = dict(left or {})
    for k, v in (right or {}).items():
        out[k] = out.get(k, 0.0) + float(v)
    return out


class RunState(TypedDict, total=False):
    """One run. ``plan`` is `Plan.to_json()`; ``routes`` and ``results`` are keyed by step id."""

    run_id: str
    instruction: str
    plan: dict[str, Any]
    routes: Annotated[dict[str, dict[str, Any]], merge_dicts]
    results: Annotated[dict[str, dict[str, Any]], merge_dicts]
    answer: str
    timings: Annotated[dict[str, float], add_timings]


class RouteTask(TypedDict):
    """What `Send` hands one ``route`` task: the step and the outputs its references need."""

    step: dict[str, Any]
    outputs: dict[str, str]
