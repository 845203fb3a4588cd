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

from brickwork.bricks.refs import BrickRef
from brickwork.errors import ConfigError
from brickwork.tasks import STOP

if TYPE_CHECKING:
    from brickwork.bricks.store import BrickStore

EngineName = Literal["peft", "vllm", "vllm-server"]


@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    """How to decode one request. ``temperature=0`` is greedy (the default, and what parity means).

    `top_p` is nucleus sampling (1 = off); `seed` makes a sampled request repeatable on its engine.
    `logprobs`: None returns none; ``k`` returns, per generated token, its log-probability and the
    `k` most likely tokens' (0 = only the chosen token's), under the request's bricks.

    `stop` strings end the reply and are not part of the returned text; the model's end-of-turn
    token always ends it. `json_schema` constrains the reply to JSON matching that schema
    (vLLM's structured outputs on vLLM engines, an xgrammar logits processor on ``peft``); the
    JSON is compact (no free whitespace) on every engine so small models cannot loop on blanks.
    """

    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = (STOP,)
    json_schema: dict[str, Any] | None = None
    logprobs: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 1:
            raise ConfigError(f"`max_tokens` should be a positive integer, got {self.max_tokens!r}.")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
            raise ConfigError(f"`temperature` should be a finite number >= 0, got {t!r}.")
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, int | float) or not (0 < p <= 1):
            raise ConfigError(f"`top_p` should be a number in (0, 1], got {p!r}.")
        object.__setattr__(self, "top_p", float(p))
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise ConfigError(f"`seed` should be an integer or None, got {self.seed!r}.")
        lp = self.logprobs
        if lp is not None and (not isinstance(lp, int) or isinstance(lp, bool) or not 0 <= lp <= MAX_TOP_LOGPROBS):
            raise ConfigError(f"`logprobs` should be None or an integer in [0, {MAX_TOP_LOGPROBS}], got {lp!r}.")
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
        return (self.max_tokens, float(self.temperature), self.top_p, self.seed, self.stop, schema, self.logprobs)

    def __hash__(self) -> int:  # json_schema is a dict, so hash the canonical key instead
        return hash(self.key())


@dataclass(frozen=True, kw_only=True)
class Request:
    """One prompt (already rendered with `brickwork.tasks.render_prompt`) and its configuration.

    The prompt is text, or token ids (a tuple of ints) that are used as they are.
    ``bricks=()`` runs the bare base model. Several bricks run as one composite adapter (their
    exact weighted sum); a single brick at weight 1 runs as stored. `on_text`, when given, is
    called with the text generated so far as the engine produces it (``peft`` calls it after
    every token; the vLLM engines once, with the whole text); the returned `Completion` is what
    counts (stop strings removed, whitespace stripped).
    """

    prompt: str | tuple[int, ...]
    bricks: tuple[BrickRef, ...] = ()
    sampling: SamplingParams = field(default_factory=SamplingParams)
    on_text: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", check_prompt(self.prompt))
        if self.on_text is not None and not callable(self.on_text):
            raise ConfigError(f"`on_text` should be a callable, got {self.on_text!r}.")
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
class TokenLogprob:
    """One token: its text, its log-probability, and the most likely alternatives at its place."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, kw_only=True)
class Completion:
    """The generated text (stop string excluded, surrounding whitespace stripped) and how many
    tokens were generated for it (the stop token included when one was reached).

    `finish_reason` is ``"stop"`` (end of turn or a stop string) or ``"length"`` (`max_tokens`
    reached). `logprobs` is set when the request's sampling asked for them: one entry per
    generated token, the stop token excluded.
    """

    text: str
    n_tokens: int
    finish_reason: Literal["stop", "length"] = "stop"
    logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class ScoreRequest:
    """Score a prompt as it stands (no generation): each token's log-probability given the tokens
    before it, under `bricks` (none: the base model). The prompt is raw text (tokenized without
    special tokens or chat template) or token ids. `top_logprobs` alternatives per position."""

    prompt: str | tuple[int, ...]
    bricks: tuple[BrickRef, ...] = ()
    top_logprobs: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", check_prompt(self.prompt))
        Request(prompt=self.prompt, bricks=self.bricks)  # the same checks of bricks
        object.__setattr__(self, "bricks", tuple(self.bricks))
        k = self.top_logprobs
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= MAX_TOP_LOGPROBS:
            raise ConfigError(f"`top_logprobs` should be an integer in [0, {MAX_TOP_LOGPROBS}], got {k!r}.")

    def as_request(self) -> Request:
        """The same prompt and bricks as a `Request` (to resolve its adapter like a generation)."""
        return Request(prompt=self.prompt, bricks=self.bricks)


@dataclass(frozen=True, kw_only=True)
class PromptScore:
    """Per prompt token: its id, its text, its log-probability given what precedes it (None for
    the first token, which has no context) and, when asked, the top alternatives there."""

    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    logprobs: tuple[float | None, ...]
    top: tuple[tuple[tuple[str, float], ...], ...] = ()


MAX_TOP_LOGPROBS = 20


def check_prompt(prompt: object) -> str | tuple[int, ...]:
    """A non-empty string, or a non-empty sequence of non-negative token ids (as a tuple)."""
    if isinstance(prompt, str):
        if not prompt:
            raise ConfigError("`prompt` should be a non-empty string or token ids, got ''.")
        return prompt
    if isinstance(prompt, tuple | list) and prompt and all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt
    ):
        return tuple(prompt)
    raise ConfigError(f"`prompt` should be a non-empty string or a list of token ids, got {prompt!r:.80}.")


@runtime_checkable
class Engine(Protocol):
    """Runs batches of requests. One `generate` call is one batch; configurations may be mixed.

    `score` returns the log-probabilities of prompts as they stand (what harnesses need for
    loglikelihood and multiple-choice tasks), one batch per call, configurations mixed too.

    Engines are context managers; `close` releases the model (and stops a launched server) and
    is idempotent. After `close`, `generate` raises `BackendError`.
    """

    name: str

    def generate(self, requests: Sequence[Request]) -> list[Completion]: ...

    def score(self, requests: Sequence[ScoreRequest]) -> list[PromptScore]: ...

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

    def _check_batch(self, requests: Sequence[Any], kind: type = Request) -> list[Any]:
        from brickwork.errors import BackendError

        if self._closed:
            raise BackendError(f"the {self.name} engine is closed; create a new one")
        what = "generate" if kind is Request else "score"
        if isinstance(requests, kind):
            raise ConfigError(f"`{what}` takes a sequence of {kind.__name__}, got a single one; wrap it in a list")
        reqs = list(requests)
        bad = [i for i, r in enumerate(reqs) if not isinstance(r, kind)]
        if bad:
            raise ConfigError(f"`{what}` takes {kind.__name__} objects; items {bad} are not")
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
