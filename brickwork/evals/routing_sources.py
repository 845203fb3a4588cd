"""Leave-one-source-out routing: out-of-scope requests of a source no part of the router saw.

The none texts come from several sources (`retrieval_index.none_data`: seven writers of this
project and three parts of Arena-Hard, real user prompts). A router that learned from a source
(its none class, its nearest-none-text penalty) and whose threshold was fitted on that source's
calib rows rejects that source's other requests far better than it rejects a new source's: the
figure that predicts real traffic is the one on a source it never saw. So for each source ``S``:

1. the brick classifier's none class and the penalty's none vectors are the *train* rows of every
   other source (the library's bricks as they are);
2. the threshold is fitted, with the eval's rule (`routing.calibrate_thresholds`), on the calib
   half of the in-scope queries and the *calib* rows of every other source;
3. every row of ``S`` (train, calib and report) is routed; OOS→base of ``S`` is held out. The
   in-scope report half is routed by the same fold router (its in-scope→base is held out too:
   no in-scope report query is ever trained or calibrated on).

The headline is the worst source. Designs (`Design`) are compared on the same folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

#: sources of real user requests (the rest were written for this project)
REAL = ("arena-hard-v0.1", "arena-hard-v2.0-hard-prompt", "arena-hard-v2.0-creative-writing")


@dataclass(frozen=True, kw_only=True)
class Design:
    """One way of building the router, evaluated fold by fold."""

    name: str
    beta: float = 0.8  # classifier weight (FeatureConfig.classifier_weight)
    gamma: float = 2.0  # nearest-none-text penalty weight
    delta: float = 0.05  # and margin
    none_weight: float = 1.0  # the none class's total sample weight, in average bricks
    real_requests: bool = True  # real user requests among the none training texts
    #: the request's opening words scored too (`head`): "min" or "mean" of a brick's two scores; "" off
    head: str = ""
    head_words: int = 12
    #: the none class and penalty also learn the openings of the none texts
    train_heads: bool = False
    #: the form penalty (retrieval_index/form.py): weight (0 off) and slack
    form_weight: float = 0.0
    form_slack: float = 1.0
    #: bricks with ``bare_inputs: false`` must be asked for (retrieval_index/search.py); None: no gate
    ask_min_cos: float | None = None
    #: the router before real requests: every written none row trained (calib ones too), threshold
    #: fitted on out_of_scope.jsonl's calib half only; no written source is held out
    legacy: bool = False

    @classmethod
    def of(cls, features: Any, *, name: str) -> Design:
        """The design an index with these `FeatureConfig` settings scores with."""
        f = features
        return cls(name=name, beta=f.classifier_weight, gamma=f.none_neighbour_weight, delta=f.none_neighbour_margin,
                   form_weight=f.form_weight, form_slack=f.form_slack, ask_min_cos=f.ask_min_cos)


@dataclass
class Space:
    """Everything in the index's vector space, computed once: brick rows and classifier texts, every
    none row, the in-scope queries of both halves."""

    names: list[str]
    rows: np.ndarray
    owner: np.ndarray
    fields: np.ndarray
    aug: np.ndarray
    aug_owner: np.ndarray
    none: np.ndarray  # one vector per none_data.none_rows() row
    none_rows: tuple[Any, ...]
    queries: dict[str, list[Any]]  # half -> in-scope Query list
    qvecs: dict[str, np.ndarray]
    heads: dict[int, dict[str, np.ndarray]]  # head_words -> {"none": ..., half: ...} vectors of the openings
    limits: np.ndarray | None = None  # (bricks, 2) each brick's form region (form.brick_limits of its texts)
    bare_inputs: np.ndarray | None = None  # (bricks,) the manifests' `bare_inputs`
    features: Any = None  # the FeatureConfig the vectors were built with
    embed: Any = None  # texts -> unit semantic embeddings (the ask views, retrieval_index/asking.py)


def build_space(rows: dict[str, Any], emb: Any, cache: Any, features: Any, halves: dict[str, list[Any]]) -> Space:
    """`rows` as `routing.eval_rows` returns it; `halves` the eval's queries (out-of-scope dropped)."""
    from brickwork.retrieval_index import none_data
    from brickwork.retrieval_index.features import combine

    from brickwork.evals.routing import form_limits

    nr = none_data.none_rows()
    texts = [r.text for r in nr]
    qs = {h: [q for q in v if q.set != "out_of_scope"] for h, v in halves.items()}
    return Space(
        names=list(rows["names"]),
        rows=combine(rows["sem"], rows["texts"], features),
        owner=np.asarray(rows["owner"]),
        fields=np.asarray(rows["fields"]),
        aug=combine(rows["aug_sem"], rows["aug_texts"], features),
        aug_owner=np.asarray(rows["aug_owner"]),
        none=combine(cache.embed(emb, texts), texts, features),
        none_rows=nr,
        queries=qs,
        qvecs={h: combine(cache.embed(emb, [q.text for q in v]), [q.text for q in v], features) for h, v in qs.items()},
        heads={},
        limits=form_limits(rows),
        bare_inputs=np.asarray(rows["bare_inputs"], bool),
        features=features,
        embed=rows["embed"],
    )


def request_head(text: str, words: int = 12, max_chars: int = 80) -> str:
    """The opening of a request: its first `words` words, at most `max_chars` characters (scripts
    written without spaces). A request says what it wants first ("Write a story about ...");
    a long text's opening alone shows that where its whole embedding reads like a review."""
    toks = text.split()
    head = " ".join(toks[:words])
    return head[:max_chars].rstrip() if len(head) > max_chars else head


def add_heads(space: Space, emb: Any, cache: Any, features: Any, words: int) -> None:
    from brickwork.retrieval_index.features import combine

    def vec(texts: list[str]) -> np.ndarray:
        hs = [request_head(t, words) for t in texts]
        return combine(cache.embed(emb, hs), hs, features)

    space.heads[words] = {"none": vec([r.text for r in space.none_rows]), **{h: vec([q.text for q in v]) for h, v in space.queries.items()}}


class Folds:
    """Fits and scores the router of each fold; fits are shared between designs that differ only in
    how scores are combined (beta, gamma, delta)."""

    def __init__(self, space: Space) -> None:
        self.space = space
        self._fits: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}

    def train_mask(self, d: Design, held_out: str | None) -> np.ndarray:
        nr = self.space.none_rows
        if d.legacy:
            return np.array([r.source not in REAL and r.split != "report" and not _eval_row(r) for r in nr])
        return np.array([r.split == "train" and r.source != held_out and (d.real_requests or r.source not in REAL) for r in nr])

    def calib_mask(self, d: Design, held_out: str | None) -> np.ndarray:
        nr = self.space.none_rows
        if d.legacy:
            return np.array([_eval_row(r) and r.split == "calib" for r in nr])
        return np.array([r.split == "calib" and r.source != held_out and (d.real_requests or r.source not in REAL) for r in nr])

    def fit(self, d: Design, held_out: str | None) -> tuple[np.ndarray, np.ndarray]:
        from brickwork.retrieval_index import classifier as clf

        key = (d.legacy, d.real_requests, d.none_weight, held_out, d.train_heads and d.head_words)
        if key not in self._fits:
            s = self.space
            idx = _first_of_each_text(s.none_rows, self.train_mask(d, held_out))
            none = s.none[idx]
            if d.train_heads:
                none = np.concatenate([none, s.heads[d.head_words]["none"][idx]])
            w = clf.fit_library(s.rows, s.owner, s.aug, s.aug_owner, len(s.names), none, none_weight=d.none_weight)
            self._fits[key] = (w, clf.kept_none(none, s.rows))
        return self._fits[key]

    def score(self, d: Design, held_out: str | None, q: np.ndarray, texts: Sequence[str], qh: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(queries, bricks) scores and the field of the top brick's best row, computed by the
        product's own `BrickTable` on this fold's fit; with `qh` (the vectors of the queries'
        openings) and `d.head`, both views combined."""
        table = self.table(d, held_out)
        out, fl = table.scores(q, texts)
        if d.head and qh is not None:
            oh, _ = table.scores(qh, [request_head(t, d.head_words) for t in texts])
            out = np.minimum(out, oh) if d.head == "min" else 0.5 * (out + oh)
        return out, fl[np.arange(len(out)), out.argmax(1)] if len(out) else fl[:, 0]

    def table(self, d: Design, held_out: str | None) -> Any:
        """The index's scoring structure for this fold (rows as the library has them, this fold's
        classifier and none vectors, the design's weights)."""
        from brickwork.retrieval_index.ann import Ann
        from brickwork.retrieval_index.search import AskGate, BrickTable

        s = self.space
        w, kept = self.fit(d, held_out)
        counts = np.bincount(s.owner, minlength=len(s.names))
        return BrickTable(
            s.names, [1] * len(s.names), counts, s.rows, Ann("flat", s.rows), s.fields,
            classifier=w, classifier_weight=d.beta, none=kept, none_weight=d.gamma, none_margin=d.delta,
            form=s.limits, form_weight=d.form_weight, form_slack=d.form_slack,
            ask=None if d.ask_min_cos is None else AskGate.of(s.bare_inputs, replace(s.features, ask_min_cos=d.ask_min_cos), s.rows.shape[1], s.embed),
        )


def _eval_row(r: Any) -> bool:
    """A row of out_of_scope.jsonl (the eval's own set): project author, calib or report split."""
    return r.source == "project-author" and r.split in ("calib", "report")


def _first_of_each_text(rows: Sequence[Any], mask: np.ndarray) -> np.ndarray:
    """Indices of the masked rows, a text's first row only (as `none_data.none_texts` dedups)."""
    seen: set[str] = set()
    out = []
    for i, (r, m) in enumerate(zip(rows, mask, strict=True)):
        if m and r.text not in seen:
            seen.add(r.text)
            out.append(i)
    return np.asarray(out, dtype=np.int64)


def run_fold(folds: Folds, d: Design, held_out: str | None) -> dict[str, Any]:
    """One fold: the router that never saw `held_out` (None: every source seen, the shipped fit)."""
    from brickwork.evals.routing import Query, calibrate_thresholds, metrics, to_base

    s = folds.space
    cm = folds.calib_mask(d, held_out)
    oos_calib = [Query(r.text, None, "out_of_scope", r.near) for r, m in zip(s.none_rows, cm, strict=True) if m]
    hv = s.heads.get(d.head_words, {}) if d.head else {}
    qv = np.concatenate([s.qvecs["calib"], s.none[cm]])
    qh = np.concatenate([hv["calib"], hv["none"][cm]]) if hv else None
    calib_q = [*s.queries["calib"], *oos_calib]
    sc, fl = folds.score(d, held_out, qv, [q.text for q in calib_q], qh)
    thr, cal = calibrate_thresholds(sc, fl, calib_q, single=True)
    rep_sc, rep_fl = folds.score(d, held_out, s.qvecs["report"], [q.text for q in s.queries["report"]], hv.get("report"))
    report = metrics(rep_sc, s.queries["report"], s.names, to_base(rep_sc, rep_fl, thr))
    per_source: dict[str, dict[str, Any]] = {}
    all_sc, all_fl = folds.score(d, held_out, s.none, [r.text for r in s.none_rows], hv.get("none"))
    based = to_base(all_sc, all_fl, thr)
    train, calib = folds.train_mask(d, held_out), cm
    for src in dict.fromkeys(r.source for r in s.none_rows):
        m = np.array([r.source == src for r in s.none_rows])
        seen = bool((train & m).any() or (calib & m).any())
        unseen = m & ~train & ~calib  # rows of the source this router neither trained nor calibrated on
        per_source[src] = {
            "n": int(m.sum()),
            "held_out": not seen,
            "to_base": float(based[m].mean()),
            "n_unseen_rows": int(unseen.sum()),
            "unseen_rows_to_base": float(based[unseen].mean()) if unseen.any() else None,
            "routed_to": _routed_to(all_sc[m & ~based], s.names),
        }
    return {"held_out": held_out, "threshold": thr[0], "calibration": cal, "n_calib_oos": len(oos_calib), "report": report, "sources": per_source}


def _routed_to(sc: np.ndarray, names: list[str]) -> dict[str, int]:
    c: dict[str, int] = {}
    for b in sc.argmax(1) if len(sc) else []:
        c[names[b]] = c.get(names[b], 0) + 1
    return dict(sorted(c.items(), key=lambda kv: -kv[1])[:4])


def leave_one_source_out(folds: Folds, d: Design, sources: Sequence[str]) -> dict[str, Any]:
    """Every source held out in turn (legacy design: only the real-request sources, which it never
    saw; the written ones it trained on are reported as seen), plus the fit on every source."""
    shipped = run_fold(folds, d, None)
    per: dict[str, Any] = {}
    folds_out: dict[str, Any] = {}
    for src in sources:
        if d.legacy:
            r = shipped
        else:
            r = run_fold(folds, d, src)
            folds_out[src] = {k: r[k] for k in ("threshold", "calibration", "report")}
        e = r["sources"][src]
        per[src] = {**e, "threshold": r["threshold"]}
    held = {k: v for k, v in per.items() if v["held_out"]}
    worst = min(held, key=lambda k: held[k]["to_base"]) if held else None
    reports = [f["report"] for f in folds_out.values()] or [shipped["report"]]
    return {
        "design": d.__dict__,
        "per_source": per,
        "worst_source": worst,
        "worst_to_base": held[worst]["to_base"] if worst else None,
        "mean_held_out_to_base": float(np.mean([v["to_base"] for v in held.values()])) if held else None,
        "folds": folds_out,
        # in-scope figures of the fold routers (report half; never trained or calibrated on)
        "fold_report_worst": {
            "instruction_to_base": max(r["instruction"]["to_base"] for r in reports),
            "bare_to_base": max(r["bare"]["to_base"] for r in reports),
            "instruction_top1": min(r["instruction"]["top1"] for r in reports),
            "bare_top1": min(r["bare"]["top1"] for r in reports),
        },
        "all_sources": {k: shipped[k] for k in ("threshold", "calibration", "report", "n_calib_oos")}
        | {"sources": {k: {kk: v[kk] for kk in ("n", "to_base", "n_unseen_rows", "unseen_rows_to_base")} for k, v in shipped["sources"].items()}},
    }


def _f(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def to_markdown(loso: dict[str, Any]) -> list[str]:
    """The leave-one-source-out tables of the eval's report."""
    ship, before = loso["shipped"], loso.get("before")
    lines = [
        "## Leave one source out (headline)",
        "",
        "Each out-of-scope source is routed by a router whose none class, nearest-none-text penalty and threshold "
        "never saw it (*held out*); *seen* means the router trained or calibrated on that source. In-scope figures "
        "of the fold routers are on the report half (never trained or calibrated on): the worst fold is shown.",
        "",
        f"**Worst held-out source: {ship['worst_source']} → base {_f(ship['worst_to_base'])}** "
        f"(mean over held-out sources {_f(ship['mean_held_out_to_base'])}).",
        "",
        "| source | rows | shipped design: OOS→base (held out) | fold threshold | routed instead to (top) |"
        + (" before: OOS→base | before: held out? |" if before else ""),
        "|---|---|---|---|---|" + ("---|---|" if before else ""),
    ]
    for src, e in ship["per_source"].items():
        routed = ", ".join(f"{k} {v}" for k, v in e["routed_to"].items()) or "—"
        row = f"| {src} | {e['n']} | {_f(e['to_base'])}{'' if e['held_out'] else ' (seen)'} | {e['threshold']:.3f} | {routed} |"
        if before:
            b = before["per_source"][src]
            row += f" {_f(b['to_base'])} | {'held out' if b['held_out'] else 'seen'} |"
        lines.append(row)
    fr = ship["fold_report_worst"]
    lines += [
        "",
        "Fold routers, report half, worst fold: "
        f"instruction→base {_f(fr['instruction_to_base'])}, bare→base {_f(fr['bare_to_base'])}, "
        f"instruction top-1 {_f(fr['instruction_top1'])}, bare top-1 {_f(fr['bare_top1'])}.",
    ]
    al = ship["all_sources"]
    lines += [
        "",
        f"Router fitted on every source (the shipped one; threshold {al['threshold']:.3f}, calibrated on "
        f"{al['n_calib_oos']} calib out-of-scope rows): OOS→base per source on *seen* sources (all rows; in brackets "
        "the rows it neither trained nor calibrated on):",
        "",
        "| source | rows | OOS→base (seen) | unseen rows of a seen source → base |",
        "|---|---|---|---|",
    ]
    for src, e in al["sources"].items():
        lines.append(f"| {src} | {e['n']} | {_f(e['to_base'])} | {_f(e['unseen_rows_to_base'])} ({e['n_unseen_rows']}) |")
    return lines
