"""``brickwork eval harness``: the bundled tasks under lm-eval, base vs routed vs oracle bricks.

Each bundled task runs as lm-eval tasks (`brickwork.evals.harness.tasks`: generation, and
multiple choice for the label tasks) with lm-eval's metrics (``exact_match``; ``acc``), zero-shot,
with Brickwork's chat format (``--apply_chat_template``), on the first `--limit` test items:

- ``base``: the base model alone;
- ``routed``: each request routed by the library's router (the prompt's user message is the query);
- ``oracle``: each task on its own brick (tasks without a brick in the library are left out).

One engine serves all three. Writes ``harness.json``, ``harness.md`` and ``harness.png``.
``--out-of-scope`` instead runs the generated out-of-scope tasks (`brickwork.evals.harness.oos`:
facts no brick was made for), base vs routed: routing must do no harm there.

    brickwork eval harness [--tasks sentiment_binary,sms_spam] [--configs base,routed,oracle] [--limit 40]
    brickwork eval harness --out-of-scope [--limit 40]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

CONFIGS: tuple[str, ...] = ("base", "routed", "oracle")
VARIANTS: tuple[str, ...] = ("mc", "gen")
METRIC = {"mc": "acc,none", "gen": "exact_match,none"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", default=None, help="comma-separated bundled task ids (default: all)")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of base,routed,oracle")
    p.add_argument("--variants", default=",".join(VARIANTS), help="mc (label tasks), gen, or both")
    p.add_argument("--limit", type=int, default=40, help="test items per task (default: %(default)s; 0 = all)")
    p.add_argument("--engine", default="peft", help="engine (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--use-cache", metavar="PREFIX", default=None, help="lm-eval request cache (one per configuration)")
    p.add_argument("--out-of-scope", action="store_true",
                   help="run the generated out-of-scope tasks (no brick made for them), base vs routed, instead")


def lm_eval_tasks(task_ids: list[str], variants: list[str]) -> dict[str, tuple[str, str]]:
    """lm-eval task name -> (bundled task id, variant)."""
    from brickwork.evals.harness.tasks import task_names
    from brickwork.tasks import load_tasks

    all_tasks = load_tasks()
    out = {}
    for tid in task_ids:
        for name in task_names(all_tasks[tid]):
            variant = name.rsplit("_", 1)[1]
            if variant in variants:
                out[name] = (tid, variant)
    return out


def evaluate(lm: Any, names: list[str], task_dir: Path, *, limit: int | None, use_cache: str | None) -> dict[str, Any]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    res = simple_evaluate(
        model=lm, tasks=names, limit=limit, task_manager=TaskManager(include_path=str(task_dir)),
        apply_chat_template=True, use_cache=use_cache, bootstrap_iters=0, log_samples=False,
    )
    return res["results"]


def main(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from brickwork.errors import ConfigError
    from brickwork.evals.harness.model import BrickworkLM
    from brickwork.evals.harness.tasks import write_tasks
    from brickwork.orchestrator.sdk import Brickwork
    from brickwork.tasks import load_tasks

    out = Path(args.out)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = sorted(set(configs) - set(CONFIGS)) + sorted(set(variants) - set(VARIANTS))
    if bad:
        raise ConfigError(f"unknown configuration or variant {bad}; use {', '.join(CONFIGS)} and {', '.join(VARIANTS)}")
    task_ids = [t.strip() for t in args.tasks.split(",")] if args.tasks else sorted(load_tasks())
    unknown = sorted(set(task_ids) - set(load_tasks()))
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown}; bundled tasks: {', '.join(sorted(load_tasks()))}")
    if getattr(args, "out_of_scope", False):
        from brickwork.evals.harness.oos import oos_names, write_oos_tasks

        configs = [c for c in configs if c != "oracle"]  # no brick exists for these tasks
        names = {n: (n.removeprefix("brickwork_"), "mc") for n in oos_names()}
        task_ids, task_dir = [], write_oos_tasks(out / "tasks")
    else:
        names = lm_eval_tasks(task_ids, variants)
        task_dir = write_tasks(out / "tasks", task_ids)
    limit = args.limit or None
    report: dict[str, Any] = {"suite": "harness-out-of-scope" if task_ids == [] else "harness", "engine": args.engine, "limit": limit, "configs": configs,
                              "metrics": METRIC, "tasks": {}, "routes": {}, "seconds": {}}
    bw = Brickwork(args.library, engine=args.engine, planner="rules", checkpoints=False)
    with bw:
        tok = AutoTokenizer.from_pretrained(bw.store.base.path)
        library = set(bw.store.names())

        def lm(bricks: str) -> BrickworkLM:
            return BrickworkLM(brickwork=bw, tokenizer=tok, bricks=bricks, batch_size=args.batch_size, engine=args.engine)

        def cache(cfg: str) -> str | None:
            return f"{args.use_cache}-{cfg}" if args.use_cache else None

        results: dict[str, dict[str, float]] = {n: {} for n in names}
        for cfg in configs:
            t0 = time.perf_counter()
            if cfg == "oracle":
                for tid in task_ids:
                    mine = [n for n, (t, _) in names.items() if t == tid]
                    if tid not in library or not mine:
                        continue
                    for n, r in evaluate(lm(tid), mine, task_dir, limit=limit, use_cache=cache(f"oracle-{tid}")).items():
                        results[n][cfg] = r[METRIC[names[n][1]]]
            else:
                model = lm(cfg)
                for n, r in evaluate(model, list(names), task_dir, limit=limit, use_cache=cache(cfg)).items():
                    results[n][cfg] = r[METRIC[names[n][1]]]
                if cfg == "routed":
                    report["routes"] = dict(model.route_counts.most_common())
            report["seconds"][cfg] = round(time.perf_counter() - t0, 1)
            print(f"[harness] {cfg}: {report['seconds'][cfg]:.0f} s")
    for n, (tid, variant) in names.items():
        report["tasks"][n] = {"task": tid, "variant": variant, "metric": METRIC[variant].split(",")[0], **results[n]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "harness.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "harness.md").write_text(markdown(report))
    chart(report, out / "harness.png")
    print(markdown(report))
    print(f"[harness] wrote {out / 'harness.json'}, {out / 'harness.md'} and {out / 'harness.png'}")
    return 0


def markdown(report: dict[str, Any]) -> str:
    cfgs = report["configs"]
    lim = f"first {report['limit']} test items per task" if report["limit"] else "all test items"
    lines = [
        f"# lm-eval harness: {'out-of-scope' if report['suite'] == 'harness-out-of-scope' else 'bundled'} tasks, {lim} (engine {report['engine']}, zero-shot, chat template)",
        "",
        "| lm-eval task | metric | " + " | ".join(cfgs) + " |",
        "|---|---|" + "---:|" * len(cfgs),
    ]
    for name, r in report["tasks"].items():
        cells = [f"{r[c]:.3f}" if c in r else "-" for c in cfgs]
        lines.append(f"| {name} | {r['metric']} | " + " | ".join(cells) + " |")
    for variant in ("mc", "gen"):
        rows = [r for r in report["tasks"].values() if r["variant"] == variant]
        if rows:
            means = [_mean([r[c] for r in rows if c in r]) for c in cfgs]
            lines.append(f"| **mean ({variant}, {len(rows)} tasks)** | | " + " | ".join(m for m in means) + " |")
    if report.get("routes"):
        top = ", ".join(f"{k} {v}" for k, v in list(report["routes"].items())[:8])
        lines += ["", f"Routed requests by configuration (most frequent): {top}."]
    return "\n".join(lines) + "\n"


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.3f}" if values else "-"


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["tasks"])
    cfgs = report["configs"]
    width = 0.8 / max(1, len(cfgs))
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(names) + 2), 4))
    for i, c in enumerate(cfgs):
        xs = [j + i * width for j in range(len(names))]
        ax.bar(xs, [report["tasks"][n].get(c, 0.0) for n in names], width=width, label=c)
    ax.set_xticks([j + width * (len(cfgs) - 1) / 2 for j in range(len(names))])
    ax.set_xticklabels([n.removeprefix("brickwork_") for n in names], rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("acc (mc) / exact_match (gen)")
    ax.set_title(f"lm-eval: base vs routed vs oracle (limit {report['limit'] or 'all'})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
