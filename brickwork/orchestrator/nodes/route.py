"""``route``: one step -> its bricks (retrieval + routing policy, or the caller's fixed bricks).

Runs once per ready step, in parallel (LangGraph `Send`); references to earlier outputs are
substituted first, so a dependent step is routed on what it will really be asked.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from brickwork.orchestrator.context import Deps
from brickwork.orchestrator.state import RouteTask
from brickwork.orchestrator.types import BrickChoice, Step


def route(task: RouteTask, runtime: Runtime[Deps]) -> dict[str, Any]:
    t0 = time.perf_counter()
    deps = runtime.context
    step = Step.from_json(task["step"])
    subgoal, inp = step.resolve(task["outputs"])
    if step.bricks is not None:
        bricks = [
            BrickChoice(name=b.name, version=b.version or deps.store.active_version(b.name), weight=b.weight)
            for b in step.bricks
        ]
    else:
        [bricks] = deps.retriever.route([subgoal], [inp])
    dt = time.perf_counter() - t0
    entry = {"subgoal": subgoal, "input": inp, "bricks": [b.to_json() for b in bricks], "seconds": dt}
    return {"routes": {step.id: entry}, "timings": {"route": dt}}
