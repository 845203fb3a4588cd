"""``brickwork eval harness``: the bundled tasks under lm-eval, base vs routed vs oracle bricks.

Each bundled task runs as lm-eval tasks (`brickwork.evals.harness.tasks`: generation, and
multiple choice for the label tasks) with lm-eval's metrics (``exact_match``; ``acc``), zero-shot,
with Brickwork's chat format (``--apply_chat_template``), on the first `--limit` test items:

- ``base``: the base model alone;
- ``routed``: each request routed by the library's router (the prompt's user message is the query);
- ``oracle``: each task on its own brick (tasks without a brick in the library are left out).

One engine serves all three. Writes ``harness.json``, ``harness.md`` and ``harness.png``, with,
per evaluated item, the bricks routing chose for it and whether base and routed got it right.
``--out-of-scope`` instead runs tasks no brick was made for, base vs routed (routing must do no
harm there): the generated facts (`brickwork.evals.harness.oos`) and three shipped BIG-Bench
Hard tasks (`brickwork.evals.harness.bbh`, lm-eval's own zero-shot BBH configs on local data).

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
                   help="run the out-of-scope tasks (generated facts, three BBH tasks; no brick made for them), base vs routed, instead")


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


def evaluate(
    lm: Any, names: list[str], task_dir: Path, *, limit: int | None, use_cache: str | None,
    samples: dict[str, Any] | None = None, task_manager: Any = None,
) -> dict[str, Any]:
    """lm-eval's results per task; with `samples`, lm-eval's logged samples per task land there.
    Pass one `task_manager` (over `task_dir`) to several calls: building one indexes every lm-eval task."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    res = simple_evaluate(
        model=lm, tasks=names, limit=limit, task_manager=task_manager or TaskManager(include_path=str(task_dir)),
        apply_chat_template=True, use_cache=use_cache, bootstrap_iters=0, log_samples=samples is not None,
    )
    if samples is not None:
        samples.update(res.get("samples") or {})
    return res["results"]


def out_of_scope_tasks(task_dir: Path, variants: list[str]) -> dict[str, tuple[str, str]]:
    """Write the out-of-scope tasks (generated facts, multiple choice; BBH, both variants) into
    `task_dir`; returns lm-eval task name -> (task id, variant)."""
    from brickwork.evals.harness.bbh import bbh_names, write_bbh_tasks
    from brickwork.evals.harness.oos import oos_names, write_oos_tasks

    write_oos_tasks(task_dir)
    write_bbh_tasks(task_dir)
    names = {n: (n.removeprefix("brickwork_"), "mc") for n in oos_names()} if "mc" in variants else {}
    return names | bbh_names(variants)


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
    oos = bool(getattr(args, "out_of_scope", False))
    if oos:
        configs = [c for c in configs if c != "oracle"]  # no brick exists for these tasks
        task_ids, task_dir = [], out / "tasks"
        names = out_of_scope_tasks(task_dir, variants)
    else:
        names = lm_eval_tasks(task_ids, variants)
        task_dir = write_tasks(out / "tasks", task_ids)
    limit = args.limit or None
    report: dict[str, Any] = {"suite": "harness-out-of-scope" if oos else "harness", "engine": args.engine, "limit": limit,
                              "configs": configs, "metrics": METRIC, "tasks": {}, "routes": {}, "routing": {}, "items": [],
                              "seconds": {}}
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(task_dir))
    bw = Brickwork(args.library, engine=args.engine, planner="rules", checkpoints=False)
    with bw:
        tok = AutoTokenizer.from_pretrained(bw.store.base.path)
        library = set(bw.store.names())

        def lm(bricks: str) -> BrickworkLM:
            return BrickworkLM(brickwork=bw, tokenizer=tok, bricks=bricks, batch_size=args.batch_size, engine=args.engine)

        def cache(cfg: str) -> str | None:
            return f"{args.use_cache}-{cfg}" if args.use_cache else None

        results: dict[str, dict[str, float]] = {}
        rows: dict[str, tuple[str, str]] = {}
        samples: dict[str, dict[str, Any]] = {}
        routed_lm = None
        for cfg in configs:
            t0 = time.perf_counter()
            if cfg == "oracle":
                for tid in task_ids:
                    mine = [n for n, (t, _) in names.items() if t == tid]
                    if tid not in library or not mine:
                        continue
                    for n, r in evaluate(lm(tid), mine, task_dir, limit=limit, use_cache=cache(f"oracle-{tid}"), task_manager=tm).items():
                        _collect(results, rows, n, cfg, names[n][1], r)
            else:
                model = lm(cfg)
                samples[cfg] = {}
                for n, r in evaluate(model, list(names), task_dir, limit=limit, use_cache=cache(cfg), samples=samples[cfg], task_manager=tm).items():
                    _collect(results, rows, n, cfg, names[n][1], r)
                if cfg == "routed":
                    report["routes"] = dict(model.route_counts.most_common())
                    routed_lm = model
            report["seconds"][cfg] = round(time.perf_counter() - t0, 1)
            print(f"[harness] {cfg}: {report['seconds'][cfg]:.0f} s")
        if routed_lm is not None:
            report["items"] = item_routes(routed_lm, samples)
            report["routing"] = routing_summary(report["items"])
    for row, (n, metric) in rows.items():
        tid, variant = names[n]
        report["tasks"][row] = {"task": tid, "variant": variant, "metric": metric, **results[row]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "harness.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "harness.md").write_text(markdown(report))
    chart(report, out / "harness.png")
    print(markdown(report))
    print(f"[harness] wrote {out / 'harness.json'}, {out / 'harness.md'} and {out / 'harness.png'}")
    return 0


def _collect(results: dict[str, dict[str, float]], rows: dict[str, tuple[str, str]], name: str, cfg: str, variant: str,
             res: dict[str, Any]) -> None:
    """One table row per filter of the variant's metric: ``NAME`` for lm-eval's ``none`` or first
    filter (BBH's ``strict-match``), ``NAME [FILTER]`` for the others (``flexible-extract``).
    `rows` maps each row to (lm-eval task, metric label)."""
    metric = METRIC[variant].split(",")[0]
    for i, key in enumerate(k for k in res if k.split(",")[0] == metric):
        flt = key.split(",", 1)[1]
        row = name if i == 0 else f"{name} [{flt}]"
        results.setdefault(row, {})[cfg] = float(res[key])
        rows[row] = (name, metric if flt == "none" else f"{metric} ({flt})")


def item_routes(model: Any, samples: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per evaluated item of each task: where routing sent it (all of an item's requests share one
    route: its query), and whether base and routed got it right: ``base``/``routed`` under the
    task's first filter, ``base [FILTER]``/``routed [FILTER]`` under its others."""
    from brickwork.evals.harness.model import config_name

    scores: dict[tuple[str, int], dict[str, float]] = {}
    contexts: dict[tuple[str, int], str] = {}
    for cfg, by_task in samples.items():
        for name, rows in by_task.items():
            first = rows[0]["filter"] if rows else None
            for s in rows:
                metric = "acc" if "acc" in s else "exact_match"
                key = cfg if s["filter"] == first else f"{cfg} [{s['filter']}]"
                scores.setdefault((name, s["doc_id"]), {})[key] = float(s[metric])
                contexts[(name, s["doc_id"])] = s["arguments"][0][0]
    keys = list(contexts)
    routes = model.route([contexts[k] for k in keys])
    return [{"task": n, "doc_id": d, "route": config_name(r), **scores[(n, d)]} for (n, d), r in zip(keys, routes, strict=True)]


def routing_summary(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task: items, how many routing sent to a brick and to which, and base vs routed on those."""
    out: dict[str, dict[str, Any]] = {}
    for it in items:
        s = out.setdefault(it["task"], {"items": 0, "to_brick": 0, "bricks": {}, "base_on_brick_items": 0.0,
                                        "routed_on_brick_items": 0.0, "changed": 0})
        s["items"] += 1
        if it.get("base") is not None and it.get("routed") is not None and it["base"] != it["routed"]:
            s["changed"] += 1
        if it["route"] != "base":
            s["to_brick"] += 1
            s["bricks"][it["route"]] = s["bricks"].get(it["route"], 0) + 1
            s["base_on_brick_items"] += it.get("base") or 0.0
            s["routed_on_brick_items"] += it.get("routed") or 0.0
    for s in out.values():
        s["bricks"] = dict(sorted(s["bricks"].items(), key=lambda kv: -kv[1]))
    return out


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
        rows = [r for n, r in report["tasks"].items() if r["variant"] == variant and " [" not in n]  # first filter only
        if rows:
            means = [_mean([r[c] for r in rows if c in r]) for c in cfgs]
            lines.append(f"| **mean ({variant}, {len(rows)} tasks)** | | " + " | ".join(m for m in means) + " |")
    if report.get("routes"):
        top = ", ".join(f"{k} {v}" for k, v in list(report["routes"].items())[:8])
        lines += ["", f"Routed requests by configuration (most frequent): {top}."]
    if report.get("routing"):
        lines += [
            "",
            "Where routing sent each item (all requests of an item share its route), and base vs routed on the items sent to a brick:",
            "",
            "| lm-eval task | items | to a brick | bricks (items) | base correct there | routed correct there | items scored differently |",
            "|---|---:|---:|---|---:|---:|---:|",
        ]
        for name, r in report["routing"].items():
            bricks = ", ".join(f"{b} {k}" for b, k in r["bricks"].items()) or "-"
            lines.append(f"| {name} | {r['items']} | {r['to_brick']} | {bricks} | {r['base_on_brick_items']:g} | "
                         f"{r['routed_on_brick_items']:g} | {r['changed']} |")
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
    ax.set_title(f"lm-eval: {' vs '.join(cfgs)} (limit {report['limit'] or 'all'})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
