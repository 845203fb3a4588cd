"""The routing eval's data: well-formed, both halves cover every task, nothing indexed leaks in."""

from __future__ import annotations

import json

import pytest

from brickwork.evals.routing import ROUTING_DATA, build_queries, fill
from brickwork.tasks import load_tasks


def _rows(name):
    return [json.loads(line) for line in (ROUTING_DATA / name).read_text().splitlines() if line.strip()]


def test_instruction_templates_cover_every_task_in_both_halves():
    tasks = load_tasks()
    rows = _rows("instructions.jsonl")
    assert {r["task"] for r in rows} == set(tasks)
    for half in ("calib", "report"):
        assert {r["task"] for r in rows if r["split"] == half} == set(tasks)
    texts = [r["text"] for r in rows]
    assert len(texts) == len(set(texts))


def test_out_of_scope_rows_are_well_formed():
    tasks = load_tasks()
    rows = _rows("out_of_scope.jsonl")
    assert all(r["near"] is None or r["near"] in tasks for r in rows)
    assert {r["split"] for r in rows} == {"calib", "report"}
    assert sum(r["near"] is not None for r in rows) >= 5 * len(tasks)


@pytest.mark.parametrize(("template", "text", "out"), [("plural of {x}", "ox", "plural of ox"), ("{a} - {b} = ?", "What is 26 minus 10?", "26 - 10 = ?")])
def test_fill(template, text, out):
    assert fill(template, text) == out


def test_no_query_is_an_indexed_text():
    from brickwork.bricks.starter import starter_description, starter_examples

    tasks = load_tasks()
    indexed = {n: {e.strip() for e in starter_examples(t)} for n, t in tasks.items()}
    every_indexed = set().union(*indexed.values()) | {starter_description(t) for t in tasks.values()}
    test_inputs = {n: {e.input for e in t.split("test")} for n, t in tasks.items()}
    for half in ("calib", "report"):
        qs = build_queries(tasks, indexed, split=half, bare_per_task=20)
        assert {q.set for q in qs} == {"instruction", "bare", "out_of_scope"}
        if half == "calib":
            assert not [q.text for q in qs if q.text in every_indexed]
        assert not [q.text for q in qs if q.gold and q.text in indexed[q.gold]]
        bare = [q for q in qs if q.set == "bare"]
        if half == "report":
            assert all(q.text in test_inputs[q.gold] for q in bare)
        else:
            assert not any(q.text in test_inputs[q.gold] for q in bare)
