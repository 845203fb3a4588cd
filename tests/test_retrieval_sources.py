"""The out-of-scope sources (none_data) and the leave-one-source-out folds (evals/routing_sources)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from brickwork.evals import routing_sources as S
from brickwork.evals.routing import Query
from brickwork.retrieval_index import none_data
from brickwork.tasks import load_tasks

WRITERS = {"project-author", "helper-1", "helper-a", "helper-b", "helper-c", "helper-d", "helper-e-multilingual"}


def test_every_source_is_there_with_train_and_calib_rows():
    assert set(none_data.sources()) == WRITERS | set(S.REAL)
    for src in none_data.sources():
        splits = {r.split for r in none_data.none_rows() if r.source == src}
        assert {"train", "calib"} <= splits, src
    assert {r.split for r in none_data.none_rows()} == {"train", "calib", "report"}


def test_real_requests_are_copied_whole_and_labelled():
    rows = [json.loads(x) for x in (none_data.DATA / "requests.jsonl").read_text(encoding="utf-8").split("\n") if x.strip()]
    assert len(rows) == 1250 and len({r["id"] for r in rows}) == 1250
    tasks = set(load_tasks())
    assert all(r["scope"] is None or r["scope"] in tasks for r in rows)
    assert {r["split"] for r in rows} == {"train", "calib"}
    calib = sum(r["split"] == "calib" for r in rows) / len(rows)
    assert 0.25 < calib < 0.35
    # in-scope requests are never none texts
    assert not {t for t, _ in none_data.in_scope_requests()} & set(none_data.none_texts())


def test_none_texts_are_the_train_split_and_exclude_sources():
    all_train = none_data.none_texts()
    assert len(all_train) == len(set(all_train))
    calib = {r.text for r in none_data.none_rows() if r.split != "train"}
    assert not calib & set(all_train)
    without = none_data.none_texts(exclude={"arena-hard-v0.1"})
    arena = {r.text for r in none_data.none_rows() if r.source == "arena-hard-v0.1"}
    assert not arena & set(without) and len(without) < len(all_train)


@pytest.mark.parametrize(
    ("text", "words", "out"),
    [("Write a story about a cat", 12, "Write a story about a cat"), ("a b c d e", 3, "a b c"), ("写" * 100, 12, "写" * 80)],
)
def test_request_head(text, words, out):
    assert S.request_head(text, words) == out


# -- folds on a tiny space (no model) -------------------------------------------------------------
@pytest.fixture
def space():
    rng = np.random.default_rng(0)
    dim = 16

    def unit(n, centre):
        v = centre + 0.3 * rng.standard_normal((n, dim))
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    c = np.eye(dim, dtype=np.float32)
    rows = np.concatenate([unit(4, c[0]), unit(4, c[1])])
    owner = np.array([0] * 4 + [1] * 4)
    none_rows, none = [], []
    for k, src in enumerate(("w1", "w2", "arena-hard-v0.1")):
        for j in range(10):
            none_rows.append(none_data.NoneText(f"{src} {j}", src, "calib" if j < 3 else "train"))
        none.append(unit(10, c[4 + k]))
    queries = {h: [Query(f"{h} a{i}", "a", "bare") for i in range(5)] + [Query(f"{h} b{i}", "b", "instruction") for i in range(5)] for h in ("calib", "report")}
    qv = {h: np.concatenate([unit(5, c[0]), unit(5, c[1])]) for h in queries}
    return S.Space(
        names=["a", "b"], rows=rows, owner=owner, fields=np.array([0, 1, 1, 1] * 2, np.int8), aug=rows, aug_owner=owner,
        none=np.concatenate(none), none_rows=tuple(none_rows), queries=queries, qvecs=qv, heads={},
    )


def test_a_held_out_source_is_neither_trained_nor_calibrated_on(space):
    folds = S.Folds(space)
    d = S.Design(name="t")
    for src in ("w1", "w2", "arena-hard-v0.1"):
        src_rows = np.array([r.source == src for r in space.none_rows])
        assert not (folds.train_mask(d, src) & src_rows).any()
        assert not (folds.calib_mask(d, src) & src_rows).any()
        assert (folds.train_mask(d, src) & ~src_rows).any()
    no_real = S.Design(name="t", real_requests=False)
    real = np.array([r.source in S.REAL for r in space.none_rows])
    assert not (folds.train_mask(no_real, None) & real).any()


def test_leave_one_source_out_reports_every_source_held_out_and_the_worst(space):
    r = S.leave_one_source_out(S.Folds(space), S.Design(name="t"), ["w1", "w2", "arena-hard-v0.1"])
    assert all(e["held_out"] for e in r["per_source"].values())
    assert r["worst_to_base"] == min(e["to_base"] for e in r["per_source"].values())
    assert r["worst_source"] in r["per_source"]
    assert set(r["folds"]) == {"w1", "w2", "arena-hard-v0.1"}
    # the fit on every source has seen them all: its per-source rows are marked unseen only for none
    assert all(e["n_unseen_rows"] == 0 for e in r["all_sources"]["sources"].values())
    lines = S.to_markdown({"shipped": r})
    assert any("Worst held-out source" in x for x in lines)


def test_score_matches_the_index_blend(space):
    from brickwork.retrieval_index import classifier as clf

    folds = S.Folds(space)
    d = S.Design(name="t")
    w, kept = folds.fit(d, None)
    q = space.qvecs["report"]
    got, _ = folds.score(d, None, q, [x.text for x in space.queries["report"]])
    cos = np.stack([(q @ space.rows[space.owner == b].T).max(1) for b in range(2)], 1)
    want = clf.blend(cos, clf.brick_probabilities(w, q, 2), d.beta) - clf.none_penalty(q, kept, cos.max(1), d.gamma, d.delta)[:, None]
    assert np.allclose(got, want, atol=1e-6)
