"""How one API request becomes engine work: model -> bricks, planned runs, one-step generation.

`model` is ``brickwork`` (plan and route), ``base`` (no bricks) or brick specs
``NAME[@VERSION][:WEIGHT]+...`` (`brickwork.serving.refs`).

A *planned run* goes through the SDK's LangGraph graph exactly as `Brickwork.stream` does, with a
per-request runtime context whose engine is a `StepEngine`: it gives every step the client's
sampling parameters (max_tokens, temperature, top_p, seed, stop) and streams the final step's
tokens. The planner's own engine calls do not pass through it (the planner holds the SDK's
engine), so they keep the planner's constrained, greedy decoding.

A *one-step run* calls the engine directly with one rendered prompt (conversations, raw
completions), inside `BatchingEngine.enter`/`leave` so concurrent requests share batches.

Every engine call carries the request's `cancelled` event (set when the client disconnects):
`BatchingEngine` takes a cancelled request out of its queue before it reaches the engine and
raises `Cancelled` (`brickwork.serving.batching`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from brickwork.serving.engine import BrickRef, Completion, Request, SamplingParams

PLANNED, BASE = "brickwork", "base"


@dataclass(frozen=True)
class Bricks:
    """The configuration a request runs with, and how it was chosen (for the `brickwork` field)."""

    refs: tuple[BrickRef, ...]
    how: str  # "routed", "base", "model"
    scores: tuple[float | None, ...] = ()

    def trace(self) -> list[dict[str, Any]]:
        scores = self.scores or (None,) * len(self.refs)
        return [
            {"name": r.name, "version": r.version, "weight": r.weight, "score": s}
            for r, s in zip(self.refs, scores, strict=True)
        ]


def fixed_bricks(bw: Any, model: str) -> Bricks | None:
    """The bricks `model` names (None for ``brickwork``: routed per request). Raises
    `BrickNotFound` (-> 404) for an unknown brick, `ConfigError` for a malformed spec."""
    from brickwork.serving.refs import brick_refs

    if model == PLANNED:
        return None
    if model == BASE:
        return Bricks((), "base")
    parts = [p for p in model.split("+")]
    if not all(p.strip() for p in parts):
        from brickwork.errors import ConfigError

        raise ConfigError(f"bad model {model!r}: use 'brickwork', 'base' or NAME[:WEIGHT]+NAME[:WEIGHT]")
    return Bricks(brick_refs(bw.store, parts), "model")


def route(bw: Any, query: str) -> Bricks:
    """Route one query with the library's retriever and routing policy (what a plan step gets)."""
    [choices] = bw.retriever.route([query], [None])
    refs = tuple(BrickRef(name=c.name, version=c.version, weight=c.weight) for c in choices)
    return Bricks(refs, "routed", tuple(c.score for c in choices))


def is_planner_request(req: Request) -> bool:
    return req.sampling.json_schema is not None


@dataclass
class StepEngine:
    """The engine a planned run's steps see: the SDK's `BatchingEngine` with the client's sampling,
    recording each step's completion and streaming the final step's text."""

    inner: Any
    sampling: SamplingParams
    on_final_text: Callable[[str], None] | None = None
    n_steps: int | None = None  # set from the plan event, before any step runs
    cancelled: threading.Event | None = None
    single_sink: bool = False
    seen: int = 0
    requests: list[Request] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)
    streamed: bool = False

    @property
    def name(self) -> str:
        return self.inner.name

    def generate(self, requests: Sequence[Request]) -> list[Any]:
        reqs = []
        final_wave = self.n_steps is not None and self.seen + len(requests) == self.n_steps
        for r in requests:
            if is_planner_request(r):  # a planner that generates through the graph's engine
                reqs.append(r)
                continue
            hook = None
            if self.on_final_text is not None and final_wave and self.single_sink and len(requests) == 1:
                hook, self.streamed = self.on_final_text, True
            reqs.append(dataclasses.replace(r, sampling=self.sampling, on_text=hook))
        self.seen += len(requests)
        out = self.inner.generate(reqs, cancelled=self.cancelled)
        self.requests += reqs
        self.completions += out
        return out

    def score(self, requests: Sequence[Any]) -> list[Any]:
        return self.inner.score(requests, cancelled=self.cancelled)

    def close(self) -> None:  # the SDK's engine is not ours to close
        pass


def run_planned(
    bw: Any,
    instruction: str,
    *,
    fixed: Bricks | None,
    sampling: SamplingParams,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    on_final_text: Callable[[str], None] | None = None,
    cancelled: threading.Event | None = None,
) -> tuple[Any | None, StepEngine]:
    """Run the SDK graph for one instruction (planned, or one step with `fixed` bricks)."""
    from brickwork.orchestrator.checkpoint import new_run_id, thread_config
    from brickwork.orchestrator.events import events_from_update
    from brickwork.orchestrator.runs import result_from_state, snapshot
    from brickwork.orchestrator.types import Plan

    rid = new_run_id()
    if fixed is None:
        state = bw._start_state(instruction, None, False, rid)
    else:
        from brickwork.orchestrator.types import BrickSpec

        specs = [BrickSpec(name=r.name, weight=r.weight, version=r.version) for r in fixed.refs]
        state = bw._start_state(instruction, specs or None, not specs, rid)
    engine = StepEngine(bw.engine, sampling, on_final_text, cancelled=cancelled)
    if fixed is not None:  # a one-step plan, given: the graph emits no plan event for it
        engine.n_steps, engine.single_sink = 1, True
    deps = dataclasses.replace(bw.deps, engine=engine, max_tokens=sampling.max_tokens)
    t0 = time.perf_counter()
    bw.engine.enter()
    try:
        for update in bw.graph.stream(state, thread_config(rid), context=deps, stream_mode="updates", durability="sync"):
            for node, payload in update.items():
                for event in events_from_update(rid, node, payload):
                    if event["event"] == "plan":
                        plan = Plan.from_json(payload["plan"])
                        engine.n_steps, engine.single_sink = len(plan.steps), len(plan.sinks()) == 1
                    if on_event is not None:
                        on_event(event)
            if cancelled is not None and cancelled.is_set():
                return None, engine  # the client left; the checkpoint keeps what ran (resumable)
    finally:
        bw.engine.leave()
    result = result_from_state(snapshot(bw.graph, rid, bw.store.root).values, time.perf_counter() - t0)
    return result, engine


def generate(bw: Any, requests: list[Request], cancelled: threading.Event | None = None) -> list[Completion]:
    bw.engine.enter()
    try:
        return bw.engine.generate(requests, cancelled=cancelled)
    finally:
        bw.engine.leave()


def score(bw: Any, requests: list[Any], cancelled: threading.Event | None = None) -> list[Any]:
    bw.engine.enter()
    try:
        return bw.engine.score(requests, cancelled=cancelled)
    finally:
        bw.engine.leave()
