"""Updating bricks from feedback: the gate (real training, small step counts), rollback, crashes, CLI."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brickwork.bricks.updating import Correction, UpdateConfig, plan_from_feedback, split_corrections
from brickwork.errors import ConfigError
from tests.conftest_update import WORDS, add_step_feedback, build_toy_brick, codename, secret

# A recipe sized for tests: a residual on the top 2 layers, 16 steps of 8.
FAST = UpdateConfig(steps=16, batch_size=8, lr=2e-3, top_layers=2, min_replay=8, correction_repeat=1)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"margin": -0.1}, "`margin` should be in"),
        ({"margin": 2}, "`margin` should be in"),
        ({"min_fix_rate": 1.5}, "`min_fix_rate` should be in"),
        ({"min_replay": 0}, "`min_replay` should be a positive integer"),
        ({"steps": 0}, "`steps` should be a positive integer or None"),
        ({"test_items": 0}, "`test_items` should be a positive integer or None"),
        ({"min_replay": 64, "max_replay": 8}, "`max_replay` \\(8\\) should be >= `min_replay` \\(64\\)"),
        ({"replay_ratio": -1}, "`replay_ratio` should be non-negative"),
    ],
)
def test_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        UpdateConfig(**kw)


def test_split_holds_out_a_seeded_quarter_or_nothing_when_too_few():
    cs = [Correction(text=str(i), answer="x") for i in range(12)]
    fit, held = split_corrections(cs, UpdateConfig())
    assert (len(fit), len(held)) == (9, 3) and set(fit).isdisjoint(held)
    assert split_corrections(cs, UpdateConfig()) == (fit, held)  # seeded
    assert split_corrections(cs[:3], UpdateConfig()) == (cs[:3], [])


def test_auto_steps_follow_the_data_size():
    cfg = UpdateConfig()
    assert cfg.steps_for(8) == cfg.min_steps and cfg.steps_for(10**5) == cfg.max_steps
    assert cfg.steps_for(160) == 30  # 3 epochs of 160 pairs in batches of 16
    assert UpdateConfig(steps=7).steps_for(10**5) == 7


def test_plan_sorts_feedback(tmp_path, library, make_brick):
    from brickwork.feedback import FeedbackStore

    library.add(make_brick("alpha"))
    fb = FeedbackStore(library.root)
    used = [{"name": "alpha", "version": 1, "weight": 1.0, "score": 0.8}]
    add_step_feedback(fb, text="fix me", output="wrong", correction="right", bricks=used)
    add_step_feedback(fb, text="keep me", output="fine", correction=None, bricks=used)
    add_step_feedback(fb, text="no-op", output="same", correction="Same.", bricks=used)  # repeats the output
    add_step_feedback(fb, text="composite", output="wrong", correction="right",
                      bricks=[{"name": "gone", "version": 1, "weight": 0.3}, {"name": "alpha", "version": 1, "weight": 0.7}])
    add_step_feedback(fb, text="nobody", output="base said", correction="new answer", bricks=[])
    add_step_feedback(fb, text="stale", output="x", correction="y", bricks=[{"name": "gone", "version": 2, "weight": 1.0}])
    plan = plan_from_feedback(library, fb.pending())
    assert [c.text for c in plan.updates["alpha"]] == ["fix me", "composite"]  # the heaviest brick owns it
    assert [it.answer for _, it in plan.good["alpha"]] == ["fine", "same"]
    assert [(g.text, g.answer) for g in plan.grow] == [("nobody", "new answer")]
    assert [r for _, r in plan.skipped] == ["brick 'gone' is no longer in the library"]


def test_cli_dry_run_writes_nothing(library, make_brick, capsys):
    from brickwork.cli import main
    from brickwork.feedback import FeedbackStore

    library.add(make_brick("alpha"))
    fb = FeedbackStore(library.root)
    for w in WORDS[:3]:
        add_step_feedback(fb, text=secret(w), output="falcon", correction="zebra",
                          bricks=[{"name": "alpha", "version": 1, "weight": 1.0}])
    assert main(["update", "--dry-run", "--no-grow", "--library", str(library.root)]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "alpha" in out and "3" in out
    assert library.versions("alpha") == [1]
    assert len(fb.pending()) == 3 and not (library.root / "updates").exists()


@pytest.mark.parametrize("engine", ["peft", "vllm", "vllm-server"])
def test_cli_engine_reaches_the_gates(library, monkeypatch, engine):
    from brickwork.cli import main
    from brickwork.library import Library, UpdateReport

    seen = {}

    def fake_update(self, **kw):
        seen.update(kw)
        return UpdateReport(plan=plan_from_feedback(self.store, []), dry_run=True)

    monkeypatch.setattr(Library, "update", fake_update)
    assert main(["update", "--engine", engine, "--library", str(library.root)]) == 0
    assert seen["engine"] == engine
    assert main(["update", "--library", str(library.root)]) == 0
    assert seen["engine"] == "peft"


def test_cli_unknown_engine_is_refused_naming_the_engines(library, capsys):
    from brickwork.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["update", "--engine", "tgi", "--library", str(library.root)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "invalid choice: 'tgi'" in err and "'peft', 'vllm', 'vllm-server'" in err


def test_cli_engine_choices_are_the_engine_names():
    """The CLI keeps its own tuple (importing the serving package would slow every command's start):
    it must name exactly the engines `serving.EngineName` does."""
    from typing import get_args

    from brickwork.cli import ENGINES
    from brickwork.serving import EngineName

    assert ENGINES == get_args(EngineName)


# -- real training ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_src(tmp_path_factory, base):
    return build_toy_brick(tmp_path_factory.mktemp("toy") / "toy", base)


@pytest.fixture(scope="module")
def runner(base):
    from brickwork.bricks.lineage import BaseRunner

    return BaseRunner(base)


@pytest.mark.integration
def test_good_update_from_feedback_is_accepted_and_rollback_restores_answers(library, toy_src, runner):
    from brickwork.library import Library
    from brickwork.feedback import FeedbackStore

    v1 = library.add(toy_src)
    probes = [secret(w) for w in WORDS[:12]] + [codename(w) for w in WORDS[20:28]]
    before = runner.generate(v1.path, probes, max_new_tokens=6)
    assert before[-8:] == ["falcon"] * 8  # the toy brick learned its family
    assert sum(o == "zebra" for o in before[:12]) == 0
    fb = FeedbackStore(library.root)
    for w, out in zip(WORDS[:12], before, strict=False):
        add_step_feedback(fb, text=secret(w), output=out, correction="zebra",
                          bricks=[{"name": "toy", "version": 1, "weight": 1.0, "score": 0.9}])
    report = Library(store=library).update(config=FAST, runner=runner, grow=False, command="pytest")
    (outcome,) = report.updates
    assert outcome.accepted, outcome.reasons
    m = outcome.metrics
    assert m["fix_rate_heldout"] >= 0.8 and m["n_holdout"] == 3 and m["test_drop"] <= 0.01
    assert library.active_version("toy") == 2
    v2 = library.get("toy")
    assert v2.manifest.provenance["parents"] == [{"name": "toy", "version": 1}]
    assert v2.manifest.provenance["update"]["n_corrections"] == 12
    assert (v2.path / "data" / "corrections.jsonl").read_text().count("zebra") == 12
    assert all(e.status == "applied" for e in fb.list())
    after = runner.generate(v2.path, probes, max_new_tokens=6)
    assert after[:12].count("zebra") >= 10 and after[-8:] == ["falcon"] * 8
    assert list((library.root / "updates").glob("*.json"))
    library.rollback("toy", to=1)
    assert runner.generate(library.get("toy").path, probes, max_new_tokens=6) == before


@pytest.mark.integration
def test_wrong_corrections_are_rejected_and_the_old_version_stays(library, toy_src, runner):
    from brickwork.bricks.updating import update_brick

    library.add(toy_src)
    rng = random.Random(0)
    wrong = [Correction(text=secret(w), answer=rng.choice(["kiwi", "mango", "plum", "lime", "pear", "fig"]))
             for w in WORDS[:12]]
    outcome = update_brick(library, "toy", wrong, config=FAST, runner=runner)
    assert not outcome.accepted and outcome.new_version is None
    assert any("held-out corrections" in r for r in outcome.reasons), outcome.reasons
    assert library.versions("toy") == [1] and library.active_version("toy") == 1
    assert not any((library.root / ".staging").iterdir())


@pytest.mark.integration
def test_a_failure_while_committing_leaves_the_previous_version_active(library, toy_src, runner, monkeypatch):
    from brickwork.bricks import store as store_mod
    from brickwork.bricks.updating import update_brick

    library.add(toy_src)

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(store_mod.BrickStore, "_write_state", staticmethod(boom))
    cs = [Correction(text=secret(w), answer="zebra") for w in WORDS[:4]]
    with pytest.raises(OSError, match="simulated"):
        update_brick(library, "toy", cs, config=UpdateConfig(steps=2, batch_size=4, top_layers=2, margin=1.0,
                                                             min_fix_rate=0.0, min_replay=2), runner=runner)
    monkeypatch.undo()
    assert library.state() == {"toy": 1} and library.versions("toy") == [1]
    assert library.add(toy_src).version == 2  # the orphaned version directory was swept, numbering goes on


_CRASH_SCRIPT = """
import sys
from brickwork.bricks import BrickStore
from brickwork.bricks.updating import Correction, UpdateConfig, update_brick
store = BrickStore(sys.argv[1])
cs = [Correction(text=f"Secret word for w{i}?", answer="zebra") for i in range(8)]
update_brick(store, "toy", cs, config=UpdateConfig(steps=500, batch_size=4, top_layers=2),
             progress=lambda m: print(m, flush=True))
"""


@pytest.mark.integration
def test_killing_an_update_mid_training_is_harmless(library, toy_src, runner):
    library.add(toy_src)
    before = runner.generate(library.get("toy").path, [codename("apple")], max_new_tokens=4)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", _CRASH_SCRIPT, str(library.root)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, start_new_session=True)
    try:
        deadline = time.time() + 300
        for line in proc.stdout:  # type: ignore[union-attr]
            if "training a residual" in line or time.time() > deadline:
                break
        time.sleep(3)  # inside training (or writing the merged base)
        assert proc.poll() is None, "the update finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert library.state() == {"toy": 1}
    assert runner.generate(library.get("toy").path, [codename("apple")], max_new_tokens=4) == before
    assert library.add(toy_src).version == 2  # the library still takes writes


def test_update_of_an_unknown_brick_names_the_library(library):
    from brickwork.bricks.updating import update_brick
    from brickwork.errors import BrickNotFound

    with pytest.raises(BrickNotFound, match="no brick named 'nope'"):
        update_brick(library, "nope", [Correction(text="a", answer="b")])


def test_report_json_shape(library, make_brick, capsys):
    from brickwork.cli import main

    library.add(make_brick("alpha"))
    assert main(["update", "--dry-run", "--json", "--library", str(library.root)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] is True and out["plan"]["updates"] == {} and out["updates"] == []


@pytest.mark.integration
def test_anchors_are_other_bricks_requests_with_this_bricks_answers(library, toy_src, runner, tmp_path):
    import shutil

    from brickwork.bricks.lineage import Item, write_items
    from brickwork.bricks.manifest import Manifest
    from brickwork.bricks.anchors import library_anchors

    toy = library.add(toy_src)
    other_src = tmp_path / "other"
    shutil.copytree(toy_src, other_src)
    write_items(other_src / "data" / "train.jsonl", [Item(text=secret(w), answer="zebra") for w in WORDS[:10]])
    m = Manifest.load(other_src).replace(name="other", description="Give the secret word for a word.")
    library.add(other_src, m)
    own = [secret(WORDS[0])]
    pairs = library_anchors(library, runner, n=6, seed=0, skip="toy", adapter_dir=toy.path, exclude=own)
    texts = [t for t, _ in pairs]
    assert 0 < len(pairs) <= 6 and set(texts) <= {secret(w) for w in WORDS[1:10]}  # never the brick's own
    assert [a for _, a in pairs] == runner.generate(toy.path, texts, max_new_tokens=32)  # what v1 answers today
    assert library_anchors(library, runner, n=0, seed=0, skip="toy") == []
    # with partners: each request also comes answered by its own brick ("other"), which it carries
    both = library_anchors(library, runner, n=6, seed=0, skip="toy", exclude=own, partners=True)
    plain = [p for p in both if len(p) == 2]
    paired = [p for p in both if len(p) == 3]
    other = library.get("other").path
    assert {t for t, _ in plain} <= set(texts) and paired and {p for _, _, p in paired} == {other}
    assert [a for _, a, _ in paired] == runner.generate(other, [t for t, _, _ in paired], max_new_tokens=32)
