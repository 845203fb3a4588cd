"""`brickwork index ...`: the JSON contract, --file == single queries, check/rebuild exit codes."""

from __future__ import annotations

import json

import pytest

from brickwork.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def lib(library, base):
    from tests.conftest import add_starter_manifests

    return add_starter_manifests(library, base)


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_search_json_contract(lib, capsys):
    code, out, _ = _run(capsys, "index", "search", "What is the plural of goose?", "--k", "3", "--json", "--library", str(lib.root))
    assert code == 0
    (line,) = out.strip().splitlines()
    obj = json.loads(line)
    assert set(obj) == {"query", "results", "route", "why"}
    assert obj["why"]["decision"] == "brick" and obj["why"]["best"]["name"] == "english_plural"
    assert obj["query"] == "What is the plural of goose?"
    assert len(obj["results"]) == 3
    for r in obj["results"]:
        assert set(r) == {"name", "version", "score"} and isinstance(r["version"], int) and isinstance(r["score"], float)
    assert [r["score"] for r in obj["results"]] == sorted((r["score"] for r in obj["results"]), reverse=True)
    assert obj["results"][0]["name"] == "english_plural"
    assert obj["route"] == [{"name": "english_plural", "weight": 1.0}]
    for r in obj["route"]:
        assert set(r) == {"name", "weight"}


def test_out_of_scope_routes_to_base(lib, capsys):
    code, out, _ = _run(capsys, "index", "search", "Explain how photosynthesis works in detail.", "--json", "--library", str(lib.root))
    assert code == 0 and json.loads(out)["route"] == []


def test_file_output_matches_single_queries(lib, capsys, tmp_path):
    queries = ["What is the plural of goose?", "What's 91 minus 17?", "capital of Peru?", "WIN a FREE iPhone now, txt 8080", "write a haiku"]
    f = tmp_path / "q.txt"
    f.write_text("\n".join(queries) + "\n\n")
    code, out, _ = _run(capsys, "index", "search", "--file", str(f), "--json", "--library", str(lib.root))
    assert code == 0
    lines = [json.loads(x) for x in out.strip().splitlines()]
    assert [x["query"] for x in lines] == queries
    for q, got in zip(queries, lines, strict=True):
        _, single, _ = _run(capsys, "index", "search", q, "--json", "--library", str(lib.root))
        one = json.loads(single)
        assert [r["name"] for r in one["results"]] == [r["name"] for r in got["results"]]
        assert [r["score"] for r in one["results"]] == pytest.approx([r["score"] for r in got["results"]], abs=1e-5)
        assert one["route"] == got["route"]


def test_check_reports_drift_and_rebuild_repairs(lib, capsys, base):
    code, out, _ = _run(capsys, "index", "rebuild", "--library", str(lib.root))
    assert code == 0 and "4 bricks" in out
    assert _run(capsys, "index", "check", "--library", str(lib.root))[0] == 0
    lib.remove("sms_spam")  # the store changes behind the index's back
    code, out, _ = _run(capsys, "index", "check", "--json", "--library", str(lib.root))
    assert code == 1 and json.loads(out)["extra"] == ["sms_spam"]
    assert _run(capsys, "index", "rebuild", "--library", str(lib.root))[0] == 0
    assert _run(capsys, "index", "check", "--library", str(lib.root))[0] == 0


def test_usage_errors_are_one_line(lib, capsys):
    code, _, err = _run(capsys, "index", "search", "--library", str(lib.root))
    assert code == 2 and err.startswith("error: ")
