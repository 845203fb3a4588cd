"""The engine seam: what a request is, what a completion is, and the registry of engines.

An engine turns a batch of `Request`s into `Completion`s. Each request carries its own
configuration (which bricks at which weights, or none for the bare base model, plus sampling
parameters), so one batch may mix configurations; engines run such a batch together, not one
request at a time. Three engines implement the protocol: ``peft`` (transformers + PEFT in
process, the embedded default), ``vllm`` (vLLM in process) and ``vllm-server`` (a vLLM
OpenAI-compatible server that Brickwork launches or attaches to). ``FakeEngine``
(`brickwork.serving.fake`) is a deterministic stand-in for unit tests of code above this seam.

Example::

    from brickwork.bricks import BrickStore
    from brickwork.serving import BrickRef, Request, create_engine
    from brickwork.tasks import render_prompt

    store = BrickStore()
    with create_engine("peft", store) as engine:
        [out] = engine.generate([
            Request(prompt=render_prompt("Plural of 'mouse'?"),
                    bricks=(BrickRef(name="english_plural", version=1),)),
        ])
        print(out.text, out.n_tokens)
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, runtime_checkable

from brickwork.bricks.manifest import check_name
from brickwork.errors import ConfigError
from brickwork.tasks import STOP

if TYPE_CHECKING:
    from brickwork.bricks.store import BrickStore

EngineName = Literal["peft", "vllm", "vllm-server"]


@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    """How to decode one request. ``temperature=0`` is greedy (the default, and what parity means).

    `stop` strings end the reply and are not part of the returned text; the model's end-of-turn
    token always ends it. `json_schema` constrains the reply to JSON matching that schema
    (vLLM's structured outputs on vLLM engines, an xgrammar logits processor on ``peft``); the
    JSON is compact (no free whitespace) on every engine so small models cannot loop on blanks.
    """

    max_tokens: int = 64
    temperature: float = 0.0
    stop: tuple[str, ...] = (STOP,)
    json_schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 1:
            raise ConfigError(f"`max_tokens` should be a positive integer, got {self.max_tokens!r}.")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
            raise ConfigError(f"`temperature` should be a finite number >= 0, got {t!r}.")
        stop = self.stop
        if isinstance(stop, str):
            stop = (stop,)
        if not isinstance(stop, tuple | list) or not all(isinstance(s, str) and s for s in stop):
            raise ConfigError(f"`stop` should be a tuple of non-empty strings, got {self.stop!r}.")
        object.__setattr__(self, "stop", tuple(stop))
        if self.json_schema is not None:
            if not isinstance(self.json_schema, dict):
                raise ConfigError(f"`json_schema` should be a JSON schema object (dict), got {self.json_schema!r}.")
            try:
                json.dumps(self.json_schema)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"`json_schema` should be JSON-serialisable: {exc}") from exc

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def key(self) -> tuple[Any, ...]:
        """A hashable identity (the dataclass holds a dict, so it is not hashable itself)."""
        schema = json.dumps(self.json_schema, sort_keys=True) if self.json_schema is not None else None
        return (self.max_tokens, float(self.temperature), self.stop, schema)

    def __hash__(self) -> int:  # json_schema is a dict, so hash the canonical key instead
        return hash(self.key())


@dataclass(frozen=True, kw_only=True)
class BrickRef:
    """One brick version at one weight, as a request uses it."""

    name: str
    version: int
    weight: float = 1.0

    def __post_init__(self) -> None:
        check_name(self.name)
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise ConfigError(f"`version` should be a positive integer, got {self.version!r}.")
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w):
            raise ConfigError(f"`weight` should be a finite number, got {w!r}.")
        object.__setattr__(self, "weight", float(w))

    def __str__(self) -> str:
        return f"{self.name}@{self.version}:{self.weight:g}"


@dataclass(frozen=True, kw_only=True)
class Request:
    """One prompt (already rendered with `brickwork.tasks.render_prompt`) and its configuration.

    ``bricks=()`` runs the bare base model. Several bricks run as one composite adapter (their
    exact weighted sum); a single brick at weight 1 runs as stored.
    """

    prompt: str
    bricks: tuple[BrickRef, ...] = ()
    sampling: SamplingParams = field(default_factory=SamplingParams)

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt:
            raise ConfigError(f"`prompt` should be a non-empty string, got {self.prompt!r}.")
        bricks = self.bricks
        if not isinstance(bricks, tuple | list) or not all(isinstance(b, BrickRef) for b in bricks):
            raise ConfigError(f"`bricks` should be a tuple of BrickRef, got {self.bricks!r}.")
        names = [b.name for b in bricks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"`bricks` names each brick once; {dupes} appear more than once.")
        object.__setattr__(self, "bricks", tuple(bricks))
        if not isinstance(self.sampling, SamplingParams):
            raise ConfigError(f"`sampling` should be a SamplingParams, got {self.sampling!r}.")


@dataclass(frozen=True, kw_only=True)
class Completion:
    """The generated text (stop string excluded, surrounding whitespace stripped) and how many
    tokens were generated for it (the stop token included when one was reached)."""

    text: str
    n_tokens: int


@runtime_checkable
class Engine(Protocol):
    """Runs batches of requests. One `generate` call is one batch; configurations may be mixed.

    Engines are context managers; `close` releases the model (and stops a launched server) and
    is idempotent. After `close`, `generate` raises `BackendError`.
    """

    name: str

    def generate(self, requests: Sequence[Request]) -> list[Completion]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class EngineBase:
    """Shared plumbing: the context manager, the closed flag, and up-front request checks."""

    name: str = "base"
    _closed: bool = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True

    def _check_batch(self, requests: Sequence[Request]) -> list[Request]:
        from brickwork.errors import BackendError

        if self._closed:
            raise BackendError(f"the {self.name} engine is closed; create a new one")
        if isinstance(requests, Request):
            raise ConfigError("`generate` takes a sequence of Request, got a single Request; wrap it in a list")
        reqs = list(requests)
        bad = [i for i, r in enumerate(reqs) if not isinstance(r, Request)]
        if bad:
            raise ConfigError(f"`generate` takes Request objects; items {bad} are not")
        return reqs


# -- registry -----------------------------------------------------------------------------------
# name -> "module:factory"; modules import lazily so `import brickwork.serving` stays light.
_ENGINES: dict[str, str] = {
    "peft": "brickwork.serving.peft_engine:PeftEngine",
    "vllm": "brickwork.serving.vllm_engine:VLLMEngine",
    "vllm-server": "brickwork.serving.vllm_server:VLLMServerEngine",
}


def register_engine(name: str, target: str | Callable[..., Engine]) -> None:
    """Make `create_engine(name, ...)` build `target` ("module:attr" or a callable)."""
    if not isinstance(target, str):
        _FACTORIES[name] = target
        _ENGINES[name] = f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', '?')}"
        return
    _ENGINES[name] = target


_FACTORIES: dict[str, Callable[..., Engine]] = {}


def available_engines() -> list[str]:
    """Registered engine names, sorted."""
    return sorted(_ENGINES)


def create_engine(name: str, store: BrickStore, **options: Any) -> Engine:
    """Build the engine called `name` for the bricks (and base model) of `store`.

    Options are engine-specific keyword arguments (see each engine's options dataclass, e.g.
    ``max_lora_rank=64`` for vLLM engines, ``url=`` to attach ``vllm-server`` to a running
    server); an unknown option is a `ConfigError` that lists the valid ones.
    """
    if name not in _ENGINES:
        raise ConfigError(f"unknown engine {name!r}; available engines: {', '.join(available_engines())}")
    factory = _FACTORIES.get(name)
    if factory is None:
        module, _, attr = _ENGINES[name].partition(":")
        factory = getattr(importlib.import_module(module), attr)
        _FACTORIES[name] = factory
    return factory(store, **options)


def build_options(cls: type, engine: str, options: dict[str, Any]) -> Any:
    """Instantiate an options dataclass, naming unknown keys and the valid ones."""
    from dataclasses import fields

    valid = sorted(f.name for f in fields(cls))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for engine {engine!r}; valid options: {', '.join(valid)}")
    return cls(**options)
