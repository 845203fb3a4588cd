"""``route``: one step -> its bricks (retrieval + routing policy, or the caller's fixed bricks).

Runs once per ready step, in parallel (LangGraph `Send`). References to earlier outputs are
substituted into the subgoal the step runs and the trace shows; the retriever sees that subgoal
with the earlier output masked, so a dependent step is routed on what it asks.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from brickwork.orchestrator.context import Deps, ExplainingRetriever
from brickwork.orchestrator.state import RouteTask
from brickwork.orchestrator.types import BrickChoice, Step, refs_in
from brickwork.orchestrator.weak_bricks import note_weak


def route(task: RouteTask, runtime: Runtime[Deps]) -> dict[str, Any]:
    t0 = time.perf_counter()
    deps = runtime.context
    step = Step.from_json(task["step"])
    subgoal, inp = step.resolve(task["outputs"])
    why: dict[str, Any] | None = None
    if step.bricks is not None:
        bricks = [BrickChoice.of(b.resolve(deps.store)) for b in step.bricks]
    else:
        if isinstance(deps.retriever, ExplainingRetriever):  # says why (best brick, threshold, ambiguity)
            [(bricks, why)] = deps.retriever.route_with_reasons(*_routing_query(step, subgoal, inp))
        else:
            [bricks] = deps.retriever.route(*_routing_query(step, subgoal, inp))
        why = note_weak(why, bricks, deps.store)  # a brick often wrong on its own task says so
    dt = time.perf_counter() - t0
    entry = {"subgoal": subgoal, "input": inp, "bricks": [b.to_json() for b in bricks], "seconds": dt}
    if why is not None:
        entry["why"] = why
    return {"routes": {step.id: entry}, "timings": {"route": dt}}


def _routing_query(step: Step, subgoal: str, inp: str | None) -> tuple[list[str], list[str | None]]:
    """What the retriever scores. A step whose input is an earlier step's output is routed on what
    it asks with that output masked ("name the language of X"): the output looks like the examples
    of the brick that wrote it (a negated sentence, a capital), not like this step's task."""
    if inp and refs_in(step.input):
        from brickwork.retrieval_index.index import mask_input

        masked = mask_input(subgoal, inp)
        if masked is not None:
            return [masked], [None]
    return [subgoal], [inp]
