"""`BrickIndex`: the searchable mirror of a library's active bricks.

Each active brick contributes one row per distinct text that describes it: its description and
each of its `examples` (instructions it serves, sample inputs). A brick's score for a query is
the best score of its rows (nearest row); docs/retrieval.md has the measurement behind that
choice. The index mirrors `BrickStore.state()` ({name: active version}); every open compares the
two and repairs any drift (a crash between a store write and an index write, a corrupt or
missing index), so callers never search a stale or damaged index.

Example::

    index = BrickIndex.open(store)            # repairs drift if any
    index.search("what is the plural of goose?", k=3)
    # [Hit(name='english_plural', version=1, score=0.61), ...]
    store.add(brick_dir); index.sync()        # incremental: embeds only what changed
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brickwork import _atomic
from brickwork.bricks.manifest import MANIFEST_NAME, Manifest
from brickwork.bricks.store import BrickStore
from brickwork.errors import BrickworkError, ConfigError, IndexError_
from brickwork.retrieval_index import classifier as clf
from brickwork.retrieval_index import persist
from brickwork.retrieval_index.ann import Ann, AnnConfig
from brickwork.retrieval_index.cache import EmbeddingCache
from brickwork.retrieval_index.embedder import Embedder, EmbedderIdentity, canonical_spec, load_embedder
from brickwork.retrieval_index.features import FeatureConfig, combine
from brickwork.retrieval_index.form import brick_limits
from brickwork.retrieval_index.search import AskGate, BrickTable, Hit

log = logging.getLogger("brickwork.retrieval_index")

INDEX_DIRNAME = "index"
FIELD_DESCRIPTION, FIELD_EXAMPLE = 0, 1
MAX_EXAMPLES = 256
#: above this many rows the brick classifier is not fitted (its fit grows with rows x bricks);
#: scores are then plain best-row cosines and the router needs its own calibration
MAX_CLASSIFIER_ROWS = 20_000


@dataclass(frozen=True, kw_only=True)
class IndexReport:
    """What `check()` found. `ok` is true when the index exactly mirrors the store."""

    ok: bool
    bricks: int
    rows: int
    kind: str
    embedder: str | None
    missing: list[str] = field(default_factory=list)  # active in the store, absent from the index
    extra: list[str] = field(default_factory=list)  # in the index, no longer in the store
    stale: list[str] = field(default_factory=list)  # "name: index v1, store v2" (or a rewritten version)
    problems: list[str] = field(default_factory=list)  # corruption, unreadable files

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "bricks": self.bricks,
            "rows": self.rows,
            "kind": self.kind,
            "embedder": self.embedder,
            "missing": self.missing,
            "extra": self.extra,
            "stale": self.stale,
            "problems": self.problems,
        }

    def lines(self) -> list[str]:
        if self.ok:
            return [f"index ok: {self.bricks} bricks, {self.rows} rows, {self.kind}, embedder {self.embedder}"]
        out = [f"index drift: {len(self.missing)} missing, {len(self.extra)} extra, {len(self.stale)} stale, {len(self.problems)} problems"]
        out += [f"  missing: {n}" for n in self.missing]
        out += [f"  extra:   {n}" for n in self.extra]
        out += [f"  stale:   {s}" for s in self.stale]
        out += [f"  problem: {p}" for p in self.problems]
        out.append("  repair with: brickwork index rebuild")
        return out


@dataclass(frozen=True, kw_only=True)
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rebuilt: bool = False
    reason: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.rebuilt)


def brick_texts(manifest: Manifest, *, max_examples: int = MAX_EXAMPLES) -> tuple[list[str], list[int]]:
    """The texts that describe a brick in the index, with their field codes (deduplicated)."""
    texts, fields, seen = [], [], set()
    desc = manifest.description.strip()
    if desc:
        texts.append(desc)
        fields.append(FIELD_DESCRIPTION)
        seen.add(desc)
    for ex in manifest.examples[:max_examples]:
        ex = ex.strip()
        if ex and ex not in seen:
            seen.add(ex)
            texts.append(ex)
            fields.append(FIELD_EXAMPLE)
    return texts, fields


def classifier_texts(manifest: Manifest) -> list[str]:
    """The brick classifier's extra training texts of a brick: description + each example, then
    its `routing_samples` as they are (deduplicated; never index rows)."""
    texts, fields = brick_texts(manifest)
    desc = next((t for t, f in zip(texts, fields, strict=True) if f == FIELD_DESCRIPTION), "")
    out = clf.training_texts(desc, [t for t, f in zip(texts, fields, strict=True) if f == FIELD_EXAMPLE])
    seen = set(texts)
    for x in manifest.routing_samples:
        x = x.strip()
        if x and x not in seen:
            seen.add(x)
            out.append(x)
    return out


def _stamp(store: BrickStore, name: str, version: int) -> str:
    """Identifies the exact bytes of a brick version's manifest (a removed then re-added brick reuses numbers)."""
    p = store.bricks_dir / name / "versions" / str(version) / MANIFEST_NAME
    try:
        st = p.stat()
    except FileNotFoundError:
        return "missing"
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


class BrickIndex:
    """Vectors of every active brick's texts, searchable, kept in step with a `BrickStore`."""

    def __init__(
        self,
        store: BrickStore,
        *,
        embedder_spec: str,
        features: FeatureConfig,
        ann_config: AnnConfig,
        use_cache: bool | str | os.PathLike[str] = True,
    ) -> None:
        self.store = store
        self.dir = Path(store.root) / INDEX_DIRNAME
        self.embedder_spec = embedder_spec
        self.features = features
        self.ann_config = ann_config
        self.use_cache = use_cache
        self.repairs: list[str] = []  # what open() had to fix, for callers to show
        self._embedder: Embedder | None = None
        self._identity: EmbedderIdentity | None = None
        self._entries: dict[str, dict[str, Any]] = {}  # name -> {version, stamp, start, end}
        self._names: list[str] = []
        self._kinds: dict[tuple[str, str], str] = {}  # (name, manifest stamp) -> brick kind (_store_state)
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        self._fields = np.zeros(0, dtype=np.int8)
        self._classifier: np.ndarray | None = None
        self._none: np.ndarray | None = None  # kept none vectors (classifier.none_penalty)
        self._table = _empty_table()
        self._generation: str | None = None
        self._problem: str | None = None
        self._cache: EmbeddingCache | None = None

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        store: BrickStore,
        *,
        embedder: str | Embedder | None = None,
        features: FeatureConfig | None = None,
        ann: AnnConfig | None = None,
        repair: bool = True,
        use_cache: bool | str | os.PathLike[str] = True,
    ) -> BrickIndex:
        """Open the index of `store`, building it if absent and repairing it if it drifted.

        `embedder`/`features` None mean "what the index was built with" (the defaults for a new
        index). Asking for a different embedder than the index holds raises `IndexError_`: use
        `BrickIndex.build(store, embedder=...)` (``brickwork index rebuild --embedder``) to switch.
        With `repair=False` nothing is written; `check()` then says what is wrong.
        """
        spec = embedder if isinstance(embedder, str) or embedder is None else embedder.spec
        self = cls(
            store,
            embedder_spec=canonical_spec(spec),
            features=features or FeatureConfig(),
            ann_config=ann or AnnConfig(),
            use_cache=use_cache,
        )
        if embedder is not None and not isinstance(embedder, str):
            self._embedder = embedder
        try:
            gen = persist.read(self.dir)
        except persist.CorruptIndex as exc:
            gen, self._problem = None, f"corrupt index: {exc}"
            if embedder is None:  # rebuild with the embedder it was built with, where its meta still says
                recorded = (exc.meta or {}).get("embedder_spec")
                self.embedder_spec = canonical_spec(recorded if isinstance(recorded, str) and recorded.strip() else spec)
        if gen is not None:
            self._load(gen, requested_embedder=embedder, requested_features=features, requested_ann=ann)
        if repair:
            if self._problem is not None:
                log.warning("%s; rebuilding from the store", self._problem)
                self.repairs.append(f"{self._problem}: rebuilt")
                self._problem = None
                self._reset()
                self.sync()
            else:
                rep = self.sync()
                if rep.changed and gen is None:
                    self.repairs.append(f"no index yet: built it ({len(rep.added)} bricks)")
                elif rep.changed:
                    self.repairs.append(_describe(rep))
                    log.warning("index was out of step with the store: %s", _describe(rep))
        return self

    @classmethod
    def build(
        cls,
        store: BrickStore,
        *,
        embedder: str | Embedder | None = None,
        features: FeatureConfig | None = None,
        ann: AnnConfig | None = None,
        use_cache: bool | str | os.PathLike[str] = True,
    ) -> BrickIndex:
        """Build a fresh index of `store` (replacing any), e.g. to switch embedders."""
        spec = embedder if isinstance(embedder, str) or embedder is None else embedder.spec
        self = cls(
            store, embedder_spec=canonical_spec(spec), features=features or FeatureConfig(), ann_config=ann or AnnConfig(), use_cache=use_cache
        )
        if embedder is not None and not isinstance(embedder, str):
            self._embedder = embedder
        self.rebuild()
        return self

    def _reset(self) -> None:
        self._entries, self._names = {}, []
        self._vectors = np.zeros((0, self._dim_or_zero()), dtype=np.float32)
        self._fields = np.zeros(0, dtype=np.int8)
        self._classifier = None
        self._none = None
        self._table = _empty_table()

    def _dim_or_zero(self) -> int:
        return self._vectors.shape[1] if self._vectors.ndim == 2 else 0

    def _load(
        self, gen: persist.Generation, *, requested_embedder: Any, requested_features: FeatureConfig | None, requested_ann: AnnConfig | None
    ) -> None:
        meta = gen.meta
        try:
            recorded = EmbedderIdentity.from_json(meta["embedder"])
        except (KeyError, TypeError, ValueError, BrickworkError) as exc:
            self._problem = f"corrupt index: {gen.name}/meta.json is incomplete ({exc})"
            return
        if requested_embedder is None:
            # a rebuild (of an index from an older Brickwork, say) keeps the embedder it was built with
            self.embedder_spec = canonical_spec(meta.get("embedder_spec") or recorded.name)
        try:
            recorded_features = FeatureConfig.from_json(meta["features"])
            bricks = meta["bricks"]
            kind = meta["ann"]["kind"]
            ann_cfg = AnnConfig(**meta["ann"]["config"])
        except (KeyError, TypeError, ValueError, BrickworkError) as exc:
            self._problem = f"corrupt index: {gen.name}/meta.json is incomplete ({exc})"
            return
        if requested_embedder is not None:
            wanted = load_embedder(requested_embedder).identity
            if wanted.fingerprint != recorded.fingerprint or wanted.dim != recorded.dim:
                raise IndexError_(
                    f"the index in {self.dir} holds vectors of embedder {recorded}, not {wanted}; "
                    f"vectors of different embedders cannot be mixed: rebuild it with "
                    f"`brickwork index rebuild --embedder {requested_embedder if isinstance(requested_embedder, str) else wanted.name}`"
                )
        if requested_features is not None and requested_features != recorded_features:
            raise IndexError_(
                f"the index in {self.dir} was built with features {recorded_features.to_json()}, not "
                f"{requested_features.to_json()}; rebuild it to change them"
            )
        self.features = recorded_features
        self._identity = recorded
        if requested_ann is None:
            self.ann_config = ann_cfg
        names = sorted(bricks)
        expected = 0
        for name in names:
            e = bricks[name]
            if e["start"] != expected or e["end"] <= e["start"]:
                self._problem = f"corrupt index: row ranges of {gen.name} are inconsistent"
                return
            expected = e["end"]
        if expected != len(gen.vectors) or gen.vectors.shape[1] != recorded_features.dim(recorded.dim):
            self._problem = f"corrupt index: {gen.name} holds {gen.vectors.shape} vectors, meta says {expected} rows"
            return
        wants_classifier = _wants_classifier(recorded_features, len(names), expected)
        if wants_classifier and (
            gen.classifier is None or gen.classifier.shape != (len(names) + recorded_features.none_class, gen.vectors.shape[1] + 1)
        ):
            self._problem = f"corrupt index: {gen.name} lacks the brick classifier its features ask for"
            return
        if wants_classifier and recorded_features.none_class and meta.get("none_data") != clf.none_fingerprint():
            self._problem = f"stale index: the none-class texts changed since {gen.name} was fitted"
            return
        wants_none = wants_classifier and _wants_none(recorded_features)
        if wants_none and (gen.none is None or gen.none.ndim != 2 or gen.none.shape[1] != gen.vectors.shape[1]):
            self._problem = f"corrupt index: {gen.name} lacks the none vectors its features ask for"
            return
        if recorded_features.form_weight > 0 and not all(isinstance(bricks[n].get("form"), list) for n in names):
            self._problem = f"stale index: {gen.name} lacks the bricks' form regions its features ask for"
            return
        if not all(isinstance(bricks[n].get("bare_inputs"), bool) for n in names):
            self._problem = f"stale index: {gen.name} does not record which bricks must be asked for"
            return
        try:
            ann_obj = Ann.from_bytes(kind, gen.vectors, gen.ann, self.ann_config)
        except IndexError_ as exc:
            self._problem = f"corrupt index: {exc}"
            return
        self._entries = {n: dict(bricks[n]) for n in names}
        self._names = names
        self._vectors = gen.vectors
        self._fields = gen.fields
        self._classifier = gen.classifier if wants_classifier else None
        self._none = gen.none if wants_none else None
        self._generation = gen.name
        self._table = self._make_table(ann_obj)

    def _make_table(self, ann: Ann) -> BrickTable:
        e = self._entries
        return BrickTable(
            self._names,
            [e[n]["version"] for n in self._names],
            [e[n]["end"] - e[n]["start"] for n in self._names],
            self._vectors,
            ann,
            self._fields,
            classifier=self._classifier,
            classifier_weight=self.features.classifier_weight,
            none=self._none,
            none_weight=self.features.none_neighbour_weight,
            none_margin=self.features.none_neighbour_margin,
            form=np.asarray([e[n]["form"] for n in self._names], np.float32) if self.features.form_weight > 0 and self._names else None,
            form_weight=self.features.form_weight,
            form_slack=self.features.form_slack,
            ask=AskGate.of([e[n]["bare_inputs"] for n in self._names], self.features, self._vectors.shape[1], self._embed_views),
        )



    # -- embedding ---------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = load_embedder(self.embedder_spec)
        return self._embedder

    @property
    def identity(self) -> EmbedderIdentity:
        """The identity of the vectors held (the recorded one; the embedder's for a new index)."""
        return self._identity or self.embedder.identity

    def _check_embedder(self) -> None:
        """The loaded embedder must be the one the vectors came from (a reinstalled model may differ)."""
        if self._identity is not None and self.embedder.identity != self._identity:
            got = self.embedder.identity
            if got.fingerprint != self._identity.fingerprint or got.dim != self._identity.dim:
                raise IndexError_(
                    f"embedder {self.embedder_spec!r} now has weights {got}, but the index holds vectors of "
                    f"{self._identity}; run `brickwork index rebuild`"
                )

    def _embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if self.use_cache:
            if self._cache is None:
                self._cache = EmbeddingCache(embedding_cache_path() if self.use_cache is True else Path(self.use_cache))
            sem = self._cache.embed(self.embedder, texts)
        else:
            sem = self.embedder.embed(texts)
        return combine(sem, texts, self.features)

    def _embed_views(self, texts: Sequence[str]) -> np.ndarray:
        """Unit semantic embeddings of requests' ask views (search.AskGate.embed)."""
        self._check_embedder()
        return self.embedder.embed(list(texts))

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Query vectors in this index's space (what `search_vectors` takes)."""
        self._check_embedder()
        return combine(self.embedder.embed(list(queries)), list(queries), self.features)

    # -- keeping in step with the store ------------------------------------------------------
    def _store_state(self) -> dict[str, tuple[int, str]]:
        """The routable bricks' {name: (active version, stamp)}: LoRA bricks only. Emergent bricks
        (FFN neuron masks, docs/emergent.md) are not adapters any engine serves, so an index row for
        one would route requests to a brick every engine refuses."""
        out = {}
        for n, v in self.store.state().items():
            stamp = _stamp(self.store, n, v)
            kind = self._kinds.get((n, stamp))
            if kind is None:  # read each manifest version once per index object, not on every check
                kind = self._kinds[(n, stamp)] = self.store.get(n, v).manifest.kind
            if kind == "lora":
                out[n] = (v, stamp)
        return out

    def check(self) -> IndexReport:
        """Compare the index with the store without changing either."""
        problems = [self._problem] if self._problem else []
        missing, extra, stale = [], [], []
        if not problems:
            current = self._store_state()
            missing = sorted(set(current) - set(self._entries))
            extra = sorted(set(self._entries) - set(current))
            for n in sorted(set(current) & set(self._entries)):
                e = self._entries[n]
                v, stamp = current[n]
                if e["version"] != v:
                    stale.append(f"{n}: index v{e['version']}, store v{v}")
                elif e["stamp"] != stamp:
                    stale.append(f"{n}: v{v} was rewritten since it was indexed")
        ok = not (problems or missing or extra or stale)
        return IndexReport(
            ok=ok,
            bricks=len(self._entries),
            rows=len(self._vectors),
            kind=self._table.kind,
            embedder=str(self._identity) if self._identity else self.embedder_spec,
            missing=missing,
            extra=extra,
            stale=stale,
            problems=problems,
        )

    def sync(self) -> SyncReport:
        """Bring the index in step with the store, embedding only bricks whose active version changed.

        Cheap when nothing changed: one read of each brick's ACTIVE file and one stat of its
        manifest, no model load, no write.
        """
        if self._problem is not None:
            raise IndexError_(f"{self._problem}; run `brickwork index rebuild`")
        current = self._store_state()
        if self._generation is not None and all(
            n in self._entries and self._entries[n]["version"] == v and self._entries[n]["stamp"] == s for n, (v, s) in current.items()
        ) and len(current) == len(self._entries):
            return SyncReport()
        if not current and not self._entries and self._generation is None:
            return SyncReport()  # an empty library needs no index (nor a model load)
        with self._lock():
            return self._apply(current)

    def rebuild(self) -> SyncReport:
        """Re-derive the whole index from the store (re-embedding is served by the cache)."""
        with self._lock():
            self._problem = None
            self._reset()
            self._identity = None
            self._generation = None
            rep = self._apply(self._store_state())
        return SyncReport(added=rep.added, rebuilt=True, reason="rebuild")

    def _lock(self) -> Any:
        self.dir.mkdir(parents=True, exist_ok=True)
        return _atomic.file_lock(self.dir / ".lock")

    def _apply(self, current: dict[str, tuple[int, str]]) -> SyncReport:
        self._check_embedder()
        identity = self.embedder.identity
        keep = {n for n, (v, s) in current.items() if n in self._entries and self._entries[n]["version"] == v and self._entries[n]["stamp"] == s}
        added = sorted(n for n in current if n not in self._entries)
        updated = sorted(n for n in current if n in self._entries and n not in keep)
        removed = sorted(n for n in self._entries if n not in current)
        new_vecs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        todo = added + updated
        texts_all: list[str] = []
        spans: dict[str, tuple[int, int, list[int]]] = {}
        forms: dict[str, list[int]] = {}
        bares: dict[str, bool] = {}
        for n in todo:
            v = current[n][0]
            m = self.store.get(n, v).manifest
            texts, fields = brick_texts(m)
            spans[n] = (len(texts_all), len(texts_all) + len(texts), fields)
            texts_all.extend(texts)
            forms[n] = _form_of(m)
            bares[n] = m.bare_inputs
        dim = self.features.dim(identity.dim)
        vecs_all = self._embed_texts(texts_all) if texts_all else np.zeros((0, dim), dtype=np.float32)
        for n, (a, b, fields) in spans.items():
            new_vecs[n] = (vecs_all[a:b], np.asarray(fields, dtype=np.int8))
        names = sorted(current)
        blocks, fblocks, entries, start = [], [], {}, 0
        for n in names:
            if n in keep:
                e = self._entries[n]
                vb, fb = self._vectors[e["start"] : e["end"]], self._fields[e["start"] : e["end"]]
                form = e.get("form") or _form_of(self.store.get(n, current[n][0]).manifest)
                bare = e["bare_inputs"]  # recorded in every entry (an index without it is rebuilt on open)
            else:
                vb, fb = new_vecs[n]
                form = forms[n]
                bare = bares[n]
            blocks.append(vb)
            fblocks.append(fb)
            entries[n] = {"version": current[n][0], "stamp": current[n][1], "start": start, "end": start + len(vb), "form": form,
                          "bare_inputs": bool(bare)}
            start += len(vb)
        vectors = np.concatenate(blocks).astype(np.float32) if blocks else np.zeros((0, dim), dtype=np.float32)
        fields_arr = np.concatenate(fblocks).astype(np.int8) if fblocks else np.zeros(0, dtype=np.int8)
        ann = Ann.build(vectors, self.ann_config)
        weights, none = None, None
        if _wants_classifier(self.features, len(names), len(vectors)):
            weights, none = self._fit_classifier(names, current, vectors, entries)
        meta = {
            "embedder": identity.to_json(),
            "embedder_spec": self.embedder_spec,
            "features": self.features.to_json(),
            "ann": {"kind": ann.kind, "config": self.ann_config.to_json()},
            "state": {n: e["version"] for n, e in entries.items()},
            "bricks": entries,
            "rows": len(vectors),
        }
        if weights is not None and self.features.none_class:
            meta["none_data"] = clf.none_fingerprint()
        try:
            self._generation = persist.write(self.dir, meta, vectors, fields_arr, ann.to_bytes(), weights, none)
        except OSError as exc:  # a read-only library: serve the repaired index from memory
            log.warning("cannot write the index to %s (%s); using it in memory only", self.dir, exc)
            self._generation = self._generation or "memory"
        self._identity = identity
        self._entries = entries
        self._names = names
        self._vectors = vectors
        self._fields = fields_arr
        self._classifier = weights
        self._none = none
        self._table = self._make_table(ann)
        return SyncReport(added=added, updated=updated, removed=removed)

    def _fit_classifier(
        self, names: list[str], current: dict[str, tuple[int, str]], vectors: np.ndarray, entries: dict[str, dict[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Refit the brick classifier on every active brick's rows and description+example texts
        (classifier.py); the extra texts come from the embedding cache after the first time.
        Also returns the none vectors the library keeps, when its scores compare requests with them."""
        extra, extra_y = [], []
        for b, n in enumerate(names):
            aug = classifier_texts(self.store.get(n, current[n][0]).manifest)
            extra += aug
            extra_y += [b] * len(aug)
        owner = np.concatenate([np.full(entries[n]["end"] - entries[n]["start"], b) for b, n in enumerate(names)])
        extra_v = self._embed_texts(extra) if extra else np.zeros((0, vectors.shape[1]), np.float32)
        none = self._embed_texts(list(clf.none_texts())) if self.features.none_class else None
        weights = clf.fit_library(vectors, owner, extra_v, np.asarray(extra_y, dtype=np.int64), len(names), none)
        kept = clf.kept_none(none, vectors) if none is not None and _wants_none(self.features) else None
        return weights, kept

    # -- reading -----------------------------------------------------------------------------
    @property
    def state(self) -> dict[str, int]:
        """{name: version} the index holds (`store.state()`'s LoRA bricks after open/sync)."""
        return {n: e["version"] for n, e in self._entries.items()}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def kind(self) -> str:
        return self._table.kind

    @property
    def rows(self) -> int:
        return len(self._vectors)

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The `k` best bricks for one query, best first."""
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 5, *, inputs: Sequence[str | None] | None = None) -> list[list[Hit]]:
        """`search` for many queries with one embedding batch.

        `inputs`: the task input each query carries, when the caller knows it (a planned step's
        input). A request is then also scored with its input masked (`mask_input`) and a brick's
        score is the mean of both: what is asked counts as much as what it is asked about ("spell
        out Kabul" is a spelling request, not a question about a capital).
        """
        if isinstance(queries, str):
            raise ConfigError("`queries` should be a list of strings; use search() for one query")
        queries = list(queries)
        if k < 1:
            raise ConfigError(f"`k` should be at least 1, got {k}.")
        if inputs is not None and len(inputs) != len(queries):
            raise ConfigError(f"`inputs` should have one entry per query ({len(queries)}), got {len(inputs)}")
        if self._problem is not None:
            raise IndexError_(f"{self._problem}; run `brickwork index rebuild`")
        if not queries:
            return []
        if not self._entries:
            return [[] for _ in queries]
        masked = [mask_input(q, i) for q, i in zip(queries, inputs, strict=True)] if inputs is not None else []
        todo = [j for j, m in enumerate(masked) if m is not None]
        if not todo:
            return self.search_vectors(self.embed_queries(queries), k, queries)
        wide = min(len(self._names), max(4 * k, 32))  # both rankings over the same candidates
        full = self.search_vectors(self.embed_queries(queries), wide, queries)
        mq = [masked[j] for j in todo]
        other = self.search_vectors(self.embed_queries(mq), wide, mq)  # type: ignore[arg-type]
        out = [h[:k] for h in full]
        for j, mh in zip(todo, other, strict=True):
            out[j] = _mean_hits(full[j], mh)[:k]
        return out

    def search_vectors(self, qvecs: np.ndarray, k: int = 5, texts: Sequence[str] | None = None) -> list[list[Hit]]:
        """Search with query vectors already in this index's space (benchmarks time this part);
        `texts`, the queries as written, let the form penalty (form.py) act."""
        return self._table.search(qvecs, k, texts)

    def brick_scores(self, qvecs: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """(queries, bricks) exact score of every brick, columns in `names` order (evals use it)."""
        return self._table.brick_scores(qvecs, texts)

    def scores(self, qvecs: np.ndarray, texts: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact brick scores and the field code (0 description, 1 example) of each brick's best row."""
        return self._table.scores(qvecs, texts)

    def score_parts(self, query: str) -> dict[str, Any]:
        """Why each brick scored what it did for `query` (best-row cosine, classifier probability,
        nearest-none-text and form penalties), {name: {...}}: what a trace shows."""
        parts = self._table.parts(self.embed_queries([query]), [query])
        return {
            n: {k: round(float(parts[k][0, b] if parts[k].ndim == 2 else parts[k][0]), 4) for k in ("cos", "p", "none", "form", "ask", "score")}
            for b, n in enumerate(self._names)
        }

    @property
    def names(self) -> list[str]:
        return list(self._names)


def mask_input(query: str, inp: str | None, token: str = "X") -> str | None:
    """`query` with its input replaced by `token`, or None when there is nothing else to score (no
    input, the input not in the query verbatim, or the query is the bare input)."""
    if not inp or not inp.strip() or inp not in query or query.strip() == inp.strip():
        return None
    return query.replace(inp, token)


def _mean_hits(a: Sequence[Hit], b: Sequence[Hit]) -> list[Hit]:
    """Hits scored by the mean of two rankings (a brick missing from one gets that ranking's lowest
    score), best first; the kind of row matched is the first ranking's."""
    sa, sb = {h.name: h for h in a}, {h.name: h for h in b}
    floor_a = min((h.score for h in a), default=0.0)
    floor_b = min((h.score for h in b), default=0.0)
    hits = []
    for name in sa.keys() | sb.keys():
        ha, hb = sa.get(name), sb.get(name)
        ref = ha or hb
        score = 0.5 * ((ha.score if ha else floor_a) + (hb.score if hb else floor_b))
        declined = bool((ha and ha.declined) or (hb and hb.declined))
        hits.append(Hit(ref.name, ref.version, float(score), ref.matched, declined))  # type: ignore[union-attr]
    return sorted(hits, key=lambda h: (-h.score, h.name))


def _wants_classifier(features: FeatureConfig, bricks: int, rows: int) -> bool:
    return features.classifier_weight > 0 and bricks >= 2 and rows <= MAX_CLASSIFIER_ROWS


def _wants_none(features: FeatureConfig) -> bool:
    """Whether an index with a classifier also keeps none vectors (classifier.none_penalty)."""
    return features.none_class and features.none_neighbour_weight > 0


def _empty_table() -> BrickTable:
    empty = np.zeros((0, 1), dtype=np.float32)
    return BrickTable([], [], [], empty, Ann("flat", empty))


def _describe(rep: SyncReport) -> str:
    parts = []
    if rep.added:
        parts.append(f"added {', '.join(rep.added)}")
    if rep.updated:
        parts.append(f"updated {', '.join(rep.updated)}")
    if rep.removed:
        parts.append(f"removed {', '.join(rep.removed)}")
    return "; ".join(parts) or "rebuilt"


def embedding_cache_path() -> Path:
    """The per-user embedding cache shared by every library (``$BRICKWORK_CACHE/embeddings.sqlite``)."""
    from brickwork.models import cache_dir

    return cache_dir() / "embeddings.sqlite"


def index_dir(store: BrickStore) -> Path:
    return Path(store.root) / INDEX_DIRNAME


def _form_of(manifest: Any) -> list[int]:
    """A brick's form region (form.py): from every text the index and classifier learn from."""
    return brick_limits([*brick_texts(manifest)[0], *classifier_texts(manifest)])


__all__ = ["BrickIndex", "Hit", "IndexReport", "SyncReport", "brick_texts", "classifier_texts", "index_dir"]

