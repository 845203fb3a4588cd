"""The orchestrator graph, built in one place from its named nodes.

::

    START -> plan -> (dispatch) -> route x N (Send, one per ready step, in parallel)
                 ^                       |
                 |                       v
             (dispatch) <------------ execute (all routed steps: one engine call)
                 |
                 v
             aggregate -> END

`build_graph()` returns the uncompiled `StateGraph` (to embed or extend); `compile_graph()`
compiles it, with a checkpointer when given one. The compiled graph is a LangGraph runnable
usable as a subgraph: its input is ``{"instruction": ...}`` (plus ``"plan"`` to skip planning),
its output state holds ``answer``, ``plan`` and per-step ``results``, and it needs a `Deps`
context (``graph.invoke(state, config, context=deps)``).
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from brickwork.orchestrator.context import Deps
from brickwork.orchestrator.nodes.aggregate import aggregate
from brickwork.orchestrator.nodes.dispatch import dispatch
from brickwork.orchestrator.nodes.execute import execute
from brickwork.orchestrator.nodes.plan import plan
from brickwork.orchestrator.nodes.route import route
from brickwork.orchestrator.state import RunState

NODES: tuple[str, ...] = ("plan", "route", "execute", "aggregate")


def build_graph() -> StateGraph:
    g = StateGraph(RunState, context_schema=Deps)
    g.add_node("plan", plan)
    g.add_node("route", route)
    g.add_node("execute", execute)
    g.add_node("aggregate", aggregate)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", dispatch, ["route", "aggregate"])
    g.add_edge("route", "execute")
    g.add_conditional_edges("execute", dispatch, ["route", "aggregate"])
    g.add_edge("aggregate", END)
    return g


def compile_graph(checkpointer: Any = None, *, name: str = "brickwork") -> Any:
    return build_graph().compile(checkpointer=checkpointer, name=name)
