"""compose: composite instructions end to end — base model only vs routed bricks vs oracle bricks.

Composite instructions (1-3 steps; independent, chained and same-input steps) are generated from
the bundled tasks' *test* splits with held-out phrasings (`brickwork.tasks.synth`, ``part="test"``), so
neither the planner brick nor the bricks saw them. Every instruction is planned once by the
chosen planner and run three ways on the same plan:

- ``base``: every step on the base model (no bricks), asked its subgoal;
- ``routed``: the full pipeline (retrieval + routing policy picks bricks, or none);
- ``oracle``: each step on the brick of its true task (steps the plan got wrong are routed);
- ``fallback<T`` (with ``--weak-fallback T``): the routed run's bricks, except that a step routed
  to a brick whose own held-out exact match is below T runs on the base model (the weak-brick
  fallback, measured here and off in the orchestrator: `brickwork.orchestrator.weak_bricks`).

Scores: *per-step accuracy* over gold steps (a gold step no planned step aligns with is wrong; a
chained step is judged on the input it really received when its gold can be computed from it:
spelling, numbers in words), *whole-answer accuracy* (the answer's lines equal the gold final
outputs), plan accuracy, routing accuracy (top brick = true task), and orchestration overhead:
the share of the routed run's wall time spent outside engine generation (planning JSON included
in generation).

    brickwork eval compose [--n 240] [--engine peft] [--planner auto] [--weak-fallback 0.3,0.5] [--out DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path
from typing import Any

from brickwork.evals.plan import F1_MIN, gold_plan, score_plan, token_f1
from brickwork.tasks.synth import Composite, chained_gold, generate
from brickwork.orchestrator.types import BrickSpec, Plan, RunResult, Step
from brickwork.tasks import normalize

CONFIGS: tuple[str, ...] = ("base", "routed", "oracle")


def _match(output: str, expected: tuple[str, ...] | None) -> bool:
    return bool(expected) and any(normalize(output) == normalize(e) for e in expected or ())


def align(pred: Plan, gold: Plan) -> dict[int, int]:
    """pred step index -> gold step index: by position when the plan is aligned, else greedily by subgoal F1."""
    if score_plan(pred, gold).correct:
        return {i: i for i in range(len(pred.steps))}
    pairs = sorted(
        ((token_f1(p.subgoal, g.subgoal), i, j) for i, p in enumerate(pred.steps) for j, g in enumerate(gold.steps)),
        reverse=True,
    )
    out: dict[int, int] = {}
    used: set[int] = set()
    for f1, i, j in pairs:
        if f1 >= F1_MIN and i not in out and j not in used:
            out[i] = j
            used.add(j)
    return out


def score_run(c: Composite, run: RunResult) -> dict[str, Any]:
    gold = gold_plan(c)
    pred = run.plan or Plan(steps=(), planner="?")
    mapping = align(pred, gold)
    outputs = {s.id: s for s in run.steps}
    step_ok = [False] * len(c.steps)
    routed_ok: list[bool] = []
    for i, j in mapping.items():
        res = outputs.get(pred.steps[i].id)
        if res is None:
            continue
        g = c.steps[j]
        expected = g.expected
        if g.refs and res.input:
            own = chained_gold(g.task, res.input)  # judge a chained step on the input it received
            expected = (own,) if own is not None else expected
        step_ok[j] = _match(res.output, expected)
        routed_ok.append(bool(res.bricks) and max(res.bricks, key=lambda b: b.weight).name == g.task)
    sinks = [j for j, s in enumerate(gold.steps) if s.id not in {d for t in gold.steps for d in t.depends_on}]
    lines = run.answer.split("\n") if run.answer else []
    whole = len(lines) == len(sinks) and all(_match(line, c.steps[j].expected) for line, j in zip(lines, sinks, strict=False))
    return {"steps": step_ok, "whole": whole, "plan_ok": score_plan(pred, gold).correct, "routing": routed_ok}


def oracle_plan(plan: Plan, c: Composite, library_names: set[str]) -> Plan:
    gold = gold_plan(c)
    mapping = align(plan, gold)
    steps = []
    for i, s in enumerate(plan.steps):
        j = mapping.get(i)
        task = c.steps[j].task if j is not None else None
        bricks = (BrickSpec(name=task),) if task in library_names else None
        steps.append(Step(id=s.id, subgoal=s.subgoal, depends_on=s.depends_on, input=s.input, bricks=bricks))
    return Plan(steps=tuple(steps), planner=plan.planner, fallback_reason=plan.fallback_reason)


def fallback_plan(run: RunResult, store: Any, threshold: float) -> Plan:
    """The routed run's plan with its bricks fixed, a weak brick (held-out exact match below
    `threshold`) replaced by the base model."""
    from brickwork.orchestrator.weak_bricks import weak_notes

    plan = run.plan or Plan(steps=(), planner="?")
    chosen = {r.id: r.bricks for r in run.steps}
    steps = []
    for s in plan.steps:
        bricks = chosen.get(s.id, ())
        weak = bool(weak_notes(bricks, store, threshold))
        fixed = () if weak else tuple(BrickSpec(name=b.name, weight=b.weight, version=b.version) for b in bricks)
        steps.append(Step(id=s.id, subgoal=s.subgoal, depends_on=s.depends_on, input=s.input, bricks=fixed))
    return Plan(steps=tuple(steps), planner=plan.planner, fallback_reason=plan.fallback_reason)


def base_plan(plan: Plan) -> Plan:
    steps = tuple(Step(id=s.id, subgoal=s.subgoal, depends_on=s.depends_on, input=s.input, bricks=()) for s in plan.steps)
    return Plan(steps=steps, planner=plan.planner, fallback_reason=plan.fallback_reason)


def summarise(comps: list[Composite], runs: list[RunResult]) -> dict[str, Any]:
    scores = [score_run(c, r) for c, r in zip(comps, runs, strict=True)]
    steps = [ok for s in scores for ok in s["steps"]]
    by_task: dict[str, list[bool]] = collections.defaultdict(list)
    by_struct: dict[str, list[bool]] = collections.defaultdict(list)
    for c, s in zip(comps, scores, strict=True):
        for g, ok in zip(c.steps, s["steps"], strict=True):
            by_task[g.task].append(ok)
        by_struct[c.structure].append(s["whole"])
    routing = [ok for s in scores for ok in s["routing"]]
    return {
        "n_instructions": len(comps),
        "n_steps": len(steps),
        "step_accuracy": sum(steps) / max(1, len(steps)),
        "answer_accuracy": sum(s["whole"] for s in scores) / max(1, len(scores)),
        "plan_accuracy": sum(s["plan_ok"] for s in scores) / max(1, len(scores)),
        "routing_accuracy": sum(routing) / len(routing) if routing else None,
        "by_task": {t: sum(v) / len(v) for t, v in sorted(by_task.items())},
        "by_structure": {k: {"n": len(v), "answer_accuracy": sum(v) / len(v)} for k, v in sorted(by_struct.items())},
    }


# -- the suite ----------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=240, help="composite instructions (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine", default="peft", help="engine (default: %(default)s)")
    p.add_argument("--planner", default="auto", help="planner (default: %(default)s)")
    p.add_argument("--prompt-style", default="brick", choices=("brick", "subgoal"), help="how routed steps are asked")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of base,routed,oracle")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--weak-fallback", default="", metavar="T[,T...]",
                   help="also run the routed plans with weak bricks (held-out exact match < T) on the base model")


def main(args: argparse.Namespace) -> int:
    from brickwork.orchestrator.sdk import Brickwork

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    comps = generate(args.n, part="test", seed=args.seed)
    thresholds = [float(t) for t in args.weak_fallback.split(",") if t.strip()]
    instructions = [c.instruction for c in comps]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    report: dict[str, Any] = {"suite": "compose", "seed": args.seed, "engine": args.engine, "planner": args.planner,
                              "prompt_style": args.prompt_style, "configs": {}}
    bw = Brickwork(
        args.library,
        engine=args.engine,
        engine_options={"max_loaded_adapters": 32} if args.engine == "peft" else None,
        planner=args.planner,
        prompt_style=args.prompt_style,
        max_tokens=args.max_tokens,
        checkpoints=False,
    )
    with bw:
        names = set(bw.store.names())
        # routed first: the full pipeline, whose plans the other configurations reuse
        t0, g0, c0 = time.perf_counter(), bw.engine.stats.seconds, bw.engine.stats.requests
        routed = bw.run_batch(instructions, max_concurrency=64)
        wall, gen = time.perf_counter() - t0, bw.engine.stats.seconds - g0
        report["overhead"] = {
            "wall_seconds": wall,
            "generation_seconds": gen,
            "outside_generation_share": max(0.0, 1 - gen / wall) if wall else None,
            "generations": bw.engine.stats.requests - c0,
            "seconds_per_instruction": wall / max(1, len(comps)),
        }
        report["planner_used"] = collections.Counter(r.plan.planner for r in routed if r.plan)
        report["plan_fallbacks"] = sum(1 for r in routed if r.plan and r.plan.fallback_reason)
        runs = {"routed": routed}
        plans = [r.plan for r in routed]
        for cfg in configs:
            if cfg == "routed":
                continue
            made = [base_plan(p) if cfg == "base" else oracle_plan(p, c, names) for p, c in zip(plans, comps, strict=True)]
            t1 = time.perf_counter()
            runs[cfg] = bw.run_batch(instructions, plans=made, max_concurrency=64)
            print(f"[compose] {cfg}: {time.perf_counter() - t1:.0f} s")
        for t in thresholds:
            t1 = time.perf_counter()
            runs[f"fallback<{t}"] = bw.run_batch(instructions, plans=[fallback_plan(r, bw.store, t) for r in routed], max_concurrency=64)
            print(f"[compose] fallback<{t}: {time.perf_counter() - t1:.0f} s")
        configs += [f"fallback<{t}" for t in thresholds]
        for cfg in configs:
            report["configs"][cfg] = summarise(comps, runs[cfg])
            r = report["configs"][cfg]
            print(f"[compose] {cfg}: step {r['step_accuracy']:.3f}, answer {r['answer_accuracy']:.3f}")
        report["examples"] = [
            {"instruction": c.instruction, "gold": c.to_json()["steps"], **{cfg: runs[cfg][i].to_json() for cfg in configs}}
            for i, c in enumerate(comps[:25])
        ]
    (out / "compose.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out / "compose.md").write_text(markdown(report))
    print(f"[compose] wrote {out / 'compose.json'} and {out / 'compose.md'}")
    return 0


def markdown(report: dict[str, Any]) -> str:
    cfgs = report["configs"]
    lines = [
        f"# Composite instructions: {next(iter(cfgs.values()))['n_instructions']} instructions, "
        f"{next(iter(cfgs.values()))['n_steps']} gold steps (engine {report['engine']}, planner {report['planner']}, "
        f"prompt style {report['prompt_style']})",
        "",
        "| configuration | per-step accuracy | whole-answer accuracy | routing accuracy |",
        "|---|---:|---:|---:|",
    ]
    for name, r in cfgs.items():
        ra = f"{r['routing_accuracy']:.3f}" if r["routing_accuracy"] is not None and name != "base" else "-"
        lines.append(f"| {name} | {r['step_accuracy']:.3f} | {r['answer_accuracy']:.3f} | {ra} |")
    ov = report.get("overhead", {})
    lines.append("")
    if "routed" in cfgs:
        r = cfgs["routed"]
        lines.append(f"- plan accuracy: {r['plan_accuracy']:.3f} (plans that fell back to rules: {report.get('plan_fallbacks', 0)})")
        if "oracle" in cfgs and cfgs["oracle"]["answer_accuracy"]:
            lines.append(f"- routed / oracle (whole answer): {r['answer_accuracy'] / cfgs['oracle']['answer_accuracy']:.3f}")
        if "base" in cfgs:
            lines.append(f"- routed - base (whole answer): {100 * (r['answer_accuracy'] - cfgs['base']['answer_accuracy']):+.1f} points")
    if ov:
        lines.append(
            f"- routed run: {ov['wall_seconds']:.0f} s wall for {ov['generations']} generations; outside generation "
            f"(planning code, retrieval, routing, graph, checkpoints): {100 * ov['outside_generation_share']:.1f}%"
        )
    lines += ["", "Per-step accuracy by task:", "", "| task | " + " | ".join(cfgs) + " |", "|---|" + "---:|" * len(cfgs)]
    tasks = sorted({t for r in cfgs.values() for t in r["by_task"]})
    for t in tasks:
        lines.append(f"| {t} | " + " | ".join(f"{cfgs[c]['by_task'].get(t, 0):.2f}" for c in cfgs) + " |")
    return "\n".join(lines) + "\n"
