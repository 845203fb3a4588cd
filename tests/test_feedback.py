"""The feedback store and `brickwork feedback`: durable, listable, consumable by the updater."""

from __future__ import annotations

import json
import sqlite3

import pytest

from brickwork.errors import ConfigError
from brickwork.feedback import FeedbackStore

BRICKS = [{"name": "english_plural", "version": 2, "weight": 1.0, "score": 0.8}]


def _add(fb: FeedbackStore, **kw):
    args = dict(
        run_id="r1", step_id="s1", kind="good", instruction="Plural of 'mouse'", subgoal="Plural of 'mouse'",
        input="mouse", prompt="Give the plural form of the given English noun.\nmouse", output="mice", bricks=BRICKS,
        engine="peft", base_model="sha256:x",
    )
    args.update(kw)
    return fb.add(**args)


def test_add_list_and_reopen(tmp_path):
    fb = FeedbackStore(tmp_path)
    good = _add(fb)
    corr = _add(fb, step_id="s2", kind="correction", correction=" m i c e ", output="m i c")
    assert good.id < corr.id and corr.correction == "m i c e" and corr.target == "m i c e" and good.target == "mice"
    again = FeedbackStore(tmp_path)  # a new process sees the same events
    events = again.list()
    assert [e.id for e in events] == [good.id, corr.id]
    assert events[0].bricks == tuple(BRICKS) and events[0].brick_names == ["english_plural"]
    assert [e.id for e in again.list(kind="correction")] == [corr.id]
    assert [e.id for e in again.list(brick="english_plural")] == [good.id, corr.id]
    assert again.list(brick="antonym") == []
    assert json.loads(json.dumps(events[1].to_json()))["correction"] == "m i c e"


def test_pending_latest_per_step_and_mark(tmp_path):
    fb = FeedbackStore(tmp_path)
    a = _add(fb, kind="correction", correction="mouses")
    b = _add(fb, kind="correction", correction="mice")  # the user changed their mind: newest wins
    c = _add(fb, run_id="r2")
    assert [e.id for e in fb.pending()] == [b.id, c.id]
    assert [e.id for e in fb.pending(latest_only=False)] == [a.id, b.id, c.id]
    assert fb.mark([a.id, b.id], "applied", by="update english_plural@3") == 2
    assert [e.id for e in fb.pending()] == [c.id]
    got = fb.get(b.id)
    assert got.status == "applied" and got.consumed_by == "update english_plural@3" and got.consumed_at


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"kind": "bad"}, "kind"),
        ({"kind": "correction", "correction": "  "}, "corrected text"),
        ({"kind": "correction"}, "corrected text"),
        ({"kind": "good", "correction": "x"}, "no correction"),
    ],
)
def test_bad_events(tmp_path, kw, msg):
    with pytest.raises(ConfigError, match=msg):
        _add(FeedbackStore(tmp_path), **kw)
    assert FeedbackStore(tmp_path).list() == []


def test_schema_is_plain_sqlite(tmp_path):
    """Other tools (the updater, a notebook) can read it with sqlite3 alone."""
    _add(FeedbackStore(tmp_path))
    with sqlite3.connect(tmp_path / "feedback.sqlite") as conn:
        row = conn.execute("SELECT kind, output, bricks, status FROM feedback").fetchone()
    assert row[0] == "good" and row[1] == "mice" and json.loads(row[2])[0]["version"] == 2 and row[3] == "pending"


def test_cli_feedback_on_a_run(tmp_path, capsys):
    """`brickwork feedback RUN --step s1 --good|--correction` reads the run's checkpoint (no model)."""
    from brickwork.cli import main
    from brickwork.orchestrator.sdk import Brickwork
    from brickwork.serving.fake import FakeEngine
    from tests.conftest_orchestrator import FakeStore, KeywordRetriever, brick_answer

    lib = tmp_path / "lib"
    with Brickwork(engine=FakeEngine(respond=brick_answer), planner="rules", retriever=KeywordRetriever(), store=FakeStore(lib)) as bw:
        run = bw.run("Give the plural of 'mouse', then spell it letter by letter.")
    assert main(["feedback", run.run_id, "--step", "s2", "--correction", "m i c e", "--library", str(lib)]) == 0
    assert "recorded feedback #1" in capsys.readouterr().out
    assert main(["feedback", run.run_id, "--step", "1", "--good", "--library", str(lib), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["step_id"] == "s1" and ev["kind"] == "good" and ev["bricks"][0]["name"] == "english_plural"
    assert main(["feedback", "--list", "--json", "--library", str(lib)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(e["step_id"], e["kind"], e["subgoal"]) for e in lines] == [
        ("s2", "correction", "spell mice letter by letter"),
        ("s1", "good", "Give the plural of 'mouse'"),
    ]
    assert main(["feedback", "--list", "--library", str(lib)]) == 0
    assert "correction" in capsys.readouterr().out
    # errors: one line, non-zero
    assert main(["feedback", "no-such-run", "--step", "s1", "--good", "--library", str(lib)]) == 2
    assert main(["feedback", run.run_id, "--step", "s7", "--good", "--library", str(lib)]) == 2
    assert main(["feedback", run.run_id, "--step", "s1", "--library", str(lib)]) == 2
    assert "error:" in capsys.readouterr().err
