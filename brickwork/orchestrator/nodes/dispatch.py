"""The edge after ``plan`` and ``execute``: fan the ready steps out to ``route``, or finish."""

from __future__ import annotations

from langgraph.types import Send

from brickwork.orchestrator.state import RouteTask, RunState


def ready_steps(state: RunState) -> list[dict]:
    """Steps not yet run whose dependencies have all run, in plan order."""
    done = state.get("results") or {}
    return [
        s
        for s in (state.get("plan") or {}).get("steps", [])
        if s["id"] not in done and all(d in done for d in s.get("depends_on") or ())
    ]


def dispatch(state: RunState) -> list[Send] | str:
    ready = ready_steps(state)
    if not ready:
        return "aggregate"
    results = state.get("results") or {}
    outputs = {sid: r["output"] for sid, r in results.items()}
    return [Send("route", RouteTask(step=s, outputs={d: outputs[d] for d in s.get("depends_on") or ()})) for s in ready]
