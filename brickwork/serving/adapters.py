"""From a request's bricks to the one adapter an engine loads, validated before anything runs.

Every engine goes through `AdapterResolver`, so the same `BrickRef`s give the same adapter
directory (and so the same output) on every engine: no bricks -> the base model (None); one brick
at weight 1 -> the brick's own directory; anything else -> a cached composite (see composite.py).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from brickwork.bricks.store import BrickStore
from brickwork.bricks.validate import validate_lora_dir
from brickwork.errors import AdapterError, BaseModelMismatch
from brickwork.serving.composite import CompositeCache, Part, adapter_digest, canonical, composite_key, padded_rank
from brickwork.serving.engine import BrickRef, Request


@dataclass(frozen=True, kw_only=True)
class Adapter:
    """What an engine loads: a stable name unique to this content, a PEFT directory, its rank."""

    name: str
    path: Path
    rank: int
    composite: bool = False


class AdapterResolver:
    """Resolves `BrickRef` tuples through a `BrickStore`, checks them, builds composites.

    `max_rank` is the largest adapter rank the engine can load (vLLM's ``max_lora_rank``); a
    configuration above it fails up front with the option to raise, never inside the engine.
    With `zero_for_base`, the bare base model resolves to an all-zero adapter instead of None
    (vLLM-CPU needs it, see `composite.write_zero_adapter`).
    """

    def __init__(
        self,
        store: BrickStore,
        *,
        max_rank: int | None = None,
        cache: CompositeCache | None = None,
        zero_for_base: bool = False,
    ) -> None:
        self.store = store
        self.max_rank = max_rank
        self.cache = cache or CompositeCache()
        self.zero_for_base = zero_for_base
        self._validated: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    @property
    def base(self):  # noqa: ANN201 - BaseModel, resolved lazily by the store
        return self.store.base

    def _part(self, ref: BrickRef) -> tuple[Part, int]:
        # store.get is cheap (reads brick.json); validation is cached by content, so a brick
        # removed and re-created under the same version is never served stale.
        brick = self.store.get(ref.name, ref.version)
        m = brick.manifest
        if m.kind != "lora":
            raise AdapterError(f"brick {m.ref} is a {m.kind!r} brick; only LoRA bricks can be served as adapters")
        base = self.base
        if m.base_model.get("fingerprint") != base.fingerprint:
            raise BaseModelMismatch(
                f"brick {m.ref} was made for base model {m.base_model.get('id')!r} "
                f"({m.base_model.get('fingerprint')}), but this engine serves {base.id!r} ({base.fingerprint})"
            )
        digest = adapter_digest(brick.path)
        key = (str(brick.path), digest)
        with self._lock:
            rank = self._validated.get(key)
        if rank is None:
            cfg = validate_lora_dir(brick.path, base)  # shapes against the base: wrong model -> clear error
            rank = int(cfg["r"])
            with self._lock:
                self._validated[key] = rank
        part = Part(name=m.name, version=m.version, path=brick.path, weight=ref.weight, digest=digest)
        return part, rank

    def resolve(self, bricks: Sequence[BrickRef]) -> Adapter | None:
        """The adapter for one configuration (None: the bare base model)."""
        if not bricks:
            if not self.zero_for_base:
                return None
            path, rank = self.cache.zero(self.base)
            return Adapter(name=path.name, path=path, rank=rank, composite=True)
        parts = [self._part(b) for b in bricks]
        if len(parts) == 1 and parts[0][0].weight == 1.0:
            part, rank = parts[0]
            adapter = Adapter(name=f"{part.name}-v{part.version}-{part.digest[:10]}", path=part.path, rank=rank)
        else:
            plain = [p for p, _ in parts]
            needed = padded_rank(sum(r for _, r in parts))
            if self.max_rank is not None and needed > self.max_rank:
                raise AdapterError(self._rank_message(needed, bricks))  # before building anything
            path, rank = self.cache.get(plain, self.base)
            key = composite_key(canonical(plain), self.base)
            adapter = Adapter(name=f"mix-{key[:16]}", path=path, rank=rank, composite=True)
        self._check_rank(adapter, bricks)
        return adapter

    def _check_rank(self, adapter: Adapter, bricks: Sequence[BrickRef]) -> None:
        if self.max_rank is not None and adapter.rank > self.max_rank:
            raise AdapterError(self._rank_message(adapter.rank, bricks))

    def _rank_message(self, rank: int, bricks: Sequence[BrickRef]) -> str:
        what = ", ".join(str(b) for b in bricks)
        return (
            f"configuration [{what}] needs LoRA rank {rank}, above this engine's max_lora_rank "
            f"{self.max_rank}; create the engine with a larger max_lora_rank (vLLM allows up to 512) "
            "or use fewer bricks"
        )

    def resolve_batch(self, requests: Sequence[Request]) -> list[Adapter | None]:
        """One adapter (or None) per request; every configuration is checked before any is used."""
        by_config: dict[tuple[BrickRef, ...], Adapter | None] = {}
        for r in requests:
            if r.bricks not in by_config:
                by_config[r.bricks] = self.resolve(r.bricks)
        return [by_config[r.bricks] for r in requests]
