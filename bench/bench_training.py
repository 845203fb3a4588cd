"""Benchmark: seconds per LoRA training step, the naive setup vs Brickwork's, cut by cut.

Every variant trains on the same pairs (a starter task's recipe: 500 train examples, each bare and
under its instruction), batch 16, from the same seed, in one process:

- ``naive``: LoRA r=8 on q_proj,v_proj of all 30 layers, logits over the whole 49k vocabulary at
  every position (loss still only on answer tokens) — DESIGN.md §7's measured setup;
- ``head_at_labels``: the same, the head computed only at answer positions;
- ``upper_layers``: LoRA (r=8) on q,v,o,down of the top 12 layers only (backprop stops there; the
  same adapter size as the naive one);
- ``lower_cached``: upper_layers plus the frozen lower layers run once per sequence (shared ChatML
  prefix computed once, length-sorted batches), each sequence padded to the batch's longest;
- ``brickwork``: lower_cached plus packing (a batch's sequences share rows of 64 tokens, each
  attending only to itself) — the default `TrainConfig`;
- ``bf16``: brickwork with the step's matrix products under bfloat16 CPU autocast (not exact).

The first three cost the same at every step, so they run `--probe-steps` steps; the cached ones
amortise their lower-layer pass over the run, so they run the full recipe (`--steps`) and, with
`--eval N`, are scored on N examples of the task's *train* split that are not among the training
pairs (a validation sample; the test split is never read), so a speed-up that costs accuracy
shows. Wall-clock
and process CPU time are both recorded: on a shared, oversubscribed machine wall time mostly
measures the neighbours, while CPU time is the work this process did (the headline ratio).

    .venv/bin/python bench/bench_training.py [--task english_plural] [--steps 120] [--threads 1] [--eval 100]

Writes bench/results/training.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

VARIANTS: dict[str, dict] = {
    "naive": {"top_layers": None, "target_modules": ("q_proj", "v_proj"), "full_logits": True, "cache_lower": False,
              "pack": False},
    "head_at_labels": {"top_layers": None, "target_modules": ("q_proj", "v_proj"), "cache_lower": False, "pack": False},
    "upper_layers": {"cache_lower": False, "pack": False},
    "lower_cached": {"pack": False},
    "brickwork": {},
    "bf16": {"compute_dtype": "bfloat16"},
}
FULL_RUN = ("lower_cached", "brickwork", "bf16")  # amortise the lower-layer pass: run every step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="english_plural")
    ap.add_argument("--steps", type=int, default=120, help="steps of the full brickwork run")
    ap.add_argument("--probe-steps", type=int, default=8, help="steps of each per-step-constant variant")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--eval", type=int, default=0, metavar="N",
                    help="score the full-run variants on N unused train-split examples (validation)")
    ap.add_argument("--out", default="bench/results/training.json")
    args = ap.parse_args()

    import torch

    from brickwork.bricks.library_build import EVAL_STYLE, TRAIN_CAP, starter_pairs
    from brickwork.bricks.training import TrainConfig, evaluate_adapter, train_lora
    from brickwork.models import resolve_base_model
    from brickwork.tasks import load_tasks, sample

    torch.set_num_threads(args.threads)
    base = resolve_base_model()
    task = load_tasks()[args.task]
    pairs = starter_pairs(task)
    used = {e.input for e in sample(task.split("train"), TRAIN_CAP, seed=0)}
    val = [(task.query(e, EVAL_STYLE), e) for e in task.split("train") if e.input not in used][: args.eval]
    results = []
    for name in args.variants.split(","):
        steps = args.steps if name in FULL_RUN else args.probe_steps
        cfg = TrainConfig(steps=steps, warmup_steps=min(10, steps), **VARIANTS[name])
        load0 = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as tmp:
            res = train_lora(pairs, base=base, config=cfg, out_dir=Path(tmp) / "a", progress=False)
            em = evaluate_adapter(base, Path(tmp) / "a", val)["exact_match"] if val and name in FULL_RUN else None
        row = {
            "variant": name,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in VARIANTS[name].items()},
            "steps": steps,
            "cpu_s_per_step": res.cpu_seconds_per_step,
            "wall_s_per_step": res.seconds_per_step,
            "n_trainable": res.n_trainable,
            "final_loss": res.final_loss,
            "validation_exact_match": em,
            "n_validation": len(val) if em is not None else 0,
            "load_avg_1m": round((load0 + os.getloadavg()[0]) / 2, 2),
        }
        print(json.dumps(row), flush=True)
        results.append(row)
    by = {r["variant"]: r for r in results}
    ratios = {}
    # each variant against the naive setup, and each cut against the variant before it
    order = [r["variant"] for r in results]
    for ref in ["naive"] + [a for a in order if a != "naive"]:
        if ref not in by:
            continue
        for r in results:
            if r["variant"] == ref or (ref != "naive" and order.index(r["variant"]) != order.index(ref) + 1):
                continue
            ratios[f"{ref}/{r['variant']}"] = {
                "cpu": round(by[ref]["cpu_s_per_step"] / r["cpu_s_per_step"], 2),
                "wall": round(by[ref]["wall_s_per_step"] / r["wall_s_per_step"], 2),
            }
    out = {
        "benchmark": "training",
        "task": args.task,
        "n_pairs": len(pairs),
        "batch_size": 16,
        "threads": args.threads,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "command": "python bench/bench_training.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "results": results,
        "ratios": ratios,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(ratios))


if __name__ == "__main__":
    main()
