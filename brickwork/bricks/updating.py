"""Updating a brick from corrections: a gated new version, or the old one kept and the reason said.

An update trains a *residual* LoRA on top of the brick's current version (the old delta merged
into the base while training), on the corrections plus a replay sample of the brick's original
data, and composes the two exactly with ``cat`` (padded to a vLLM rank; compressed by SVD only if
it would exceed `max_rank`). The old behaviour is therefore the starting point, not something to
relearn, and the old version's weights are untouched.

The candidate is accepted only if

1. it fixes the corrections: on a held-out part of them (never trained on) it answers at least
   `min_fix_rate` correctly (with fewer than `min_for_holdout` corrections there is nothing to hold
   out, and the trained corrections are checked instead: that is said in the outcome), and
2. the brick's original test accuracy (its tasks' test items and its own held-out data, plus the
   outputs users confirmed as good) drops by no more than `margin` (default 1 point).

Otherwise the old version stays active and `UpdateOutcome.reasons` says why. An accepted
candidate is written with `BrickStore.add` (staged, validated, renamed, then committed), so a crash
at any point before that leaves the previous version active and the library unchanged.

Example::

    outcome = update_brick(store, "english_plural", [Correction(text="...\\nox", answer="oxen")])
    outcome.accepted, outcome.reasons, outcome.metrics["generality"]
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brickwork._checks import StepBudget, fraction, non_negative_int, optional_positive_int, positive_int
from brickwork.bricks.anchors import library_anchors
from brickwork.bricks.lineage import (
    CONFIRMED_FILE,
    CORRECTIONS_FILE,
    DATA_DIR,
    BaseRunner,
    Item,
    brick_data,
    same_output,
    test_items,
    train_items,
    write_items,
)
from brickwork.bricks.store import Brick, BrickStore
from brickwork.errors import ConfigError
from brickwork.models import BaseModel

Progress = Callable[[str], None]


@dataclass(kw_only=True)
class UpdateConfig(StepBudget):
    """The update recipe and its acceptance gate (fractions are in [0, 1]: 0.01 = 1 point)."""

    margin: float = 0.01
    min_fix_rate: float = 0.8
    holdout_fraction: float = 0.25
    min_for_holdout: int = 4
    replay_ratio: float = 2.0
    min_replay: int = 16
    max_replay: int = 512
    anchors: int = 0
    correction_repeat: int = 2
    test_items: int | None = 200
    epochs: float = 3.0
    min_steps: int = 20
    max_steps: int = 200
    steps: int | None = None
    batch_size: int = 16
    lr: float = 1e-3
    rank: int = 8
    top_layers: int | None = 6
    max_rank: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("margin", "min_fix_rate", "holdout_fraction"):
            fraction(name, getattr(self, name))
        non_negative_int("anchors", self.anchors)
        for name in ("min_for_holdout", "min_replay", "max_replay", "correction_repeat", "rank"):
            positive_int(name, getattr(self, name))
        self.check_steps()
        optional_positive_int("test_items", self.test_items)
        if not isinstance(self.replay_ratio, int | float) or self.replay_ratio < 0:
            raise ConfigError(f"`replay_ratio` should be non-negative, got {self.replay_ratio!r}.")
        if self.max_replay < self.min_replay:
            raise ConfigError(f"`max_replay` ({self.max_replay}) should be >= `min_replay` ({self.min_replay}).")


@dataclass(frozen=True, kw_only=True)
class Correction:
    """What the brick should have answered for one user text (`event_id`: the feedback event)."""

    text: str
    answer: str
    event_id: int | None = None
    output: str | None = None  # what the brick said

    def item(self) -> Item:
        return Item(text=self.text, answer=self.answer)


@dataclass(frozen=True, kw_only=True)
class UpdateOutcome:
    """The gate's decision on one brick, with the numbers behind it."""

    brick: str
    old_version: int
    new_version: int | None
    accepted: bool
    reasons: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)
    event_ids: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "brick": self.brick,
            "old_version": self.old_version,
            "new_version": self.new_version,
            "accepted": self.accepted,
            "reasons": self.reasons,
            "metrics": self.metrics,
            "event_ids": self.event_ids,
        }


def split_corrections(corrections: Sequence[Correction], config: UpdateConfig) -> tuple[list[Correction], list[Correction]]:
    """(fit, held out), seeded; nothing is held out below `min_for_holdout` corrections."""
    items = list(corrections)
    if len(items) < config.min_for_holdout or config.holdout_fraction == 0:
        return items, []
    random.Random(config.seed).shuffle(items)
    k = max(1, round(len(items) * config.holdout_fraction))
    return items[k:], items[:k]


def replay_sample(brick: Brick, fit: Sequence[Correction], config: UpdateConfig) -> list[Item]:
    """A seeded sample of the brick's original data (no corrected input), bare or instructed at random."""
    corrected = {c.text.strip() for c in fit}
    pool = [it for it in train_items(brick.manifest, brick.path) if it.text.strip() not in corrected]
    n = min(len(pool), max(config.min_replay, min(config.max_replay, round(config.replay_ratio * len(fit)))))
    rng = random.Random(config.seed + 1)
    chosen = [pool[i] for i in sorted(rng.sample(range(len(pool)), n))] if n < len(pool) else pool
    out = []
    for it in chosen:
        # task items carry "definition\ninput"; bricks are also reached by the bare input
        if it.task and "\n" in it.text and rng.random() < 0.5:
            it = Item(text=it.text.split("\n", 1)[1], answer=it.answer, answers=it.answers, task=it.task)
        out.append(it)
    return out


def merged_base(base: BaseModel, adapter_dir: Path, out: Path, *, label: str) -> BaseModel:
    """`base` with the LoRA at `adapter_dir` merged into its weights, saved at `out` (for residual training)."""
    from peft import PeftModel

    from brickwork.models import load_base_model

    model, tok = load_base_model(base)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return BaseModel(id=f"{base.id}+{label}", path=out, fingerprint=f"{base.fingerprint}+{label}")


def update_brick(
    store: BrickStore,
    name: str,
    corrections: Sequence[Correction],
    *,
    good: Sequence[Item] = (),
    config: UpdateConfig | None = None,
    runner: BaseRunner | None = None,
    progress: Progress | None = None,
    command: str | None = None,
    train_progress: bool = False,
    keep_candidate: Path | None = None,
) -> UpdateOutcome:
    """Train, gate and (if accepted) add a new version of brick `name` from `corrections`.

    `good`: items users confirmed (must stay right, checked with the test items).
    `keep_candidate`: copy the candidate adapter there, accepted or not (for evals).
    """
    from brickwork.bricks.merging import MergeConfig, merge_adapters
    from brickwork.bricks.training import TrainConfig, data_hash, train_lora

    config = config or UpdateConfig()
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    old = store.get(name)
    event_ids = [c.event_id for c in corrections if c.event_id is not None]
    if not corrections:
        raise ConfigError(f"no corrections to update {name!r} with")

    def reject(reason: str, metrics: dict[str, Any] | None = None) -> UpdateOutcome:
        say(f"{name}: keeping v{old.version}: {reason}")
        return UpdateOutcome(brick=name, old_version=old.version, new_version=None, accepted=False, reasons=[reason],
                             metrics=metrics or {}, event_ids=event_ids)

    fit, held = split_corrections(corrections, config)
    replay = replay_sample(old, fit, config)
    checks = test_items(old.manifest, old.path, n=config.test_items, seed=config.seed) + list(good)
    if not checks:
        return reject("no original test data to check the update against (no known task, no held-out data, "
                      "no confirmed outputs)")
    if not replay:
        say(f"{name}: no original data to replay; training on the corrections alone")
    pairs = [(c.text, c.answer) for c in fit] * config.correction_repeat + [(it.text, it.answer) for it in replay]
    base = store.base
    runner = runner or BaseRunner(base)
    own_texts = [c.text for c in corrections] + [it.text for it in replay] + [it.text for it in checks]
    anchors = library_anchors(store, runner, n=config.anchors, seed=config.seed + 2, skip=name, adapter_dir=old.path,
                              exclude=own_texts)
    pairs += anchors
    steps = config.steps_for(len(pairs))
    work = store.scratch_dir(f"update-{name}.")
    try:
        say(f"{name}: {len(fit)} corrections to fit, {len(held)} held out, {len(replay)} replayed, "
            f"{len(anchors)} anchors; "
            f"training a residual for {steps} steps on v{old.version}")
        start = merged_base(base, old.path, work / "base", label=f"{name}@{old.version}")
        tcfg = TrainConfig(rank=config.rank, alpha=2.0 * config.rank, top_layers=config.top_layers, steps=steps,
                           batch_size=config.batch_size, lr=config.lr, warmup_steps=min(10, steps // 5),
                           seed=config.seed)
        res = train_lora(pairs, base=start, config=tcfg, out_dir=work / "residual", progress=train_progress)
        shutil.rmtree(work / "base", ignore_errors=True)  # 0.5 GB; not needed past training
        candidate = work / "candidate"
        old_rank = int(old.manifest.rank or 0)
        mcfg = MergeConfig(method="cat")
        if old_rank + config.rank > config.max_rank:
            mcfg = MergeConfig(method="svd", svd_rank=config.max_rank)
        merged = merge_adapters(base, [(old.path, 1.0), (work / "residual", 1.0)], candidate, config=mcfg,
                                model=runner.model)
        say(f"{name}: trained in {res.seconds:.0f} s (loss {res.first_loss:.3f} -> {res.final_loss:.3f}); "
            f"candidate rank {merged['r']} ({mcfg.method}); gating")
        if keep_candidate is not None:
            shutil.copytree(candidate, keep_candidate, dirs_exist_ok=True)
        metrics = _gate_metrics(runner, old.path, candidate, fit, held, checks)
        metrics.update(steps=steps, seconds_train=res.seconds, n_replay=len(replay), n_anchors=len(anchors),
                       rank=int(merged["r"]))
        reasons = _gate(metrics, config, held_out=bool(held))
        if reasons:
            metrics["seconds"] = round(time.perf_counter() - t0, 1)
            say(f"{name}: keeping v{old.version}: " + "; ".join(reasons))
            return UpdateOutcome(brick=name, old_version=old.version, new_version=None, accepted=False,
                                 reasons=reasons, metrics=metrics, event_ids=event_ids)
        # Accepted: carry the brick's data forward, with every correction folded in so far.
        for f in (old.path / DATA_DIR).glob("*.jsonl") if (old.path / DATA_DIR).is_dir() else ():
            (candidate / DATA_DIR).mkdir(exist_ok=True)
            shutil.copy2(f, candidate / DATA_DIR / f.name)
        write_items(candidate / DATA_DIR / CORRECTIONS_FILE,
                    brick_data(old.path, CORRECTIONS_FILE) + [c.item() for c in corrections])
        if good:
            write_items(candidate / DATA_DIR / CONFIRMED_FILE, brick_data(old.path, CONFIRMED_FILE) + list(good))
        prov = {
            **{k: v for k, v in old.manifest.provenance.items() if k not in ("seconds", "seconds_per_step", "adapter_sha256")},
            "operation": "update",
            "parents": [{"name": old.name, "version": old.version}],
            "command": command,
            "seed": config.seed,
            "update": {
                "data_hash": data_hash(pairs),
                "n_corrections": len(corrections),
                "n_fit": len(fit),
                "n_holdout": len(held),
                "n_replay": len(replay),
                "n_anchors": len(anchors),
                "steps": steps,
                "residual_rank": config.rank,
                "compose": mcfg.method,
                "event_ids": event_ids,
                "seconds": res.seconds,
            },
        }
        new_metrics = {**old.manifest.metrics, "exact_match": metrics["new_test_accuracy"],
                       "update_gate": {k: metrics[k] for k in ("reliability", "fix_rate_heldout", "old_test_accuracy",
                                                               "new_test_accuracy", "locality", "n_test")}}
        manifest = old.manifest.replace(rank=int(merged["r"]), target_modules=list(merged["target_modules"]),
                                        provenance=prov, metrics=new_metrics, created_at=_now())
        brick = store.add(candidate, manifest)
        metrics["seconds"] = round(time.perf_counter() - t0, 1)
        say(f"{name}: accepted as v{brick.version}")
        return UpdateOutcome(brick=name, old_version=old.version, new_version=brick.version, accepted=True,
                             reasons=[], metrics=metrics, event_ids=event_ids)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _now() -> str:
    from brickwork.bricks.manifest import now_iso

    return now_iso()


def _gate_metrics(runner: BaseRunner, old_dir: Path, new_dir: Path, fit: Sequence[Correction],
                  held: Sequence[Correction], checks: Sequence[Item]) -> dict[str, Any]:
    fit_items = [c.item() for c in fit]
    held_items = [c.item() for c in held]
    reliability = runner.score(new_dir, fit_items)
    fixed = runner.score(new_dir, held_items) if held_items else None
    fixed_before = runner.score(old_dir, held_items) if held_items else None
    before = runner.score(old_dir, checks)
    after = runner.score(new_dir, checks)
    unchanged = sum(same_output(a, b) for a, b in zip(before.outputs, after.outputs, strict=True))
    right = [(it, a, b) for it, a, b in zip(checks, before.outputs, after.outputs, strict=True) if it.correct(a)]
    broken = [{"input": it.text[:80], "expected": it.answer[:60], "before": a[:60], "after": b[:60]}
              for it, a, b in right if not it.correct(b)]
    return {
        "n_fit": len(fit_items),
        "n_holdout": len(held_items),
        "reliability": round(reliability.accuracy, 4),
        "fix_rate_heldout": None if fixed is None else round(fixed.accuracy, 4),
        "heldout_right_before": None if fixed_before is None else round(fixed_before.accuracy, 4),
        "n_test": before.n,
        "old_test_accuracy": round(before.accuracy, 4),
        "new_test_accuracy": round(after.accuracy, 4),
        "test_drop": round(before.accuracy - after.accuracy, 4),
        "locality": round(unchanged / before.n, 4) if before.n else None,
        "kept_right": round(1 - len(broken) / len(right), 4) if right else None,
        "broken_examples": broken[:5],
    }


def _gate(m: dict[str, Any], config: UpdateConfig, *, held_out: bool) -> list[str]:
    reasons = []
    fix, what = (m["fix_rate_heldout"], "held-out corrections") if held_out else (m["reliability"], "corrections (too few to hold any out)")
    if fix < config.min_fix_rate:
        reasons.append(f"fixes only {fix:.0%} of the {what}; needs {config.min_fix_rate:.0%}")
    if m["test_drop"] > config.margin + 1e-9:
        reasons.append(f"original test accuracy drops {m['test_drop'] * 100:.1f} points "
                       f"({m['old_test_accuracy']:.3f} -> {m['new_test_accuracy']:.3f} on {m['n_test']} items); "
                       f"the margin is {config.margin * 100:.1f}")
    return reasons


# -- from feedback ---------------------------------------------------------------------------
@dataclass(kw_only=True)
class UpdatePlan:
    """What pending feedback asks for: bricks to update, confirmations, uncovered examples, skips."""

    updates: dict[str, list[Correction]] = field(default_factory=dict)
    good: dict[str, list[tuple[int, Item]]] = field(default_factory=dict)
    grow: list[Any] = field(default_factory=list)  # GrowExample
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "updates": {b: len(cs) for b, cs in self.updates.items()},
            "confirmations": {b: len(g) for b, g in self.good.items()},
            "uncovered": len(self.grow),
            "skipped": [{"event_id": i, "reason": r} for i, r in self.skipped],
        }


def plan_from_feedback(store: BrickStore, events: Sequence[Any], *, bricks: Sequence[str] | None = None) -> UpdatePlan:
    """Sort pending `FeedbackEvent`s: a correction on a brick's step updates that brick (the
    heaviest one when several were composed); a step the base model answered is uncovered (grow);
    good events on a brick's step are confirmations that must stay right."""
    from brickwork.bricks.growing import GrowExample

    plan = UpdatePlan()
    have = set(store.names())
    for e in events:
        text = e.prompt or e.subgoal
        if not e.bricks:
            plan.grow.append(GrowExample(text=text, answer=e.target, event_id=e.id))
            continue
        owner = max(e.bricks, key=lambda b: (float(b.get("weight") or 0.0), float(b.get("score") or 0.0)))["name"]
        if bricks and owner not in bricks:
            continue
        if owner not in have:
            plan.skipped.append((e.id, f"brick {owner!r} is no longer in the library"))
            continue
        if e.kind == "correction" and not same_output(e.target, e.output):
            plan.updates.setdefault(owner, []).append(Correction(text=text, answer=e.target, event_id=e.id, output=e.output))
        else:  # a confirmation, or a "correction" that repeats the output: it must stay right
            plan.good.setdefault(owner, []).append((e.id, Item(text=text, answer=e.output)))
    return plan
