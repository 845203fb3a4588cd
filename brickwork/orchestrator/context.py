"""What the graph's nodes need, handed in through LangGraph's runtime context (never globals).

`Deps` holds the engine, the planner, the retriever and the store; it is passed to every
``invoke``/``stream`` call, including the call that resumes a crashed run, and is never
checkpointed. `Retriever` is the seam to the retrieval index: subgoals in, brick choices out
(an empty list means the base model answers).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from brickwork.errors import ConfigError
from brickwork.orchestrator.types import BrickChoice

if TYPE_CHECKING:
    from brickwork.bricks.store import BrickStore
    from brickwork.library import Library
    from brickwork.orchestrator.planners.base import Planner

PromptStyle = Literal["brick", "subgoal"]
PROMPT_STYLES: tuple[str, ...] = ("brick", "subgoal")


@runtime_checkable
class Retriever(Protocol):
    """Subgoals -> the bricks to run each with (weights and retrieval scores); [] = base model."""

    def route(self, queries: Sequence[str], inputs: Sequence[str | None] | None = None) -> list[list[BrickChoice]]: ...


@runtime_checkable
class ExplainingRetriever(Retriever, Protocol):
    """A retriever that also says why it chose (the trace's ``why``); the route node uses it when
    the retriever has it, and plain `route` otherwise (a user's own retriever needs only that)."""

    def route_with_reasons(
        self, queries: Sequence[str], inputs: Sequence[str | None] | None = None
    ) -> list[tuple[list[BrickChoice], dict[str, Any]]]: ...


class NoRetriever:
    """Routes everything to the base model (a library without an index, or `--base`)."""

    def route(self, queries: Sequence[str], inputs: Sequence[str | None] | None = None) -> list[list[BrickChoice]]:
        return [[] for _ in queries]


class IndexRetriever:
    """The library's retrieval index and its routing policy (`Library.index`, `Library.router`).

    `library`: a `brickwork.library.Library` or a `BrickStore` (wrapped in one). Opened lazily
    (the embedder loads on first use, a drifted index is repaired); searches are serialised by a
    lock because the route tasks of parallel steps call it from several threads.
    """

    def __init__(self, library: Library | BrickStore, *, k: int = 5, index: Any = None, router: Any = None) -> None:
        from brickwork.library import Library

        self.library = library if isinstance(library, Library) else Library(store=library)
        self.store = self.library.store
        self.k = k
        self._index = index
        self._router = router
        self._lock = threading.Lock()

    def _open(self) -> tuple[Any, Any]:
        if self._index is None:
            self._index, self._router = self.library.index, self._router or self.library.router
        if self._router is None:  # an index handed in: its own calibration, if any
            from brickwork.retrieval_index import Router

            self._router = Router.for_index(self._index)
        return self._index, self._router

    def route(self, queries: Sequence[str], inputs: Sequence[str | None] | None = None) -> list[list[BrickChoice]]:
        """`inputs`: each subgoal's task input, when the plan names it (scored with it masked too)."""
        return [choices for choices, _ in self.route_with_reasons(queries, inputs)]

    def route_with_reasons(
        self, queries: Sequence[str], inputs: Sequence[str | None] | None = None
    ) -> list[tuple[list[BrickChoice], dict[str, Any]]]:
        """`route`, and why each decision was made (`Router.explain`: the best brick, the threshold
        it was held to, other bricks that fit as well) for the trace."""
        from brickwork.retrieval_index import retrieve

        with self._lock:
            index, router = self._open()
            out = []
            for hits, routes in retrieve(index, router, list(queries), k=self.k, inputs=inputs):
                score = {h.name: float(h.score) for h in hits}
                choices = [BrickChoice.of(r, score=score.get(r.name)) for r in routes]  # a Route is a BrickRef
                out.append((choices, router.explain(hits)))
            return out


@dataclass(frozen=True, kw_only=True)
class Deps:
    """The runtime context of the orchestrator graph."""

    engine: Any  # brickwork.serving.Engine
    planner: Planner
    retriever: Retriever
    store: BrickStore
    engine_name: str = "peft"
    prompt_style: PromptStyle = "brick"
    max_tokens: int = 64

    def __post_init__(self) -> None:
        if self.prompt_style not in PROMPT_STYLES:
            raise ConfigError(f"`prompt_style` should be one of {PROMPT_STYLES}, got {self.prompt_style!r}.")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ConfigError(f"`max_tokens` should be a positive integer, got {self.max_tokens!r}.")
