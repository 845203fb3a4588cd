"""``aggregate``: the answer from the step outputs.

The answer is the outputs of the plan's *final* steps — those no other step depends on — in plan
order, one per line. A chain "plural of 'mouse', then spell it" answers with the spelling alone
(the plural is an intermediate result, still in the trace); independent requests "plural of
'mouse'; capital of Peru" answer with both lines. A one-step plan answers with its output.
"""

from __future__ import annotations

from typing import Any

from brickwork.orchestrator.state import RunState
from brickwork.orchestrator.types import Plan


def aggregate_answer(plan: Plan, outputs: dict[str, str]) -> str:
    return "\n".join(outputs.get(s.id, "") for s in plan.sinks())


def aggregate(state: RunState) -> dict[str, Any]:
    plan = Plan.from_json(state["plan"])
    outputs = {sid: r["output"] for sid, r in (state.get("results") or {}).items()}
    return {"answer": aggregate_answer(plan, outputs)}
