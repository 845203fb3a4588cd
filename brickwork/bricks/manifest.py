"""The brick manifest, ``brick.json``: what a brick is for and where it came from.

Missing keys fail, unknown keys warn (a newer Brickwork may have written them), wrong types fail
with the field named and the value echoed.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from brickwork import _atomic
from brickwork.errors import InvalidBrickName, ManifestError

FORMAT_VERSION = 1
MANIFEST_NAME = "brick.json"
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
BrickKind = Literal["lora", "emergent"]
KINDS: tuple[str, ...] = ("lora", "emergent")


def check_name(name: object) -> str:
    """Return `name` if it is a valid brick name, else raise `InvalidBrickName`."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidBrickName(
            f"invalid brick name {name!r}: use 1-64 characters of a-z, 0-9, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """The contents of `brick.json` (DESIGN.md §3)."""

    name: str
    version: int
    kind: BrickKind
    description: str
    base_model: dict[str, str]
    examples: list[str] = field(default_factory=list)
    # Requests and bare inputs the brick serves: the router's classifier learns from them, the index
    # does not embed them as rows (more of them sharpen routing without crowding the nearest-row search).
    routing_samples: list[str] = field(default_factory=list)
    # False: the router only chooses this brick for a request that asks for its task (one close to
    # its description), never for a bare input alone. For bricks whose input is any text at all, so
    # that a request to the assistant is itself a valid input (`language_id`: any sentence in any
    # language); docs/retrieval.md, "Bricks that must be asked for".
    bare_inputs: bool = True
    tags: list[str] = field(default_factory=list)
    rank: int | None = None
    target_modules: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=now_iso)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        check_name(self.name)
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise ManifestError(f"`version` should be a positive integer, got {self.version!r}.")
        if self.kind not in KINDS:
            raise ManifestError(f"`kind` should be one of {KINDS}, got {self.kind!r}.")
        if not isinstance(self.description, str) or not self.description.strip():
            raise ManifestError(f"`description` should be a non-empty string, got {self.description!r}.")
        bm = self.base_model
        if not isinstance(bm, dict) or not isinstance(bm.get("id"), str) or not isinstance(bm.get("fingerprint"), str):
            raise ManifestError(f"`base_model` should be {{'id': str, 'fingerprint': str}}, got {bm!r}.")
        for key in ("examples", "routing_samples", "tags", "target_modules"):
            value = getattr(self, key)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ManifestError(f"`{key}` should be a list of strings, got {value!r}.")
        if not isinstance(self.bare_inputs, bool):
            raise ManifestError(f"`bare_inputs` should be true or false, got {self.bare_inputs!r}.")
        if self.rank is not None and (not isinstance(self.rank, int) or self.rank < 1):
            raise ManifestError(f"`rank` should be a positive integer or null, got {self.rank!r}.")
        if self.kind == "lora" and self.rank is None:
            raise ManifestError("`rank` is required for a lora brick.")
        for key in ("provenance", "metrics"):
            if not isinstance(getattr(self, key), dict):
                raise ManifestError(f"`{key}` should be an object, got {getattr(self, key)!r}.")
        if self.format_version != FORMAT_VERSION:
            raise ManifestError(
                f"`format_version` {self.format_version!r} is not supported (this Brickwork reads {FORMAT_VERSION})."
            )

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {"format_version": d.pop("format_version"), **d}

    def replace(self, **changes: Any) -> Manifest:
        return Manifest(**{**asdict(self), **changes})

    @classmethod
    def from_json(cls, data: object, *, source: str = "brick.json") -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        required = [n for n, f in known.items() if f.default is MISSING and f.default_factory is MISSING]
        missing = [k for k in required if k not in data]
        if "format_version" not in data:
            missing.insert(0, "format_version")
        if missing:
            raise ManifestError(f"{source}: missing keys {missing}")
        unknown = sorted(set(data) - set(known))
        if unknown:
            warnings.warn(f"{source}: ignoring unknown keys {unknown}", stacklevel=2)
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except ManifestError as exc:
            raise ManifestError(f"{source}: {exc}") from None
        except TypeError as exc:
            raise ManifestError(f"{source}: {exc}") from exc

    @classmethod
    def load(cls, path: Path) -> Manifest:
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        data = _atomic.read_json(path, ManifestError, missing=f"no {MANIFEST_NAME} at {path}")
        return cls.from_json(data, source=str(path))

