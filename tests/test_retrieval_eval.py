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
    from brickwork.bricks.starter import starter_description, starter_examples, starter_routing_samples

    tasks = load_tasks()
    indexed = {n: {e.strip() for e in (*starter_examples(t), *starter_routing_samples(t))} for n, t in tasks.items()}
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


def test_starter_routing_samples_are_train_inputs_apart_from_the_examples():
    from brickwork.bricks.starter import N_ROUTING_INPUTS, starter_examples, starter_routing_samples

    for t in load_tasks().values():
        extra = starter_routing_samples(t)
        train = {e.input for e in t.split("train")}
        inputs, requests = extra[:N_ROUTING_INPUTS], extra[N_ROUTING_INPUTS:]
        assert set(inputs) <= train and len(set(inputs)) == N_ROUTING_INPUTS
        assert len(requests) >= N_ROUTING_INPUTS // 2
        assert not set(inputs) & {e.strip() for e in starter_examples(t)}
        assert not set(extra) & {e.input for e in t.split("test")}  # the eval's report half stays unseen
        assert starter_routing_samples(t) == extra  # seeded
        assert starter_routing_samples(t, n=24) == inputs[:24] + starter_routing_samples(t, n=24)[24:]


def test_bare_inputs_listed_under_two_tasks_name_both():
    tasks = load_tasks()
    indexed = {n: set() for n in tasks}
    bare = [q for q in build_queries(tasks, indexed, split="report", bare_per_task=20) if q.set == "bare"]
    countries = [q for q in bare if q.gold == "country_capital"]
    assert countries and all(q.also == ("country_region",) for q in countries)  # the same countries, two tasks
    assert all(q.gold not in q.also for q in bare)
    assert not any(q.also for q in bare if q.gold in ("date_reformat", "color_from_rgb", "two_digit_addition"))


def test_metrics_count_any_listing_brick_apart_from_strict_top1():
    import numpy as np

    from brickwork.evals.routing import Query, metrics, per_task

    names = ["a", "b", "c"]
    qs = [Query("x1", "a", "bare", also=("b",)), Query("x2", "a", "bare"), Query("x3", "c", "bare"), Query("oos", None, "out_of_scope")]
    scores = np.array([[0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.0, 0.1, 0.9], [0.3, 0.2, 0.1]])
    based = np.array([False, False, True, True])
    m = metrics(scores, qs, names, based)["bare"]
    assert m["top1"] == pytest.approx(1 / 3) and m["top1_any"] == pytest.approx(2 / 3)
    assert m["routed_any"] == pytest.approx(1 / 3) and m["n_ambiguous"] == 1
    t = per_task(scores, qs, names, based)
    assert t["a"]["top1"] == 0 and t["a"]["top1_any"] == 0.5 and t["a"]["instead"] == {"b": 2} and t["a"]["n_ambiguous"] == 1
    assert t["c"]["top1"] == 1 and t["c"]["to_base"] == 1 and t["c"]["routed_correct"] == 0


@pytest.mark.parametrize(("scale", "oos_share"), [(1, 0.8), (10, 0.85)])
def test_calibration_prefers_in_scope_within_one_standard_error_of_the_best_out_of_scope_share(scale, oos_share):
    import numpy as np

    from brickwork.evals.routing import Query, calibrate_thresholds

    # 20 in-scope queries per set scoring 0.50..0.69; out-of-scope ones: 80% at 0.10, 5% at 0.50, 15% at 0.90
    ins = [Query(f"i{k}", "a", s) for s in ("instruction", "bare") for k in range(20)]
    oos_scores = [0.10] * 16 * scale + [0.50] * scale + [0.90] * 3 * scale
    oos = [Query(f"o{k}", None, "out_of_scope") for k in range(len(oos_scores))]
    scores = np.array([[0.50 + 0.01 * k] for _ in range(2) for k in range(20)] + [[x] for x in oos_scores])
    field = np.ones(len(scores), np.int8)
    (d, _), cal = calibrate_thresholds(scores, field, ins + oos, max_to_base=0.05, single=True)
    # just above 0.50 catches 85% of out-of-scope queries and loses 1 in 20 of each in-scope set.
    # With 20 out-of-scope queries 80% is within one standard error (0.08) of 85%: the thresholds
    # that lose nothing win, and the middle of them is chosen. With 200 it is not.
    assert cal["out_of_scope_to_base"] == pytest.approx(oos_share)
    if scale == 1:
        assert cal["instruction_to_base"] == cal["bare_to_base"] == 0.0 and 0.25 <= d <= 0.35
    else:
        assert cal["instruction_to_base"] == cal["bare_to_base"] == 0.05 and 0.50 < d <= 0.51
    # the rule before (one_se=False) takes the most out-of-scope queries whatever the data's size
    (d_old, _), cal_old = calibrate_thresholds(scores, field, ins + oos, max_to_base=0.05, single=True, one_se=False)
    assert cal_old["out_of_scope_to_base"] == pytest.approx(0.85) and 0.50 < d_old <= 0.51


def test_calibration_keeps_the_budget_and_breaks_ties_in_the_middle():
    import numpy as np

    from brickwork.evals.routing import Query, calibrate_thresholds

    # 20 in-scope queries per set scoring 0.50..0.69; out-of-scope queries at 0.10 and 0.30
    ins = [Query(f"i{k}", "a", s) for s in ("instruction", "bare") for k in range(20)]
    oos = [Query("o1", None, "out_of_scope"), Query("o2", None, "out_of_scope")]
    scores = np.array([[0.50 + 0.01 * k] for _ in range(2) for k in range(20)] + [[0.10], [0.30]])
    field = np.ones(len(scores), np.int8)
    (d, e), cal = calibrate_thresholds(scores, field, ins + oos, max_to_base=0.05, single=True)
    assert d == e
    # every threshold in (0.30, 0.51] rejects both out-of-scope queries with at most 1 of 20 in-scope
    # ones off their brick: the middle of that range is chosen, not its strict end
    assert 0.39 <= d <= 0.42
    assert cal["out_of_scope_to_base"] == 1.0 and cal["instruction_to_base"] == 0.0 and cal["bare_to_base"] == 0.0
