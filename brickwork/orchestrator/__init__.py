"""The orchestrator: plan -> route -> execute -> aggregate, as a LangGraph graph, and the SDK.

- `sdk.Brickwork` — the user-facing facade (``from brickwork import Brickwork``).
- `graph` — the graph builder (`build_graph`, `compile_graph`); nodes in `nodes/`, state in
  `state.py`, runtime dependencies in `context.py`.
- `planners/` — the planner brick, the rules splitter, the OpenAI-compatible planner, and the
  composite-instruction generator that trains and evaluates them.
- `types.py` — the values that cross boundaries (`Step`, `Plan`, `StepResult`, `RunResult`).

Importing this package is light; LangGraph, torch and the engines load when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Brickwork", "BrickChoice", "Plan", "RunResult", "Step", "StepResult", "build_graph", "compile_graph"]

if TYPE_CHECKING:
    from brickwork.orchestrator.graph import build_graph, compile_graph
    from brickwork.orchestrator.sdk import Brickwork
    from brickwork.orchestrator.types import BrickChoice, Plan, RunResult, Step, StepResult

_WHERE = {
    "Brickwork": "brickwork.orchestrator.sdk",
    "build_graph": "brickwork.orchestrator.graph",
    "compile_graph": "brickwork.orchestrator.graph",
    "BrickChoice": "brickwork.orchestrator.types",
    "Plan": "brickwork.orchestrator.types",
    "RunResult": "brickwork.orchestrator.types",
    "Step": "brickwork.orchestrator.types",
    "StepResult": "brickwork.orchestrator.types",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'brickwork.orchestrator' has no attribute {name!r}")
