"""The versioned brick library on disk.

Layout under the library root (``--library``, ``$BRICKWORK_HOME``, default ``~/.brickwork``)::

    library.json                      {"format_version", "base_model": {"id", "fingerprint"[, "path"]}}
    bricks/<name>/versions/<v>/       brick.json + adapter files (or mask files), immutable
    bricks/<name>/state.json          {"active": v, "versions": [...]}: the commit record
    .staging/  .trash/                scratch space; anything left there after a crash is ignored
    .lock                             flock taken by every writer

Every version is kept; rollback rewrites ``state.json``; remove renames the brick away before
deleting. A new version is written to ``.staging``, validated, renamed into ``versions/``, and only
then committed by the atomic rewrite of ``state.json``; a version directory that ``state.json``
does not list (left by a crash) is invisible and is swept by the next write. So a crash at any
point leaves the previous state readable and unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from brickwork import _atomic
from brickwork.bricks.manifest import MANIFEST_NAME, Manifest, check_name
from brickwork.bricks.validate import validate_brick_dir
from brickwork.lora import refuse_pickles
from brickwork.errors import BaseModelMismatch, BrickNotFound, LibraryError
from brickwork.models import DEFAULT_BASE_MODEL, BaseModel, resolve_base_model
from brickwork.prompts import CHATML, PromptFormat

LIBRARY_FORMAT = 1
STATE = "state.json"


def default_library() -> Path:
    return Path(os.environ.get("BRICKWORK_HOME") or Path.home() / ".brickwork").expanduser()


@dataclass(frozen=True, kw_only=True)
class Brick:
    """One stored brick version: its manifest and the directory holding its files."""

    manifest: Manifest
    path: Path

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.version


class BrickStore:
    """Versioned, validated, crash-safe storage of bricks for one base model.

    Example::

        store = BrickStore("~/.brickwork")
        brick = store.add(adapter_dir, manifest)   # validated, new version, active
        store.rollback(brick.name, to=1)
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, base: BaseModel | str | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_library()
        self._base = base if isinstance(base, BaseModel) else None
        self._base_name = base if isinstance(base, str) else None
        self._base_checked = False

    # -- paths -------------------------------------------------------------------------------
    @property
    def bricks_dir(self) -> Path:
        return self.root / "bricks"

    def _brick_dir(self, name: str) -> Path:
        return self.bricks_dir / check_name(name)

    def scratch_dir(self, prefix: str) -> Path:
        """A new, empty directory under ``.staging`` (on the library's filesystem, so a finished
        brick renames into place); the caller removes it. Anything left after a crash is ignored."""
        staging = self.root / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=staging))

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the library's write lock (re-entrant callers should take it once, outside)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with _atomic.file_lock(self.root / ".lock"):
            yield

    # -- base model --------------------------------------------------------------------------
    @property
    def base(self) -> BaseModel:
        """The library's base model: recorded in `library.json`, resolved lazily and checked."""
        if self._base is None or not self._base_checked:
            recorded = (self._read_library_json() or {}).get("base_model") or {}
            where = recorded.get("path")
            if self._base is None and self._base_name is None and where and not Path(where).is_dir():
                raise LibraryError(
                    f"library {self.root} was made for the base model in {where}, which is gone; "
                    "restore that directory (the library's bricks only fit those weights)"
                )
            base = self._base or resolve_base_model(self._base_name or where or recorded.get("id"))
            if recorded.get("fingerprint") and recorded["fingerprint"] != base.fingerprint:
                raise BaseModelMismatch(
                    f"library {self.root} was built for base model {recorded.get('id')!r} "
                    f"({recorded['fingerprint']}), not {base.id!r} ({base.fingerprint})"
                )
            self._base, self._base_checked = base, True
        return self._base

    @property
    def prompts(self) -> PromptFormat:
        """How the library's base model is prompted. A library of the default base answers without
        resolving it (no dequantizing just to render a prompt)."""
        if self._base is None and self._base_name in (None, DEFAULT_BASE_MODEL):
            recorded = (self._read_library_json() or {}).get("base_model") or {}
            if not recorded.get("path") and recorded.get("id", DEFAULT_BASE_MODEL) == DEFAULT_BASE_MODEL:
                return CHATML
        return self.base.prompts

    def _read_library_json(self) -> dict | None:
        p = self.root / "library.json"
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise LibraryError(f"{p} is corrupt ({exc}); restore it or start a new library") from exc

    def _ensure_library_json(self) -> None:
        if self._read_library_json() is None:
            _atomic.write_json(
                self.root / "library.json",
                {"format_version": LIBRARY_FORMAT, "base_model": self.base.to_library_json()},
            )

    def init(self) -> bool:
        """Create the library for its base model (`library.json`); False if it already was, for
        this base. A library recorded for another base raises `BaseModelMismatch`."""
        base = self.base  # checks the recorded base, if any, against the one given
        _ = base.prompts  # a base Brickwork cannot prompt is refused before anything is written
        with self.lock():
            if self._read_library_json() is not None:
                return False
            self._ensure_library_json()
        return True

    # -- reading -----------------------------------------------------------------------------
    def names(self) -> list[str]:
        if not self.bricks_dir.is_dir():
            return []
        return sorted(p.name for p in self.bricks_dir.iterdir() if (p / STATE).is_file())

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def _state(self, name: str) -> dict:
        f = self._brick_dir(name) / STATE
        try:
            state = json.loads(f.read_text())
            return {"active": int(state["active"]), "versions": [int(v) for v in state["versions"]]}
        except FileNotFoundError:
            raise BrickNotFound(self._not_found(name)) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise LibraryError(f"{f} is corrupt: {exc}") from exc

    def active_version(self, name: str) -> int:
        return self._state(name)["active"]

    def _not_found(self, name: str) -> str:
        have = self.names()
        hint = f"; the library has: {', '.join(have)}" if have else "; the library is empty (run `brickwork library build`)"
        return f"no brick named {name!r} in {self.root}{hint}"

    def versions(self, name: str) -> list[int]:
        return sorted(self._state(name)["versions"])

    def get(self, name: str, version: int | None = None) -> Brick:
        if version is None:
            version = self.active_version(name)
        path = self._brick_dir(name) / "versions" / str(version)
        if not (path / MANIFEST_NAME).is_file():
            raise BrickNotFound(f"brick {name!r} has no version {version} (versions: {self.versions(name)})")
        return Brick(manifest=Manifest.load(path), path=path)

    def list(self) -> list[Brick]:
        """The active version of every brick, sorted by name."""
        return [self.get(n) for n in self.names()]

    def state(self) -> dict[str, int]:
        """{name: active version}: what the retrieval index must mirror."""
        return {n: self.active_version(n) for n in self.names()}

    def history(self, name: str) -> list[dict]:
        active = self.active_version(name)
        out = []
        for v in self.versions(name):
            m = self.get(name, v).manifest
            out.append(
                {
                    "version": v,
                    "active": v == active,
                    "created_at": m.created_at,
                    "parents": m.provenance.get("parents", []),
                    "command": m.provenance.get("command"),
                    "metrics": m.metrics,
                }
            )
        return out

    # -- writing -----------------------------------------------------------------------------
    def add(self, src: str | os.PathLike[str], manifest: Manifest | None = None, *, activate: bool = True) -> Brick:
        """Copy a brick directory in as the next version of its name, validated, then activate it.

        `manifest` overrides `src/brick.json`; its `version` is reassigned to the next free one.
        """
        src = Path(src)
        if not src.is_dir():
            raise LibraryError(f"{src} is not a directory")
        refuse_pickles(src)
        if manifest is None:
            manifest = Manifest.load(src / MANIFEST_NAME)
        base = self.base
        with self.lock():
            self._ensure_library_json()
            bdir = self._brick_dir(manifest.name)
            state = self._state(manifest.name) if (bdir / STATE).is_file() else {"active": None, "versions": []}
            self._sweep_orphans(bdir, state["versions"])
            version = max(state["versions"], default=0) + 1
            manifest = manifest.replace(version=version)
            staged = self.scratch_dir(f"{manifest.name}.")
            try:
                for item in src.iterdir():
                    if item.name == MANIFEST_NAME or item.name.startswith("."):
                        continue
                    if item.is_symlink() or not (item.is_file() or item.is_dir()):
                        raise LibraryError(f"{item}: links and special files are not accepted in a brick")
                    (shutil.copytree if item.is_dir() else shutil.copy2)(item, staged / item.name)
                _atomic.write_json(staged / MANIFEST_NAME, manifest.to_json())
                validate_brick_dir(staged, base)
                _atomic.publish_dir(staged, bdir / "versions" / str(version))
            finally:
                shutil.rmtree(staged, ignore_errors=True)
            active = version if (activate or state["active"] is None) else state["active"]
            self._write_state(bdir, active, [*state["versions"], version])
        return self.get(manifest.name, version)

    def rollback(self, name: str, *, to: int) -> Brick:
        with self.lock():
            state = self._state(name)
            if to not in state["versions"]:
                raise BrickNotFound(f"brick {name!r} has no version {to} (versions: {state['versions']})")
            self._write_state(self._brick_dir(name), to, state["versions"])
        return self.get(name, to)

    def remove(self, name: str) -> None:
        with self.lock():
            bdir = self._brick_dir(name)
            if not (bdir / STATE).is_file():
                raise BrickNotFound(self._not_found(name))
            _atomic.remove_tree(bdir, self.root / ".trash")

    # -- internals ---------------------------------------------------------------------------
    @staticmethod
    def _write_state(bdir: Path, active: int, versions: list[int]) -> None:
        _atomic.write_json(bdir / STATE, {"active": active, "versions": sorted(versions)})

    def _sweep_orphans(self, bdir: Path, committed: list[int]) -> None:
        """Remove version directories a crash left behind (published but never committed)."""
        vdir = bdir / "versions"
        if not vdir.is_dir():
            return
        for p in vdir.iterdir():
            if not (p.name.isdigit() and int(p.name) in committed):
                _atomic.remove_tree(p, self.root / ".trash")
