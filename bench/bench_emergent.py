"""Benchmark: running with part of the FFN neurons (sliced weights) and skipped layers vs dense.

Measures, in one run and interleaved round by round (so machine load hits every variant alike):

- FFN time: all 30 FFNs of SmolLM2-135M on decode-shaped (1 token), batched-decode (16 x 1) and
  prefill-shaped (1 x 64) inputs, with 100/75/50/25% of neurons kept;
- end-to-end greedy decode (batch 1, fixed number of new tokens) for dense, 75/50/25% kept,
  2/4 skipped layers and 50% + 4 skipped; tokens/s and ratio to dense.

Which neurons are kept does not change the speed, only how many; the ranking used here is the
down_proj column norm (no data needed). Skipped layers are the lowest block-influence layers of
the committed analysis (docs/emergent/analysis.json, or --analysis DIR). Quality is the eval
suite's job (`brickwork eval emergent`).

Both wall-clock and process CPU time are recorded. On a shared, oversubscribed machine wall time
mostly measures the neighbours; with one torch thread, CPU time is the work this process did,
and its ratios are the headline (wall ratios are reported beside them).

    nice -n 10 .venv/bin/python bench/bench_emergent.py [--threads 1] [--rounds 5]

Writes bench/results/emergent.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

FRACTIONS = (1.0, 0.75, 0.5, 0.25)
SHAPES = {"decode_1x1": (1, 1), "decode_16x1": (16, 1), "prefill_1x64": (1, 64)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: stable on a busy shared machine)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--analysis", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "emergent")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "emergent.json")
    args = p.parse_args()

    import torch

    from brickwork.bricks.emergent.ffn import down_column_norms, gated_ffns
    from brickwork.bricks.emergent.select import keep_from_scores
    from brickwork.bricks.emergent.slicing import skip_layers, slice_ffn
    from brickwork.models import load_base_model, resolve_base_model
    from brickwork.tasks import load_tasks, render_prompt

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    base = resolve_base_model()
    model, tok = load_base_model(base)
    ffns = gated_ffns(model)
    scores = down_column_norms(model)
    keeps = {f: keep_from_scores(scores, f) for f in FRACTIONS if f < 1}

    hidden = model.config.hidden_size
    g = torch.Generator().manual_seed(0)
    inputs = {name: torch.randn(b, s, hidden, generator=g) for name, (b, s) in SHAPES.items()}

    def ffn_time(x: torch.Tensor, reps: int) -> tuple[float, float]:
        with torch.inference_mode():
            for f in ffns:  # warm-up
                f.mlp(x)
            t, c = time.perf_counter(), time.process_time()
            for _ in range(reps):
                for f in ffns:
                    f.mlp(x)
            return (time.perf_counter() - t) / reps, (time.process_time() - c) / reps

    reps = {"decode_1x1": 40, "decode_16x1": 20, "prefill_1x64": 8}
    ffn_samples: dict[str, dict[float, list[tuple[float, float]]]] = {s: {f: [] for f in FRACTIONS} for s in SHAPES}
    for _ in range(args.rounds):
        for f in FRACTIONS:
            with slice_ffn(model, keeps.get(f, {})):
                for s, x in inputs.items():
                    ffn_samples[s][f].append(ffn_time(x, reps[s]))

    # Skippable layers: the analysis' lowest block influence, else measured on one prompt per task.
    tasks = load_tasks()
    prompts = [render_prompt(t.query(t.split("test")[0])) for t in tasks.values()]
    ids = tok(prompts[list(tasks).index("english_plural")], return_tensors="pt", add_special_tokens=False)["input_ids"]
    analysis_json = args.analysis / "analysis.json"
    if analysis_json.is_file():
        bi_order = json.loads(analysis_json.read_text())["layer_importance"]["skip_order"]
        bi_source = str(analysis_json)
    else:
        bi = torch.zeros(len(ffns))
        with torch.inference_mode():
            for pr in prompts:
                x = tok(pr, return_tensors="pt", add_special_tokens=False)["input_ids"]
                hs = model.model(input_ids=x, output_hidden_states=True).hidden_states
                for i in range(len(hs) - 1):
                    bi[i] += 1 - torch.nn.functional.cosine_similarity(hs[i], hs[i + 1], dim=-1).mean().item()
        bi_order = [i for i in torch.argsort(bi).tolist() if i != 0]
        bi_source = "one test prompt per task"

    variants = {
        "dense": (1.0, 0),
        "keep-75": (0.75, 0),
        "keep-50": (0.5, 0),
        "keep-25": (0.25, 0),
        "skip-2": (1.0, 2),
        "skip-4": (1.0, 4),
        "keep-50+skip-4": (0.5, 4),
    }

    def decode_time(n_new: int) -> tuple[float, float]:
        with torch.inference_mode():
            t, c = time.perf_counter(), time.process_time()
            out = model.generate(ids, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, pad_token_id=tok.pad_token_id)
            dt, dc = time.perf_counter() - t, time.process_time() - c
        if out.shape[1] - ids.shape[1] != n_new:
            raise RuntimeError(f"generated {out.shape[1] - ids.shape[1]} tokens, wanted {n_new}")
        return dt, dc

    dec_samples: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    prefill_samples: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for v, (f, n_skip) in variants.items():
            with slice_ffn(model, keeps.get(f, {})), skip_layers(model, bi_order[:n_skip]):
                decode_time(2)  # warm-up
                t1 = decode_time(1)  # prefill + 1 token
                tn = decode_time(args.new_tokens)
            prefill_samples[v].append(t1)
            dec_samples[v].append(tuple((b - a) / (args.new_tokens - 1) for a, b in zip(t1, tn, strict=True)))

    def med(xs: list[tuple[float, float]], k: int) -> float:
        return statistics.median(x[k] for x in xs)

    ffn_table = {
        s: {
            f"{int(f * 100)}%": {
                "cpu_ms": round(med(ffn_samples[s][f], 1) * 1e3, 3),
                "speedup_cpu": round(med(ffn_samples[s][1.0], 1) / med(ffn_samples[s][f], 1), 3),
                "wall_ms": round(med(ffn_samples[s][f], 0) * 1e3, 3),
                "speedup_wall": round(med(ffn_samples[s][1.0], 0) / med(ffn_samples[s][f], 0), 3),
            }
            for f in FRACTIONS
        }
        for s in SHAPES
    }
    decode_table = {
        v: {
            "kept_ffn": f"{int(f * 100)}%",
            "skipped_layers": bi_order[:n_skip],
            "cpu_ms_per_token": round(med(dec_samples[v], 1) * 1e3, 2),
            "decode_speedup_cpu": round(med(dec_samples["dense"], 1) / med(dec_samples[v], 1), 3),
            "wall_ms_per_token": round(med(dec_samples[v], 0) * 1e3, 2),
            "decode_speedup_wall": round(med(dec_samples["dense"], 0) / med(dec_samples[v], 0), 3),
            "prefill_cpu_ms": round(med(prefill_samples[v], 1) * 1e3, 1),
            "prefill_speedup_cpu": round(med(prefill_samples["dense"], 1) / med(prefill_samples[v], 1), 3),
        }
        for v, (f, n_skip) in variants.items()
    }
    result = {
        "benchmark": "emergent",
        "model": base.to_json(),
        "command": f"nice -n 10 .venv/bin/python bench/bench_emergent.py --threads {args.threads} --rounds {args.rounds} --new-tokens {args.new_tokens}",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": args.threads,
            "torch": torch.__version__,
            "load_average_start": [round(x, 2) for x in load_start],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
        "rounds": args.rounds,
        "statistic": "median over interleaved rounds",
        "ffn": ffn_table,
        "decode": {"prompt_tokens": ids.shape[1], "new_tokens": args.new_tokens, "batch": 1, "skip_order_from": bi_source, "variants": decode_table},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"ffn": ffn_table, "decode": decode_table}, indent=1))


if __name__ == "__main__":
    main()
