"""The starter library: the committed bricks install, validate, list, and one of them rebuilds."""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: spinning threads crawl on a busy CPU

import pytest

from brickwork.bricks.library_build import STARTER_DIR
from brickwork.tasks import load_tasks

# The cheapest task to rebuild: short prompts and answers, 50 test items.
REBUILD_TASK = "country_region"
# Greedy decoding of a rebuilt brick can flip a few borderline items (float summation order
# differs between thread counts); a wrong recipe or data misses by far more.
TOLERANCE = 0.06


def shipped() -> list[str]:
    """The committed starter bricks: one per bundled task."""
    return sorted(t for t in load_tasks() if (STARTER_DIR / t / "brick.json").is_file())


def test_every_committed_starter_brick_is_complete():
    tasks = load_tasks()
    assert len(tasks) == 17 and shipped() == sorted(tasks)
    total = 0
    for task_id in shipped():
        d = STARTER_DIR / task_id
        assert sorted(p.name for p in d.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "brick.json"]
        m = json.loads((d / "brick.json").read_text())
        assert m["name"] == task_id and m["kind"] == "lora"
        prov = m["provenance"]
        # bricks trained before anchors existed say so in the command that rebuilds them
        cmd = f"brickwork library build --retrain --tasks {task_id}"
        assert prov["command"] in (cmd, cmd + " --anchors 0", cmd + " --partner-anchors") and prov["seed"] == 0
        assert prov.get("n_anchors", 0) > 0 or prov["command"].endswith("--anchors 0")
        assert (prov.get("n_partner_anchors", 0) > 0) == prov["command"].endswith("--partner-anchors")
        assert {"exact_match", "base_exact_match", "n_eval", "eval_split"} <= set(m["metrics"])
        assert m["metrics"]["eval_split"] == "test"
        total += sum(p.stat().st_size for p in d.iterdir())
    # 14 bricks of ~1 MB and three with their own every-layer recipe (STARTER_RECIPES) of 2.5 MB
    assert total < 24 * 2**20, f"starter bricks take {total / 2**20:.1f} MiB"


@pytest.mark.integration
def test_library_build_installs_every_shipped_brick_validated(tmp_path, capsys, base):
    from brickwork.bricks import BrickStore
    from brickwork.cli import main

    lib = tmp_path / "lib"
    assert main(["library", "build", "--library", str(lib)]) == 0
    out = capsys.readouterr().out
    assert f"{len(shipped())} starter bricks" in out and "installed" in out
    bricks = BrickStore(lib, base=base).list()
    assert [b.name for b in bricks] == shipped()
    for b in bricks:
        m = b.manifest
        assert m.base_model["fingerprint"] == base.fingerprint and m.version == 1
        assert isinstance(m.metrics["exact_match"], float) and m.metrics["n_eval"] > 0
        assert m.description == load_tasks()[b.name].definition and m.examples and "starter" in m.tags
    # Building again changes nothing: no new versions.
    assert main(["library", "build", "--library", str(lib), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {r["status"] for r in res["bricks"]} == {"unchanged"} and len(res["bricks"]) == len(shipped())
    assert BrickStore(lib, base=base).state() == {t: 1 for t in shipped()}
    # A library installed by an older Brickwork (same weights, older starter text) is refreshed.
    store = BrickStore(lib, base=base)
    old = store.get("antonym")
    assert old.manifest.routing_samples
    store.add(old.path, old.manifest.replace(routing_samples=[], examples=old.manifest.examples[:3]))
    assert main(["library", "build", "--library", str(lib), "--json"]) == 0
    res = {r["task"]: r["status"] for r in json.loads(capsys.readouterr().out)["bricks"]}
    assert res.pop("antonym") == "refreshed" and set(res.values()) == {"unchanged"}
    now = BrickStore(lib, base=base).get("antonym")
    assert now.version == 3 and now.manifest.examples == old.manifest.examples
    assert now.manifest.routing_samples == old.manifest.routing_samples


def test_library_build_rejects_unknown_tasks(tmp_path, capsys):
    from brickwork.cli import main

    assert main(["library", "build", "--library", str(tmp_path), "--tasks", "nope"]) == 2
    assert "unknown task(s) ['nope']" in capsys.readouterr().err


def test_library_build_rejects_negative_anchors(tmp_path, capsys):
    from brickwork.cli import main

    assert main(["library", "build", "--library", str(tmp_path / "lib"), "--retrain", "--anchors", "-1"]) == 2
    assert "--anchors should be 0 or more, got -1" in capsys.readouterr().err
    assert not (tmp_path / "lib" / "bricks").exists()


def test_readme_shows_the_committed_starter_metrics():
    """The README's starter table is generated from the committed brick.json files, not typed."""
    from pathlib import Path

    from brickwork.bricks.library_build import metrics_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert metrics_table() in readme, "README starter table is stale: paste brickwork.bricks.library_build.metrics_table()"


@pytest.mark.integration
def test_starter_bricks_beat_the_base_model():
    """Every committed brick was measured above the base model on the same test prompts."""
    for task_id in shipped():
        met = json.loads((STARTER_DIR / task_id / "brick.json").read_text())["metrics"]
        assert met["exact_match"] > met["base_exact_match"], (task_id, met)


@pytest.mark.integration
def test_quick_retrain_learns_the_task(tmp_path, base):
    """The default run's cheaper variant of the rebuild: a short retrain already beats the base."""
    from brickwork.bricks import BrickStore
    from brickwork.bricks.library_build import install_prebuilt, retrain

    store = BrickStore(tmp_path / "lib", base=base)
    others = [t for t in shipped() if t != REBUILD_TASK]
    install_prebuilt(store, others, progress=False)  # the partners
    (row,) = retrain(store, [REBUILD_TASK], steps=30, eval_cap=30, anchors=24, partners=True, progress=False)
    assert row.exact_match is not None and row.base_exact_match is not None
    assert row.exact_match >= row.base_exact_match + 0.3, row
    m = store.get(REBUILD_TASK).manifest
    cmd = f"brickwork library build --retrain --tasks {REBUILD_TASK} --steps 30 --eval-cap 30 --anchors 24 --partner-anchors"
    assert m.provenance["command"] == cmd
    # other tasks' requests with the base model's answers, and again with their own brick's answers and delta
    n, n_partner = m.provenance["n_anchors"], m.provenance["n_partner_anchors"]
    assert 0 < n_partner < n <= 2 * 24, (n, n_partner)
    partners = m.provenance["partners"]  # which bricks, at which version, it trained beside
    assert partners and set(partners) <= set(others) and set(partners.values()) == {1}


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~4 CPU-minutes of training, far longer on a busy machine
def test_rebuild_reproduces_recorded_metric(tmp_path, base):
    """Rebuilding one starter brick with its recorded command gives its recorded metric."""
    from brickwork.bricks import BrickStore
    from brickwork.bricks.library_build import retrain

    recorded = json.loads((STARTER_DIR / REBUILD_TASK / "brick.json").read_text())
    store = BrickStore(tmp_path / "lib", base=base)
    (row,) = retrain(store, [REBUILD_TASK], seed=recorded["provenance"]["seed"], progress=False)
    assert row.n_eval == recorded["metrics"]["n_eval"]
    assert row.base_exact_match == pytest.approx(recorded["metrics"]["base_exact_match"], abs=TOLERANCE)
    assert row.exact_match == pytest.approx(recorded["metrics"]["exact_match"], abs=TOLERANCE)
    assert store.get(REBUILD_TASK).manifest.provenance["data_hash"] == recorded["provenance"]["data_hash"]
