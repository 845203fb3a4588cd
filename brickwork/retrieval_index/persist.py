"""The index on disk: immutable generations switched by one atomic pointer.

Layout under ``<library>/index/``::

    CURRENT                 name of the live generation ("g000007")
    g000007/meta.json       format, embedder identity, feature config, the store state it
                            mirrors, per-brick row ranges, sha256 of every data file
    g000007/vectors.npy     float32 (rows, dim), rows grouped by brick in name order
    g000007/fields.npy      int8 (rows,): 0 description, 1 example
    g000007/ann.faiss       the approximate structure, when one is used
    g000007/classifier.npy  float32 (bricks, dim + 1): the brick classifier's weights, when used
    g000007/none.npy        float32 (n, dim): the none texts' vectors the library keeps, when its
                            scores compare requests with them (classifier.none_penalty)
    .lock                   flock held by writers

A writer builds a complete generation in a temporary folder, fsyncs it, renames it into place and
only then rewrites CURRENT, so a crash leaves the previous generation live. Readers verify the
checksums and raise `CorruptIndex` on any mismatch: a bad index is rebuilt, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brickwork import _atomic

FORMAT_VERSION = 1
KEEP_GENERATIONS = 2


class CorruptIndex(Exception):
    """Internal: the stored index cannot be trusted (the caller rebuilds it). `meta`: the
    generation's meta.json when that much was readable (which embedder to rebuild with)."""

    meta: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class Generation:
    name: str
    meta: dict[str, Any]
    vectors: np.ndarray
    fields: np.ndarray
    ann: bytes | None
    classifier: np.ndarray | None = None
    none: np.ndarray | None = None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def current_name(index_dir: Path) -> str | None:
    p = index_dir / "CURRENT"
    try:
        name = p.read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def read(index_dir: Path) -> Generation | None:
    """The live generation, verified; None when there is no index; CorruptIndex when it is bad."""
    name = current_name(index_dir)
    if name is None:
        if index_dir.is_dir() and any(p.name.startswith("g") for p in index_dir.iterdir()):
            raise CorruptIndex(f"{index_dir}/CURRENT is missing")
        return None
    gdir = index_dir / name
    try:
        meta = json.loads((gdir / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CorruptIndex(f"{gdir}/meta.json is missing") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptIndex(f"{gdir}/meta.json is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise CorruptIndex(f"{gdir}/meta.json: unsupported format {meta.get('format_version') if isinstance(meta, dict) else meta!r}")
    try:
        return _read_arrays(gdir, meta)
    except CorruptIndex as exc:
        exc.meta = meta
        raise


def _read_arrays(gdir: Path, meta: dict[str, Any]) -> Generation:
    checksums = meta.get("checksums") or {}
    blobs: dict[str, bytes] = {}
    for fname, digest in checksums.items():
        try:
            data = (gdir / fname).read_bytes()
        except FileNotFoundError as exc:
            raise CorruptIndex(f"{gdir}/{fname} is missing") from exc
        if _sha256(data) != digest:
            raise CorruptIndex(f"{gdir}/{fname} does not match its checksum")
        blobs[fname] = data
    for required in ("vectors.npy", "fields.npy"):
        if required not in blobs:
            raise CorruptIndex(f"{gdir}/meta.json lists no checksum for {required}")
    try:
        vectors = np.load(io.BytesIO(blobs["vectors.npy"]), allow_pickle=False)
        fields = np.load(io.BytesIO(blobs["fields.npy"]), allow_pickle=False)
    except ValueError as exc:
        raise CorruptIndex(f"{gdir}: unreadable arrays ({exc})") from exc
    if vectors.ndim != 2 or vectors.dtype != np.float32 or fields.shape != (len(vectors),):
        raise CorruptIndex(f"{gdir}: arrays have unexpected shapes {vectors.shape}, {fields.shape}")
    extra: dict[str, np.ndarray | None] = {"classifier": None, "none": None}
    for key in extra:
        if f"{key}.npy" in blobs:
            try:
                extra[key] = np.load(io.BytesIO(blobs[f"{key}.npy"]), allow_pickle=False)
            except ValueError as exc:
                raise CorruptIndex(f"{gdir}: unreadable {key}.npy ({exc})") from exc
    return Generation(name=gdir.name, meta=meta, vectors=vectors, fields=fields, ann=blobs.get("ann.faiss"), **extra)


def write(
    index_dir: Path,
    meta: dict[str, Any],
    vectors: np.ndarray,
    fields: np.ndarray,
    ann: bytes | None,
    classifier: np.ndarray | None = None,
    none: np.ndarray | None = None,
) -> str:
    """Write a new generation and make it live; returns its name. Caller holds the index lock."""
    index_dir.mkdir(parents=True, exist_ok=True)
    files = {"vectors.npy": _npy_bytes(vectors.astype(np.float32, copy=False)), "fields.npy": _npy_bytes(fields.astype(np.int8))}
    if ann is not None:
        files["ann.faiss"] = ann
    if classifier is not None:
        files["classifier.npy"] = _npy_bytes(classifier.astype(np.float32, copy=False))
    if none is not None:
        files["none.npy"] = _npy_bytes(none.astype(np.float32, copy=False))
    meta = {**meta, "format_version": FORMAT_VERSION, "checksums": {k: _sha256(v) for k, v in files.items()}}
    prev = current_name(index_dir)
    seq = 1 + max([int(p.name[1:]) for p in index_dir.iterdir() if p.name.startswith("g") and p.name[1:].isdigit()] or [0])
    name = f"g{seq:06d}"
    staged = Path(tempfile.mkdtemp(prefix=".tmp-", dir=index_dir))
    try:
        for fname, data in files.items():
            (staged / fname).write_bytes(data)
        (staged / "meta.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        _atomic.publish_dir(staged, index_dir / name)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    _atomic.write_text(index_dir / "CURRENT", name + "\n")
    _collect(index_dir, keep={name, prev} if prev else {name})
    return name


def _collect(index_dir: Path, keep: set[str | None]) -> None:
    """Delete generations beyond the newest KEEP_GENERATIONS and leftovers of crashed writers."""
    gens = sorted((p for p in index_dir.iterdir() if p.name.startswith("g") and p.name[1:].isdigit()), key=lambda p: p.name)
    doomed = [p for p in gens[:-KEEP_GENERATIONS] if p.name not in keep]
    doomed += [p for p in index_dir.iterdir() if p.name.startswith(".tmp-")]
    for p in doomed:
        with contextlib.suppress(OSError):
            shutil.rmtree(p) if p.is_dir() else os.unlink(p)
