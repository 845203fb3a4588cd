"""The planner seam: one protocol, the plan's JSON schema, and parsing + validation of plans.

A planner turns instructions into `Plan`s. LLM planners (the planner brick, an OpenAI-compatible
endpoint) write JSON under `PLAN_SCHEMA`; `parse_plan` turns that into steps and rejects what is
malformed or not grounded in the instruction, and the planner then falls back to the rules
splitter, recording why in `Plan.fallback_reason`. Planners never raise on bad model output.

The compact format written by LLM planners, one object per step, in order::

    [{"subgoal": "Give the plural of '{x}'", "input": "mouse"},
     {"subgoal": "spell {x} letter by letter", "input": "{1}"}]

``{x}`` in a subgoal marks where its input stands; an input (or subgoal) of ``{1}`` means "the
output of step 1". The DESIGN.md shape ``{"steps": [{"id", "subgoal", "depends_on"}]}`` is
accepted too.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol, runtime_checkable

from brickwork.errors import PlanError
from brickwork.orchestrator.types import MAX_STEPS, Plan, Step, normalise_refs, refs_in, step_id

PLAN_SCHEMA: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "maxItems": MAX_STEPS,
    "items": {
        "type": "object",
        "properties": {
            "subgoal": {"type": "string", "minLength": 1, "maxLength": 400},
            "input": {"type": "string", "maxLength": 1000},
        },
        "required": ["subgoal", "input"],
        "additionalProperties": False,
    },
}
PLANNER_SYSTEM = "Split the request into steps. Reply with JSON."


@runtime_checkable
class Planner(Protocol):
    """Turns instructions into plans; `plan_batch` keeps input order and never raises on bad output."""

    name: str

    def plan_batch(self, instructions: list[str]) -> list[Plan]: ...


def single_step_plan(instruction: str, planner: str, *, reason: str | None = None) -> Plan:
    return Plan(steps=(Step(id="s1", subgoal=instruction.strip(), input=None),), planner=planner, fallback_reason=reason)


# -- parsing ----------------------------------------------------------------------------------
def _load(raw: str | list | dict) -> Any:
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if text.startswith("```"):  # chat models like fences
        text = re.sub(r"^```[a-zA-Z]*\n?|\n?```$", "", text).strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"planner output is not JSON ({exc.msg} at char {exc.pos}): {text[:120]!r}") from None


def _ref_map(items: list[dict]) -> dict[str, str]:
    """Ids used by a full-format plan ("a", "step1", 3 ...) -> our ids (s1, s2, ...)."""
    out: dict[str, str] = {}
    for i, it in enumerate(items):
        if "id" in it:
            out[str(it["id"])] = step_id(i)
    return out


def parse_plan(raw: str | list | dict, *, planner: str, instruction: str | None = None, check_grounding: bool = True) -> Plan:
    """Parse and validate a plan; raise `PlanError` saying what is wrong.

    With `instruction` and `check_grounding`, inputs must be found in the instruction, subgoals
    must mostly use its words, and every quoted span and number in it must be used by some step.
    """
    data = _load(raw)
    if isinstance(data, dict) and isinstance(data.get("steps"), list):
        items = data["steps"]
    elif isinstance(data, list):
        items = data
    else:
        raise PlanError(f"planner output should be a list of steps or {{'steps': [...]}}, got {type(data).__name__}")
    if not 1 <= len(items) <= MAX_STEPS:
        raise PlanError(f"a plan should have 1 to {MAX_STEPS} steps, got {len(items)}")
    idmap = _ref_map([it for it in items if isinstance(it, dict)])
    steps: list[Step] = []
    seen: set[tuple[str, str | None]] = set()
    for i, it in enumerate(items):
        sid = step_id(i)
        if not isinstance(it, dict):
            raise PlanError(f"step {i + 1} should be an object, got {it!r}")
        subgoal, inp = it.get("subgoal"), it.get("input")
        if not isinstance(subgoal, str) or not subgoal.strip():
            raise PlanError(f"step {i + 1}: `subgoal` should be a non-empty string, got {subgoal!r}")
        if inp is not None and not isinstance(inp, str):
            raise PlanError(f"step {i + 1}: `input` should be a string, got {inp!r}")
        subgoal, inp = subgoal.strip(), (inp or "").strip()
        for old, new in idmap.items():  # full format: {a} -> {s1}
            if not re.fullmatch(r"s?\d+", old):
                subgoal = subgoal.replace("{" + old + "}", "{" + new + "}")
                inp = inp.replace("{" + old + "}", "{" + new + "}")
        subgoal, inp = normalise_refs(subgoal), normalise_refs(inp)
        if "{x}" in subgoal:
            subgoal = subgoal.replace("{x}", inp) if inp else subgoal.replace("{x}", "").strip()
        deps = refs_in(subgoal) + [r for r in refs_in(inp) if r not in refs_in(subgoal)]
        for d in it.get("depends_on") or ():
            d = idmap.get(str(d), normalise_refs("{" + str(d) + "}")[1:-1])
            if d not in deps:
                deps.append(d)
        earlier = {step_id(j) for j in range(i)}
        bad = [d for d in deps if d not in earlier]
        if bad:
            raise PlanError(f"step {i + 1} refers to {bad}, which is not an earlier step")
        if not subgoal:
            raise PlanError(f"step {i + 1}: empty subgoal")
        key = (subgoal.lower(), inp.lower() or None)
        if key in seen:
            raise PlanError(f"step {i + 1} repeats an earlier step: {subgoal!r}")
        seen.add(key)
        steps.append(Step(id=sid, subgoal=subgoal, input=inp or None, depends_on=tuple(sorted(deps, key=lambda s: int(s[1:])))))
    plan = Plan(steps=tuple(steps), planner=planner, raw=raw if isinstance(raw, str) else json.dumps(raw))
    if instruction is not None and check_grounding:
        check_grounded(plan, instruction)
    return plan


# -- grounding --------------------------------------------------------------------------------
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
_STOP = frozenset(
    """a an the of to in on at by for and or then it its is are was be this that these those with as from
    into out me my you your please also next finally first second third after afterwards step do two three
    things tasks answer answers result results output word words same them they their one what which how
    can could would tell need here take consider look given think have i question quick sentence number
    country date colour color message text review following each every so does did""".split()
)
_ANCHOR = re.compile(r"\"[^\"\n]+\"|“[^”\n]+”|(?<![\w])'[^'\n]+?'(?![\w])|rgb\([^)]*\)|\d{4}-\d{2}-\d{2}|\d+")


def _norm(text: str) -> str:
    text = text.lower().replace("“", '"').replace("”", '"').replace("’", "'")
    return re.sub(r"\s+", " ", text).strip(" \t\"'.,;:!?")


def _content(text: str) -> list[str]:
    return [w for w in _WORD.findall(re.sub(r"\{s\d+\}", " ", text.lower())) if w not in _STOP and len(w) > 1]


def check_grounded(plan: Plan, instruction: str, *, min_subgoal: float = 0.6, min_cover: float = 0.5) -> None:
    """Raise `PlanError` if the plan invents inputs or words, or leaves part of the instruction out."""
    inst = _norm(instruction)
    inst_words = set(_content(instruction))
    plan_text = " ".join(f"{s.subgoal} {s.input or ''}" for s in plan.steps)
    plan_norm = _norm(plan_text)
    for s in plan.steps:
        if s.input and not refs_in(s.input):
            if _norm(s.input) not in inst:
                raise PlanError(f"step {s.id}: input {s.input!r} is not in the instruction")
        words = _content(s.subgoal.replace(s.input or "\x00", " "))
        if words:
            found = sum(w in inst_words for w in words) / len(words)
            if found < min_subgoal:
                raise PlanError(f"step {s.id}: subgoal {s.subgoal!r} is not grounded in the instruction ({found:.0%} of its words)")
    for m in _ANCHOR.finditer(instruction):
        anchor = _norm(m.group(0))
        if anchor and anchor not in plan_norm:
            raise PlanError(f"the plan leaves out {m.group(0)!r} from the instruction")
    if inst_words:
        plan_words = set(_content(plan_text))
        cover = len(inst_words & plan_words) / len(inst_words)
        if cover < min_cover:
            raise PlanError(f"the plan covers only {cover:.0%} of the instruction's words")
