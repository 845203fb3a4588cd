"""Retrieval index: consistency with the store, crash and corruption repair, embedder identity,
search/ANN agreement, routing policy. The real MiniLM embedder is loaded once per session."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from brickwork.errors import ConfigError, IndexError_
from brickwork.retrieval_index import (
    AnnConfig,
    BrickIndex,
    FeatureConfig,
    Hit,
    Route,
    Router,
    RouterConfig,
    calibrate,
    load_embedder,
    retrieve,
)
from brickwork.retrieval_index import persist

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def embedder():
    emb = load_embedder()
    emb.embed(["warm up"])
    return emb


@pytest.fixture(scope="session")
def emb_cache(tmp_path_factory):
    """One embedding cache for the session: rebuilds after corruption cost no model time."""
    return tmp_path_factory.mktemp("embcache") / "embeddings.sqlite"


@pytest.fixture(scope="session")
def adapter_dir(tmp_path_factory, base):
    """One placeholder-free random LoRA (tests/conftest.py helper), copied by the store per brick."""
    from tests.conftest import write_lora_adapter

    return write_lora_adapter(tmp_path_factory.mktemp("adapter") / "a", base, layers=range(2))


def _manifest(base, name, description, examples=()):
    from tests.conftest import make_manifest

    return make_manifest(name, base, description=description, examples=list(examples))


def _starter(base, task_id):
    from brickwork.evals.routing import starter_manifest
    from brickwork.tasks import load_tasks

    m = starter_manifest(load_tasks()[task_id], base)
    return m.replace(rank=8, target_modules=["q_proj", "v_proj"])


@pytest.fixture
def store(library, adapter_dir, base):
    for tid in ("english_plural", "two_digit_subtraction", "country_capital"):
        library.add(adapter_dir, _starter(base, tid))
    return library


_CACHE = {}


@pytest.fixture(autouse=True)
def _session_cache(emb_cache):
    _CACHE["path"] = emb_cache


def _open(store, **kw):
    kw.setdefault("use_cache", _CACHE["path"])
    return BrickIndex.open(store, **kw)


def test_index_mirrors_store_through_add_update_rollback_remove(store, adapter_dir, base, embedder):
    index = _open(store, embedder=embedder)
    assert index.state == store.state() and index.check().ok
    assert index.search("What is the plural of goose?", k=1)[0].name == "english_plural"

    # nothing changed: sync is free (no new generation written)
    gen = persist.current_name(index.dir)
    assert not index.sync().changed and persist.current_name(index.dir) == gen

    store.add(adapter_dir, _manifest(base, "weather", "Forecast tomorrow's weather for a city.", ["Will it rain in Paris tomorrow?"]))
    rep = index.sync()
    assert rep.added == ["weather"] and index.state == store.state()
    assert index.search("will it rain tomorrow? weather forecast please", k=1)[0].name == "weather"

    store.add(adapter_dir, _manifest(base, "weather", "Translate a sentence into French.", ["Translate 'good night' to French"]))
    rep = index.sync()
    assert rep.updated == ["weather"] and index.state["weather"] == 2
    top = index.search("translate 'thank you' into French", k=1)[0]
    assert (top.name, top.version) == ("weather", 2)

    store.rollback("weather", to=1)
    assert index.sync().updated == ["weather"]
    assert index.state["weather"] == 1
    top = index.search("will it rain tomorrow? weather forecast please", k=1)[0]
    assert (top.name, top.version) == ("weather", 1)

    store.remove("weather")
    assert index.sync().removed == ["weather"]
    assert "weather" not in index.state and index.check().ok
    assert all(h.name != "weather" for h in index.search("rain tomorrow?", k=5))

    # a second process opening the index sees the same state without re-embedding
    again = _open(store, embedder=embedder)
    assert again.repairs == [] and again.state == store.state()


def test_crash_between_store_write_and_index_write_is_repaired_on_open(store, adapter_dir, base, embedder):
    _open(store, embedder=embedder)
    # the store write happens, the process dies before the index sync:
    store.add(adapter_dir, _manifest(base, "weather", "Forecast tomorrow's weather for a city.", ["Will it rain in Paris tomorrow?"]))
    store.rollback("english_plural", to=1)
    assert not _open(store, repair=False).check().ok
    index = _open(store)
    assert any("weather" in r for r in index.repairs)
    assert index.state == store.state() and index.check().ok
    assert index.search("will it snow in Oslo tomorrow?", k=1)[0].name == "weather"


def test_crash_while_writing_the_index_keeps_the_previous_generation(store, embedder):
    index = _open(store, embedder=embedder)
    live = persist.current_name(index.dir)
    # a writer died after staging a generation but before switching CURRENT
    (index.dir / ".tmp-dead").mkdir()
    shutil.copytree(index.dir / live, index.dir / "g999999")
    (index.dir / "g999999" / "vectors.npy").write_bytes(b"half a file")
    again = _open(store)
    assert again.repairs == [] and persist.current_name(index.dir) == live and again.check().ok


@pytest.mark.parametrize(
    "damage",
    [
        lambda g: (g / "vectors.npy").write_bytes((g / "vectors.npy").read_bytes()[:-64]),
        lambda g: (g / "meta.json").write_text("{not json"),
        lambda g: (g / "fields.npy").unlink(),
        lambda g: (g.parent / "CURRENT").unlink(),
        lambda g: (g.parent / "CURRENT").write_text("g000000\n"),
    ],
    ids=["truncated-vectors", "bad-meta", "missing-file", "no-current", "dangling-current"],
)
def test_corrupt_or_missing_index_is_rebuilt_never_trusted(store, embedder, damage):
    index = _open(store, embedder=embedder)
    damage(index.dir / persist.current_name(index.dir))
    report = _open(store, repair=False).check()
    assert not report.ok and report.problems
    with pytest.raises(IndexError_, match="rebuild"):
        _open(store, repair=False).search("plural of mouse")
    repaired = _open(store)
    assert repaired.repairs and repaired.check().ok and repaired.state == store.state()
    assert repaired.search("What is the plural of goose?", k=1)[0].name == "english_plural"


def test_a_corrupt_or_outdated_index_is_rebuilt_with_the_embedder_it_was_built_with(store):
    index = _open(store, embedder="hash:64")
    g = index.dir / persist.current_name(index.dir)
    (g / "vectors.npy").write_bytes(b"half a file")
    again = _open(store)
    assert again.repairs and again.identity.name == "hash:64" and again.check().ok
    meta = json.loads((index.dir / persist.current_name(again.dir) / "meta.json").read_text())
    del meta["features"]["none_neighbour_weight"]  # written by an older Brickwork
    (index.dir / persist.current_name(again.dir) / "meta.json").write_text(json.dumps(meta))
    upgraded = _open(store)
    assert upgraded.repairs and upgraded.identity.name == "hash:64" and upgraded.check().ok


def test_deleted_index_is_rebuilt(store, embedder):
    index = _open(store, embedder=embedder)
    shutil.rmtree(index.dir)
    again = _open(store)
    assert again.state == store.state() and again.check().ok


def test_a_different_embedder_is_refused(store, embedder):
    _open(store, embedder="hash:64")
    with pytest.raises(IndexError_, match="cannot be mixed"):
        _open(store, embedder=embedder)
    kept = _open(store)  # no embedder asked: the index's own
    assert kept.identity.name == "hash:64"
    switched = BrickIndex.build(store, embedder=embedder, use_cache=_CACHE["path"])
    assert switched.identity == embedder.identity
    assert _open(store, embedder=embedder).check().ok
    with pytest.raises(IndexError_, match="features"):
        _open(store, features=FeatureConfig(lexical_weight=0.0))


def test_request_written_like_a_none_text_goes_to_base_until_a_brick_serves_it(store, adapter_dir, base, embedder):
    """The shipped none texts catch a near miss written like one of them (nearest-neighbour penalty,
    classifier.none_penalty); a library that grows a brick for such requests gets them routed to it."""
    from brickwork.retrieval_index import Router, classifier as clf, retrieve

    index = _open(store, embedder=embedder)
    router = Router.default()
    near_miss, in_scope = "please write 1066 in roman numerals", "What is 45 minus 17?"
    qv = index.embed_queries([near_miss, in_scope])
    gen = persist.read(index.dir)
    assert gen is not None and gen.none is not None
    rows_best = (qv @ gen.vectors.T).max(1)
    drop = clf.none_penalty(qv, gen.none, rows_best, index.features.none_neighbour_weight, index.features.none_neighbour_margin)
    assert drop[0] > 0 and drop[1] == 0  # a none text is far nearer the near miss than any brick row
    [(_, r_near), (_, r_in)] = retrieve(index, router, [near_miss, in_scope])
    assert r_near == [] and [r.name for r in r_in] == ["two_digit_subtraction"]

    roman = ["Convert 12 to Roman numerals.", "Write 2001 as a Roman numeral.", "roman numeral for 7", "49", "350", "1500"]
    store.add(adapter_dir, _manifest(base, "roman_numerals", "Convert a whole number into Roman numerals.", roman))
    index.sync()
    [(hits, routes)] = retrieve(index, router, [near_miss])
    assert hits[0].name == "roman_numerals" and [r.name for r in routes] == ["roman_numerals"]


def test_search_batch_matches_single_queries(store, embedder):
    index = _open(store, embedder=embedder)
    queries = ["plural of ox", "What is 45 minus 17?", "capital of Peru", "write me a poem"]
    batch = index.search_batch(queries, k=3)
    for q, hits in zip(queries, batch, strict=True):
        single = index.search(q, k=3)
        assert [h.name for h in single] == [h.name for h in hits]
        assert np.allclose([h.score for h in single], [h.score for h in hits], atol=1e-5)
    assert [len(h) for h in batch] == [3, 3, 3, 3]
    assert index.search("x", k=50) and len(index.search("x", k=50)) == 3
    with pytest.raises(ConfigError):
        index.search("x", k=0)
    with pytest.raises(ConfigError):
        index.search_batch("not a list", k=1)  # type: ignore[arg-type]


def test_empty_library_needs_no_index_and_no_model(library):
    index = BrickIndex.open(library, embedder="hash:32")
    assert index.search("anything") == [] and index.check().ok
    assert retrieve(index, Router.default(), ["a", "b"]) == [([], []), ([], [])]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_search_agrees_with_exact(library, adapter_dir, base, kind):
    from brickwork.tasks import load_tasks

    for tid in list(load_tasks())[:12]:
        library.add(adapter_dir, _starter(base, tid))
    exact = BrickIndex.build(library, embedder="hash:64", ann=AnnConfig(kind="flat"), use_cache=False)
    approx = BrickIndex.build(library, embedder="hash:64", ann=AnnConfig(kind=kind, ivf_nlist=4, ivf_nprobe=4, hnsw_ef_search=300), use_cache=False)
    assert approx.kind == kind
    reopened = BrickIndex.open(library, use_cache=False)
    assert reopened.kind == kind  # persisted and read back
    qs = ["What is 12 minus 5?", "rgb(1, 2, 3)", "Angola", "sort: pear apple", "1999-01-02"]
    for a, b, c in zip(exact.search_batch(qs, 3), approx.search_batch(qs, 3), reopened.search_batch(qs, 3), strict=True):
        assert [h.name for h in a] == [h.name for h in b] == [h.name for h in c]


# -- routing policy -------------------------------------------------------------------------------
H = [Hit("a", 1, 0.80), Hit("b", 2, 0.78), Hit("c", 1, 0.50)]


@pytest.mark.parametrize(
    ("config", "hits", "expected"),
    [
        (RouterConfig(min_score=0.5), [], []),
        (RouterConfig(min_score=0.9), H, []),
        (RouterConfig(min_score=0.5), H, [("a", 1.0)]),
        (RouterConfig(min_score=0.5, max_bricks=3, margin=0.05), H, [("a", None), ("b", None)]),
        (RouterConfig(min_score=0.79, max_bricks=3, margin=0.05), H, [("a", 1.0)]),
        (RouterConfig(min_score=0.5, max_bricks=3, margin=0.5), list(reversed(H)), [("a", None), ("b", None), ("c", None)]),
        # a bare input matched an example row: held to min_score_example, not min_score
        (RouterConfig(min_score=0.6, min_score_example=0.3), [Hit("a", 1, 0.4, "example")], [("a", 1.0)]),
        (RouterConfig(min_score=0.6, min_score_example=0.3), [Hit("a", 1, 0.4, "description")], []),
        (RouterConfig(min_score=0.3, min_score_example=0.6), [Hit("a", 1, 0.4, "example")], []),
    ],
)
def test_router_table(config, hits, expected):
    routes = Router(config).route(hits)
    assert [r.name for r in routes] == [n for n, _ in expected]
    if routes:
        assert sum(r.weight for r in routes) == pytest.approx(1.0)
        assert all(isinstance(r, Route) for r in routes)
        assert routes == sorted(routes, key=lambda r: -r.weight)
    for r, (_, w) in zip(routes, expected, strict=True):
        if w is not None:
            assert r.weight == pytest.approx(w)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("min_score", 2.0, "`min_score`"), ("max_bricks", 0, "`max_bricks`"), ("margin", -0.1, "`margin`"), ("temperature", 0, "`temperature`")],
)
def test_router_config_errors_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        RouterConfig(**{field: value})


def test_default_router_is_calibrated_and_overridable(tmp_path):
    r = Router.default()
    assert r.config.calibration, "the shipped router records how it was calibrated"
    assert Router.default(min_score=0.9).config.min_score == 0.9
    r.save(tmp_path / "router.json")
    assert Router.from_file(tmp_path / "router.json").config == r.config
    (tmp_path / "bad.json").write_text(json.dumps({"min_score": 0.5, "bogus": 1}))
    with pytest.raises(ConfigError, match="bogus"):
        Router.from_file(tmp_path / "bad.json")


def test_calibrate_keeps_the_in_scope_budget_and_records_how(tmp_path):
    # one brick; in-scope scores 0.3..0.9, out-of-scope 0.1..0.5: the product's one calibration path
    ins = np.linspace(0.3, 0.9, 100)
    oos = np.linspace(0.1, 0.5, 50)
    scores = np.concatenate([ins, ins, oos])[:, None]
    kinds = ["instruction"] * 100 + ["bare"] * 100 + ["out_of_scope"] * 50
    config, res = calibrate(scores, np.zeros(250, np.int8), kinds, data="synthetic")
    assert res["instruction_to_base"] <= 0.05 and res["bare_to_base"] <= 0.05 and res["out_of_scope_to_base"] > 0.5
    assert config.min_score == config.min_score_example and (ins < config.min_score).sum() <= 5
    assert config.calibration["data"] == "synthetic" and config.calibration["n_calib"]["out_of_scope"] == 50
    Router(config).save(tmp_path / "router.json")  # the on-disk format is unchanged (format_version 1)
    assert Router.from_file(tmp_path / "router.json").config == config
    with pytest.raises(ConfigError, match="kinds"):
        calibrate(scores, np.zeros(250, np.int8), ["nonsense"] * 250)


def test_hits_and_routes_are_frozen_values():
    with pytest.raises(AttributeError):
        H[0].score = 1.0  # type: ignore[misc]
    assert Hit("a", 1, 0.5).to_json() == {"name": "a", "version": 1, "score": 0.5}


def test_router_explains_base_brick_and_ambiguity():
    r = Router(RouterConfig(min_score=0.4, margin=0.03))
    far = [Hit("a", 1, 0.35, "example"), Hit("b", 1, 0.2, "description")]
    why = r.explain(far)
    assert r.route(far) == [] and why["decision"] == "base"
    assert why["best"] == {"name": "a", "score": 0.35, "matched": "example", "threshold": 0.4}
    assert "0.350 < 0.400" in why["reason"]
    close = [Hit("b", 1, 0.61, "example"), Hit("a", 1, 0.62, "example"), Hit("c", 1, 0.5, "example")]
    why = r.explain(close)
    assert [x.name for x in r.route(close)] == ["a"] and why["decision"] == "brick"
    # b is within the margin and clears its threshold: the input fits both, and the trace says so
    assert why["ambiguous"] == [{"name": "b", "score": 0.61}] and "ambiguous, also fits: b 0.610" in why["reason"]
    assert r.explain([])["decision"] == "base"
    assert Router(RouterConfig(min_score=0.4, max_bricks=2)).explain(close)["ambiguous"] == []  # both chosen


def test_form_region_and_penalty():
    from brickwork.retrieval_index.form import brick_limits, form_penalty, text_form

    assert brick_limits(["short", "a longer text\nover two lines"]) == [28, 2]
    assert brick_limits([]) == [1, 1]
    limits = np.asarray([[100, 1], [1000, 3]], np.float32)
    q = text_form(["x" * 50, "x" * 200, "a\nb\nc\nd"])
    pen = form_penalty(q, limits, weight=0.5, slack=1.0)
    assert pen[0].tolist() == [0.0, 0.0]  # inside both regions
    assert pen[1, 0] == pytest.approx(0.5 * np.log(2.0)) and pen[1, 1] == 0.0  # twice brick 0's longest text
    assert pen[2, 0] == pytest.approx(0.5 * 0.25 * 2) and pen[2, 1] == 0.0  # 4 lines vs 1 (+1 allowed)
    assert not form_penalty(q, limits, weight=0.0, slack=1.0).any()


def test_form_limits_by_owner_match_each_bricks_own_limits():
    """The evals compute every brick's region from rows in one call; it equals the per-brick rule."""
    from brickwork.retrieval_index.form import brick_limits, limits_by_owner

    texts, owner = ["ab", "a\nlonger one", "xyz", "q"], [0, 0, 2, 0]
    got = limits_by_owner(texts, owner, 3)
    assert got.tolist() == [brick_limits(["ab", "a\nlonger one", "q"]), [1, 1], brick_limits(["xyz"])]


def test_a_request_far_longer_than_a_bricks_texts_loses_score(store, embedder):
    """The index keeps each brick's form region; a request much longer than anything the brick was
    built from scores lower by the form penalty, and the score parts show it."""
    index = _open(store, embedder=embedder)
    assert index.features.form_weight > 0
    story = "\n\n".join(["Write a long story about two mice who move into a house in the city."] * 10)
    long_parts, short_parts = index.score_parts(story), index.score_parts("What is the plural of mouse?")
    assert all(p["form"] > 0 for p in long_parts.values())
    assert all(p["form"] == 0 for p in short_parts.values())
    qv = index.embed_queries([story])
    with_form, _ = index.scores(qv, [story])
    without, _ = index.scores(qv)  # no texts: the form is unknown and not applied
    b = index.names.index("english_plural")
    assert with_form[0, b] == pytest.approx(without[0, b] - long_parts["english_plural"]["form"], abs=1e-3)


@pytest.mark.parametrize(("field", "value", "message"), [("form_weight", -1.0, "`form_weight`"), ("form_slack", 0.5, "`form_slack`")])
def test_form_config_errors_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        FeatureConfig(**{field: value})
