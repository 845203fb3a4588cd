"""The planner brick: a LoRA trained to split instructions into steps, decoded under the plan schema.

The brick ships with Brickwork in ``brickwork/data/planner/`` (PEFT adapter + ``brick.json``);
it is not a library brick, so retrieval never routes a subgoal to it. `planner_sources()` is the
adapter source engines take (``adapter_sources=``) to resolve it, so every engine serves it like
any brick. Output is constrained to `PLAN_SCHEMA` (the engine's JSON-schema decoding), then parsed and
checked against the instruction (`parse_plan`); anything malformed or ungrounded falls back to
the rules splitter, with the reason in `Plan.fallback_reason`. With `cross_check` (the default)
the brick's plan must also segment the instruction the way the rules splitter does (same number
of steps, each subgoal sharing at least half its words with the rules step at its place): a
135M-parameter planner sometimes writes a well-formed, grounded plan with a step too many or too
few, and two independent planners agreeing on the segmentation is the cheapest check that
catches it. The two must also agree on which steps work on earlier outputs: the brick often
reads "it" as the input named earlier where it means the previous answer ("plural of 'mouse';
how many letters does it have?"), and was right less often than the rules when they differed
(docs/orchestrator.md). Where they agree, the plan keeps the rules' subgoals (the instruction's
own words) and takes the brick's step inputs, which are cleaner.

The user text is the instruction itself, the reply the compact plan JSON; see
`planners/train.py` for how the brick is built.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from brickwork.errors import BrickworkError, PlanError
from brickwork.orchestrator.planners.base import PLAN_SCHEMA, Planner, parse_plan
from brickwork.orchestrator.planners.rules import RulesPlanner
from brickwork.orchestrator.types import Plan
from brickwork.serving.adapters import DirectorySource

PLANNER_DIR = Path(__file__).resolve().parents[2] / "data" / "planner"
PLANNER_NAME = "brickwork-planner"


def planner_brick_dir() -> Path | None:
    """The bundled planner brick's directory, or None if it is not built."""
    d = PLANNER_DIR / "brick"
    return d if (d / "brick.json").is_file() and (d / "adapter_model.safetensors").is_file() else None


def planner_user_text(instruction: str) -> str:
    return instruction.strip()


PLAN_MAX_TOKENS = 256


def max_plan_tokens(instruction: str) -> int:
    """One budget for every plan, so all plans of a batch share sampling parameters (engines batch
    requests by them); the grammar ends a plan long before, a runaway plan is cut and falls back."""
    return PLAN_MAX_TOKENS


def planner_sources(planner_dir: Path | None = None) -> tuple[DirectorySource, ...]:
    """The engines' adapter source for the planner brick (`planner_dir`, default the bundled one);
    empty if it is not built. Engines ask it only for names the library does not hold, so the
    planner is never indexed nor routed to and a library brick of the same name wins."""
    d = planner_dir if planner_dir is not None else planner_brick_dir()
    return (DirectorySource({PLANNER_NAME: d}),) if d is not None else ()


class BrickPlanner:
    """Plans with the planner brick on an engine; falls back to `fallback` (rules) per instruction."""

    name = "brick"

    def __init__(
        self,
        engine: Any,
        *,
        version: int = 1,
        fallback: Planner | None = None,
        check_grounding: bool = True,
        cross_check: bool = True,
    ) -> None:
        self.engine = engine
        self.version = version
        self.fallback = fallback or RulesPlanner()
        self.check_grounding = check_grounding
        self.cross_check = cross_check

    def requests(self, instructions: list[str]) -> list[Any]:
        from brickwork.serving.engine import BrickRef, Request, SamplingParams
        from brickwork.prompts import CHATML

        ref = BrickRef(name=PLANNER_NAME, version=self.version)
        return [
            Request(
                prompt=CHATML.render(planner_user_text(i)),  # the planner brick is SmolLM2's (make_planner checks)
                bricks=(ref,),
                sampling=SamplingParams(max_tokens=max_plan_tokens(i), json_schema=PLAN_SCHEMA),
            )
            for i in instructions
        ]

    def plan_batch(self, instructions: list[str]) -> list[Plan]:
        if not instructions:
            return []
        try:
            outs = self.engine.generate(self.requests(instructions))
        except BrickworkError as exc:
            return [self._fallback(i, f"planner brick failed: {exc}", None) for i in instructions]
        return [self.from_output(i, o.text) for i, o in zip(instructions, outs, strict=True)]

    def from_output(self, instruction: str, text: str) -> Plan:
        try:
            plan = parse_plan(text, planner=self.name, instruction=instruction, check_grounding=self.check_grounding)
        except PlanError as exc:
            return self._fallback(instruction, str(exc), text)
        if self.cross_check:
            [other] = self.fallback.plan_batch([instruction])
            why = segmentation_disagreement(plan, other)
            if why is not None:
                return Plan(steps=other.steps, planner=other.planner, fallback_reason=why, raw=text)
            # they agree on the steps: the instruction's own wording for each subgoal (the brick
            # sometimes rewords one wrongly while still sharing half its words), the brick's inputs
            steps = tuple(dataclasses.replace(b, input=a.input) for a, b in zip(plan.steps, other.steps, strict=True))
            return Plan(steps=steps, planner=self.name, raw=plan.raw)
        return plan

    def _fallback(self, instruction: str, reason: str, raw: str | None) -> Plan:
        [p] = self.fallback.plan_batch([instruction])
        return Plan(steps=p.steps, planner=p.planner, fallback_reason=reason, raw=raw)


SEGMENT_F1 = 0.5


def _tokens(text: str) -> list[str]:
    return re.findall(r"[^\W_]+|REF", re.sub(r"\{s?\d+\}", " REF ", text.lower()), re.UNICODE)


def _f1(a: str, b: str) -> float:
    ta, tb = _tokens(a), _tokens(b)
    common = sum((collections.Counter(ta) & collections.Counter(tb)).values())
    return 2 * common / (len(ta) + len(tb)) if common else float(ta == tb)


def segmentation_disagreement(plan: Plan, other: Plan, *, min_f1: float = SEGMENT_F1) -> str | None:
    """Why `plan` reads the instruction differently from `other` (None if they agree): the step
    counts differ; a step's subgoal shares less than `min_f1` (token F1) with `other`'s; a step
    depends on other steps than `other`'s does ("it" read as the earlier output by one and as the
    input named earlier by the other); or a step's input is not in its clause."""
    if len(plan.steps) != len(other.steps):
        return f"the plan has {len(plan.steps)} steps, the rules splitter finds {len(other.steps)}"
    for a, b in zip(plan.steps, other.steps, strict=True):
        f1 = _f1(a.subgoal, b.subgoal)
        if f1 < min_f1:
            return f"step {a.id} ({a.subgoal!r}) is not the rules splitter's {b.subgoal!r} (F1 {f1:.2f})"
        if set(a.depends_on) != set(b.depends_on):
            mine, theirs = ", ".join(a.depends_on) or "no earlier step", ", ".join(b.depends_on) or "no earlier step"
            return f"step {a.id} works on {mine}, the rules splitter's on {theirs}"
        if a.input and not a.depends_on and _squash(a.input) not in _squash(f"{b.subgoal} {b.input or ''}"):
            return f"step {a.id} takes input {a.input!r} from outside its clause {b.subgoal!r}"
    return None


def _squash(text: str) -> str:
    return " ".join(_tokens(text))


def planner_manifest() -> dict[str, Any] | None:
    d = planner_brick_dir()
    return json.loads((d / "brick.json").read_text()) if d else None
