"""A brick at a weight: `BrickRef` (a version pinned) and `BrickSpec` (as a user names it).

`BrickRef` is the one resolved value: engines run it (`serving.Request.bricks`), the router
returns it (`retrieval_index.Route` is this class) and the orchestrator records it
(`orchestrator.BrickChoice` is a `BrickRef` that also carries its retrieval score).
`BrickSpec` is what the CLI, the SDK and the HTTP API take (``NAME``, ``NAME:WEIGHT``,
``NAME@VERSION:WEIGHT``; no version means the active one) and what ``bricks merge`` takes as
its sources; `BrickSpec.resolve(store)` pins it to a `BrickRef`.

Example::

    spec = BrickSpec.parse("sms_spam:0.5")          # BrickSpec(name='sms_spam', weight=0.5, version=None)
    spec.resolve(store)                             # BrickRef(name='sms_spam', version=2, weight=0.5)
    brick_refs(store, ["sentiment_binary:0.5", "sms_spam@2:0.5"])
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from brickwork.bricks.manifest import check_name
from brickwork.errors import ConfigError

if TYPE_CHECKING:
    from brickwork.bricks.store import BrickStore

_SPEC = re.compile(r"^(?P<name>[^@:]+)(?:@(?P<version>[^:]+))?(?::(?P<weight>.+))?$")
SPEC_FORMS = "NAME, NAME:WEIGHT or NAME@VERSION:WEIGHT"


def _finite(weight: object) -> bool:
    return not isinstance(weight, bool) and isinstance(weight, int | float) and math.isfinite(weight)


@dataclass(frozen=True, kw_only=True)
class BrickRef:
    """One brick version at one weight: what a request runs and what routing decides."""

    name: str
    version: int
    weight: float = 1.0

    def __post_init__(self) -> None:
        check_name(self.name)
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise ConfigError(f"`version` should be a positive integer, got {self.version!r}.")
        if not _finite(self.weight):
            raise ConfigError(f"`weight` should be a finite number, got {self.weight!r}.")
        object.__setattr__(self, "weight", float(self.weight))

    def __str__(self) -> str:
        return f"{self.name}@{self.version}:{self.weight:g}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "weight": self.weight}


def parse_brick_spec(spec: str) -> tuple[str, int | None, float]:
    """``"name[@version][:weight]"`` -> (name, version or None, weight); weight defaults to 1."""
    m = _SPEC.match(spec.strip()) if isinstance(spec, str) else None
    if not m:
        raise ConfigError(f"bad brick spec {spec!r}: use {SPEC_FORMS}")
    version: int | None = None
    if m["version"] is not None:
        try:
            version = int(m["version"])
        except ValueError:
            raise ConfigError(f"bad brick spec {spec!r}: version {m['version']!r} is not an integer") from None
        if version < 1:
            raise ConfigError(f"bad brick spec {spec!r}: version {version} should be 1 or more")
    weight = 1.0
    if m["weight"] is not None:
        try:
            weight = float(m["weight"])
        except ValueError:
            raise ConfigError(f"bad brick spec {spec!r}: weight {m['weight']!r} is not a number") from None
        if not math.isfinite(weight):
            raise ConfigError(f"bad brick spec {spec!r}: weight must be finite")
    return m["name"].strip(), version, weight


@dataclass(frozen=True, kw_only=True)
class BrickSpec:
    """A brick as a user names it: `version` None means the library's active version."""

    name: str
    weight: float = 1.0
    version: int | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        if not _finite(self.weight) or self.weight == 0:
            raise ConfigError(f"`weight` of brick {self.name!r} should be a finite non-zero number, got {self.weight!r}.")
        object.__setattr__(self, "weight", float(self.weight))
        v = self.version
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ConfigError(f"`version` of brick {self.name!r} should be a positive integer or None, got {v!r}.")

    @classmethod
    def parse(cls, text: str) -> BrickSpec:
        """``NAME``, ``NAME:WEIGHT`` or ``NAME@VERSION:WEIGHT`` (as ``brickwork run --brick`` takes them)."""
        name, version, weight = parse_brick_spec(text)
        if weight == 0:
            raise ConfigError(f"bad brick spec {text!r}: weight must be non-zero")
        return cls(name=name, weight=weight, version=version)

    def resolve(self, store: BrickStore) -> BrickRef:
        """The `BrickRef` this names in `store` (the active version when none is given); a version
        that does not exist fails with the store's `BrickNotFound`."""
        if self.version is None:
            version = store.active_version(self.name)
        else:
            version = store.get(self.name, self.version).version
        return BrickRef(name=self.name, version=version, weight=self.weight)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, "version": self.version}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BrickSpec:
        return cls(name=d["name"], weight=float(d.get("weight", 1.0)), version=d.get("version"))


def brick_refs(store: BrickStore, specs: Iterable[str]) -> tuple[BrickRef, ...]:
    """Parse specs and pin each to a version (the active one when not given); checks existence."""
    return tuple(BrickSpec.parse(s).resolve(store) for s in specs)


__all__ = ["BrickRef", "BrickSpec", "brick_refs", "parse_brick_spec"]
