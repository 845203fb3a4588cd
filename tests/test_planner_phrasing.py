"""The independent planner set (issue 24) and the rules splitter's rules for real phrasing."""

from __future__ import annotations

import collections
import json
import re

import pytest

from brickwork.evals.plan import INDEPENDENT, load_sets, score_plan
from brickwork.orchestrator.planners.base import parse_plan
from brickwork.orchestrator.planners.rules import RulesPlanner

TRAIN = INDEPENDENT.with_name("train.jsonl")


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _normal(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def _words(text: str) -> set[str]:
    return set(_normal(text).split())


# -- the independent set ----------------------------------------------------------------------
def test_independent_set_is_well_formed_and_balanced():
    rows = _rows(INDEPENDENT)
    assert len(rows) >= 100
    for r in rows:
        assert set(r) == {"instruction", "plan", "kind", "split"}, r
        assert r["split"] in ("dev", "test"), r
        parse_plan(json.dumps(r["plan"]), planner="gold", check_grounding=False)  # raises if malformed
    per_kind = collections.Counter((r["kind"], r["split"]) for r in rows)
    for kind in {r["kind"] for r in rows}:
        assert per_kind[(kind, "dev")] == per_kind[(kind, "test")], kind
    assert {"numbered", "lettered", "and_its", "two_sentence", "chat_wrapped", "unserved_step", "plain"} <= {r["kind"] for r in rows}


def test_independent_set_is_not_in_the_planner_training_data():
    train = [r["input"] for r in _rows(TRAIN)]
    train_norm = {_normal(t) for t in train}
    train_words = [_words(t) for t in train]
    for r in _rows(INDEPENDENT):
        inst = r["instruction"]
        assert _normal(inst) not in train_norm, inst
        w = _words(inst)
        # near duplicates: the same words up to a few (Jaccard >= 0.8)
        near = [t for t, tw in zip(train, train_words) if len(w & tw) / len(w | tw) >= 0.8]
        assert not near, (inst, near[:2])


def test_plan_eval_reports_the_two_halves_apart():
    sets = load_sets(0, 0, ("independent-dev", "independent-test"))
    dev, test = sets["independent-dev"], sets["independent-test"]
    assert len(dev) == len(test) == len(_rows(INDEPENDENT)) // 2
    assert not {i for i, _, _ in dev} & {i for i, _, _ in test}
