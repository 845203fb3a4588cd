"""The `--model_args` of ``lm_eval --model brickwork``, checked up front.

    library=DIR,engine=peft|vllm|vllm-server,bricks=routed|base|a:0.5+b:0.5,batch_size=N

lm-eval splits `--model_args` on commas, so a composite's bricks are joined with ``+``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from brickwork.errors import ConfigError
from brickwork.serving.refs import parse_brick_spec

MODES: tuple[str, ...] = ("routed", "base")
ENGINES: tuple[str, ...] = ("peft", "vllm", "vllm-server")


@dataclass(frozen=True, kw_only=True)
class HarnessOptions:
    """`bricks`: ``routed`` (the library's router picks per request, the context is the query),
    ``base`` (no bricks) or a fixed composite ``name[@version][:weight]+...``.
    `max_length`: tokens of context the model sees (longer contexts are cut on the left).
    `max_gen_toks`: the default generation length when a task does not set one."""

    library: str | None = None
    engine: str = "peft"
    bricks: str = "routed"
    batch_size: int = 16
    max_length: int = 2048
    max_gen_toks: int = 64
    k: int = 5
    base: str | None = None

    def __post_init__(self) -> None:
        if self.library is not None and (not isinstance(self.library, str) or not self.library.strip()):
            raise ConfigError(f"`library` should be a directory path, got {self.library!r}.")
        if self.engine not in ENGINES:
            raise ConfigError(f"`engine` should be one of {', '.join(ENGINES)}, got {self.engine!r}.")
        if not isinstance(self.bricks, str) or not self.bricks.strip():
            raise ConfigError(f"`bricks` should be 'routed', 'base' or 'a:0.5+b:0.5', got {self.bricks!r}.")
        object.__setattr__(self, "bricks", self.bricks.strip())
        if self.bricks not in MODES:
            for spec in self.specs:
                parse_brick_spec(spec)  # a bad spec fails here, before any model loads
        for name in ("batch_size", "max_length", "max_gen_toks", "k"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"`{name}` should be a positive integer, got {v!r}.")

    @property
    def specs(self) -> list[str]:
        """The fixed composite's brick specs ([] for ``routed`` and ``base``)."""
        if self.bricks in MODES:
            return []
        return [s for s in self.bricks.split("+") if s.strip()]

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> tuple[HarnessOptions, dict[str, Any]]:
        """Split lm-eval's keyword arguments into our options and the rest (lm-eval also passes
        ``device`` and ``max_batch_size``, which an engine-backed model has no use for)."""
        from dataclasses import fields

        names = {f.name for f in fields(cls)}
        ours = {k: v for k, v in kwargs.items() if k in names}
        bs = ours.get("batch_size")
        if bs is None or (isinstance(bs, str) and bs.startswith("auto")):  # lm-eval's "auto": keep ours
            ours.pop("batch_size", None)
        if isinstance(ours.get("batch_size"), str) and ours["batch_size"].isdigit():
            ours["batch_size"] = int(ours["batch_size"])
        if isinstance(ours.get("library"), str):
            ours["library"] = ours["library"] or None
        rest = {k: v for k, v in kwargs.items() if k not in names}
        return cls(**ours), rest
