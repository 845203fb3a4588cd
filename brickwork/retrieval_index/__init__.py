"""Retrieval index and routing: which bricks serve a subgoal, with which weights, or none.

- `BrickIndex` mirrors a library's active bricks (description + example vectors), persisted under
  ``<library>/index``, repaired on open when it drifted from the store, searched exactly for small
  libraries and with FAISS HNSW/IVF above a measured size.
- `Router` turns hits into `Route`s (empty: the base model answers) with calibrated thresholds.
- `retrieve(index, router, queries)` does both for the orchestrator.

Example::

    from brickwork.bricks import BrickStore
    from brickwork.retrieval_index import BrickIndex, Router, retrieve

    index = BrickIndex.open(BrickStore("~/.brickwork"))
    [(hits, routes)] = retrieve(index, Router.default(), ["What is the plural of goose?"])
"""

from brickwork.retrieval_index.ann import AnnConfig
from brickwork.retrieval_index.calibration import calibrate
from brickwork.retrieval_index.embedder import (
    DEFAULT_EMBEDDER,
    Embedder,
    EmbedderIdentity,
    HashEmbedder,
    load_embedder,
)
from brickwork.retrieval_index.features import FeatureConfig
from brickwork.retrieval_index.index import BrickIndex, Hit, IndexReport, SyncReport
from brickwork.retrieval_index.router import Route, Router, RouterConfig, retrieve

__all__ = [
    "DEFAULT_EMBEDDER",
    "AnnConfig",
    "BrickIndex",
    "Embedder",
    "EmbedderIdentity",
    "FeatureConfig",
    "HashEmbedder",
    "Hit",
    "IndexReport",
    "Route",
    "Router",
    "RouterConfig",
    "SyncReport",
    "calibrate",
    "load_embedder",
    "retrieve",
]
