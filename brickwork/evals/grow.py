"""grow: a new brick grown from feedback on a task no brick covers, after 16 / 64 / 256 examples.

The task is held out of the starter library: the library holds every other starter brick. (Each
starter brick is trained on its own task's data only, so "the starter set retrained without task T"
is exactly "the starter set minus T's brick"; nothing needs retraining.) Feedback events are
recorded as the orchestrator records them for steps the base model answered (no brick), with the
gold answer as the correction, from T's *train* split; `Library.update` (what `brickwork update` runs)
clusters them, grows a brick, gates it against the base model on a held-out part, adds it and
syncs the index. Then, on T's *test* split (seeded sample):

- accuracy of the new brick (its own prompts: the task's instruction + input) vs the base model;
- routing share: the share of T's test requests that the index + router now send to the new brick,
  for three wordings: the instruction the feedback used, the bare input, and hand-written requests
  in other words (``brickwork/data/routing/instructions.jsonl``, report half); and, before growing,
  where those requests went (the base model, or another brick).

    brickwork eval grow [--task date_reformat] [--sizes 16,64,256] [--test-items 100] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from brickwork.evals.merge import _f, say, scratch_library, write_report

DEFAULT_TASK = "date_reformat"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default=DEFAULT_TASK, help="the task held out of the library (default: %(default)s)")
    p.add_argument("--sizes", default="16,64,256", help="feedback examples per run (default: %(default)s)")
    p.add_argument("--test-items", type=int, default=100, help="test items scored (seeded; default: %(default)s)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: from the data size)")
    p.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    from brickwork.errors import ConfigError

    try:
        sizes = [int(x) for x in args.sizes.split(",")]
    except ValueError:
        raise ConfigError(f"--sizes takes comma-separated integers, got {args.sizes!r}") from None
    out = Path(args.out)
    report = run(args, sizes, out)
    write_report(out, "grow", report, markdown(report))
    return 0


def _requests(task: Any, test: list[Any], seed: int) -> dict[str, list[str]]:
    import random

    from brickwork.evals.routing import ROUTING_DATA, fill

    templates = [json.loads(line) for line in (ROUTING_DATA / "instructions.jsonl").read_text().splitlines() if line.strip()]
    mine = [t["text"] for t in templates if t["task"] == task.task_id and t["split"] == "report"]
    rng = random.Random(seed)
    reworded = [fill(rng.choice(mine), e.input) for e in test] if mine else []
    return {"instruction": [task.query(e) for e in test], "bare": [e.input for e in test], "reworded": reworded}


def _route_shares(lib: Any, requests: dict[str, list[str]], target: str | None) -> dict[str, dict[str, float]]:
    from brickwork.retrieval_index import BrickIndex, Router, retrieve

    index = BrickIndex.open(lib)
    router = Router.for_index(index)
    out = {}
    for style, qs in requests.items():
        if not qs:
            continue
        routes = [r for _, r in retrieve(index, router, qs)]
        top = [r[0].name if r else None for r in routes]
        out[style] = {
            "to_new_brick": round(sum(t == target for t in top) / len(top), 4) if target else 0.0,
            "to_base": round(sum(t is None for t in top) / len(top), 4),
            "to_other": round(sum(t is not None and t != target for t in top) / len(top), 4),
        }
    return out


def run(args: argparse.Namespace, sizes: list[int], out: Path) -> dict[str, Any]:
    from brickwork.bricks.growing import GrowConfig
    from brickwork.bricks.lineage import BaseRunner, Item
    from brickwork.feedback import FEEDBACK_DB, FeedbackStore
    from brickwork.library import Library
    from brickwork.tasks import load_tasks, sample

    t0 = time.perf_counter()
    tasks = load_tasks()
    task = tasks[args.task]
    lib = scratch_library(args.library, list(tasks), out / "library", exclude=[task.task_id])
    runner = BaseRunner(lib)
    test = sample(task.split("test"), args.test_items, seed=args.seed)
    test_items = [Item(text=task.query(e), answer=e.output, answers=e.answers) for e in test]
    base_acc = runner.score(None, test_items).accuracy
    requests = _requests(task, test, args.seed)
    say(f"[grow] {task.task_id} held out; base model {base_acc:.3f} on {len(test)} test items; routing before growing")
    before = _route_shares(lib, requests, None)
    rows = []
    train = task.split("train")
    for n in sizes:
        t = time.perf_counter()
        for suffix in ("", "-wal", "-shm"):  # a fresh feedback store per run
            (lib.root / (FEEDBACK_DB + suffix)).unlink(missing_ok=True)
        fb = FeedbackStore(lib.root)
        for i, e in enumerate(sample(train, n, seed=args.seed)):
            text = task.query(e)
            fb.add(run_id=f"eval-grow-{n}-{i}", step_id="s1", kind="correction", correction=e.output, instruction=text,
                   subgoal=text, prompt=text, output="(the base model's answer)", bricks=[])
        gcfg = GrowConfig(min_examples=min(16, n), steps=args.steps, seed=args.seed)
        say(f"[grow] {n} feedback examples")
        rep = Library(store=lib).update(grow_config=gcfg, runner=runner, progress=say, command=f"brickwork eval grow ({n})")
        grown = [g for g in rep.grown if g.added]
        row: dict[str, Any] = {"examples": n, "clusters": len(rep.grown), "waiting": rep.waiting,
                               "outcomes": [g.to_json() for g in rep.grown]}
        if grown:
            g = max(grown, key=lambda x: x.metrics.get("n_train", 0))
            brick = lib.get(g.name)
            acc = runner.score(brick.path, test_items).accuracy
            row.update(brick=g.name, description=g.description, accuracy=round(acc, 4), gain=round(acc - base_acc, 4),
                       heldout=g.metrics, routing=_route_shares(lib, requests, g.name))
            for x in grown:
                lib.remove(x.name)
            Library(store=lib).sync_index()
        else:
            row.update(brick=None, accuracy=None, gain=None, routing=None)
        row["seconds"] = round(time.perf_counter() - t, 1)
        say(f"[grow] {n}: brick {row['brick']} accuracy {row['accuracy']} (base {base_acc:.3f}); "
            f"routing {row.get('routing')}")
        rows.append(row)
    return {
        "suite": "grow",
        "task": task.task_id,
        "n_test": len(test),
        "base_accuracy": round(base_acc, 4),
        "routing_before": before,
        "rows": rows,
        "targets": {"gain_at_64": 0.3, "routing_share_at_64": 0.9},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# grow: `{r['task']}` (held out of the starter library) grown from feedback",
        "",
        f"Test split: {r['n_test']} seeded items; the base model scores {r['base_accuracy']:.3f}. Routing share = the "
        "share of the task's test requests whose first route is the new brick (instruction as in the feedback / bare "
        "input / hand-written rewording).",
        "",
        "| feedback examples | brick | accuracy | vs base | held-out (brick / base) | routed: instruction | bare | reworded |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        rt = row.get("routing") or {}
        ho = row.get("heldout") or {}
        gain = row.get("gain")
        lines.append(
            f"| {row['examples']} | {row.get('brick') or 'not added'} | {_f(row.get('accuracy'))} | "
            f"{'-' if gain is None else f'{gain * 100:+.1f} pts'} | {_f(ho.get('exact_match'))} / {_f(ho.get('base_exact_match'))} | "
            + " | ".join(_f((rt.get(s) or {}).get("to_new_brick")) for s in ("instruction", "bare", "reworded")) + " |"
        )
    b = r["routing_before"]
    lines += ["", "Before growing, those requests went to: " + "; ".join(
        f"{s}: base {_f(v['to_base'])}, another brick {_f(v['to_other'])}" for s, v in b.items()) + "."]
    for row in r["rows"]:
        for o in row["outcomes"]:
            if not o["added"]:
                lines.append(f"- {row['examples']} examples: {o['name']} not added: {'; '.join(o['reasons'])}")
    lines += ["", f"Total {r['seconds']} s.", ""]
    return "\n".join(lines)
