"""Reading finished (or interrupted) runs from the library's checkpoints, without an engine,
and recording feedback on their steps."""

from __future__ import annotations

import os
from typing import Any

from brickwork.errors import ConfigError
from brickwork.orchestrator.checkpoint import check_run_id, open_checkpointer, thread_config
from brickwork.orchestrator.types import Plan, RunResult, StepResult


def result_from_state(values: dict[str, Any], seconds: float | None = None) -> RunResult:
    plan = Plan.from_json(values["plan"]) if values.get("plan") else None
    results = values.get("results") or {}
    order = [s.id for s in plan.steps] if plan else sorted(results)
    steps = tuple(StepResult.from_state(results[sid]) for sid in order if sid in results)
    timings = dict(values.get("timings") or {})
    return RunResult(
        run_id=values["run_id"],
        instruction=values["instruction"],
        answer=values.get("answer", ""),
        steps=steps,
        seconds=sum(timings.values()) if seconds is None else seconds,
        plan=plan,
        timings=timings,
    )


def snapshot(graph: Any, run_id: str, library: Any) -> Any:
    snap = graph.get_state(thread_config(check_run_id(run_id)))
    if not snap.values:
        raise ConfigError(f"no run {run_id!r} in {library}")
    return snap


def load_run(library: str | os.PathLike[str], run_id: str) -> RunResult:
    """The run as checkpointed in `library` (finished or not)."""
    from brickwork.orchestrator.graph import compile_graph

    saver = open_checkpointer(library)
    try:
        return result_from_state(snapshot(compile_graph(saver), run_id, library).values)
    finally:
        saver.conn.close()


def record_feedback(
    library: str | os.PathLike[str],
    run: RunResult,
    step_id: str,
    *,
    good: bool = False,
    correction: str | None = None,
    base_fingerprint: str | None = None,
) -> Any:
    """Store good/correction feedback on one finished step of `run`; returns the `FeedbackEvent`."""
    from brickwork.feedback import FeedbackStore

    if good == (correction is not None):
        raise ConfigError("give exactly one of --good or --correction TEXT")
    sid = step_id if step_id.startswith("s") else f"s{step_id}"
    try:
        step = run.step(sid)
    except KeyError:
        have = ", ".join(s.id for s in run.steps) or "none finished"
        raise ConfigError(f"run {run.run_id} has no finished step {step_id!r} (steps: {have})") from None
    return FeedbackStore(library).add(
        run_id=run.run_id,
        step_id=sid,
        kind="good" if good else "correction",
        correction=correction,
        instruction=run.instruction,
        subgoal=step.subgoal,
        input=step.input,
        prompt=step.prompt,
        output=step.output,
        bricks=[b.to_json() for b in step.bricks],
        engine=step.engine,
        base_model=base_fingerprint,
    )
