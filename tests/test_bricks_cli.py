from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from brickwork.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_show_history_rollback_export_import(library, make_brick, capsys, tmp_path):
    library.add(make_brick("alpha", description="first alpha"))
    library.add(make_brick("alpha", description="second alpha"))
    lib = str(library.root)

    code, out, _ = run_cli(capsys, "bricks", "list", "--library", lib, "--json")
    rows = json.loads(out)
    assert code == 0 and [(r["name"], r["version"]) for r in rows] == [("alpha", 2)]
    assert rows[0]["base_model"]["fingerprint"].startswith("sha256:")

    code, out, _ = run_cli(capsys, "bricks", "history", "alpha", "--library", lib, "--json")
    assert [h["active"] for h in json.loads(out)] == [False, True]

    assert run_cli(capsys, "bricks", "rollback", "alpha", "--to", "1", "--library", lib)[0] == 0
    code, out, _ = run_cli(capsys, "bricks", "show", "alpha", "--library", lib, "--json")
    assert json.loads(out)["description"] == "first alpha"

    code, out, _ = run_cli(capsys, "bricks", "export", "alpha", str(tmp_path), "--library", lib)
    archive = out.split("wrote ")[1].strip()
    other = tmp_path / "other-lib"
    code, out, _ = run_cli(capsys, "bricks", "import", archive, "--library", str(other), "--json")
    assert code == 0 and json.loads(out)["description"] == "first alpha"

    code, _, _ = run_cli(capsys, "bricks", "remove", "alpha", "--library", lib)
    assert code == 0 and library.names() == []


@pytest.mark.parametrize(
    "argv, message, code",
    [
        (["bricks", "show", "ghost"], "no brick named 'ghost'", 3),
        (["bricks", "show", "../etc"], "invalid brick name", 2),
        (["bricks", "rollback", "ghost", "--to", "1"], "no brick named 'ghost'", 3),
        (["bricks", "import", "/nonexistent/dir"], "does not exist", 1),
    ],
)
def test_errors_are_one_line_and_nonzero(argv, message, code, library, capsys):
    rc, out, err = run_cli(capsys, *argv, "--library", str(library.root))
    assert rc == code
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def _add_many(lib_root: str, src: str, n: int) -> None:
    from brickwork.bricks import BrickStore

    store = BrickStore(lib_root)
    for _ in range(n):
        store.add(src)


def test_two_processes_never_corrupt_the_library(library, make_brick):
    library.add(make_brick("shared"))
    src = str(make_brick("shared"))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_add_many, args=(str(library.root), src, 3)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert library.versions("shared") == list(range(1, 8))
    assert library.active_version("shared") == 7
