"""update: a brick updated from corrections, measured the way knowledge-editing work reports it.

A starter brick is run on its task's *train* inputs; its wrong answers become correction events in
the feedback store (the gold answer as the correction), exactly as `brickwork feedback` records
them, and `brickwork update`'s code path (`Library.update`) trains and gates a new version. Then, for
the candidate (accepted or not) against the old version:

- **reliability**: accuracy on the corrected cases, as they were given;
- **generality**: accuracy on the same corrected inputs asked another way (the bare input, and the
  input followed by the task's instruction), and on held-out corrections of the same kind that were
  never trained on (the gate's own check);
- **locality**: share of outputs left unchanged on inputs the edit should not touch. *Other
  tasks*: every other starter task's test requests, instructed and bare, sent to the library as a
  user would (routed by its index, answered by the routed brick or the base model), before and
  after; the other bricks' files are checked byte-identical. Two stricter rows: this task's own test items it got right,
  still right; and other tasks' requests *forced through this brick* (never routed there: a
  stress test of the brick alone, where a task-specific LoRA answers garbage that any retraining
  reshuffles).

A deliberately harmful update (the same inputs with wrong answers: another label, or another
item's answer) goes through the same gate, which must reject it.

    brickwork eval update [--brick country_capital] [--corrections 68] [--out DIR]
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from pathlib import Path
from typing import Any

from brickwork.evals.merge import _f, say, scratch_library, write_report

DEFAULT_BRICK = "country_capital"
LOCALITY_TASKS = ("english_plural", "sentiment_binary", "two_digit_addition", "language_id")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--brick", default=DEFAULT_BRICK, help="the starter brick to update (default: %(default)s)")
    p.add_argument("--corrections", type=int, default=68,
                   help="corrections to feed (a quarter is held out by the gate; default: %(default)s)")
    p.add_argument("--scan", type=int, default=None, help="train inputs scanned for errors (default: all)")
    p.add_argument("--test-items", type=int, default=200, help="original test items the gate checks (default: %(default)s)")
    p.add_argument("--locality-items", type=int, default=30, help="test items per other task (default: %(default)s)")
    p.add_argument("--locality-tasks", default=",".join(LOCALITY_TASKS),
                   help="other tasks whose inputs must not change (default: %(default)s)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: from the data size)")
    p.add_argument("--replay-ratio", type=float, default=None, help="replayed original items per correction (default: UpdateConfig's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: UpdateConfig's)")
    p.add_argument("--anchors", type=int, default=None,
                   help="other bricks' requests trained to keep their answers (default: UpdateConfig's)")
    p.add_argument("--no-harmful", action="store_true", help="skip the harmful-update check")
    p.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    report = run(args, out)
    write_report(out, "update", report, markdown(report))
    return 0


def unseen_train(task: Any) -> list[Any]:
    """Train examples the starter brick was not trained on (what users would bring), else all."""
    from brickwork.bricks.library_build import starter_pairs

    seen = {q.strip() for q, _ in starter_pairs(task)}
    rest = [e for e in task.split("train") if e.input.strip() not in seen]
    return rest or task.split("train")


def routed_bricks(lib: Any, texts: list[str]) -> list[str | None]:
    """The brick each request is routed to by the library's index and router (None: the base model)."""
    from brickwork.retrieval_index import BrickIndex, Router, retrieve

    index = BrickIndex.open(lib)
    router = Router.for_index(index)
    # routes[0] is the heaviest brick; the shipped router picks at most one
    return [routes[0].name if routes else None for _hits, routes in retrieve(index, router, texts)]


def _adapter_hashes(lib: Any, *, exclude: str) -> dict[str, str]:
    import hashlib

    return {n: hashlib.sha256((lib.get(n).path / "adapter_model.safetensors").read_bytes()).hexdigest()
            for n in lib.names() if n != exclude}


def _paraphrases(task: Any, inp: str) -> list[str]:
    return [inp, f"{inp}\n{task.definition}"]


def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from brickwork.bricks.lineage import BaseRunner, Item, same_output, task_items
    from brickwork.bricks.updating import Correction, UpdateConfig, update_brick
    from brickwork.library import Library
    from brickwork.feedback import FeedbackStore
    from brickwork.tasks import load_tasks, sample

    t0 = time.perf_counter()
    tasks = load_tasks()
    name = args.brick
    task = tasks[name]
    others = [t for t in args.locality_tasks.split(",") if t and t != name]
    lib = scratch_library(args.library, list(tasks), out / "library")  # the whole starter set: real routing
    runner = BaseRunner(lib.base)
    old = lib.get(name)
    recipe = {k: v for k, v in (("replay_ratio", args.replay_ratio), ("lr", args.lr),
                                            ("anchors", args.anchors)) if v is not None}
    config = UpdateConfig(test_items=args.test_items, steps=args.steps, seed=args.seed, **recipe)

    # 1. corrections: the brick's wrong answers on train inputs
    train = sample(unseen_train(task), args.scan, seed=args.seed)
    say(f"[update] scanning {len(train)} train inputs of {name} (not in the starter brick's training) for wrong answers")
    scan_items = [Item(text=task.query(e), answer=e.output, answers=e.answers, task=name) for e in train]
    scan = runner.score(old.path, scan_items)
    wrong = [(it, o, e) for it, o, e in zip(scan_items, scan.outputs, train, strict=True) if not it.correct(o)]
    random.Random(args.seed).shuffle(wrong)
    wrong = wrong[: args.corrections]
    say(f"[update] {name} v{old.version}: {scan.accuracy:.3f} on the scanned train inputs; "
        f"{len(wrong)} corrections used")
    fb = FeedbackStore(lib.root)
    for i, (it, o, _e) in enumerate(wrong):
        fb.add(run_id=f"eval-update-{i}", step_id="s1", kind="correction", correction=it.answer, instruction=it.text,
               subgoal=it.text, prompt=it.text, output=o,
               bricks=[{"name": name, "version": old.version, "weight": 1.0, "score": 1.0}])
    corrections = [Correction(text=it.text, answer=it.answer) for it, _o, _e in wrong]

    # 2. the update, through brickwork update's code path (candidate kept for measurement)
    system_items = [Item(text=q, answer=e.output, answers=e.answers)
                    for t in tasks if t != name
                    for e in sample(tasks[t].split("test"), args.locality_items, seed=args.seed)
                    for q in (tasks[t].query(e), e.input)]  # as an instruction, and bare
    routed = routed_bricks(lib, [it.text for it in system_items])
    others_before = _adapter_hashes(lib, exclude=name)
    shutil.rmtree(out / "candidates", ignore_errors=True)
    cand_dir = out / "candidates" / name
    report = Library(store=lib).update(config=config, runner=runner, grow=False, progress=say, command="brickwork eval update",
                        keep_candidates=out / "candidates")
    (outcome,) = report.updates

    # 3. measurements on the candidate vs the old version (the gate measured reliability, the
    #    held-out corrections and the brick's own test items already: reused, not re-run)
    from brickwork.bricks.updating import split_corrections

    gm = outcome.metrics
    fit, held = split_corrections(corrections, config)
    fit_set = {c.text for c in fit}
    fit_examples = [e for it, _o, e in wrong if it.text in fit_set]
    para_items = [Item(text=p, answer=e.output, answers=e.answers) for e in fit_examples for p in _paraphrases(task, e.input)]
    para_old = runner.score(old.path, para_items).accuracy
    para_new = runner.score(cand_dir, para_items).accuracy
    loc: dict[str, Any] = {}
    for t in others:
        its = task_items(t, "test", n=args.locality_items, seed=args.seed)
        a, b = runner.score(old.path, its), runner.score(cand_dir, its)
        loc[t] = round(sum(same_output(x, y) for x, y in zip(a.outputs, b.outputs, strict=True)) / len(its), 4)
    other_tasks_locality = sum(loc.values()) / len(loc) if loc else None
    others_after = _adapter_hashes(lib, exclude=name)
    # other tasks through the library: only requests routed to this brick can change (the other
    # bricks' files are compared above); those are generated with the old and the new version
    to_brick = [it for it, r in zip(system_items, routed, strict=True) if r == name]
    if to_brick:
        a, b = runner.score(old.path, to_brick), runner.score(cand_dir, to_brick)
        changed = sum(not same_output(x, y) for x, y in zip(a.outputs, b.outputs, strict=True))
    else:
        changed = 0
    unchanged_files = others_before == others_after
    system_locality = (1 - changed / len(system_items)) if unchanged_files else None

    # 4. a harmful update must be rejected
    harmful = None
    if not args.no_harmful and wrong:
        if outcome.accepted:
            lib.rollback(name, to=old.version)
        labels = list(task.labels or [])
        rng = random.Random(args.seed + 1)
        pool = [e.output for e in task.split("train")]
        bad = []
        for it, _o, _e in wrong:
            choices = [x for x in (labels or pool) if x.strip().lower() != it.answer.strip().lower()]
            bad.append(Correction(text=it.text, answer=rng.choice(choices)))
        say(f"[update] harmful update: {len(bad)} wrong corrections")
        h = update_brick(lib, name, bad, config=config, runner=runner, progress=say, command="brickwork eval update (harmful)")
        harmful = {"accepted": h.accepted, "reasons": h.reasons, "metrics": h.metrics}
    return {
        "suite": "update",
        "brick": name,
        "recipe": {k: getattr(config, k) for k in ("replay_ratio", "anchors", "lr", "steps", "epochs", "correction_repeat", "top_layers", "rank")},
        "old_version": old.version,
        "scan": {"n": len(train), "accuracy": round(scan.accuracy, 4), "wrong": len(scan_items) - scan.correct},
        "n_corrections": len(corrections),
        "gate": outcome.to_json(),
        "reliability": gm.get("reliability"),
        "generality": {"paraphrases": round(para_new, 4), "paraphrases_before": round(para_old, 4),
                       "n_paraphrases": len(para_items), "heldout_corrections": gm.get("fix_rate_heldout"),
                       "n_heldout": len(held)},
        "locality": {"system": round(system_locality, 4) if system_locality is not None else None,
                     "n_system": len(system_items), "n_system_routed_here": len(to_brick), "n_system_changed": changed,
                     "other_tasks": round(other_tasks_locality, 4) if other_tasks_locality is not None else None,
                     "per_task": loc, "own_test_unchanged": gm.get("locality"), "n_own": gm.get("n_test"),
                     "own_test_kept_right": gm.get("kept_right"),
                     "own_test_accuracy": [gm.get("old_test_accuracy"), gm.get("new_test_accuracy")],
                     "other_bricks_untouched": unchanged_files},
        "harmful": harmful,
        "targets": {"reliability": 0.9, "generality": 0.8, "locality": 0.98, "n_corrections": 50},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def markdown(r: dict[str, Any]) -> str:
    g, loc, gate = r["generality"], r["locality"], r["gate"]
    decision = "accepted" if gate["accepted"] else "rejected: " + "; ".join(gate["reasons"])
    lines = [
        f"# update: `{r['brick']}` v{r['old_version']} updated from {r['n_corrections']} corrections",
        "",
        f"Corrections: the brick's wrong answers on {r['scan']['n']} train inputs (it scored "
        f"{r['scan']['accuracy']:.3f} there), fed as feedback events; gate decision: **{decision}**.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| reliability (corrected cases, {gate['metrics'].get('n_fit', '-')} trained) | {_f(r['reliability'])} | >= 0.9 |",
        f"| generality: same inputs reworded ({g['n_paraphrases']}; before: {_f(g['paraphrases_before'])}) | {_f(g['paraphrases'])} | >= 0.8 |",
        f"| generality: held-out corrections ({g['n_heldout']}, never trained on) | {_f(g['heldout_corrections'])} | - |",
        f"| locality: other tasks' requests through the library (routed; {loc.get('n_system', '-')}, "
        f"{loc.get('n_system_routed_here', '-')} routed to this brick), answers unchanged | {_f(loc.get('system'))} | >= 0.98 |",
        f"| locality (stress): other tasks' inputs forced through this brick, outputs unchanged | {_f(loc['other_tasks'])} | - |",
        f"| locality: own test inputs, outputs unchanged ({loc['n_own']}) | {_f(loc['own_test_unchanged'])} | - |",
        f"| locality: own test inputs it got right, still right | {_f(loc.get('own_test_kept_right'))} | - |",
        f"| own test accuracy old -> new | {_f(loc['own_test_accuracy'][0])} -> {_f(loc['own_test_accuracy'][1])} | drop <= 0.01 |",
        f"| other bricks' files byte-identical | {loc['other_bricks_untouched']} | True |",
        "",
        "Locality (stress) per other task: " + ", ".join(f"{t} {_f(v)}" for t, v in loc["per_task"].items()) + ".",
    ]
    h = r.get("harmful")
    if h is not None:
        lines += ["", f"Harmful update (same inputs, wrong answers): **{'accepted (gate failed!)' if h['accepted'] else 'rejected'}**"
                  + ("" if h["accepted"] else ": " + "; ".join(h["reasons"])) + "."]
    lines += ["", f"Total {r['seconds']} s.", ""]
    return "\n".join(lines)
