"""plan: planner accuracy on held-out composite instructions (rules splitter vs planner brick).

Four sets, none seen by the planner brick:

- ``bundled``: composite instructions over the 17 bundled tasks, from test-split inputs and
  *held-out* phrasings, connectors and intros (`brickwork.tasks.synth`, ``part="test"``);
- ``unbundled``: the same, half the steps being tasks no brick covers (translation, rhymes, ...);
- ``handwritten``: instructions written by hand in other wording (``data/planner/handwritten.jsonl``);
- ``independent``: 100 instructions written by hand for issue 24 in phrasings the generator does
  not make (numbered and lettered lists, "X, and what is its Y?", one step over two sentences,
  chat wrappers, steps no brick serves; ``data/planner/independent.jsonl``), reported as two sets:
  ``independent-dev`` (the half the rules were tuned on) and ``independent-test`` (never read
  while tuning). Its structure breakdown is the item's ``kind``;
- ``fresh``: 21 more, written the same way after the rules were final and run only once, for the
  figures (``data/planner/fresh.jsonl``): the ``independent`` test half was written alongside
  the dev half, often as its twin, so it says less about constructions nobody wrote yet;
- ``fresh2``: 38 more (numbered, lettered and bulleted lists, chat wrappers and apologies, "X,
  and what is its Y?" and "X? Also, what continent is it on?", steps no brick serves, one step
  over two sentences), written for the rules' rewrite into a clause classifier *before* it was
  made, never looked at while making it, and run once for its figures
  (``data/planner/fresh2.jsonl``);
- ``fresh3`` and ``fresh3-dev``: 40 and 30 more, written by hand on 07 Dec 2026 (helper of issue 24,
  third planner session) *before* any change to the rules of that session, by the session that
  then changed them (so held out from tuning, not from its author), not by ``synth.py``, and deliberately unlike ``fresh``/``fresh2``: lowercase, typos,
  run-on sentences, "oh and", semicolons, parentheses, "- " and "* " bullets, "1 - ", "Step one:",
  "first ... second ... finally", "i) ii)", quoted inputs with commas, questions inside chat,
  unserved steps, same-input follow-ups and one step over two sentences. ``fresh3-dev`` is for
  development (its failures were read while changing the rules); ``fresh3`` is for the figures:
  scored once before the change (its failures not read) and once at the end
  (``data/planner/fresh3.jsonl``, ``data/planner/fresh3-dev.jsonl``). ``fresh3`` was then read
  and tuned on by the fourth session, so it is no longer held out;
- ``fresh4``: 51 more, written by hand on 07 Dec 2026 (helper of issue 24, fourth planner session)
  *before* any change to the rules of that session, not by ``synth.py``, and unlike the earlier
  sets: formal, terse and chatty registers, typos, lowercase without punctuation, inputs before
  the task words ("mali capital city?", "8806 in words?"), steps inside real-assistant context
  ("I'm drafting an email to a client in Madrid. ..."), "–" and "•" bullets, roman numerals,
  "Task A:", lines without markers, "/"-separated steps, steps no brick serves, same-input
  follow-ups ("..., and what's its plural?") and one step over two sentences. Held out: its
  per-item results are read only after its one final scoring (``data/planner/fresh4.jsonl``).
  ``fresh4`` was then read and tuned on by the fifth session (its failures drove the clause
  classifier, `planners/roles.py`), so it is no longer held out;
- ``fresh5``: 49 more, written by hand on 07 Dec 2026 (helper of issue 24, fifth planner session)
  *before* any change to the rules of that session, not by ``synth.py``, and in registers the
  earlier sets lack: office memos ("Action items: ...", "Item one: ..."), speech transcribed without
  punctuation, texting shorthand, non-native phrasing, markdown (headings, ``- [ ]`` checkboxes,
  ``>`` lines), indirect requests ("Do you happen to know ..."), inputs as labelled fields
  ("word = 'x'; task = plural", "Input: ... Output format: ..."), ``|``, ``+`` and ``>>``
  separators, context sentences around the request, back-references in new words ("the total",
  "the word you just gave me", "your version", "whichever it is"). Held out: its per-item results
  are read only after its one final scoring (``data/planner/fresh5.jsonl``).

A plan is correct when it has the gold number of steps and each step is aligned to its gold
step: same dependencies, and a subgoal with token F1 >= 0.6 against the gold subgoal (references
to earlier steps count as one token). Also reported: step-count accuracy, input exact match (the
step inputs the ``brick`` prompt style uses), how often the brick's plan was rejected and the
rules splitter used instead, and planning seconds per instruction.

    brickwork eval plan [--n 240] [--planners rules,brick] [--sets independent-dev,...] [--limit N] [--out DIR]

``--limit N`` scores the first N instructions of each set (for the planner brick on a slow CPU).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brickwork.errors import ConfigError
from brickwork.orchestrator.planners.base import parse_plan
from brickwork.tasks.synth import Composite, generate
from brickwork.orchestrator.types import Plan

HANDWRITTEN = Path(__file__).resolve().parents[1] / "data" / "planner" / "handwritten.jsonl"
INDEPENDENT = HANDWRITTEN.with_name("independent.jsonl")
FRESH = HANDWRITTEN.with_name("fresh.jsonl")
FRESH2 = HANDWRITTEN.with_name("fresh2.jsonl")
FRESH3 = HANDWRITTEN.with_name("fresh3.jsonl")
FRESH3_DEV = HANDWRITTEN.with_name("fresh3-dev.jsonl")
FRESH4 = HANDWRITTEN.with_name("fresh4.jsonl")
FRESH5 = HANDWRITTEN.with_name("fresh5.jsonl")
#: the hand-written sets read whole from one file each, by set name
FILE_SETS = {"fresh": FRESH, "fresh2": FRESH2, "fresh3-dev": FRESH3_DEV, "fresh3": FRESH3, "fresh4": FRESH4, "fresh5": FRESH5}
SETS: tuple[str, ...] = ("bundled", "unbundled", "handwritten", "independent-dev", "independent-test", *FILE_SETS)
F1_MIN = 0.6


# -- scoring ------------------------------------------------------------------------------------
def _tokens(text: str) -> list[str]:
    text = re.sub(r"\{s?\d+\}", " REF ", text.lower())
    return re.findall(r"[^\W_]+|REF", text, re.UNICODE)


def token_f1(a: str, b: str) -> float:
    ta, tb = _tokens(a), _tokens(b)
    if not ta or not tb:
        return float(ta == tb)
    common = sum((collections.Counter(ta) & collections.Counter(tb)).values())
    if common == 0:
        return 0.0
    p, r = common / len(ta), common / len(tb)
    return 2 * p * r / (p + r)


def _norm_input(text: str | None) -> str:
    return re.sub(r"\s+", " ", (text or "").strip().strip("\"'“”‘’").strip()).lower()


@dataclass(frozen=True)
class PlanScore:
    count_ok: bool
    aligned: bool
    inputs_ok: bool

    @property
    def correct(self) -> bool:
        return self.count_ok and self.aligned


def score_plan(pred: Plan, gold: Plan) -> PlanScore:
    count_ok = len(pred.steps) == len(gold.steps)
    if not count_ok:
        return PlanScore(False, False, False)
    aligned = all(
        set(p.depends_on) == set(g.depends_on) and token_f1(p.subgoal, g.subgoal) >= F1_MIN
        for p, g in zip(pred.steps, gold.steps, strict=True)
    )
    inputs_ok = aligned and all(_norm_input(p.input) == _norm_input(g.input) for p, g in zip(pred.steps, gold.steps, strict=True))
    return PlanScore(count_ok, aligned, inputs_ok)


def gold_plan(c: Composite) -> Plan:
    return parse_plan(c.plan_target(), planner="gold", check_grounding=False)


# -- sets ---------------------------------------------------------------------------------------
def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _gold(d: dict[str, Any]) -> Plan:
    return parse_plan(json.dumps(d["plan"]), planner="gold", check_grounding=False)


def load_sets(n: int, seed: int, names: tuple[str, ...] = SETS) -> dict[str, list[tuple[str, Plan, str]]]:
    """name -> [(instruction, gold plan, structure)], for the sets in `names` (in `SETS` order)."""
    unknown = sorted(set(names) - set(SETS))
    if unknown:
        raise ConfigError(f"unknown plan eval sets {unknown}; available sets: {', '.join(SETS)}")
    sets: dict[str, list[tuple[str, Plan, str]]] = {}
    if "bundled" in names:
        sets["bundled"] = [(c.instruction, gold_plan(c), c.structure) for c in generate(n, part="test", seed=seed)]
    if "unbundled" in names:
        sets["unbundled"] = [
            (c.instruction, gold_plan(c), c.structure)
            for c in generate(max(20, n // 2), part="test", seed=seed + 1, other_share=0.5, scorable=False)
        ]
    if "handwritten" in names:
        sets["handwritten"] = [(d["instruction"], _gold(d), "handwritten") for d in _read_jsonl(HANDWRITTEN)]
    for split in ("dev", "test"):
        if f"independent-{split}" in names:
            sets[f"independent-{split}"] = [
                (d["instruction"], _gold(d), d["kind"]) for d in _read_jsonl(INDEPENDENT) if d["split"] == split
            ]
    for name, path in FILE_SETS.items():
        if name in names:
            sets[name] = [(d["instruction"], _gold(d), d["kind"]) for d in _read_jsonl(path)]
    return sets


def evaluate_planner(planner: Any, items: list[tuple[str, Plan, str]], *, batch: int = 32) -> dict[str, Any]:
    preds: list[Plan] = []
    t0 = time.perf_counter()
    for i in range(0, len(items), batch):
        preds.extend(planner.plan_batch([inst for inst, _, _ in items[i : i + batch]]))
    seconds = time.perf_counter() - t0
    scores = [score_plan(p, g) for p, (_, g, _) in zip(preds, items, strict=True)]
    by_struct: dict[str, list[bool]] = collections.defaultdict(list)
    for s, (_, _, struct) in zip(scores, items, strict=True):
        by_struct[struct].append(s.correct)
    failures = [
        {"instruction": inst, "gold": [(st.subgoal, st.input) for st in g.steps], "pred": [(st.subgoal, st.input) for st in p.steps],
         "planner": p.planner, "fallback_reason": p.fallback_reason}
        for p, s, (inst, g, _) in zip(preds, scores, items, strict=True)
        if not s.correct
    ]
    n = max(1, len(items))
    extra: dict[str, Any] = {}
    if getattr(planner, "cross_check", False):
        # the same raw plans without the cross-check against the rules splitter (an ablation)
        unchecked = _without_cross_check(planner, preds, items)
        extra["accuracy_without_cross_check"] = sum(score_plan(p, g).correct for p, (_, g, _) in zip(unchecked, items, strict=True)) / n
        extra["rejected_by_cross_check"] = sum(
            p.fallback_reason is not None and u.fallback_reason is None for p, u in zip(preds, unchecked, strict=True)
        ) / n
    return {
        "n": len(items),
        "plan_accuracy": sum(s.correct for s in scores) / n,
        "step_count_accuracy": sum(s.count_ok for s in scores) / n,
        "input_exact": sum(s.inputs_ok for s in scores) / n,
        "fallback_rate": sum(p.fallback_reason is not None for p in preds) / n,
        "accuracy_without_fallback": sum(s.correct and p.fallback_reason is None for s, p in zip(scores, preds, strict=True)) / n,
        "seconds_per_instruction": seconds / n,
        "by_structure": {k: {"n": len(v), "plan_accuracy": sum(v) / len(v)} for k, v in sorted(by_struct.items())},
        **extra,
        "failures": failures[:40],
    }


def _without_cross_check(planner: Any, preds: list[Plan], items: list[tuple[str, Plan, str]]) -> list[Plan]:
    saved = planner.cross_check
    planner.cross_check = False
    try:
        return [planner.from_output(inst, p.raw) if p.raw is not None else p for p, (inst, _, _) in zip(preds, items, strict=True)]
    finally:
        planner.cross_check = saved


# -- the suite ----------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=240, help="bundled-task composites (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--planners", default="rules,brick", help="comma-separated planners to compare (default: %(default)s)")
    p.add_argument("--sets", default=",".join(SETS), help="comma-separated sets to score (default: %(default)s)")
    p.add_argument("--engine", default="peft", help="engine for the planner brick (default: %(default)s)")
    p.add_argument("--planner-brick", metavar="DIR", help="evaluate this planner brick instead of the bundled one")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="score only the first N instructions of each set")


def main(args: argparse.Namespace) -> int:
    from brickwork.orchestrator.planners import make_planner
    from brickwork.bricks.store import BrickStore
    from brickwork.orchestrator.planners.brick import planner_sources

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sets = load_sets(args.n, args.seed, tuple(n.strip() for n in args.sets.split(",") if n.strip()))
    limit = getattr(args, "limit", None)
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"`--limit` should be a positive number of instructions, got {limit}.")
        sets = {k: v[:limit] for k, v in sets.items()}
    names = [n.strip() for n in args.planners.split(",") if n.strip()]
    report: dict[str, Any] = {"suite": "plan", "seed": args.seed, "limit": limit, "sets": {k: len(v) for k, v in sets.items()}, "planners": {}}
    engine = None
    try:
        for name in names:
            if name in ("brick", "auto"):
                from brickwork.orchestrator.planners.brick import BrickPlanner

                if engine is None:
                    from brickwork.serving.engine import create_engine

                    pdir = Path(args.planner_brick) if getattr(args, "planner_brick", None) else None
                    sources = planner_sources(pdir)
                    if not sources:
                        raise ConfigError("the planner brick is not built (python -m brickwork.orchestrator.planners.train)")
                    engine = create_engine(args.engine, BrickStore(args.library), adapter_sources=sources)
                planner = BrickPlanner(engine)
            else:
                planner = make_planner(name)
            report["planners"][name] = {k: evaluate_planner(planner, v) for k, v in sets.items()}
            print(f"[plan] {name}: " + ", ".join(f"{k} {r['plan_accuracy']:.3f}" for k, r in report["planners"][name].items()))
    finally:
        if engine is not None:
            engine.close()
    (out / "plan.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out / "plan.md").write_text(markdown(report))
    print(f"[plan] wrote {out / 'plan.json'} and {out / 'plan.md'}")
    return 0


def _opt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Planner accuracy (held-out phrasings, test-split inputs)",
        "",
        "| planner | set | n | plan accuracy | its own plans only | step count | inputs exact | fell back to rules | without cross-check | s / instruction |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, sets in report["planners"].items():
        for set_name, r in sets.items():
            lines.append(
                f"| {name} | {set_name} | {r['n']} | {r['plan_accuracy']:.3f} | {r['accuracy_without_fallback']:.3f} | {r['step_count_accuracy']:.3f} | "
                f"{r['input_exact']:.3f} | {r['fallback_rate']:.3f} | {_opt(r.get('accuracy_without_cross_check'))} | {r['seconds_per_instruction']:.3f} |"
            )
    lines += ["", "Plan accuracy by structure (bundled set) and by kind (independent sets):", "",
              "| planner | set | structure | n | plan accuracy |", "|---|---|---|---:|---:|"]
    for name, sets in report["planners"].items():
        for set_name in ("bundled", "independent-dev", "independent-test", *FILE_SETS):
            for struct, r in sets.get(set_name, {}).get("by_structure", {}).items():
                lines.append(f"| {name} | {set_name} | {struct} | {r['n']} | {r['plan_accuracy']:.3f} |")
    return "\n".join(lines) + "\n"
