"""Recipe search: successive halving with a fake trial and clock; one cheap run on the real parts."""

from __future__ import annotations

import json

import pytest

from brickwork.bricks.recipe_search import (
    DEFAULT_GRID,
    Candidate,
    Trial,
    carve_validation,
    chosen_config,
    rungs,
    search,
)
from brickwork.errors import ConfigError

A, B, C, D = (Candidate(), Candidate(lr=4e-3), Candidate(rank=16), Candidate(top_layers=None))


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def fake_trial(scores: dict[tuple[Candidate, int], float], clock: FakeClock, *, cost_per_step: float = 1.0):
    """A trial that 'trains' by advancing the clock and scores from a table; records what it ran."""
    ran: list[tuple[Candidate, int]] = []

    def run(cand: Candidate, steps: int, rung: int) -> Trial:
        ran.append((cand, steps))
        clock.t += cost_per_step * steps
        return Trial(candidate=cand, steps=steps, rung=rung, score=scores[(cand, steps)], seconds=0.0)

    run.ran = ran  # type: ignore[attr-defined]
    return run


def flat(_c: Candidate, steps: int) -> float:
    return float(steps)  # the estimate: one second per step, as the fake trial costs


@pytest.mark.parametrize(
    ("max_steps", "min_steps", "expected"),
    [(240, 30, [30, 60, 120, 240]), (120, 30, [30, 60, 120]), (100, 30, [50, 100]), (8, 8, [8]), (20, 30, [20])],
)
def test_rungs_double_up_to_the_last(max_steps, min_steps, expected):
    assert rungs(max_steps, min_steps=min(min_steps, max_steps)) == expected


def test_successive_halving_keeps_the_better_half_and_picks_the_last_rungs_best():
    clock = FakeClock()
    scores = {(A, 30): 0.5, (B, 30): 0.6, (C, 30): 0.1, (D, 30): 0.7,
              (B, 60): 0.65, (D, 60): 0.6,
              (B, 120): 0.7}
    trial = fake_trial(scores, clock)
    res = search([A, B, C, D], trial, max_steps=120, min_steps=30, budget_s=10_000, estimate=flat, clock=clock)
    assert trial.ran == [(A, 30), (B, 30), (C, 30), (D, 30), (D, 60), (B, 60), (B, 120)]
    assert (res.best.candidate, res.best.steps, res.best.score) == (B, 120, 0.7)
    assert [t.rung for t in res.trials] == [0, 0, 0, 0, 1, 1, 2]
    assert not res.stopped_early and res.seconds == 4 * 30 + 2 * 60 + 120
    assert [t.seconds for t in res.trials][:4] == [30, 30, 30, 30]  # measured on the clock, not the trial's say


def test_ties_go_to_the_earlier_candidate():
    clock = FakeClock()
    scores = {(c, s): 0.5 for c in (A, B, C) for s in (30, 60)}
    res = search([A, B, C], fake_trial(scores, clock), max_steps=60, budget_s=10_000, estimate=flat, clock=clock)
    assert res.best.candidate == A and res.best.steps == 60


def test_a_budget_too_small_for_the_first_round_is_an_error_before_anything_runs():
    clock = FakeClock()
    trial = fake_trial({}, clock)
    with pytest.raises(ConfigError, match=r"budget of 1\.0 min is too small.*4 recipes x 30 steps.*--budget 2 or more"):
        search([A, B, C, D], trial, max_steps=120, budget_s=60, estimate=flat, clock=clock)
    assert trial.ran == []
    with pytest.raises(ConfigError, match="`budget` should be positive"):
        search([A], trial, max_steps=120, budget_s=0, estimate=flat, clock=clock)
    with pytest.raises(ConfigError, match="distinct"):
        search([A, A], trial, max_steps=120, budget_s=100, estimate=flat, clock=clock)


def test_the_search_stops_when_the_budget_runs_out_and_keeps_the_highest_finished_rung():
    clock = FakeClock()
    scores = {(A, 30): 0.2, (B, 30): 0.4, (A, 60): 0.3, (B, 60): 0.5}
    # the trials cost twice the estimate: the search learns that and skips what no longer fits
    trial = fake_trial(scores, clock, cost_per_step=2.0)
    res = search([A, B], trial, max_steps=120, budget_s=250, estimate=flat, clock=clock)
    assert trial.ran == [(A, 30), (B, 30), (B, 60)]
    assert res.stopped_early and (res.best.candidate, res.best.steps) == (B, 60)


def test_search_record_names_every_trial_and_the_validation_source():
    clock = FakeClock()
    scores = {(A, 30): 0.25, (B, 30): 0.5, (B, 60): 0.75}
    res = search([A, B], fake_trial(scores, clock), max_steps=60, budget_s=1000, estimate=flat, clock=clock,
                 n_validation=40)
    rec = json.loads(json.dumps(res.to_json()))
    assert rec["chosen"]["recipe"] == "r8 top12 q,v,o,down lr0.004" and rec["chosen"]["steps"] == 60
    assert [(t["recipe"], t["steps"], t["validation_exact_match"]) for t in rec["trials"]] == [
        ("r8 top12 q,v,o,down lr0.002", 30, 0.25), ("r8 top12 q,v,o,down lr0.004", 30, 0.5),
        ("r8 top12 q,v,o,down lr0.004", 60, 0.75)]
    assert all(t["seconds"] > 0 for t in rec["trials"])
    assert rec["n_validation"] == 40 and "test split is never used" in rec["validation_from"]


def test_carve_validation_is_seeded_disjoint_and_refuses_too_little_data():
    rows = list(range(100))
    fit, val = carve_validation(rows, seed=0)
    assert len(val) == 15 and sorted(fit + val) == rows and not set(fit) & set(val)
    assert carve_validation(rows, seed=0) == (fit, val) and carve_validation(rows, seed=1)[1] != val
    assert len(carve_validation(list(range(5000)), seed=0)[1]) == 100  # capped
    with pytest.raises(ConfigError, match="at least 16 training examples"):
        carve_validation(list(range(12)), seed=0)


def test_candidates_build_valid_train_configs():
    from brickwork.bricks.training import TrainConfig

    assert DEFAULT_GRID[0] == Candidate() and len(set(DEFAULT_GRID)) == len(DEFAULT_GRID)
    base = TrainConfig(seed=3)
    for cand in DEFAULT_GRID:
        cfg = cand.config(base, 30)
        assert (cfg.rank, cfg.top_layers, cfg.lr, cfg.steps, cfg.seed) == (cand.rank, cand.top_layers, cand.lr, 30, 3)
        assert cfg.warmup_steps == 3
    with pytest.raises(ConfigError, match="`rank` should be one of"):
        Candidate(rank=4).config(base, 30)
    clock = FakeClock()
    res = search([A], fake_trial({(A, 30): 1.0}, clock), max_steps=30, budget_s=100, estimate=flat, clock=clock)
    assert chosen_config(res, base).steps == 30


def test_bricks_train_auto_refuses_a_budget_too_small(tmp_path, capsys):
    from brickwork.cli import main

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"input": f"word {i}", "output": f"w{i}"}) + "\n" for i in range(40)))
    rc = main(["bricks", "train", "w", "--data", str(data), "--description", "d", "--auto", "--budget", "0.5",
               "--library", str(tmp_path / "lib")])
    err = capsys.readouterr().err
    assert rc != 0 and "too small" in err and "--budget" in err
    assert not (tmp_path / "lib" / "w").exists()
    rc = main(["bricks", "train", "w", "--data", str(data), "--description", "d", "--budget", "5",
               "--library", str(tmp_path / "lib")])
    assert rc != 0 and "--budget only applies with --auto" in capsys.readouterr().err


@pytest.mark.integration
def test_search_on_the_real_parts_returns_a_trained_scored_winner(base, tmp_path):
    """Two recipes, a few steps, on a task the base model cannot do: the winner's adapter is PEFT's format."""
    from brickwork.bricks.recipe_search import training_trial
    from brickwork.bricks.training import TrainConfig
    from brickwork.bricks.validate import validate_lora_dir
    from brickwork.tasks import Example

    words = ["river", "stone", "violet", "engine", "candle", "harbor", "meadow", "copper", "lantern", "falcon",
             "garden", "thunder"]
    pairs = [(f"Say something about {w}.", "pineapple") for w in words[:8]]
    val = [(f"Say something about {w}.", Example(input=w, output="pineapple", split="validation")) for w in words[8:]]
    trial = training_trial(base, pairs, val, TrainConfig(batch_size=8, warmup_steps=2), tmp_path)
    res = search([Candidate(top_layers=4, lr=5e-3), Candidate(top_layers=4, lr=1e-5)], trial, max_steps=16,
                 min_steps=8, budget_s=600, estimate=lambda c, s: 1.0)
    assert [(t.steps, t.rung) for t in res.trials] == [(8, 0), (8, 0), (16, 1)]
    low = res.trials[1]
    assert res.best.candidate.lr == 5e-3 and res.best.score >= 0.75 > low.score, res.to_json()
    adapter, train_result = res.best.artifact
    assert train_result.steps == 16 and validate_lora_dir(adapter, base)["r"] == 8


@pytest.mark.parametrize("task_id", ["antonym", "word_sorting", "country_capital"])
def test_starter_validation_comes_from_the_train_split_only(task_id):
    """Where the train split has unused rows they validate; else a part of the training sample does."""
    from brickwork.bricks.library_build import TRAIN_CAP, starter_validation
    from brickwork.tasks import load_tasks, sample

    task = load_tasks()[task_id]
    fit, val = starter_validation(task, seed=0)
    key = lambda e: (e.input, e.output)  # noqa: E731
    train, test = {key(e) for e in task.split("train")}, {key(e) for e in task.split("test")}
    assert val and {key(e) for e in fit + val} <= train and not {key(e) for e in val} & {key(e) for e in fit}
    assert not {key(e) for e in val} & test  # the test split is never a validation item
    pool = sample(task.split("train"), TRAIN_CAP, seed=0)
    if len(task.split("train")) - len(pool) >= 50:
        assert fit == pool  # the brick trains on the same examples as without --auto
    else:
        assert len(fit) + len(val) == len(pool)
