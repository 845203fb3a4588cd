"""Weak bricks (issue 24 item 4): a step routed to a brick that is often wrong on its own task says
so in its trace; `eval compose --weak-fallback` runs such steps on the base model instead."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from brickwork.errors import BrickNotFound
from brickwork.evals.compose import fallback_plan
from brickwork.orchestrator.types import BrickChoice
from brickwork.orchestrator.weak_bricks import WEAK_BELOW, note_weak, weak_notes
from brickwork.serving.fake import FakeEngine
from tests.conftest_orchestrator import FakeStore, KeywordRetriever, brick_answer

REPO_STARTER = Path(__file__).resolve().parents[1] / "brickwork" / "data" / "starter"


class MeasuredStore(FakeStore):
    """A fake store whose bricks carry held-out metrics, as brick.json does."""

    METRICS = {
        "country_capital": {"exact_match": 0.18, "base_exact_match": 0.0},
        "english_plural": {"exact_match": 0.83, "base_exact_match": 0.0},
        "spell_word": {"exact_match": 0.24},  # no base figure recorded
    }

    def get(self, name, version=None):
        if name not in self.DESCRIPTIONS:
            raise BrickNotFound(f"no brick named {name!r}")
        manifest = SimpleNamespace(description=self.DESCRIPTIONS[name], metrics=self.METRICS.get(name, {}))
        return SimpleNamespace(manifest=manifest, version=1, name=name)


def _choice(name: str) -> BrickChoice:
    return BrickChoice(name=name, version=1, weight=1.0)


@pytest.mark.parametrize(
    ("name", "threshold", "weak", "note"),
    [
        ("country_capital", WEAK_BELOW, True, "country_capital is weak: held-out exact match 0.18 < 0.5 (base model 0.00 on the same task)"),
        ("spell_word", WEAK_BELOW, True, "spell_word is weak: held-out exact match 0.24 < 0.5"),
        ("english_plural", WEAK_BELOW, False, None),
        ("english_plural", 0.9, True, "english_plural is weak: held-out exact match 0.83 < 0.9 (base model 0.00 on the same task)"),
        ("country_capital", 0.18, False, None),  # at the threshold is not below it
        ("no_such_brick", WEAK_BELOW, False, None),  # unknown to the store: nothing to say
    ],
)
def test_weak_notes_name_the_brick_its_metric_and_the_base_models(tmp_path, name, threshold, weak, note):
    notes = weak_notes([_choice(name)], MeasuredStore(tmp_path), threshold)
    assert bool(notes) is weak
    if weak:
        assert notes[0]["note"] == note and notes[0]["brick"] == name and notes[0]["threshold"] == threshold


def test_note_weak_adds_to_the_routing_why_without_changing_it(tmp_path):
    why = {"decision": "brick", "reason": "keyword"}
    out = note_weak(why, [_choice("country_capital")], MeasuredStore(tmp_path))
    assert out["decision"] == "brick" and out["weak"][0]["brick"] == "country_capital"
    assert "weak" not in why
    assert note_weak(why, [_choice("english_plural")], MeasuredStore(tmp_path)) is why
    assert note_weak(None, [], MeasuredStore(tmp_path)) is None  # the base model: nothing to note


def test_the_trace_says_a_routed_brick_is_weak_and_the_fallback_plan_runs_it_on_the_base(tmp_path):
    from brickwork.orchestrator.sdk import Brickwork

    store = MeasuredStore(tmp_path / "lib")
    instruction = "Give the plural of 'wolf'. Also, what is the capital of Chile?"
    with Brickwork(engine=FakeEngine(respond=brick_answer), planner="rules", retriever=KeywordRetriever(), store=store) as bw:
        run = bw.run(instruction)
        d = run.to_json()
        assert "why" not in d["steps"][0]  # english_plural: 0.83, not weak
        assert [n["brick"] for n in d["steps"][1]["why"]["weak"]] == ["country_capital"]
        plan = fallback_plan(run, store, WEAK_BELOW)
        assert [s.bricks for s in plan.steps][1] == ()  # weak: the base model
        assert [b.name for b in plan.steps[0].bricks] == ["english_plural"]
        again = bw.run_batch([instruction], plans=[plan])[0]
    assert again.steps[1].bricks == () and [b.name for b in again.steps[0].bricks] == ["english_plural"]


def test_real_starter_manifests_mark_the_weak_bricks(tmp_path, base):
    """The real brick.json files of the starter set, in a real store: the bricks under 0.5 held out
    are noted with the base model's figure from the same file; a strong one is not."""
    from brickwork.bricks.store import BrickStore
    from brickwork.bricks.manifest import Manifest

    store = BrickStore(tmp_path / "lib", base=base)
    for name in ("country_capital", "date_reformat"):
        store.add(REPO_STARTER / name)
    notes = weak_notes([_choice("country_capital"), _choice("date_reformat")], store)
    recorded = Manifest.load(REPO_STARTER / "country_capital").metrics
    assert [n["brick"] for n in notes] == ["country_capital"]
    assert notes[0]["exact_match"] == recorded["exact_match"] < WEAK_BELOW
    assert notes[0]["base_exact_match"] == recorded["base_exact_match"]
