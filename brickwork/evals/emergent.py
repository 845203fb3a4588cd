"""Emergent suite: task accuracy and perplexity with part of the FFN neurons or layers, and speed.

For every bundled task, on its test split: greedy accuracy (exact match, `brickwork.tasks.is_correct`)
and answer perplexity (teacher forced) with

- ``dense``: the whole model;
- ``task-75/50/25``: each FFN sliced to the 75/50/25% of neurons most important to *that task*
  (mean |activation| x ||down_proj column|| on its train split; resident neurons first);
- ``global-50``: 50% chosen once for all tasks (the task-agnostic control);
- ``skip-2/4``: the 2/4 layers with the lowest block influence skipped;
- ``task-50+skip-2``: both;
- ``ffn-50/30``: per *token*, the neurons with |act(gate_proj(x))| at or above a per-layer
  threshold calibrated on the base model so that 50/30% are kept on average (CATS/TEAL-style,
  `brickwork.bricks.emergent.sparse_ffn`; the reported ``kept_measured`` is the share actually
  kept with the task's brick active);
- ``act-50/30``: the same, ranking neurons by |act(gate_proj(x)) * up_proj(x)| (up computed
  whole, only down_proj reads the kept neurons).
- ``group-50/30``: per token, the 50/30% of 16 co-activation neuron groups a linear router picks
  (MoEfication-style, `brickwork.bricks.emergent.grouped_ffn`; fitted on the base model).

Prompts are `render_prompt(Task.query(e, "definition"))`. With trained starter bricks under
``brickwork/data/starter/<task_id>/`` each task runs with its own LoRA (PEFT, sliced together
with the base weights); otherwise the base model. The report says which. Wall times of every
configuration are measured in the same run; `bench/bench_emergent.py` gives the clean speed-ups.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from brickwork import _atomic
from brickwork.errors import ConfigError

STARTER_DIR = Path(__file__).resolve().parent.parent / "data" / "starter"
CONFIGS: tuple[tuple[str, float, str, int], ...] = (
    ("dense", 1.0, "task", 0),
    ("task-75", 0.75, "task", 0),
    ("task-50", 0.5, "task", 0),
    ("task-25", 0.25, "task", 0),
    ("global-50", 0.5, "global", 0),
    ("skip-2", 1.0, "task", 2),
    ("skip-4", 1.0, "task", 4),
    ("task-50+skip-2", 0.5, "task", 2),
    ("ffn-50", 0.5, "token", 0),
    ("ffn-30", 0.3, "token", 0),
    ("act-50", 0.5, "token-act", 0),
    ("act-30", 0.3, "token-act", 0),
    ("group-50", 0.5, "token-group", 0),
    ("group-30", 0.3, "token-group", 0),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="base model (default: the library's or SmolLM2-135M-Instruct)")
    p.add_argument("--analysis", type=Path, default=None, help="an `emergent analyze` directory (else importance is measured here)")
    p.add_argument("--n", type=int, default=10, help="test examples per task (default 10)")
    p.add_argument("--n-importance", type=int, default=24, help="train examples per task to rank neurons (default 24)")
    p.add_argument("--tasks", default=None, help="comma-separated task ids (default: all 17)")
    p.add_argument("--configs", default=None, help=f"comma-separated subset of {[c[0] for c in CONFIGS]}")
    p.add_argument("--no-starter", action="store_true", help="ignore starter bricks, use the base model")
    p.add_argument(
        "--selection", choices=("prompt", "answer"), default="prompt",
        help="rank neurons by the base model's activations on the prompt tokens (prompt, default: the "
        "paper's measure) or on prompt + answer tokens with the task's brick active (answer)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=None)


def main(args: argparse.Namespace) -> int:
    from brickwork.cli._output import print_json

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    report = run(
        Path(args.out),
        model_name=args.model,
        analysis_dir=args.analysis,
        n_per_task=args.n,
        n_importance=args.n_importance,
        tasks=args.tasks.split(",") if args.tasks else None,
        configs=args.configs.split(",") if args.configs else None,
        use_starter=not args.no_starter,
        selection=args.selection,
    )
    print_json({"out": args.out, "summary": report["summary"]})
    return 0


def _with_brick(runner: Any, task_id: str, starters: dict[str, Path]) -> Any:
    """Context: `runner` with `task_id`'s starter brick active (or the bare base model)."""
    import contextlib

    if not starters:
        return contextlib.nullcontext()
    if task_id in starters:
        runner.set_adapter(task_id)
        return contextlib.nullcontext()
    return runner.disable_adapter()


def starter_adapters(task_ids: list[str]) -> dict[str, Path]:
    """Trained starter LoRA bricks shipped in the package, by task id (may be empty)."""
    return {t: STARTER_DIR / t for t in task_ids if (STARTER_DIR / t / "adapter_config.json").is_file()}


def _importance(
    model: Any, tok: Any, analysis_dir: Path | None, n_importance: int, tasks: list[str], *, selection: str, starters: dict[str, Path]
) -> dict[str, Any]:
    from brickwork.bricks.emergent.analysis import collect_task_importance, load_analysis

    if analysis_dir is None:
        if selection == "prompt":  # the base model's activations on the prompt tokens
            import contextlib

            with model.disable_adapter() if starters else contextlib.nullcontext():
                return collect_task_importance(model, tok, n_per_task=n_importance, tasks=tasks, progress=True)
        return collect_task_importance(
            model, tok, n_per_task=n_importance, tasks=tasks, progress=True, record="all", task_context=lambda t: _with_brick(model, t, starters)
        )
    a = load_analysis(analysis_dir)
    return {
        "tasks": a.summary["tasks"],
        "task_importance": a.arrays["task_importance"],
        "global_importance": a.arrays["global_importance"],
        "resident": a.arrays["resident"].bool(),
        "block_influence": a.arrays["block_influence"],
    }


def _uses_importance(config: tuple[str, float, str, int]) -> bool:
    """A static neuron mask (``task-*``, ``global-*``) or skipped layers (ranked by block influence)."""
    _, fraction, how, n_skip = config
    return (fraction < 1 and how in ("task", "global")) or n_skip > 0


def _thresholds(model: Any, tok: Any, fractions: list[float], starters: dict[str, Path], *, score: str) -> dict[float, Any]:
    """Per-token thresholds calibrated on the base model (bricks disabled), train-split texts."""
    import contextlib

    from brickwork.bricks.emergent.sparse_ffn import calibrate_thresholds

    if not fractions:
        return {}
    with model.disable_adapter() if starters else contextlib.nullcontext():
        return calibrate_thresholds(model, tok, fractions, score=score)  # type: ignore[arg-type]


def run(
    out: Path,
    *,
    model_name: str | None = None,
    analysis_dir: Path | None = None,
    n_per_task: int = 10,
    n_importance: int = 24,
    tasks: list[str] | None = None,
    configs: list[str] | None = None,
    use_starter: bool = True,
    selection: str = "prompt",
) -> dict[str, Any]:
    """Run the suite; write ``emergent.json``, ``emergent.md`` and ``emergent.png`` into `out`."""
    import contextlib

    import torch

    from brickwork.bricks.emergent.data import build_instances, category_of
    from brickwork.bricks.emergent.runner import run_pass
    from brickwork.bricks.emergent.select import keep_from_scores
    from brickwork.bricks.emergent.slicing import skip_layers, slice_ffn
    from brickwork.bricks.emergent.sparse_ffn import sparse_ffn
    from brickwork.models import load_base_model, resolve_base_model
    from brickwork.serving.hf_generate import BASE_ADAPTER, generate_greedy
    from brickwork.tasks import is_correct, load_tasks, render_prompt, sample

    all_tasks = load_tasks()
    task_ids = tasks or list(all_tasks)
    unknown = [t for t in task_ids if t not in all_tasks]
    if unknown:
        raise ConfigError(f"unknown tasks {unknown}; known: {', '.join(all_tasks)}")
    chosen = [c for c in CONFIGS if configs is None or c[0] in configs]
    if configs is not None and len(chosen) != len(configs):
        raise ConfigError(f"unknown configs {sorted(set(configs) - {c[0] for c in CONFIGS})}; known: {[c[0] for c in CONFIGS]}")
    base = resolve_base_model(model_name)
    model, tok = load_base_model(base)
    starters = starter_adapters(task_ids) if use_starter else {}
    runner = model
    if starters:
        from peft import PeftModel

        items = list(starters.items())
        runner = PeftModel.from_pretrained(model, str(items[0][1]), adapter_name=items[0][0], is_trainable=False)
        for name, path in items[1:]:
            runner.load_adapter(str(path), adapter_name=name, is_trainable=False)
        runner.eval()
    # Neuron importance (minutes of forward passes without --analysis) only feeds static masks and
    # layer skipping; dense and per-token configs run without it.
    imp = None
    if any(_uses_importance(c) for c in chosen):
        imp = _importance(runner, tok, analysis_dir, n_importance, task_ids, selection=selection, starters=starters)
    thresholds = {
        how: _thresholds(runner, tok, sorted({c[1] for c in chosen if c[2] == how}), starters, score="gate" if how == "token" else "act")
        for how in ("token", "token-act")
    }
    routing = None
    if any(c[2] == "token-group" for c in chosen):
        from brickwork.bricks.emergent.grouped_ffn import fit_groups

        with runner.disable_adapter() if starters else contextlib.nullcontext():
            routing = fit_groups(runner, tok)
    skip_order = [] if imp is None else [int(i) for i in torch.argsort(imp["block_influence"]).tolist() if i != 0]

    per_task_data = {}
    for tid in task_ids:
        task = all_tasks[tid]
        exs = sample(task.split("test"), n_per_task, seed=0)
        pre, inst = build_instances(tok, split="test", per_category=n_per_task, categories={category_of(tid): (tid,)})
        ans_len = max(len(tok(e.output, add_special_tokens=False)["input_ids"]) for e in task.split("train"))
        per_task_data[tid] = (exs, pre, inst, min(48, ans_len + 2))

    results: dict[str, dict[str, Any]] = {}
    for name, fraction, how, n_skip in chosen:
        row: dict[str, Any] = {"fraction": fraction, "selection": how if fraction < 1 else "-", "skipped_layers": skip_order[:n_skip], "tasks": {}}
        gen_s = ppl_s = 0.0
        gen_tokens = 0
        kept: list[float] = []
        for tid in task_ids:
            exs, pre, inst, max_new = per_task_data[tid]
            per_token = how.startswith("token")
            keep = {}
            if imp is not None and fraction < 1 and not per_token:
                scores = imp["task_importance"][imp["tasks"].index(tid)] if how == "task" else imp["global_importance"]
                keep = keep_from_scores(scores, fraction, resident=imp["resident"])
            sparse: Any = contextlib.nullcontext()
            names = [tid if tid in starters else BASE_ADAPTER] * len(exs) if starters else None
            if how == "token-group":
                from brickwork.bricks.emergent.grouped_ffn import grouped_ffn

                sparse = grouped_ffn(runner, routing, fraction)
            elif per_token:
                sparse = sparse_ffn(runner, thresholds[how][fraction], fraction=fraction, score="gate" if how == "token" else "act")
            with sparse, slice_ffn(runner, keep), skip_layers(runner, skip_order[:n_skip]):
                t0 = time.perf_counter()
                outs = generate_greedy(runner, tok, [render_prompt(task_q) for task_q in (all_tasks[tid].query(e) for e in exs)], max_new_tokens=max_new, adapter_names=names)
                t1 = time.perf_counter()
                if starters and tid in starters:
                    runner.set_adapter(tid)
                    res = run_pass(runner, pre, inst, pad_id=tok.pad_token_id or 0)
                elif starters:
                    with runner.disable_adapter():
                        res = run_pass(runner, pre, inst, pad_id=tok.pad_token_id or 0)
                else:
                    res = run_pass(runner, pre, inst, pad_id=tok.pad_token_id or 0)
                t2 = time.perf_counter()
            if per_token:
                kept.append(sparse.kept_fraction())
            gen_s += t1 - t0
            ppl_s += t2 - t1
            gen_tokens += sum(n for _, n in outs)
            acc = sum(is_correct(text, e) for (text, _), e in zip(outs, exs, strict=True)) / len(exs)
            row["tasks"][tid] = {
                "accuracy": round(acc, 4),
                "answer_ppl": round(res.ppl(list(range(len(inst))), "answer"), 4),
                "content_ppl": round(res.ppl(list(range(len(inst)))), 4),
                "brick": "starter" if tid in starters else "base",
            }
        if kept:
            row["kept_measured"] = round(sum(kept) / len(kept), 4)
        row["generate_s"] = round(gen_s, 2)
        row["generated_tokens"] = gen_tokens
        row["ppl_pass_s"] = round(ppl_s, 2)
        row["mean_accuracy"] = round(sum(t["accuracy"] for t in row["tasks"].values()) / len(task_ids), 4)
        results[name] = row
        print(f"[emergent eval] {name}: accuracy {row['mean_accuracy']:.3f}, generate {gen_s:.1f} s, ppl pass {ppl_s:.1f} s", flush=True)

    report = _summarise(results, task_ids, starters, base.to_json(), n_per_task, analysis_dir)
    report["selection"] = selection
    _write(out, report)
    return report


def _summarise(results: dict[str, Any], task_ids: list[str], starters: dict[str, Path], model: dict, n: int, analysis_dir: Path | None) -> dict[str, Any]:
    dense = results.get("dense")
    summary: dict[str, Any] = {}
    for name, row in results.items():
        s: dict[str, Any] = {"mean_accuracy": row["mean_accuracy"]}
        if dense is not None:
            deltas = {t: row["tasks"][t]["accuracy"] - dense["tasks"][t]["accuracy"] for t in task_ids}
            s["accuracy_delta"] = round(row["mean_accuracy"] - dense["mean_accuracy"], 4)
            s["tasks_within_5_points"] = sum(d >= -0.05 for d in deltas.values())
            s["mean_answer_ppl_ratio"] = round(
                sum(row["tasks"][t]["answer_ppl"] / dense["tasks"][t]["answer_ppl"] for t in task_ids) / len(task_ids), 4
            )
            s["ppl_pass_speedup"] = round(dense["ppl_pass_s"] / max(row["ppl_pass_s"], 1e-9), 3)
            s["generate_speedup_per_token"] = round(
                (row["generated_tokens"] / max(row["generate_s"], 1e-9)) / (dense["generated_tokens"] / max(dense["generate_s"], 1e-9)), 3
            )
        summary[name] = s
    return {
        "suite": "emergent",
        "model": model,
        "bricks": {"starter": sorted(starters), "base": [t for t in task_ids if t not in starters]},
        "prompt": "render_prompt(Task.query(e, 'definition'))",
        "n_per_task": n,
        "neuron_ranking": str(analysis_dir) if analysis_dir else "measured in this run on the train split",
        "summary": summary,
        "results": results,
    }


def _write(out: Path, report: dict[str, Any]) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _atomic.write_json(out / "emergent.json", report)
    res, summ = report["results"], report["summary"]
    tasks = list(next(iter(res.values()))["tasks"])
    lines = [
        "# Emergent suite: running with part of the model",
        "",
        f"Model `{report['model']['id']}`; {report['n_per_task']} test examples per task; bricks: "
        f"{len(report['bricks']['starter'])} tasks with starter LoRA bricks, {len(report['bricks']['base'])} with the base model. "
        f"Neuron ranking: {report['neuron_ranking']}, "
        + ("over prompt + answer tokens with each task's brick active." if report.get("selection") == "answer" else "over the prompt tokens of the base model (the paper's measure)."),
        "",
        "| config | kept FFN | skipped layers | mean accuracy | Δ vs dense | tasks within 5 pts | answer ppl / dense | speed-up (ppl pass) | speed-up (generate, per token) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in res.items():
        s = summ[name]
        lines.append(
            f"| {name} | {row['fraction']:.0%} ({row['selection']}) | {row['skipped_layers'] or '-'} | {row['mean_accuracy']:.3f} | "
            f"{s.get('accuracy_delta', 0):+.3f} | {s.get('tasks_within_5_points', '-')}/{len(tasks)} | {s.get('mean_answer_ppl_ratio', 1):.3f} | "
            f"{s.get('ppl_pass_speedup', 1):.2f}x | {s.get('generate_speedup_per_token', 1):.2f}x |"
        )
    lines += ["", "## Accuracy per task", "", "| task | " + " | ".join(res) + " |", "|---|" + "---|" * len(res)]
    for t in tasks:
        lines.append(f"| {t} | " + " | ".join(f"{res[c]['tasks'][t]['accuracy']:.2f}" for c in res) + " |")
    lines += ["", "![emergent](emergent.png)", ""]
    _atomic.write_text(out / "emergent.md", "\n".join(lines))
    _plot(out, report)


def _plot(out: Path, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = report["results"]
    fr = [(n, r) for n, r in res.items() if r["selection"] in ("task", "-") and not r["skipped_layers"]]
    if not fr:
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [r["fraction"] * 100 for _, r in fr]
    a1.plot(xs, [r["mean_accuracy"] for _, r in fr], "o-", label="per-task neurons (static)")
    lines = {}
    for how, label in (("token", "per token, |act(gate)|"), ("token-act", "per token, |act(gate) x up|"), ("token-group", "per token, groups (router)")):
        pts = [(n, r) for n, r in res.items() if r["selection"] in (how, "-") and not r["skipped_layers"]]
        if any(r["selection"] == how for _, r in pts):
            lines.update(pts)
            a1.plot([r["fraction"] * 100 for _, r in pts], [r["mean_accuracy"] for _, r in pts], "s-", label=label)
    for n, r in res.items():
        if n not in dict(fr) and n not in lines:
            a1.scatter([r["fraction"] * 100], [r["mean_accuracy"]], label=n, marker="x")
    a1.set_xlabel("FFN neurons kept (%)")
    a1.set_ylabel("mean accuracy")
    a1.invert_xaxis()
    a1.legend(fontsize=7)
    ratios = [
        sum(r["tasks"][t]["answer_ppl"] / res["dense"]["tasks"][t]["answer_ppl"] for t in r["tasks"]) / len(r["tasks"]) if "dense" in res else 1
        for _, r in fr
    ]
    a2.plot(xs, ratios, "o-")
    a2.set_xlabel("FFN neurons kept (%)")
    a2.set_ylabel("answer perplexity / dense")
    a2.invert_xaxis()
    fig.tight_layout()
    fig.savefig(out / "emergent.png", dpi=80)
    plt.close(fig)
