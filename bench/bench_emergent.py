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

``--per-token`` instead benchmarks per-token selection (`brickwork.bricks.emergent.sparse_ffn`,
thresholds calibrated on bundled train texts; neurons ranked by |act(gate)| or by
|act(gate) * up|): FFN-only time of the 30 layers on real one-token
decode inputs, and end-to-end greedy decode (batch 1), for dense and 50/30% kept, without and with
a LoRA brick on q/v/gate/up/down (random, nonzero: its delta is computed on the kept neurons).
Writes bench/results/emergent_token.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

FRACTIONS = (1.0, 0.75, 0.5, 0.25)
SHAPES = {"decode_1x1": (1, 1), "decode_16x1": (16, 1), "prefill_1x64": (1, 64)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: stable on a busy shared machine)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--analysis", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "emergent")
    p.add_argument("--out", type=Path, default=None, help="default bench/results/emergent.json (emergent_token.json with --per-token)")
    p.add_argument("--per-token", action="store_true", help="benchmark per-token selection instead of static slicing")
    args = p.parse_args()
    if args.per_token:
        per_token(args)
        return
    args.out = args.out or Path(__file__).parent / "results" / "emergent.json"

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


TOKEN_FRACTIONS = (1.0, 0.5, 0.3)


def _timed(fn: Callable[[], object], reps: int) -> tuple[float, float]:
    fn()  # warm-up
    t, c = time.perf_counter(), time.process_time()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps, (time.process_time() - c) / reps


def per_token(args: argparse.Namespace) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from brickwork.bricks.emergent.ffn import gated_ffns
    from brickwork.bricks.emergent.sparse_ffn import SparseFFN, calibrate_thresholds, calibration_texts, sparse_ffn
    from brickwork.models import load_base_model, resolve_base_model
    from brickwork.tasks import load_tasks, render_prompt

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    base = resolve_base_model()
    model, tok = load_base_model(base)
    sparse_fr = [f for f in TOKEN_FRACTIONS if f < 1]
    th = {sc: calibrate_thresholds(model, tok, sparse_fr, score=sc) for sc in ("gate", "act")}
    kinds = [(1.0, "dense")] + [(f, sc) for sc in ("gate", "act") for f in sparse_fr]
    task = load_tasks()["english_plural"]
    ids = tok(render_prompt(task.query(task.split("test")[0])), return_tensors="pt", add_special_tokens=False)["input_ids"]

    # FFN-only: each layer's MLP on its own real input for the last prompt token (decode-shaped).
    ffns = gated_ffns(model)
    xs: dict[int, torch.Tensor] = {}
    hooks = [f.mlp.register_forward_pre_hook(lambda _m, a, i=f.layer: xs.__setitem__(i, a[0][:, -1:].clone())) for f in ffns]
    with torch.inference_mode():
        model(ids)
    for h in hooks:
        h.remove()
    mods = {(f, sc): [SparseFFN(x.mlp, float(th[sc][f][x.layer]), score=sc) for x in ffns] for f, sc in kinds if f < 1}

    def ffn_run(kind: tuple[float, str]) -> None:
        layers = [x.mlp for x in ffns] if kind[0] == 1.0 else mods[kind]
        for i, m in enumerate(layers):
            m(xs[i])

    ffn_samples: dict[tuple[float, str], list[tuple[float, float]]] = {k: [] for k in kinds}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for k in kinds:
                ffn_samples[k].append(_timed(lambda k=k: ffn_run(k), 40))
    ffn_kept = {k: sum(m.kept for m in ms) / sum(m.tokens * x.size for m, x in zip(ms, ffns, strict=True)) for k, ms in mods.items()}

    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, lora).eval()
    variants = [(f, sc, b) for b in (False, True) for f, sc in kinds]
    dec: dict[tuple[float, str, bool], list[tuple[float, float]]] = {v: [] for v in variants}
    kept: dict[tuple[float, str, bool], float | None] = {}

    def generate(m: object, n_new: int) -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()
        out = m.generate(input_ids=ids, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, pad_token_id=tok.pad_token_id)  # type: ignore[attr-defined]
        if out.shape[1] - ids.shape[1] != n_new:
            raise RuntimeError(f"generated {out.shape[1] - ids.shape[1]} tokens, wanted {n_new}")
        return time.perf_counter() - t, time.process_time() - c

    with torch.inference_mode():
        for _ in range(args.rounds):
            for f, sc, with_lora in variants:
                ctx = peft_model.disable_adapter() if not with_lora else contextlib.nullcontext()
                sparse = sparse_ffn(peft_model, th[sc][f], fraction=f, score=sc) if f < 1 else contextlib.nullcontext()
                with ctx, sparse as patch:
                    generate(peft_model, 2)  # warm-up
                    t1 = generate(peft_model, 1)
                    if patch is not None:
                        patch.reset_counts()
                    tn = generate(peft_model, args.new_tokens)
                    kept[(f, sc, with_lora)] = patch.kept_fraction() if patch is not None else 1.0
                dec[(f, sc, with_lora)].append(tuple((b - a) / (args.new_tokens - 1) for a, b in zip(t1, tn, strict=True)))

    def med(xs: list[tuple[float, float]], k: int) -> float:
        return statistics.median(x[k] for x in xs)

    dense_k = (1.0, "dense")
    ffn_table = {
        f"{sc}-{int(f * 100)}%": {
            "kept_measured": round(ffn_kept.get((f, sc), 1.0), 4),
            "cpu_ms": round(med(ffn_samples[(f, sc)], 1) * 1e3, 3),
            "speedup_cpu": round(med(ffn_samples[dense_k], 1) / med(ffn_samples[(f, sc)], 1), 3),
            "wall_ms": round(med(ffn_samples[(f, sc)], 0) * 1e3, 3),
            "speedup_wall": round(med(ffn_samples[dense_k], 0) / med(ffn_samples[(f, sc)], 0), 3),
        }
        for f, sc in kinds
    }
    decode_table = {
        f"{'lora' if b else 'base'}-{sc}-{int(f * 100)}%": {
            "lora_brick": b,
            "score": sc,
            "kept_target": f,
            "kept_measured": round(kept[(f, sc, b)] or 0.0, 4),
            "cpu_ms_per_token": round(med(dec[(f, sc, b)], 1) * 1e3, 2),
            "tokens_per_s_cpu": round(1 / med(dec[(f, sc, b)], 1), 2),
            "decode_speedup_cpu": round(med(dec[(1.0, "dense", b)], 1) / med(dec[(f, sc, b)], 1), 3),
            "wall_ms_per_token": round(med(dec[(f, sc, b)], 0) * 1e3, 2),
            "decode_speedup_wall": round(med(dec[(1.0, "dense", b)], 0) / med(dec[(f, sc, b)], 0), 3),
        }
        for f, sc, b in variants
    }
    result = {
        "benchmark": "emergent-per-token",
        "model": base.to_json(),
        "command": f"nice -n 10 .venv/bin/python bench/bench_emergent.py --per-token --threads {args.threads} --rounds {args.rounds} --new-tokens {args.new_tokens}",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": args.threads,
            "torch": torch.__version__,
            "shared": "2 cores shared with other jobs; ratios use process CPU time",
            "load_average_start": [round(x, 2) for x in load_start],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
        "calibration_texts": len(calibration_texts()),
        "lora_brick": "r=8 on q_proj, v_proj, gate_proj, up_proj, down_proj, random nonzero init",
        "rounds": args.rounds,
        "statistic": "median over interleaved rounds",
        "ffn_decode_1x1": ffn_table,
        "decode": {"prompt_tokens": ids.shape[1], "new_tokens": args.new_tokens, "batch": 1, "variants": decode_table},
    }
    out = args.out or Path(__file__).parent / "results" / "emergent_token.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"ffn_decode_1x1": ffn_table, "decode": decode_table}, indent=1))


if __name__ == "__main__":
    main()
