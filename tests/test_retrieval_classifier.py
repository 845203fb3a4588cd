"""The brick classifier blended into brick scores: the fit itself, the score formula as the index
computes it, persistence and upgrade of indexes built before it, and the routing eval's
agreement with the index (the eval refuses to report when its scoring differs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from brickwork.retrieval_index import BrickIndex, FeatureConfig, classifier as clf, persist
from brickwork.retrieval_index.ann import Ann
from brickwork.retrieval_index.index import classifier_texts
from brickwork.retrieval_index.search import BrickTable


def _clusters(n_per: int = 30, dim: int = 24, k: int = 3, noise: float = 0.6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    x = np.concatenate([c + noise * rng.normal(size=(n_per, dim)) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(k), n_per)


# -- the fit ---------------------------------------------------------------------------------------
def test_fit_separates_classes_and_generalises():
    x, y = _clusters(seed=0)
    w = clf.fit(x, y, 3)
    assert w.shape == (3, x.shape[1] + 1) and w.dtype == np.float32
    xt, yt = _clusters(seed=0, n_per=200)[0][::7], _clusters(seed=0, n_per=200)[1][::7]  # same centres, new points
    p = clf.probabilities(w, xt)
    assert np.allclose(p.sum(1), 1.0, atol=1e-5)
    assert (p.argmax(1) == yt).mean() > 0.9


def test_fit_is_deterministic_and_l2_shrinks_weights():
    x, y = _clusters(seed=1)
    assert np.array_equal(clf.fit(x, y, 3), clf.fit(x, y, 3))
    assert np.abs(clf.fit(x, y, 3, l2=1.0)[:, :-1]).sum() < np.abs(clf.fit(x, y, 3, l2=0.001)[:, :-1]).sum()


def test_one_class_needs_no_fit():
    x, y = _clusters(k=1)
    w = clf.fit(x, y, 1)
    assert np.allclose(clf.probabilities(w, x), 1.0)


@pytest.mark.parametrize(
    ("cos", "p", "beta", "expected"),
    [(0.5, 1.0, 0.4, (0.5 + 0.4) / 1.4), (0.5, 0.0, 0.4, 0.5 / 1.4), (0.7, 0.3, 0.0, 0.7), (1.0, 1.0, 2.0, 1.0)],
)
def test_blend_formula(cos, p, beta, expected):
    assert clf.blend(np.array([[cos]]), np.array([[p]]), beta)[0, 0] == pytest.approx(expected, abs=1e-6)


def test_training_texts_pair_description_with_each_example():
    assert clf.training_texts(" Add two numbers. ", ["1 + 2", "3 + 4"]) == ["Add two numbers. 1 + 2", "Add two numbers. 3 + 4"]
    assert clf.training_texts("", ["x"]) == []


def test_feature_config_validates_and_requires_the_classifier_key():
    from brickwork.errors import ConfigError

    with pytest.raises(ConfigError, match="classifier_weight"):
        FeatureConfig(classifier_weight=-0.1)
    with pytest.raises(KeyError):  # an index from before the classifier is incomplete, hence rebuilt
        FeatureConfig.from_json({"lexical_weight": 0.5, "lexical_dim": 512})


# -- the table -------------------------------------------------------------------------------------
def test_table_scores_are_the_blend_of_best_row_and_probability():
    x, y = _clusters(n_per=5, k=3, seed=2)
    w = clf.fit(x, y, 3)
    plain = BrickTable(["a", "b", "c"], [1, 1, 1], [5, 5, 5], x, Ann("flat", x))
    blended = BrickTable(["a", "b", "c"], [1, 1, 1], [5, 5, 5], x, Ann("flat", x), classifier=w, classifier_weight=0.4)
    q = _clusters(n_per=3, k=3, seed=2, noise=0.9)[0]
    cos, _ = plain.scores(q)
    got, _ = blended.scores(q)
    assert np.allclose(got, clf.blend(cos, clf.probabilities(w, q), 0.4), atol=1e-6)
    hits = blended.search(q, 3)
    assert [h.score for h in hits[0]] == sorted((h.score for h in hits[0]), reverse=True)
    assert hits[0][0].score == pytest.approx(float(got[0].max()), abs=1e-6)
    with pytest.raises(ValueError, match="classifier weights"):
        BrickTable(["a"], [1], [15], x, Ann("flat", x), classifier=w, classifier_weight=0.4)  # 3 classes: not 1 (+ none)
    # a last "none" class is not a brick: scores blend the bricks' probabilities under it
    with_none = BrickTable(["a", "b"], [1, 1], [5, 10], x, Ann("flat", x), classifier=w, classifier_weight=0.4)
    cos2, _ = BrickTable(["a", "b"], [1, 1], [5, 10], x, Ann("flat", x)).scores(q)
    assert np.allclose(with_none.scores(q)[0], clf.blend(cos2, clf.probabilities(w, q)[:, :2], 0.4), atol=1e-6)


def test_none_class_lowers_brick_probabilities_off_scope_and_yields_to_bricks():
    x, y = _clusters(n_per=40, k=4, seed=3)
    bricks, none = y < 3, y == 3
    half = np.arange(len(y)) % 2 == 0
    w = clf.fit_library(x[bricks & half], y[bricks & half], x[:0], y[:0], 3, x[none & half])
    assert w.shape == (4, x.shape[1] + 1)
    p = clf.probabilities(w, x[~half])
    held_y = y[~half]
    assert (p[held_y == 3, 3] > 0.5).mean() > 0.9  # unseen out-of-scope points: mostly "none"
    assert (p[held_y < 3].argmax(1) == held_y[held_y < 3]).mean() > 0.9  # bricks still win their own
    # a none text a brick's rows describe (cosine >= NONE_MAX_COS) is left out: the brick keeps it
    rows = x[bricks & half]
    w2 = clf.fit_library(rows, y[bricks & half], x[:0], y[:0], 3, rows[:20])
    assert (clf.probabilities(w2, rows[:20]).argmax(1) == y[bricks & half][:20]).all()


def test_none_class_setting_is_validated():
    from brickwork.errors import ConfigError

    with pytest.raises(ConfigError, match="none_class"):
        FeatureConfig(none_class="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="none_neighbour_weight"):
        FeatureConfig(none_neighbour_weight=-1.0)
    with pytest.raises(ConfigError, match="none_neighbour_margin"):
        FeatureConfig(none_neighbour_margin=2.0)
    with pytest.raises(KeyError):  # an index from before the none neighbours is incomplete, hence rebuilt
        FeatureConfig.from_json({k: v for k, v in FeatureConfig().to_json().items() if k != "none_neighbour_weight"})


def test_none_penalty_is_the_excess_of_the_nearest_none_text_over_the_nearest_row():
    q = np.eye(3, dtype=np.float32)[:2]
    none = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]], np.float32)
    # query 0 is the first none text (n = 1), query 1 is 0.8 from the second one
    got = clf.none_penalty(q, none, np.array([0.5, 0.9]), 2.0, 0.1)
    assert got == pytest.approx([2.0 * (1.0 - 0.5 - 0.1), 0.0], abs=1e-6)  # query 1: its row is nearer
    assert clf.none_penalty(q, none, np.array([0.5, 0.5]), 1.0, 0.1)[1] == pytest.approx(0.8 - 0.5 - 0.1, abs=1e-6)
    assert not clf.none_penalty(q, none, np.zeros(2), 0.0, 0.0).any()  # weight 0: off
    assert not clf.none_penalty(q, none[:0], np.zeros(2), 1.0, 0.0).any()  # no none texts kept
    rows = np.array([[1.0, 0.0, 0.0]], np.float32)
    assert clf.kept_none(none, rows).tolist() == [none[1].tolist()]  # the first is a brick's own row


def test_table_none_penalty_lowers_every_brick_alike():
    x, _ = _clusters(n_per=5, k=3, seed=4)
    none = _clusters(n_per=4, k=1, seed=5)[0]
    plain = BrickTable(["a", "b", "c"], [1, 1, 1], [5, 5, 5], x, Ann("flat", x))
    penalised = BrickTable(["a", "b", "c"], [1, 1, 1], [5, 5, 5], x, Ann("flat", x), none=none, none_weight=1.0, none_margin=0.05)
    q = np.concatenate([none[:2], x[::5]])
    cos, _ = plain.scores(q)
    got, _ = penalised.scores(q)
    drop = clf.none_penalty(q, none, cos.max(1), 1.0, 0.05)
    assert np.allclose(got, cos - drop[:, None], atol=1e-6)
    assert (drop[:2] > 0).all() and not drop[2:].any()  # none texts themselves drop; the bricks' own rows do not
    assert (got.argmax(1) == cos.argmax(1)).all()  # the ranking is unchanged
    assert penalised.search(q, 1)[0][0].score == pytest.approx(float(got[0].max()), abs=1e-6)
    off = BrickTable(["a", "b", "c"], [1, 1, 1], [5, 5, 5], x, Ann("flat", x), none=none, none_weight=0.0)
    assert np.array_equal(off.scores(q)[0], cos)
    with pytest.raises(ValueError, match="none vectors"):
        BrickTable(["a", "b", "c"], [1, 1, 1], [5, 5, 5], x, Ann("flat", x), none=none[:, :5], none_weight=1.0)


def test_shipped_none_data_is_apart_from_the_eval():
    from brickwork.evals.routing import ROUTING_DATA

    texts = clf.none_texts()
    assert len(texts) >= 300 and len(set(texts)) == len(texts)
    evals = set()
    for f in ("out_of_scope.jsonl", "instructions.jsonl"):
        evals |= {json.loads(line)["text"].strip().lower() for line in (ROUTING_DATA / f).read_text().splitlines() if line.strip()}
    assert not {t.strip().lower() for t in texts} & evals


# -- the index (hash embedder: no model) ----------------------------------------------------------
@pytest.fixture
def lib(library, base):
    from tests.conftest import add_starter_manifests

    return add_starter_manifests(library, base)


def test_index_fits_persists_and_uses_the_classifier(lib):
    index = BrickIndex.build(lib, embedder="hash:64", use_cache=False)
    gen = persist.read(index.dir)
    assert gen is not None and gen.classifier is not None
    assert gen.classifier.shape == (4 + 1, index.features.dim(64) + 1)  # 4 bricks and the none class
    reopened = BrickIndex.open(lib, use_cache=False)
    assert not reopened.repairs
    qs = ["What's 91 minus 17?", "Peru", "WIN a FREE iPhone now, txt 8080"]
    qv = reopened.embed_queries(qs)
    got, _ = reopened.scores(qv)
    plain = BrickIndex.build(lib, embedder="hash:64", features=FeatureConfig(classifier_weight=0.0), use_cache=False)
    assert persist.read(plain.dir).classifier is None  # type: ignore[union-attr]
    cos, _ = plain.scores(qv)
    f = index.features
    assert gen.none is not None and gen.none.shape[1] == f.dim(64) and 0 < len(gen.none) <= len(clf.none_texts())
    drop = clf.none_penalty(qv, gen.none, cos.max(1), f.none_neighbour_weight, f.none_neighbour_margin)
    assert np.allclose(got, clf.blend(cos, clf.probabilities(gen.classifier, qv)[:, :4], f.classifier_weight) - drop[:, None], atol=1e-5)
    without_none = BrickIndex.build(lib, embedder="hash:64", features=FeatureConfig(none_class=False), use_cache=False)
    assert persist.read(without_none.dir).classifier.shape == (4, index.features.dim(64) + 1)  # type: ignore[union-attr]
    assert persist.read(without_none.dir).none is None  # type: ignore[union-attr]
    no_neighbours = BrickIndex.build(lib, embedder="hash:64", features=FeatureConfig(none_neighbour_weight=0.0), use_cache=False)
    assert persist.read(no_neighbours.dir).none is None  # type: ignore[union-attr]
    # every brick's classifier training texts come from its manifest: one per example, then its routing samples
    m = lib.get("english_plural").manifest
    assert len(classifier_texts(m.replace(routing_samples=[]))) == len({e.strip() for e in m.examples})


def test_routing_samples_train_the_classifier_and_are_never_index_rows(lib):
    from brickwork.retrieval_index.index import brick_texts

    m = lib.get("english_plural").manifest
    assert m.routing_samples  # starter manifests carry them
    bare = m.replace(routing_samples=[])
    assert brick_texts(m) == brick_texts(bare)  # the index embeds the same rows
    assert classifier_texts(m)[: len(classifier_texts(bare))] == classifier_texts(bare)
    added = m.replace(routing_samples=["zebra crossing", " zebra crossing ", m.examples[-1], "quagga"])
    assert classifier_texts(added) == [*classifier_texts(bare), "zebra crossing", "quagga"]  # deduplicated
    index = BrickIndex.build(lib, embedder="hash:64", use_cache=False)
    q = index.embed_queries(["zebra crossing", "quagga"])
    before, rows = index.scores(q)[0], index.rows
    lib.add(lib.get("english_plural").path, added)  # a new version: same rows, new classifier texts
    after_index = BrickIndex.open(lib, use_cache=False)
    assert after_index.rows == rows and after_index.state["english_plural"] == 2
    after = after_index.scores(q)[0]
    b = after_index.names.index("english_plural")
    assert (after[:, b] > before[:, b]).all()  # the brick's classifier learned its new samples


def test_index_from_before_the_classifier_is_rebuilt(lib):
    index = BrickIndex.build(lib, embedder="hash:64", use_cache=False)
    meta_path = index.dir / persist.current_name(index.dir) / "meta.json"  # type: ignore[operator]
    meta = json.loads(meta_path.read_text())
    del meta["features"]["classifier_weight"]
    meta_path.write_text(json.dumps(meta))
    assert not BrickIndex.open(lib, repair=False, use_cache=False).check().ok
    again = BrickIndex.open(lib, use_cache=False)
    assert again.repairs and again.check().ok
    assert persist.read(again.dir).classifier is not None  # type: ignore[union-attr]
    assert again.embedder_spec == index.embedder_spec == "hash:64"  # rebuilt with the embedder it had


def test_index_fitted_on_other_none_texts_is_refitted(lib, monkeypatch):
    index = BrickIndex.build(lib, embedder="hash:64", use_cache=False)
    before = persist.read(index.dir)
    assert before is not None and before.meta["none_data"] == clf.none_fingerprint()
    shipped = clf.none_texts()
    monkeypatch.setattr(clf, "none_texts", lambda: shipped + ("Suggest a name for my new goldfish.",))
    stale = BrickIndex.open(lib, repair=False, use_cache=False).check()
    assert not stale.ok and any("none-class texts changed" in p for p in stale.problems)
    again = BrickIndex.open(lib, use_cache=False)
    assert any("none-class texts changed" in r for r in again.repairs) and again.check().ok
    after = persist.read(again.dir)
    assert after is not None and after.meta["none_data"] == clf.none_fingerprint() != before.meta["none_data"]
    assert not np.allclose(after.classifier, before.classifier)  # type: ignore[arg-type]


# -- the eval agrees with the index ---------------------------------------------------------------
@pytest.mark.integration
def test_routing_eval_scores_exactly_as_the_index(lib, tmp_path):
    from brickwork.evals.routing import run

    BrickIndex.build(lib)  # the default embedder and features (classifier on)
    r = run(library=lib.root, out=tmp_path / "out", bare_per_task=10, per_template=1)  # raises if scoring differs
    shipped = r["shipped"]
    assert shipped["index"]["features"]["classifier_weight"] == 0.8 and shipped["index"]["features"]["none_class"]
    assert shipped["report"]["instruction"]["top1"] > 0.8 and shipped["report"]["bare"]["top1"] > 0.5
    names = set(r["variants"])
    assert {"hybrid w=0.5, max + classifier beta=0.4", "hybrid w=0.5, all rows, max"} <= names
    saved = json.loads((tmp_path / "out" / "router.json").read_text())
    assert saved["calibration"]["features"]["classifier_weight"] == 0.8


# -- a step's input masked: what is asked counts as much as what it is about -----------------------
def test_mask_input_only_when_something_else_is_asked():
    from brickwork.retrieval_index.index import mask_input

    assert mask_input("spell out Kabul", "Kabul") == "spell out X"
    assert mask_input("Kabul", "Kabul") is None and mask_input(" Kabul ", "Kabul") is None  # the bare input
    assert mask_input("spell out Kabul", None) is None and mask_input("spell out Kabul", "Lima") is None


def test_search_with_inputs_blends_the_masked_request(lib):
    from brickwork.errors import ConfigError

    index = BrickIndex.build(lib, embedder="hash:64", use_cache=False)
    q, inp = "give the plural of Peru", "Peru"
    full = {h.name: h.score for h in index.search(q, k=4)}
    masked = {h.name: h.score for h in index.search("give the plural of X", k=4)}
    [blended] = index.search_batch([q], k=4, inputs=[inp])
    for h in blended:
        assert h.score == pytest.approx((full[h.name] + masked[h.name]) / 2, abs=1e-5)
    assert [h.score for h in blended] == sorted((h.score for h in blended), reverse=True)
    assert index.search_batch([q, "Peru"], k=2, inputs=[None, "Peru"]) == index.search_batch([q, "Peru"], k=2)
    with pytest.raises(ConfigError, match="one entry per query"):
        index.search_batch([q], inputs=[])


def test_index_missing_its_none_vectors_is_rebuilt(lib):
    index = BrickIndex.build(lib, embedder="hash:64", use_cache=False)
    gdir = index.dir / persist.current_name(index.dir)  # type: ignore[operator]
    meta = json.loads((gdir / "meta.json").read_text())
    del meta["checksums"]["none.npy"]  # a generation written without them (checksums still hold)
    (gdir / "meta.json").write_text(json.dumps(meta))
    report = BrickIndex.open(lib, repair=False, use_cache=False).check()
    assert not report.ok and any("lacks the none vectors" in p for p in report.problems)
    again = BrickIndex.open(lib, use_cache=False)
    assert again.repairs and again.check().ok and persist.read(again.dir).none is not None  # type: ignore[union-attr]
    assert sorted(again.names) == sorted(lib.names())  # nothing lost: every brick is indexed again


def test_classifier_of_the_wrong_shape_is_not_trusted(lib):
    index = BrickIndex.build(lib, embedder="hash:64", use_cache=False)
    meta_path = index.dir / persist.current_name(index.dir) / "meta.json"  # type: ignore[operator]
    meta = json.loads(meta_path.read_text())
    meta["features"]["none_class"] = False  # the stored weights have a none row these features do not expect
    meta_path.write_text(json.dumps(meta))
    assert not BrickIndex.open(lib, repair=False, use_cache=False).check().ok
    again = BrickIndex.open(lib, use_cache=False)
    assert again.repairs and again.check().ok
    assert sorted(again.names) == sorted(lib.names())  # nothing lost: every brick is indexed again
