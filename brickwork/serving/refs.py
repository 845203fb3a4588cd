"""Brick specs as users type them (``NAME``, ``NAME:WEIGHT``, ``NAME@VERSION:WEIGHT``) -> `BrickRef`s.

What ``brickwork run --brick`` and the HTTP API parse; a spec without a version means the
brick's active version in the library.

Example::

    refs = brick_refs(store, ["sentiment_binary:0.5", "sms_spam@2:0.5"])
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from brickwork.bricks.store import BrickStore
from brickwork.errors import ConfigError
from brickwork.serving.engine import BrickRef

_SPEC = re.compile(r"^(?P<name>[^@:]+)(?:@(?P<version>[^:]+))?(?::(?P<weight>.+))?$")


def parse_brick_spec(spec: str) -> tuple[str, int | None, float]:
    """``"name[@version][:weight]"`` -> (name, version or None, weight); weight defaults to 1."""
    m = _SPEC.match(spec.strip()) if isinstance(spec, str) else None
    if not m:
        raise ConfigError(f"bad brick spec {spec!r}: use NAME, NAME:WEIGHT or NAME@VERSION:WEIGHT")
    version: int | None = None
    if m["version"] is not None:
        try:
            version = int(m["version"])
        except ValueError:
            raise ConfigError(f"bad brick spec {spec!r}: version {m['version']!r} is not an integer") from None
    weight = 1.0
    if m["weight"] is not None:
        try:
            weight = float(m["weight"])
        except ValueError:
            raise ConfigError(f"bad brick spec {spec!r}: weight {m['weight']!r} is not a number") from None
        if not math.isfinite(weight):
            raise ConfigError(f"bad brick spec {spec!r}: weight must be finite")
    return m["name"].strip(), version, weight


def brick_refs(store: BrickStore, specs: Iterable[str]) -> tuple[BrickRef, ...]:
    """Parse specs and pin each to a version (the active one when not given); checks existence."""
    refs = []
    for spec in specs:
        name, version, weight = parse_brick_spec(spec)
        if version is None:
            version = store.active_version(name)
        else:
            store.get(name, version)  # BrickNotFound with the versions that exist
        refs.append(BrickRef(name=name, version=version, weight=weight))
    return tuple(refs)
