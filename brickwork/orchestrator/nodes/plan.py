"""``plan``: instruction -> steps (skipped when the caller fixed the plan: ``--brick`` / ``--base``)."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from brickwork.orchestrator.context import Deps
from brickwork.orchestrator.state import RunState


def plan(state: RunState, runtime: Runtime[Deps]) -> dict[str, Any]:
    if state.get("plan"):
        return {}
    t0 = time.perf_counter()
    [p] = runtime.context.planner.plan_batch([state["instruction"]])
    return {"plan": p.to_json(), "timings": {"plan": time.perf_counter() - t0}}
