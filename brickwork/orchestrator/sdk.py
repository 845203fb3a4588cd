"""The Python SDK: `Brickwork` opens a library with an engine and answers instructions.

Example::

    from brickwork import Brickwork

    with Brickwork(library="~/.brickwork", engine="peft") as bw:
        result = bw.run("Give the plural of 'mouse', then spell it letter by letter.")
        print(result.answer)                       # m i c e
        for step in result.steps:                  # the trace
            print(step.id, step.subgoal, [b.name for b in step.bricks], step.output)
        bw.feedback(result.run_id, "s1", good=True)

        for event in bw.stream("What is the capital of Peru?"):
            print(event["event"])                  # start, plan, route, step, answer, done

Each run is a LangGraph thread with a run id, checkpointed in the library after every
super-step, so `resume(run_id)` finishes a run that crashed without redoing finished steps.
`graph` is the compiled graph, usable as a subgraph (it needs `deps` as its context).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from brickwork.bricks.store import BrickStore
from brickwork.errors import ConfigError
from brickwork.library import Library
from brickwork.orchestrator.checkpoint import check_run_id, new_run_id, open_checkpointer, thread_config
from brickwork.orchestrator.context import Deps, IndexRetriever, PromptStyle, Retriever
from brickwork.orchestrator.graph import compile_graph
from brickwork.orchestrator.planners import brick_planner_usable, make_planner
from brickwork.orchestrator.planners.base import Planner
from brickwork.orchestrator.planners.brick import planner_sources
from brickwork.orchestrator.runs import result_from_state, snapshot
from brickwork.orchestrator.types import BrickSpec, Plan, RunResult, Step
from brickwork.serving.batching import BatchingEngine


class Brickwork:
    """Answer instructions with a brick library: plan, route, run each step, aggregate.

    `engine`: a registered engine name (``peft``, ``vllm``, ``vllm-server``) or an engine object.
    `planner`: ``auto`` (the planner brick if usable, else rules), ``brick``, ``rules``,
    ``openai`` (with `planner_options` ``base_url=``, ``model=``) or a planner object.
    `retriever`: defaults to the library's retrieval index and routing policy.
    `prompt_style`: ``brick`` asks a routed brick its own description plus the step input;
    ``subgoal`` sends the subgoal as written (see `brickwork.orchestrator.prompting`).
    `store` replaces the library's store (tests pass fakes); checkpoints go to its ``root``.
    `ffn` (``peft`` engine only): the share of FFN neurons each token keeps, e.g. 0.5; the trace's
    ``engine`` then reads ``peft ffn=0.5``.
    """

    def __init__(
        self,
        library: str | os.PathLike[str] | None = None,
        *,
        engine: str | Any = "peft",
        engine_options: dict[str, Any] | None = None,
        planner: str | Planner = "auto",
        planner_options: dict[str, Any] | None = None,
        retriever: Retriever | None = None,
        base: str | None = None,
        prompt_style: PromptStyle = "brick",
        max_tokens: int = 64,
        k: int = 5,
        checkpoints: bool = True,
        store: Any = None,
        ffn: float | None = None,
    ) -> None:
        #: the library facade (store + index + router + feedback) the SDK is built on
        self.library = Library(store=store if store is not None else BrickStore(library, base=base))
        self.store = self.library.store
        self._owns_engine = isinstance(engine, str)  # an engine object given to us is the caller's to close
        if ffn is not None:
            engine_options = _with_ffn(engine, engine_options, ffn)
        if isinstance(engine, str):
            from brickwork.serving.engine import create_engine

            raw = create_engine(engine, self.store, **{"adapter_sources": planner_sources(), **(engine_options or {})})
        else:
            raw = engine
        self.engine = BatchingEngine(raw)
        #: things worth telling the user that are not errors (e.g. why the rules planner plans)
        self.notes: list[str] = []
        try:
            if isinstance(planner, str):
                if planner == "auto":
                    usable, why = brick_planner_usable(self.store)
                    if not usable:
                        self.notes.append(f"planning with the rules planner: the planner brick cannot be used ({why})")
                planner = make_planner(planner, engine=self.engine, store=self.store, **(planner_options or {}))
            self.planner: Planner = planner
            self.retriever: Retriever = retriever if retriever is not None else IndexRetriever(self.library, k=k)
            self.deps = Deps(
                engine=self.engine,
                planner=self.planner,
                retriever=self.retriever,
                store=self.store,
                engine_name=getattr(raw, "trace_name", getattr(raw, "name", "custom")),
                prompt_style=prompt_style,
                max_tokens=max_tokens,
            )
            if checkpoints:
                self._saver = open_checkpointer(self.store.root)
            else:
                from langgraph.checkpoint.memory import InMemorySaver

                self._saver = InMemorySaver()
        except BaseException:
            if self._owns_engine:
                self.engine.close()
            raise
        self.graph = compile_graph(self._saver)

    # -- context manager ------------------------------------------------------------------------
    def __enter__(self) -> Brickwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_engine:
            self.engine.close()
        conn = getattr(self._saver, "conn", None)
        if conn is not None:
            conn.close()

    # -- running --------------------------------------------------------------------------------
    def run(
        self,
        instruction: str,
        *,
        bricks: Sequence[str | BrickSpec] | None = None,
        base_only: bool = False,
        run_id: str | None = None,
    ) -> RunResult:
        """Answer one instruction. `bricks` (``"name"`` or ``"name:weight"``) or `base_only` run it
        as one step with exactly those bricks (or none), skipping planning and routing."""
        return self._invoke(*self._new_run(instruction, bricks, base_only, run_id))

    def run_batch(
        self,
        instructions: Sequence[str],
        *,
        bricks: Sequence[str | BrickSpec] | None = None,
        base_only: bool = False,
        max_concurrency: int = 32,
        on_result: Callable[[int, RunResult | BaseException], None] | None = None,
        return_exceptions: bool = False,
        plans: Sequence[Plan] | None = None,
    ) -> list[Any]:
        """Answer many instructions at once, in input order. Runs proceed concurrently and their
        engine calls are merged into shared batches (planning, then each wave of steps).

        With `return_exceptions`, a run that fails yields its `BrickworkError` in its place
        instead of failing the batch. `plans` (one per instruction) skips planning: each run
        executes the given plan (steps with `bricks` set skip routing too), as evals do.
        """
        from brickwork.errors import BrickworkError

        ids = [new_run_id() for _ in instructions]
        states = [self._start_state(i, bricks, base_only, rid) for i, rid in zip(instructions, ids, strict=True)]
        if plans is not None:
            if len(plans) != len(states) or bricks is not None or base_only:
                raise ConfigError("`plans` needs one plan per instruction and no bricks/base_only")
            for s, p in zip(states, plans, strict=True):
                s["plan"] = p.to_json()
        out: list[Any] = [None] * len(states)
        if not states:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(max_concurrency, len(states)))) as pool:
            futures = {pool.submit(self._invoke, s, rid): n for n, (s, rid) in enumerate(zip(states, ids, strict=True))}
            for fut in as_completed(futures):
                n = futures[fut]
                try:
                    out[n] = fut.result()
                except BrickworkError as exc:
                    if not return_exceptions:
                        raise
                    out[n] = exc
                if on_result is not None:
                    on_result(n, out[n])
        return out

    def stream(
        self,
        instruction: str,
        *,
        bricks: Sequence[str | BrickSpec] | None = None,
        base_only: bool = False,
        run_id: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Run one instruction, yielding events as they happen: ``start``, ``plan``, ``route`` (per
        step), ``step`` (per finished step, in the ``run --json`` step shape), ``answer``, ``done``
        (with the whole result)."""
        yield from self._stream(*self._new_run(instruction, bricks, base_only, run_id))

    def resume(self, run_id: str) -> RunResult:
        """Finish a run that was interrupted; finished steps are not run again."""
        snap = self._snapshot(run_id)
        if not snap.next:
            return self._result(snap.values, 0.0)
        return self._invoke(None, run_id)

    def get_run(self, run_id: str) -> RunResult:
        """The (possibly unfinished) run as checkpointed."""
        return self._result(self._snapshot(run_id).values, None)

    def feedback(self, run_id: str, step_id: str, *, good: bool = False, correction: str | None = None) -> Any:
        """Store good/correction feedback on one step of a run (for `brickwork update`)."""
        from brickwork.orchestrator.runs import record_feedback

        return record_feedback(
            self.store.root,
            self.get_run(run_id),
            step_id,
            good=good,
            correction=correction,
            base_fingerprint=self.store.base.fingerprint,
        )

    # -- internals ------------------------------------------------------------------------------
    def _new_run(
        self, instruction: str, bricks: Sequence[str | BrickSpec] | None, base_only: bool, run_id: str | None
    ) -> tuple[dict[str, Any], str]:
        rid = check_run_id(run_id) if run_id else new_run_id()
        return self._start_state(instruction, bricks, base_only, rid), rid

    def _start_state(
        self, instruction: str, bricks: Sequence[str | BrickSpec] | None, base_only: bool, run_id: str
    ) -> dict[str, Any]:
        if not isinstance(instruction, str) or not instruction.strip():
            raise ConfigError("the instruction is empty")
        state: dict[str, Any] = {"run_id": run_id, "instruction": instruction.strip()}
        if bricks is not None or base_only:
            if bricks and base_only:
                raise ConfigError("use either bricks or base_only, not both")
            specs = tuple(BrickSpec.parse(b) if isinstance(b, str) else b for b in (bricks or ()))
            names = [s.name for s in specs]
            if len(set(names)) != len(names):
                raise ConfigError(f"each brick may be named once, got {names}")
            for s in specs:
                self.store.active_version(s.name)  # fails now, with the library's brick list, if unknown
            step = Step(id="s1", subgoal=instruction.strip(), bricks=specs)
            state["plan"] = Plan(steps=(step,), planner="fixed").to_json()
        return state

    def _snapshot(self, run_id: str) -> Any:
        return snapshot(self.graph, run_id, self.store.root)

    def _invoke(self, state: dict[str, Any] | None, run_id: str) -> RunResult:
        t0 = time.perf_counter()
        self.engine.enter()
        try:
            values = self.graph.invoke(state, thread_config(run_id), context=self.deps, durability="sync")
        finally:
            self.engine.leave()
        return self._result(values, time.perf_counter() - t0)

    def _stream(self, state: dict[str, Any] | None, run_id: str) -> Iterator[dict[str, Any]]:
        from brickwork.orchestrator.events import events_from_update

        t0 = time.perf_counter()
        yield {"event": "start", "run_id": run_id, "instruction": (state or {}).get("instruction")}
        self.engine.enter()
        try:
            for update in self.graph.stream(
                state, thread_config(run_id), context=self.deps, stream_mode="updates", durability="sync"
            ):
                for node, payload in update.items():
                    yield from events_from_update(run_id, node, payload)
        finally:
            self.engine.leave()
        result = self._result(self._snapshot(run_id).values, time.perf_counter() - t0)
        yield {"event": "done", "run_id": run_id, "result": result.to_json()}

    @staticmethod
    def _result(values: dict[str, Any], seconds: float | None) -> RunResult:
        return result_from_state(values, seconds)


def _with_ffn(engine: str | Any, options: dict[str, Any] | None, ffn: float) -> dict[str, Any]:
    """`options` with the peft engine's ``ffn`` set; a clear error for any other engine."""
    if engine != "peft":
        name = engine if isinstance(engine, str) else getattr(engine, "name", type(engine).__name__)
        raise ConfigError(f"`ffn` (per-token FFN neuron selection) is supported by the peft engine only, not {name!r}; pass engine='peft' or drop `ffn`.")
    if options and "ffn" in options and options["ffn"] != ffn:
        raise ConfigError(f"`ffn` is given twice: ffn={ffn!r} and engine_options['ffn']={options['ffn']!r}.")
    return {**(options or {}), "ffn": ffn}
