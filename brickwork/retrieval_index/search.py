"""Brick-level search over row vectors: a brick's score is the best score of its rows.

`BrickTable` holds rows grouped by brick (contiguous, in name order) and a search structure
(`Ann`). Exact search scores every row (one matrix product) and takes each brick's maximum;
approximate search asks the ANN structure for the top rows and keeps each brick's first
(= best) row, widening the request until `k` distinct bricks are found.

With a brick classifier (`classifier.py`), a brick's score is its best row's cosine blended with
the classifier's probability of the brick, less the none-neighbour penalty when the library keeps
none vectors; approximate search scores 4k candidate bricks that way and keeps the best k.

**Asked for.** A brick whose manifest has ``bare_inputs: false`` takes any text as input (a
sentence in any language, for `language_id`), so a request to the assistant is itself a valid
input and no similarity to its inputs says the request wants this brick. Such a brick is passed
over (its score drops by `ASK_COST`, below any threshold; its hits say ``declined``) unless the
request asks for its task: the *semantic* cosine of the request to the brick's description is at
least `FeatureConfig.ask_min_cos`. The semantic part alone, because the lexical half of a vector
rewards shared characters, and an instruction names a task in any script. The test is also made on
the request's *ask view* (asking.py: the request with the input it carries taken out) and the better
cosine counts; that view is embedded only for a request whose best brick before the gate is one
that the full request fails to ask for (the one case where the view can change the decision).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from brickwork.retrieval_index import classifier as clf
from brickwork.retrieval_index.ann import Ann, AnnConfig, single_threaded_blas
from brickwork.retrieval_index.asking import ask_view


@dataclass(frozen=True, order=True)
class Hit:
    """One retrieved brick: the active version the index mirrors and its score (higher is closer):
    the cosine of its best row, blended with the brick classifier's probability when the index has one."""

    name: str
    version: int
    score: float
    #: which kind of row gave the score: the brick's description, or one of its examples
    #: (instructions and inputs it serves). The router holds each to its own threshold.
    matched: Literal["description", "example"] | None = field(default=None, compare=False)
    #: passed over: the brick must be asked for (``bare_inputs: false``) and the request does not ask
    declined: bool = field(default=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "score": round(float(self.score), 6)}


FIELD_NAMES: tuple[Literal["description", "example"], ...] = ("description", "example")
#: what a brick that must be asked for loses when the request does not ask for it (module docstring)
ASK_COST = 1.0


@dataclass(frozen=True)
class AskGate:
    """The bricks that must be asked for and the test they are held to (module docstring)."""

    bricks: np.ndarray  # (bricks,) bool
    min_cos: float
    sem_dim: int  # the semantic embedding's width at the start of each vector
    sem_scale: float  # the factor its dot products carry (features.FeatureConfig.semantic_part)
    #: texts -> their unit semantic embeddings (the index's embedder): for the requests' ask views
    #: (asking.py); None: the full request alone is tested
    embed: Callable[[Sequence[str]], np.ndarray] | None = field(default=None, compare=False)

    @classmethod
    def of(
        cls, bare_inputs: Sequence[bool], features: Any, dim: int, embed: Callable[[Sequence[str]], np.ndarray] | None = None
    ) -> AskGate | None:
        """The gate for bricks with these manifest `bare_inputs` flags, in an index of `features`
        (a `FeatureConfig`) and vectors `dim` wide; None when every brick takes bare inputs.
        `embed` embeds the requests' ask views (see `AskGate.embed`)."""
        asked = ~np.asarray(bare_inputs, bool)
        if not asked.any():
            return None
        sem_dim, scale = features.semantic_part(dim)
        return cls(bricks=asked, min_cos=features.ask_min_cos, sem_dim=sem_dim, sem_scale=scale, embed=embed)


class BrickTable:
    def __init__(
        self,
        names: Sequence[str],
        versions: Sequence[int],
        counts: Sequence[int],
        vectors: np.ndarray,
        ann: Ann,
        fields: np.ndarray | None = None,
        classifier: np.ndarray | None = None,
        classifier_weight: float = 0.0,
        none: np.ndarray | None = None,
        none_weight: float = 0.0,
        none_margin: float = 0.0,
        form: np.ndarray | None = None,
        form_weight: float = 0.0,
        form_slack: float = 1.5,
        ask: AskGate | None = None,
    ) -> None:
        self.names = list(names)
        if ask is not None and np.asarray(ask.bricks).shape != (len(self.names),):
            raise ValueError(f"ask gate {np.asarray(ask.bricks).shape} does not fit {len(self.names)} bricks")
        self.ask = ask if ask is not None and np.asarray(ask.bricks, bool).any() else None
        # each brick's acceptance region on request form, (bricks, 2): max chars, max lines (form.py)
        self.form = np.asarray(form, np.float32) if form is not None and form_weight > 0 else None
        self.form_weight, self.form_slack = form_weight, form_slack
        if self.form is not None and self.form.shape != (len(self.names), 2):
            raise ValueError(f"form limits {self.form.shape} do not fit {len(self.names)} bricks")
        # the none texts' vectors, compared with each request (classifier.none_penalty)
        self.none = none if none is not None and none_weight > 0 and len(none) else None
        self.none_weight, self.none_margin = none_weight, none_margin
        if self.none is not None and (self.none.ndim != 2 or self.none.shape[1] != vectors.shape[1]):
            raise ValueError(f"none vectors {self.none.shape} do not fit rows of dim {vectors.shape[1]}")
        self.classifier = classifier if classifier_weight > 0 else None
        self.classifier_weight = classifier_weight
        # one class per brick, in name order, and maybe a last "none" class (classifier.py)
        if self.classifier is not None and (
            self.classifier.shape[1] != vectors.shape[1] + 1 or self.classifier.shape[0] not in (len(self.names), len(self.names) + 1)
        ):
            raise ValueError(f"classifier weights {self.classifier.shape} do not fit {len(self.names)} bricks of dim {vectors.shape[1]}")
        self.fields = np.ones(len(vectors), np.int8) if fields is None else np.asarray(fields, np.int8)
        self.versions = [int(v) for v in versions]
        counts = np.asarray(counts, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if len(counts) else np.zeros(0, np.int64)
        self.row_brick = np.repeat(np.arange(len(self.names)), counts).astype(np.int64)
        self.vectors = vectors
        self.ann = ann
        if len(self.row_brick) != len(vectors):
            raise ValueError(f"row counts sum to {len(self.row_brick)}, but there are {len(vectors)} vectors")
        if (counts == 0).any():
            raise ValueError("every brick needs at least one row")
        if self.ask is not None:
            self._asked = np.flatnonzero(np.asarray(self.ask.bricks, bool))
            desc = self.starts[self._asked]  # a brick's description is its first row
            if (self.fields[desc] != 0).any():
                raise ValueError("a brick that must be asked for needs a description row")
            d = self.ask.sem_dim
            self._desc = np.ascontiguousarray(self.vectors[desc, :d], dtype=np.float32)

    @classmethod
    def build(
        cls,
        names: Sequence[str],
        versions: Sequence[int],
        counts: Sequence[int],
        vectors: np.ndarray,
        cfg: AnnConfig,
        *,
        kind: str | None = None,
        fields: np.ndarray | None = None,
    ) -> BrickTable:
        return cls(names, versions, counts, vectors, Ann.build(vectors, cfg, kind=kind), fields)

    @property
    def kind(self) -> str:
        return self.ann.kind

    def brick_scores(self, qvecs: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """(queries, bricks): every brick's exact score."""
        return self.scores(qvecs, texts)[0]

    def scores(self, qvecs: np.ndarray, texts: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(queries, bricks) exact brick scores and, for each, the field of its best row. `texts`
        (the queries as written) enable the form penalty and the ask view; without them neither applies."""
        out, fields, _ = self._scored(qvecs, texts)
        return out, fields

    def _scored(self, qvecs: np.ndarray, texts: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`scores` and which bricks were passed over for not being asked for."""
        with single_threaded_blas():
            rows = np.asarray(qvecs, dtype=np.float32) @ self.vectors.T
        best = np.maximum.reduceat(rows, self.starts, axis=1)
        # the best row of each brick: first row equal to the brick's maximum
        is_best = rows == best[:, self.row_brick]
        first = np.where(is_best, np.arange(rows.shape[1])[None, :], rows.shape[1])
        arg = np.minimum.reduceat(first, self.starts, axis=1)
        out, declined = self._blend(qvecs, best, texts=texts)
        return out, self.fields[arg], declined

    @property
    def _adjusted(self) -> bool:
        return self.classifier is not None or self.none is not None or self.form is not None or self.ask is not None

    def ask_cos(self, qvecs: np.ndarray) -> np.ndarray:
        """(queries, bricks) semantic cosine of each request to the description of each brick that
        must be asked for (NaN for the other bricks)."""
        q = np.asarray(qvecs, dtype=np.float32)
        out = np.full((len(q), len(self.names)), np.nan, np.float32)
        if self.ask is not None and len(q):
            with single_threaded_blas():
                out[:, self._asked] = (q[:, : self.ask.sem_dim] @ self._desc.T) / self.ask.sem_scale
        return out

    def declined(
        self, qvecs: np.ndarray, cols: np.ndarray | None = None, texts: Sequence[str] | None = None, pre: np.ndarray | None = None
    ) -> np.ndarray:
        """(queries, bricks or cols) whether each brick is passed over for not being asked for.
        With `texts` (and a gate that can embed) a request that fails on its full text is tested
        again on its ask view, where that can change the decision: when `pre` (the scores before
        the gate, same columns) is given, only if a failing brick scores above every other."""
        if self.ask is None:
            shape = (len(qvecs), len(self.names)) if cols is None else cols.shape
            return np.zeros(shape, bool)
        out = np.nan_to_num(self.ask_cos(qvecs), nan=np.inf) < self.ask.min_cos  # NaN: not gated
        out = out if cols is None else np.take_along_axis(out, cols, axis=1)
        if texts is None or self.ask.embed is None or not out.any():
            return out
        look = out.any(1)
        if pre is not None:
            failing = np.where(out, pre, -np.inf).max(1)
            others = np.where(out, -np.inf, pre).max(1, initial=-np.inf)
            look &= failing > others
        views = {int(i): v for i in np.flatnonzero(look) if (v := ask_view(texts[int(i)])) is not None}
        if not views:
            return out
        vv = np.asarray(self.ask.embed(list(views.values())), np.float32)
        with single_threaded_blas():
            vcos = vv @ self._desc.T / np.sqrt(self.ask.sem_scale)
        full = np.full((len(views), len(self.names)), np.inf, np.float32)
        full[:, self._asked] = vcos
        fails = full < self.ask.min_cos
        fails = fails if cols is None else np.take_along_axis(fails, cols[list(views)], axis=1)
        out = out.copy()
        rows = np.asarray(list(views), np.int64)
        out[rows] &= fails
        return out

    def parts(self, qvecs: np.ndarray, texts: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The score's parts for every brick (queries, bricks): ``cos`` (best row), ``p`` (classifier
        probability), ``none`` (nearest-none-text penalty, per query), ``form`` (form penalty),
        ``ask`` (`ASK_COST` where the brick is passed over for not being asked for), ``score`` (what
        `scores` returns). For explaining a decision; absent parts are zeros."""
        with single_threaded_blas():
            rows = np.asarray(qvecs, dtype=np.float32) @ self.vectors.T
        cos = np.maximum.reduceat(rows, self.starts, axis=1)
        n, b = cos.shape
        z = np.zeros((n, b), np.float32)
        p = clf.brick_probabilities(self.classifier, qvecs, b) if self.classifier is not None else z
        none = clf.none_penalty(qvecs, self.none, cos.max(1), self.none_weight, self.none_margin) if self.none is not None else z[:, 0]
        form = self._form_penalty(texts) if self.form is not None and texts is not None else z
        score, declined = self._blend(qvecs, cos, texts=texts)
        return {"cos": cos, "p": p, "none": none, "form": form, "ask": ASK_COST * declined.astype(np.float32), "score": score}

    def _form_penalty(self, texts: Sequence[str], cols: np.ndarray | None = None) -> np.ndarray:
        from brickwork.retrieval_index.form import form_penalty, text_form

        pen = form_penalty(text_form(texts), self.form, self.form_weight, self.form_slack)  # type: ignore[arg-type]
        return pen if cols is None else np.take_along_axis(pen, cols, axis=1)

    def _blend(
        self, qvecs: np.ndarray, cos: np.ndarray, cols: np.ndarray | None = None, texts: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores of bricks (all, or `cols` of each query: the best candidates, so the nearest row
        of all is among them) from their best-row cosines, and which were passed over for not
        being asked for (`declined`)."""
        none_declined = np.zeros(cos.shape, bool)
        if not self._adjusted or cos.shape[1] == 0:
            return cos, none_declined
        out = cos
        with single_threaded_blas():
            if self.classifier is not None:
                p = clf.brick_probabilities(self.classifier, qvecs, len(self.names))
                if cols is not None:
                    p = np.take_along_axis(p, cols, axis=1)
                out = clf.blend(cos, p, self.classifier_weight)
            if self.none is not None:
                out = out - clf.none_penalty(qvecs, self.none, cos.max(1), self.none_weight, self.none_margin)[:, None]
        if self.form is not None and texts is not None:
            out = out - self._form_penalty(texts, cols)
        if self.ask is None:
            return out, none_declined
        declined = self.declined(qvecs, cols, texts, pre=out)
        return out - ASK_COST * declined, declined

    def search(self, qvecs: np.ndarray, k: int, texts: Sequence[str] | None = None) -> list[list[Hit]]:
        if not self.names:
            return [[] for _ in range(len(qvecs))]
        k = min(k, len(self.names))
        if self.ann.kind == "flat":
            return self._exact(qvecs, k, texts)
        return self._approximate(qvecs, k, texts)

    def _hits(self, order: Sequence[int], scores: Sequence[float], fields: Sequence[int], declined: Sequence[bool] | None = None) -> list[Hit]:
        dec = declined if declined is not None else [False] * len(order)
        return [
            Hit(self.names[b], self.versions[b], float(s), FIELD_NAMES[int(f)], bool(d))
            for b, s, f, d in zip(order, scores, fields, dec, strict=True)
        ]

    def _exact(self, qvecs: np.ndarray, k: int, texts: Sequence[str] | None = None) -> list[list[Hit]]:
        out = []
        best, fields, declined = self._scored(qvecs, texts)
        for row, frow, drow in zip(best, fields, declined, strict=True):
            idx = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
            idx = idx[np.lexsort((idx, -row[idx]))]  # score desc, then name order: deterministic ties
            idx = np.asarray(_with_passed_over(idx.tolist(), row, drow), np.int64)
            out.append(self._hits(idx.tolist(), row[idx].tolist(), frow[idx].tolist(), drow[idx].tolist()))
        return out

    def _approximate(self, qvecs: np.ndarray, k: int, texts: Sequence[str] | None = None) -> list[list[Hit]]:
        qvecs = np.asarray(qvecs, dtype=np.float32)
        n_rows = len(self.vectors)
        k_out = k
        if self.classifier is not None:  # blended scores can reorder: take more candidates (the penalty cannot)
            k = min(len(self.names), 4 * k)
        want = min(n_rows, max(32, 8 * k))
        results: list[list[Hit] | None] = [None] * len(qvecs)
        pending = np.arange(len(qvecs))
        while len(pending):
            scores, ids = self.ann.search(qvecs[pending], want)
            retry = []
            for qi, srow, irow in zip(pending.tolist(), scores, ids, strict=True):
                seen: dict[int, float] = {}
                field_of: dict[int, int] = {}
                for s, r in zip(srow.tolist(), irow.tolist(), strict=True):
                    if r < 0:
                        continue
                    b = int(self.row_brick[r])
                    if b not in seen:
                        seen[b] = s
                        field_of[b] = int(self.fields[r])
                        if len(seen) == k:
                            break
                if len(seen) < k and want < n_rows:
                    retry.append(qi)
                    continue
                cand = np.asarray(sorted(seen), dtype=np.int64)
                dec_of = dict.fromkeys(cand.tolist(), False)
                if self._adjusted:
                    qt = None if texts is None else [texts[qi]]
                    blended, dec = self._blend(qvecs[qi : qi + 1], np.asarray([[seen[b] for b in cand]], np.float32), cand[None, :], qt)
                    seen = {int(b): float(s) for b, s in zip(cand, blended[0], strict=True)}
                    dec_of = dict(zip(cand.tolist(), dec[0].tolist(), strict=True))
                order = sorted(seen, key=lambda b: (-seen[b], b))
                dec_all = np.asarray([dec_of[b] for b in order], bool)
                score_of = np.asarray([seen[b] for b in order], np.float32)
                keep = _with_passed_over(list(range(min(k_out, len(order)))), score_of, dec_all)
                order = [order[i] for i in keep]
                dec = [bool(dec_all[i]) for i in keep]
                results[qi] = self._hits(order, [seen[b] for b in order], [field_of[b] for b in order], dec)
            pending = np.asarray(retry, dtype=np.int64)
            want = min(n_rows, want * 4)
        return [r or [] for r in results]


def _with_passed_over(top: list[int], scores: np.ndarray, declined: np.ndarray) -> list[int]:
    """`top` (positions into `scores`, best first), plus the best passed-over brick when, had it
    been asked for, it would have scored above all of `top`: the trace then says it was passed over."""
    if not declined.any() or not top:
        return top
    cand = np.flatnonzero(declined)
    b = int(cand[np.argmax(scores[cand])])
    if b in top or scores[b] + ASK_COST <= scores[top[0]]:
        return top
    return [*top, b]
