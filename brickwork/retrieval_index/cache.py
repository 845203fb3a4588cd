"""A persistent cache of embeddings keyed by (embedder fingerprint, text).

Brick versions are immutable, so a text embedded once never needs embedding again: a rollback,
a rebuild after corruption or an eval re-run costs no model time. The cache is an optimisation
only; any problem with it (corrupt file, locked database, wrong vector size) falls back to
embedding and never changes a result.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from brickwork.retrieval_index.embedder import Embedder

log = logging.getLogger("brickwork.retrieval_index")


class EmbeddingCache:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._broken = False

    def _conn(self) -> sqlite3.Connection | None:
        if self._broken:
            return None
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=10)
                db.execute("create table if not exists emb (key text primary key, vec blob not null)")
                db.commit()
                self._db = db
            except (sqlite3.Error, OSError) as exc:
                log.warning("embedding cache %s unusable (%s); embedding without it", self.path, exc)
                self._broken = True
                with contextlib.suppress(OSError):
                    self.path.unlink()
                return None
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @staticmethod
    def _key(fingerprint: str, text: str) -> str:
        return hashlib.sha256(f"{fingerprint}\0{text}".encode()).hexdigest()

    def embed(self, embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of `texts`, from the cache where present, computed and stored otherwise."""
        texts = list(texts)
        ident = embedder.identity
        keys = [self._key(ident.fingerprint, t) for t in texts]
        found: dict[str, np.ndarray] = {}
        db = self._conn()
        if db is not None:
            try:
                for i in range(0, len(keys), 500):
                    chunk = keys[i : i + 500]
                    rows = db.execute(f"select key, vec from emb where key in ({','.join('?' * len(chunk))})", chunk)
                    for key, blob in rows:
                        v = np.frombuffer(blob, dtype=np.float32)
                        if v.shape == (ident.dim,):
                            found[key] = v
            except sqlite3.Error as exc:
                log.warning("embedding cache read failed (%s); embedding without it", exc)
                found = {}
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in found))
        if missing:
            vecs = embedder.embed(missing)
            new = {self._key(ident.fingerprint, t): v for t, v in zip(missing, vecs, strict=True)}
            found.update(new)
            if db is not None:
                try:
                    db.executemany("insert or replace into emb values (?, ?)", [(k, v.astype(np.float32).tobytes()) for k, v in new.items()])
                    db.commit()
                except sqlite3.Error as exc:
                    log.warning("embedding cache write failed (%s)", exc)
        if not texts:
            return np.zeros((0, ident.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32)
