"""``execute``: every routed, not yet run step in one engine call (one mixed-configuration batch)."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from brickwork.orchestrator.context import Deps
from brickwork.orchestrator.prompting import user_text
from brickwork.orchestrator.state import RunState
from brickwork.orchestrator.types import BrickChoice, StepResult


def execute(state: RunState, runtime: Runtime[Deps]) -> dict[str, Any]:
    from brickwork.prompts import CHATML
    from brickwork.serving.engine import Request, SamplingParams

    deps = runtime.context
    done = state.get("results") or {}
    steps = {s["id"]: s for s in state["plan"]["steps"]}
    todo = [sid for sid in steps if sid in (state.get("routes") or {}) and sid not in done]
    if not todo:
        return {}
    prompts = getattr(deps.store, "prompts", CHATML)  # the base model's chat template (test fakes: SmolLM2's)
    sampling = SamplingParams(max_tokens=deps.max_tokens, stop=(prompts.stop,))
    requests, texts, choices = [], [], []
    for sid in todo:
        r = state["routes"][sid]
        bricks = [BrickChoice.from_json(b) for b in r["bricks"]]
        text = user_text(r["subgoal"], r["input"], bricks, deps.store, style=deps.prompt_style)
        refs = tuple(b.ref for b in bricks)
        requests.append(Request(prompt=prompts.render(text), bricks=refs, sampling=sampling))
        texts.append(text)
        choices.append(bricks)
    t0 = time.perf_counter()
    completions = deps.engine.generate(requests)
    gen = time.perf_counter() - t0
    results = {}
    for sid, text, bricks, c in zip(todo, texts, choices, completions, strict=True):
        r = state["routes"][sid]
        results[sid] = StepResult(
            id=sid,
            subgoal=r["subgoal"],
            depends_on=tuple(steps[sid].get("depends_on") or ()),
            bricks=tuple(bricks),
            output=c.text.strip(),
            engine=deps.engine_name,
            seconds=float(r.get("seconds", 0.0)) + gen,
            input=r["input"],
            prompt=text,
            n_tokens=c.n_tokens,
            generate_seconds=gen,
            why=r.get("why"),
        ).to_state()
    return {"results": results, "timings": {"generate": gen}}
