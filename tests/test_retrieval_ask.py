"""Bricks that must be asked for (manifest ``bare_inputs: false``): the gate in the index's scorer,
its trace, its manifest field, and the starter `language_id` brick on the real embedder."""

from __future__ import annotations

import numpy as np
import pytest

from brickwork.bricks import Manifest
from brickwork.errors import ManifestError
from brickwork.retrieval_index import FeatureConfig, Router, RouterConfig
from brickwork.retrieval_index.ann import Ann
from brickwork.retrieval_index.search import ASK_COST, AskGate, BrickTable, Hit


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _table(min_cos: float = 0.5) -> tuple[BrickTable, np.ndarray]:
    """Two bricks of two rows each (description first) in a 4-wide space whose first 2 dims are the
    semantic part (scale 0.5, as `combine` with lexical weight 0.5 leaves it)."""
    rows = _unit(np.array([[1, 0, 1, 0], [0.6, 0.8, 0, 1], [0, 1, 1, 0], [0.8, 0.6, 0, 1]], np.float32))
    fields = np.array([0, 1, 0, 1], np.int8)
    gate = AskGate(bricks=np.array([True, False]), min_cos=min_cos, sem_dim=2, sem_scale=0.5)
    return BrickTable(["asked", "open"], [1, 1], [2, 2], rows, Ann("flat", rows), fields, ask=gate), rows


def test_a_brick_that_must_be_asked_for_is_passed_over_unless_the_request_is_near_its_description():
    table, rows = _table()
    plain = BrickTable(["asked", "open"], [1, 1], [2, 2], rows, Ann("flat", rows), np.array([0, 1, 0, 1], np.int8))
    near = _unit(np.array([[1, 0.1, 1, 0]], np.float32))  # semantic part close to "asked"'s description
    far = _unit(np.array([[0.1, 1, 0, 1]], np.float32))  # semantic part orthogonal to it
    q = np.concatenate([near, far])
    cos = table.ask_cos(q)
    assert np.isnan(cos[:, 1]).all()  # only the gated brick has a description cosine
    sem = q[:, :2] @ rows[0, :2] / 0.5
    assert np.allclose(cos[:, 0], sem, atol=1e-6)
    assert table.declined(q).tolist() == [[False, False], [True, False]]
    got, _ = table.scores(q)
    want, _ = plain.scores(q)
    assert np.allclose(got, want - ASK_COST * np.array([[0, 0], [1, 0]]), atol=1e-6)
    hits = table.search(far, 2)[0]
    assert [(h.name, h.declined) for h in hits] == [("open", False), ("asked", True)]
    assert table.parts(far)["ask"].tolist() == [[ASK_COST, 0.0]]
    # k=1: the passed-over brick, had it been asked for the best, still shows (so the trace can say so)
    assert want[1, 0] > want[1, 1]
    assert [(h.name, h.declined) for h in table.search(far, 1)[0]] == [("open", False), ("asked", True)]
    assert [h.name for h in table.search(near, 1)[0]] == ["asked"]


def test_the_gate_needs_one_flag_per_brick_and_a_description_row():
    _, rows = _table()
    with pytest.raises(ValueError, match="ask gate"):
        BrickTable(["a", "b"], [1, 1], [2, 2], rows, Ann("flat", rows), ask=AskGate(bricks=np.array([True]), min_cos=0.3, sem_dim=2, sem_scale=1.0))
    no_desc = AskGate(bricks=np.array([True, False]), min_cos=0.3, sem_dim=2, sem_scale=1.0)
    with pytest.raises(ValueError, match="description row"):
        BrickTable(["a", "b"], [1, 1], [2, 2], rows, Ann("flat", rows), np.ones(4, np.int8), ask=no_desc)
    # no brick flagged: no gate at all
    none = BrickTable(["a", "b"], [1, 1], [2, 2], rows, Ann("flat", rows), ask=AskGate(bricks=np.zeros(2, bool), min_cos=0.3, sem_dim=2, sem_scale=1.0))
    assert none.ask is None


def test_the_trace_says_which_brick_was_passed_over():
    router = Router(RouterConfig(min_score=0.3))
    hits = [Hit("language_id", 1, 0.62 - ASK_COST, "example", declined=True), Hit("sms_spam", 1, 0.2, "example")]
    why = router.explain(hits)
    assert router.route(hits) == [] and why["decision"] == "base"
    assert why["declined"] == ["language_id"] and "language_id passed over" in why["reason"]
    # a declined brick that would not have been chosen anyway is not mentioned
    low = [Hit("sms_spam", 1, 0.2, "example"), Hit("language_id", 1, 0.1 - ASK_COST, "example", declined=True)]
    assert "declined" not in router.explain(low)


def test_manifest_bare_inputs_is_a_bool_and_round_trips(base):
    from tests.conftest import make_manifest

    m = make_manifest("lang", base, description="Identify the language of a sentence.")
    assert m.bare_inputs is True
    off = m.replace(bare_inputs=False)
    assert Manifest.from_json(off.to_json()).bare_inputs is False
    with pytest.raises(ManifestError, match="bare_inputs"):
        m.replace(bare_inputs="no")


def test_feature_config_ask_threshold_is_validated_and_required():
    from brickwork.errors import ConfigError

    with pytest.raises(ConfigError, match="ask_min_cos"):
        FeatureConfig(ask_min_cos=1.5)
    d = FeatureConfig().to_json()
    del d["ask_min_cos"]
    with pytest.raises(KeyError):  # an index from before the gate is incomplete, hence rebuilt
        FeatureConfig.from_json(d)
    assert FeatureConfig(lexical_weight=0.5, lexical_dim=512).semantic_part(896) == (384, 0.5)
    assert FeatureConfig(lexical_weight=0.0).semantic_part(384) == (384, 1.0)


def test_starter_bricks_that_must_be_asked_for_on_the_real_embedder(library, base, tmp_path):
    """The shipped starter manifests, the MiniLM embedder: a request in Japanese about a diet plan
    goes to the base model (language_id passed over), and so does a bare question (trec_question_type);
    asking for their tasks still routes there."""
    from brickwork.evals.routing import starter_manifest
    from brickwork.retrieval_index import BrickIndex
    from brickwork.tasks import load_tasks
    from tests.conftest import write_lora_adapter

    tasks = load_tasks()
    adapter = write_lora_adapter(tmp_path / "a", base, layers=range(1))
    for tid in ("language_id", "sentiment_binary", "english_plural", "trec_question_type", "sentence_negation"):
        library.add(adapter, starter_manifest(tasks[tid], base).replace(rank=8, target_modules=["q_proj", "v_proj"]))
    assert library.get("language_id").manifest.bare_inputs is False
    assert library.get("trec_question_type").manifest.bare_inputs is False
    index = BrickIndex.open(library)
    router = Router.for_index(index)
    asks = {
        'What language is "Merci beaucoup pour votre aide"?': "language_id",
        "Which language is this: Dziękuję bardzo!": "language_id",
        # the question it carries pulls the full request away from the task: the ask view lets it in
        "What kind of answer does this question want? Why are electric cars less efficient in the northeast ?": "trec_question_type",
        "Make this sentence negative: The museum is open on Mondays.": "sentence_negation",
    }
    requests = {
        "ダイエットの食事プランを一週間分作ってください。": "language_id",
        "¿Me recomiendas una película para este fin de semana?": "language_id",
        "Who invented the telephone?": "trec_question_type",  # a bare question wants its answer
    }
    for q, want in asks.items():
        hits = index.search(q)
        assert router.route(hits)[0].name == want, (q, hits)
    for q, brick in requests.items():
        hits = index.search(q)
        passed = [h for h in hits if h.name == brick]
        assert not passed or passed[0].declined, (q, hits)
        assert all(r.name != brick for r in router.route(hits)), (q, hits)


@pytest.mark.parametrize(
    ("text", "view"),
    [
        ("What kind of answer does this question want? Why is the sky blue ?", "What kind of answer does this question want?"),
        ("Which language is this: Dziękuję bardzo!", "Which language is this"),
        ("Make 'The shop is open' negative.", "Make X negative."),
        ("What colour is rgb(12, 200, 40)?", "What colour is X ?"),
        ("Who invented the telephone?", None),  # a bare question: nothing to take out
        ("Ok. But i finish at 6.", "Ok. But i finish at X ."),  # numbers go; the message stays far from any task
        ("Sure!", None),
        ("rgb(12, 200, 40)", None),
    ],
)
def test_the_ask_view_takes_the_input_out_of_a_request(text, view):
    from brickwork.retrieval_index.asking import ask_view

    assert ask_view(text) == view


def test_a_request_failing_on_its_full_text_gets_a_second_look_at_its_ask_view():
    """The view is embedded only where it can change the decision (the failing brick would win)."""
    rows = _unit(np.array([[1, 0, 1, 0], [0.6, 0.8, 0, 1], [0, 1, 1, 0], [0.8, 0.6, 0, 1]], np.float32))
    seen: list[list[str]] = []

    def embed(texts):
        seen.append(list(texts))
        return _unit(np.array([[1.0, 0.0]] * len(texts), np.float32))  # the view: "asked"'s description

    gate = AskGate(bricks=np.array([True, False]), min_cos=0.5, sem_dim=2, sem_scale=0.5, embed=embed)
    table = BrickTable(["asked", "open"], [1, 1], [2, 2], rows, Ann("flat", rows), np.array([0, 1, 0, 1], np.int8), ask=gate)
    # far from the description on its full text, and "asked" scores best before the gate
    q = _unit(np.array([[0.3, 0.9, 0, 1]], np.float32))
    assert table.declined(q).tolist() == [[True, False]]  # no texts: the full request alone
    hits = table.search(q, 2, ["Name its task please: some long input text"])[0]
    assert seen == [["Name its task please"]]
    assert [(h.name, h.declined) for h in hits][0] == ("asked", False)
    # no view to take (a bare input): still passed over, nothing embedded
    seen.clear()
    hits = table.search(q, 2, ["some long input text"])[0]
    assert seen == [] and next(h for h in hits if h.name == "asked").declined
    # "open" wins before the gate: the view cannot change the decision, so it is not embedded
    q_open = _unit(np.array([[0, 1, 1, 0.2]], np.float32))
    table.search(q_open, 2, ["Name its task please: some long input text"])
    assert seen == []
