"""`brickwork run`: the DESIGN.md §5 JSON contract, --file batch mode, readable output, errors."""

from __future__ import annotations

import json

import pytest

from brickwork.cli import main
from brickwork.serving.fake import FakeEngine
from tests.conftest_orchestrator import FakeStore, KeywordRetriever, brick_answer

STEP_KEYS = ["id", "subgoal", "depends_on", "bricks", "output", "engine", "seconds"]


@pytest.fixture
def fake_cli(tmp_path, monkeypatch):
    """`brickwork run` on a fake engine and retriever (everything else real: graph, planner, checkpoints)."""
    import brickwork.cli.run as run_cli
    from brickwork.orchestrator.sdk import Brickwork

    made = []

    def open_fake(args):
        bw = Brickwork(engine=FakeEngine(respond=brick_answer), planner="rules", retriever=KeywordRetriever(), store=FakeStore(tmp_path / "lib"))
        made.append(bw)
        return bw

    monkeypatch.setattr(run_cli, "open_brickwork", open_fake)
    return made


def check_contract(d: dict) -> None:
    assert list(d) == ["run_id", "instruction", "answer", "steps", "seconds"]
    assert isinstance(d["run_id"], str) and isinstance(d["answer"], str) and isinstance(d["seconds"], float)
    for s in d["steps"]:
        assert list(s) == STEP_KEYS
        assert isinstance(s["depends_on"], list) and isinstance(s["output"], str)
        for b in s["bricks"]:
            assert list(b) == ["name", "version", "weight", "score"]
            assert isinstance(b["version"], int) and isinstance(b["weight"], float)


def test_json_contract(fake_cli, capsys):
    assert main(["run", "Give the plural of 'mouse', then spell it letter by letter.", "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    d = json.loads(out[0])
    check_contract(d)
    assert d["answer"] == "m i c e"
    assert [s["depends_on"] for s in d["steps"]] == [[], ["s1"]]
    assert d["steps"][0]["bricks"][0]["name"] == "english_plural"


def test_file_mode_one_json_per_line_in_order(fake_cli, tmp_path, capsys):
    f = tmp_path / "in.txt"
    lines = ["Give the plural of 'wolf'", "", "Spell 'cat'", "What is the capital of Peru?", "Give the plural of 'mouse', then spell it."]
    f.write_text("\n".join(lines) + "\n")
    assert main(["run", "--file", str(f), "--json"]) == 0
    captured = capsys.readouterr()
    objs = [json.loads(x) for x in captured.out.splitlines()]
    assert [o["instruction"] for o in objs] == [x for x in lines if x]
    assert [o["answer"] for o in objs] == ["wolves", "c a t", "Lima", "m i c e"]
    for o in objs:
        check_contract(o)
    calls = fake_cli[0].engine.engine.calls
    assert sum(len(c) for c in calls) == 5 and len(calls) < 5  # batched, not one by one
    assert "progress: 4/4" in captured.err


def test_readable_output(fake_cli, capsys):
    assert main(["run", "Give the plural of 'mouse', then spell it letter by letter."]) == 0
    out = capsys.readouterr().out
    assert "plan (rules planner): 2 steps" in out
    assert "english_plural@1 (score 0.90)" in out
    assert "-> mice" in out and "answer: m i c e" in out
    assert "brickwork feedback r" in out


def test_brick_and_base_modes(fake_cli, capsys):
    assert main(["run", "mouse", "--brick", "english_plural", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["steps"]) == 1 and d["steps"][0]["bricks"] == [{"name": "english_plural", "version": 1, "weight": 1.0, "score": None}]
    assert main(["run", "Give the plural of 'mouse', then spell it.", "--base", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["steps"]) == 1 and d["steps"][0]["bricks"] == []


@pytest.mark.parametrize(
    ("argv", "code", "msg"),
    [
        (["run"], 2, "exactly one of"),
        (["run", "x", "--file", "f.txt"], 2, "exactly one of"),
        (["run", "x", "--brick", "nope"], 3, "no brick named 'nope'"),
        (["run", "x", "--brick", "english_plural:abc"], 2, "not a number"),
        (["run", "--resume", "no-such-run"], 2, "no run"),
        (["run", "--file", "/nonexistent/file.txt"], 2, "cannot read"),
    ],
)
def test_errors_are_one_line(fake_cli, capsys, argv, code, msg):
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and msg in err[-1]


def test_brick_and_base_are_exclusive(fake_cli):
    with pytest.raises(SystemExit) as exc:
        main(["run", "x", "--brick", "a", "--base"])
    assert exc.value.code == 2
