"""Nearest-neighbour structures over index rows: exact (numpy), HNSW and IVF (FAISS).

Rows are unit vectors and scores are inner products (cosine). Exact search is a matrix product;
it is what small libraries use and the reference the approximate ones are measured against.
Above `AnnConfig.auto_rows` rows (set from bench/bench_retrieval.py, see docs/retrieval.md)
``kind="auto"`` picks the approximate structure. FAISS is imported only here and only when an
approximate structure is built or read; its errors are wrapped in `IndexError_`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from brickwork.errors import ConfigError, IndexError_

AnnKind = Literal["auto", "flat", "hnsw", "ivf"]
KINDS: tuple[str, ...] = ("auto", "flat", "hnsw", "ivf")


@dataclass(frozen=True, kw_only=True)
class AnnConfig:
    """Which structure searches the rows, and its knobs."""

    kind: AnnKind = "auto"
    auto_rows: int = 20_000
    auto_kind: Literal["hnsw", "ivf"] = "ivf"  # bench/results/retrieval*.json: IVF holds recall at 100k, HNSW does not
    hnsw_m: int = 16
    hnsw_ef_construction: int = 40
    hnsw_ef_search: int = 64
    ivf_nlist: int | None = None  # None: about 2 * sqrt(rows), at most 2048
    ivf_nprobe: int = 24

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"`kind` should be one of {KINDS}, got {self.kind!r}.")
        if self.auto_kind not in ("hnsw", "ivf"):
            raise ConfigError(f"`auto_kind` should be 'hnsw' or 'ivf', got {self.auto_kind!r}.")
        for name in ("auto_rows", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nprobe"):
            if getattr(self, name) < 1:
                raise ConfigError(f"`{name}` should be positive, got {getattr(self, name)!r}.")

    def resolve(self, n_rows: int) -> Literal["flat", "hnsw", "ivf"]:
        if self.kind != "auto":
            return self.kind  # type: ignore[return-value]
        return self.auto_kind if n_rows > self.auto_rows else "flat"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_controller: Any = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run BLAS on one thread for the block: a query-sized matrix product is ~1 ms on one core
    but can take 50 ms when OpenBLAS wakes its threads on a busy machine (measured here)."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        except Exception:  # threadpoolctl is optional (it comes with scikit-learn)
            _controller = False
    if not _controller:
        yield
        return
    with _controller.limit(limits=1, user_api="blas"):
        yield


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a dependency
        raise IndexError_("approximate search needs faiss-cpu (pip install faiss-cpu)") from exc
    return faiss


class Ann:
    """One search structure over a fixed (n, d) float32 matrix of unit rows."""

    def __init__(self, kind: Literal["flat", "hnsw", "ivf"], vectors: np.ndarray, index: Any = None, cfg: AnnConfig | None = None) -> None:
        self.kind = kind
        self.vectors = vectors
        self.index = index
        self.cfg = cfg or AnnConfig()

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray, cfg: AnnConfig, *, kind: str | None = None, seed: int = 0) -> Ann:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, d = vectors.shape
        kind = kind or cfg.resolve(n)
        if kind == "flat" or n == 0:
            return cls("flat", vectors, None, cfg)
        faiss = _faiss()
        try:
            if kind == "hnsw":
                index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = cfg.hnsw_ef_construction
                index.add(vectors)
            elif kind == "ivf":
                nlist = cfg.ivf_nlist or max(1, min(n // 39, int(2 * math.sqrt(n)), 2048))
                quantizer = faiss.IndexFlatIP(d)
                index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
                rng = np.random.default_rng(seed)
                # 40 training points per list is what FAISS asks for; more only costs k-means time
                train = vectors if n <= 40 * nlist else vectors[rng.choice(n, 40 * nlist, replace=False)]
                index.cp.seed = seed
                index.train(train)
                index.add(vectors)
            else:
                raise ConfigError(f"unknown index kind {kind!r}; use one of {KINDS}")
        except ConfigError:
            raise
        except Exception as exc:
            raise IndexError_(f"FAISS could not build a {kind} index over {n} rows: {exc}") from exc
        return cls(kind, vectors, index, cfg)  # type: ignore[arg-type]

    # -- persistence -------------------------------------------------------------------------
    def to_bytes(self) -> bytes | None:
        if self.index is None:
            return None
        faiss = _faiss()
        return faiss.serialize_index(self.index).tobytes()

    @classmethod
    def from_bytes(cls, kind: str, vectors: np.ndarray, data: bytes | None, cfg: AnnConfig) -> Ann:
        if kind == "flat" or data is None:
            return cls("flat", vectors, None, cfg)
        faiss = _faiss()
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except Exception as exc:
            raise IndexError_(f"the stored {kind} index is unreadable: {exc}") from exc
        if index.ntotal != len(vectors) or index.d != vectors.shape[1]:
            raise IndexError_(f"the stored {kind} index holds {index.ntotal} rows of {index.d}-d, expected {vectors.shape}")
        return cls(kind, vectors, index, cfg)  # type: ignore[arg-type]

    # -- searching ---------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` rows per query: (scores, row ids), best first; -1 ids pad short results."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n = len(self.vectors)
        k = min(k, n)
        if k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if self.index is None:
            with single_threaded_blas():
                scores = queries @ self.vectors.T
            if k < n:
                part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            else:
                part = np.tile(np.arange(n), (len(queries), 1))
            top = np.take_along_axis(scores, part, axis=1)
            order = np.argsort(-top, axis=1, kind="stable")
            return np.take_along_axis(top, order, axis=1), np.take_along_axis(part, order, axis=1).astype(np.int64)
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.cfg.hnsw_ef_search, k)
        elif self.kind == "ivf":
            self.index.nprobe = self.cfg.ivf_nprobe
        try:
            scores, ids = self.index.search(queries, k)
        except Exception as exc:
            raise IndexError_(f"FAISS search failed: {exc}") from exc
        return scores, ids
