"""Stream events from graph updates: what `Brickwork.stream` yields and `brickwork run` prints.

Shapes (every event has ``event`` and ``run_id``)::

    {"event": "plan", "planner", "fallback_reason", "steps": [{"id", "subgoal", "input", "depends_on"}]}
    {"event": "route", "step", "subgoal", "bricks": [{"name", "version", "weight", "score"}]}
    {"event": "step", "step": {"id", "subgoal", "depends_on", "bricks", "output", "engine", "seconds"}}
    {"event": "answer", "answer"}
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from brickwork.orchestrator.types import Plan, StepResult


def events_from_update(run_id: str, node: str, payload: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    if not payload:
        return
    if node == "plan" and payload.get("plan"):
        plan = Plan.from_json(payload["plan"])
        yield {
            "event": "plan",
            "run_id": run_id,
            "planner": plan.planner,
            "fallback_reason": plan.fallback_reason,
            "steps": [{"id": s.id, "subgoal": s.subgoal, "input": s.input, "depends_on": list(s.depends_on)} for s in plan.steps],
        }
    elif node == "route":
        for sid, r in (payload.get("routes") or {}).items():
            yield {"event": "route", "run_id": run_id, "step": sid, "subgoal": r["subgoal"], "bricks": r["bricks"]} | (
                {"why": r["why"]} if r.get("why") else {}
            )
    elif node == "execute":
        for r in (payload.get("results") or {}).values():
            yield {"event": "step", "run_id": run_id, "step": StepResult.from_state(r).to_json()}
    elif node == "aggregate":
        yield {"event": "answer", "run_id": run_id, "answer": payload.get("answer", "")}
