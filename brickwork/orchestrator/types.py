"""The values that cross the orchestrator's boundaries: steps, plans, brick choices, results.

A brick at a weight is `brickwork.bricks.refs.BrickRef` everywhere (engines, router, here);
`BrickChoice` is a `BrickRef` with its retrieval score, `BrickSpec` (re-exported from
`brickwork.bricks.refs`) is a brick as the caller names it for a step.

All are frozen keyword-only dataclasses with `to_json` / `from_json`; the graph's checkpointed
state holds only their JSON form (plain dicts and lists), so a checkpoint written by one version
of Brickwork stays readable by the next.

A step's ``subgoal`` and ``input`` may reference earlier steps' outputs as ``{s1}`` (planners may
write ``{1}``; `Step.from_json` normalises it). ``depends_on`` always includes every referenced
step. Example::

    Step(id="s2", subgoal="Spell {s1} letter by letter", input="{s1}", depends_on=("s1",))
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from brickwork.bricks.refs import BrickRef, BrickSpec

REF_RE = re.compile(r"\{s?(\d{1,2})\}")
STEP_ID_RE = re.compile(r"s\d{1,2}")
MAX_STEPS = 8


def step_id(index: int) -> str:
    """The id of the step at 0-based position `index` (``s1``, ``s2``, ...)."""
    return f"s{index + 1}"


def normalise_refs(text: str) -> str:
    """``{1}`` and ``{s1}`` both become ``{s1}``."""
    return REF_RE.sub(lambda m: "{s" + str(int(m.group(1))) + "}", text)


def refs_in(text: str | None) -> list[str]:
    """Step ids referenced by `text`, in order of first appearance."""
    out: list[str] = []
    for m in REF_RE.finditer(text or ""):
        sid = f"s{int(m.group(1))}"
        if sid not in out:
            out.append(sid)
    return out


def substitute(text: str, outputs: dict[str, str]) -> str:
    """Replace every ``{sN}`` by step N's output (unknown references are left as they are)."""
    return REF_RE.sub(lambda m: outputs.get(f"s{int(m.group(1))}", m.group(0)), text)


@dataclass(frozen=True, kw_only=True)
class BrickChoice(BrickRef):
    """A brick chosen for a step: a `BrickRef` (what the engine runs; its identity) plus, when
    routing chose it, its retrieval score (None: the caller named it). The score is evidence for
    the trace, not part of the choice's identity: two choices of the same brick version at the
    same weight are equal whatever their scores."""

    score: float | None = field(default=None, compare=False)

    @property
    def ref(self) -> BrickRef:
        """The plain `BrickRef` (what a `Request` carries)."""
        return BrickRef(name=self.name, version=self.version, weight=self.weight)

    @classmethod
    def of(cls, ref: BrickRef, score: float | None = None) -> BrickChoice:
        return cls(name=ref.name, version=ref.version, weight=ref.weight, score=score)

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "score": self.score}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BrickChoice:
        return cls(name=d["name"], version=int(d["version"]), weight=float(d.get("weight", 1.0)), score=d.get("score"))


@dataclass(frozen=True, kw_only=True)
class Step:
    """One node of a plan. `bricks` set means "use these bricks, do not route" (``()`` = base model)."""

    id: str
    subgoal: str
    depends_on: tuple[str, ...] = ()
    input: str | None = None
    bricks: tuple[BrickSpec, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "subgoal": self.subgoal, "depends_on": list(self.depends_on), "input": self.input}
        if self.bricks is not None:
            d["bricks"] = [b.to_json() for b in self.bricks]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Step:
        bricks = d.get("bricks")
        return cls(
            id=d["id"],
            subgoal=d["subgoal"],
            depends_on=tuple(d.get("depends_on") or ()),
            input=d.get("input"),
            bricks=None if bricks is None else tuple(BrickSpec.from_json(b) for b in bricks),
        )

    def resolve(self, outputs: dict[str, str]) -> tuple[str, str | None]:
        """(subgoal, input) with earlier steps' outputs substituted for their references."""
        return substitute(self.subgoal, outputs), None if self.input is None else substitute(self.input, outputs)


@dataclass(frozen=True, kw_only=True)
class Plan:
    """Steps in a valid topological order, and which planner made them (and why, on fallback)."""

    steps: tuple[Step, ...]
    planner: str
    fallback_reason: str | None = None
    raw: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": [s.to_json() for s in self.steps],
            "planner": self.planner,
            "fallback_reason": self.fallback_reason,
            "raw": self.raw,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Plan:
        return cls(
            steps=tuple(Step.from_json(s) for s in d["steps"]),
            planner=d.get("planner", "?"),
            fallback_reason=d.get("fallback_reason"),
            raw=d.get("raw"),
        )

    def sinks(self) -> list[Step]:
        """Steps no other step depends on: their outputs form the answer."""
        used = {d for s in self.steps for d in s.depends_on}
        return [s for s in self.steps if s.id not in used]


@dataclass(frozen=True, kw_only=True)
class StepResult:
    """What one executed step produced (the ``steps[]`` entries of ``run --json``, plus internals)."""

    id: str
    subgoal: str
    depends_on: tuple[str, ...]
    bricks: tuple[BrickChoice, ...]
    output: str
    engine: str
    seconds: float
    input: str | None = None
    prompt: str = ""
    n_tokens: int = 0
    generate_seconds: float = 0.0
    #: why the router chose these bricks or the base model (`Router.explain`); None: fixed bricks
    why: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The DESIGN.md §5 shape: id, subgoal, depends_on, bricks, output, engine, seconds; plus
        ``why`` (the routing decision's reason) when the step was routed."""
        out = {
            "id": self.id,
            "subgoal": self.subgoal,
            "depends_on": list(self.depends_on),
            "bricks": [b.to_json() for b in self.bricks],
            "output": self.output,
            "engine": self.engine,
            "seconds": round(self.seconds, 4),
        }
        if self.why is not None:
            out["why"] = self.why
        return out

    def to_state(self) -> dict[str, Any]:
        return {
            **self.to_json(),
            "seconds": self.seconds,
            "input": self.input,
            "prompt": self.prompt,
            "n_tokens": self.n_tokens,
            "generate_seconds": self.generate_seconds,
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> StepResult:
        return cls(
            id=d["id"],
            subgoal=d["subgoal"],
            depends_on=tuple(d.get("depends_on") or ()),
            bricks=tuple(BrickChoice.from_json(b) for b in d.get("bricks") or ()),
            output=d["output"],
            engine=d.get("engine", "?"),
            seconds=float(d.get("seconds", 0.0)),
            input=d.get("input"),
            prompt=d.get("prompt", ""),
            n_tokens=int(d.get("n_tokens", 0)),
            generate_seconds=float(d.get("generate_seconds", 0.0)),
            why=d.get("why"),
        )


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """One answered instruction: the answer, the plan and every step's trace.

    `to_json()` is exactly the ``brickwork run --json`` object of DESIGN.md §5.
    """

    run_id: str
    instruction: str
    answer: str
    steps: tuple[StepResult, ...]
    seconds: float
    plan: Plan | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "instruction": self.instruction,
            "answer": self.answer,
            "steps": [s.to_json() for s in self.steps],
            "seconds": round(self.seconds, 4),
        }

    def step(self, step_id: str) -> StepResult:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)
