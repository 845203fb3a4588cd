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

``--per-token`` instead benchmarks per-token selection at 50/30% kept, three methods:
``gate`` (|act(gate)| thresholds, `brickwork.bricks.emergent.sparse_ffn`), ``act``
(|act(gate) * up|, the same module) and ``group`` (co-activation groups picked by a linear
router, `brickwork.bricks.emergent.grouped_ffn`): FFN-only time of the 30 layers on real one-token
decode inputs, and end-to-end greedy decode (batch 1) for dense, each method and "no FFN" (MLPs
returning zeros: the FFN's share of a decode step, hence the ceiling of any FFN-only speed-up),
without and with a LoRA brick on q/v/gate/up/down (random, nonzero; its delta is computed on the
kept neurons). Writes bench/results/emergent_token.json.
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
    p.add_argument("--groups", type=int, default=16, help="--per-token: neuron groups per FFN of the grouped method (default 16)")
    p.add_argument("--plot", action="store_true", help="only draw docs/emergent/token-{accuracy,speed}.png from the committed JSON")
    args = p.parse_args()
    if args.plot:
        plot(Path(__file__).resolve().parent.parent)
        return
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
        "machine": machine(torch, args.threads, load_start),
        "rounds": args.rounds,
        "statistic": "median over interleaved rounds",
        "ffn": ffn_table,
        "decode": {"prompt_tokens": ids.shape[1], "new_tokens": args.new_tokens, "batch": 1, "skip_order_from": bi_source, "variants": decode_table},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"ffn": ffn_table, "decode": decode_table}, indent=1))


TOKEN_FRACTIONS = (0.5, 0.3)
#: per-token methods: (name, what computes the kept neurons)
TOKEN_METHODS = ("gate", "act", "group")


def machine(torch: object, threads: int, load_start: tuple[float, ...], **extra: object) -> dict[str, object]:
    """CPU, torch and the load average at the start and end of the run."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,  # type: ignore[attr-defined]
        **extra,
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }


def _timed(fn: Callable[[], object], reps: int) -> tuple[float, float]:
    fn()  # warm-up
    t, c = time.perf_counter(), time.process_time()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps, (time.process_time() - c) / reps


def per_token(args: argparse.Namespace) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from brickwork.bricks.emergent.ffn import decoder_layers, gated_ffns
    from brickwork.bricks.emergent.grouped_ffn import GroupedFFN, fit_groups, grouped_ffn
    from brickwork.bricks.emergent.sparse_ffn import SparseFFN, calibrate_thresholds, calibration_texts, sparse_ffn
    from brickwork.models import load_base_model, resolve_base_model
    from brickwork.tasks import load_tasks, render_prompt

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    base = resolve_base_model()
    model, tok = load_base_model(base)
    th = {sc: calibrate_thresholds(model, tok, TOKEN_FRACTIONS, score=sc) for sc in ("gate", "act")}
    routing = fit_groups(model, tok, args.groups)
    kinds = [(1.0, "dense")] + [(f, m) for m in TOKEN_METHODS for f in TOKEN_FRACTIONS]
    task = load_tasks()["english_plural"]
    ids = tok(render_prompt(task.query(task.split("test")[0])), return_tensors="pt", add_special_tokens=False)["input_ids"]

    def make(mlp: object, layer: int, f: float, method: str) -> object:
        if method == "group":
            k = max(1, round(f * routing.n_groups))
            return GroupedFFN(mlp, routing.assign[layer], routing.weight[layer], routing.bias[layer], k)
        return SparseFFN(mlp, float(th[method][f][layer]), score=method)  # type: ignore[arg-type]

    def patch(m: object, f: float, method: str) -> object:
        if f >= 1:
            return contextlib.nullcontext()
        if method == "group":
            return grouped_ffn(m, routing, f)
        return sparse_ffn(m, th[method][f], fraction=f, score=method)  # type: ignore[arg-type]

    # FFN-only: the 30 MLPs in turn on their real inputs for the last prompt token (decode-shaped;
    # 30 layers' weights do not fit in the cache, as in a decode step).
    ffns = gated_ffns(model)
    xs: dict[int, torch.Tensor] = {}
    hooks = [f.mlp.register_forward_pre_hook(lambda _m, a, i=f.layer: xs.__setitem__(i, a[0][:, -1:].clone())) for f in ffns]
    with torch.inference_mode():
        model(ids)
    for h in hooks:
        h.remove()
    mods = {(f, m): [make(x.mlp, x.layer, f, m) for x in ffns] for f, m in kinds if f < 1}

    def ffn_run(kind: tuple[float, str]) -> None:
        for i, m in enumerate([x.mlp for x in ffns] if kind[0] == 1.0 else mods[kind]):
            m(xs[i])

    ffn_samples: dict[tuple[float, str], list[tuple[float, float]]] = {k: [] for k in kinds}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for k in kinds:
                ffn_samples[k].append(_timed(lambda k=k: ffn_run(k), 20))
    ffn_kept = {k: sum(m.kept for m in ms) / sum(m.tokens * x.size for m, x in zip(ms, ffns, strict=True)) for k, ms in mods.items()}
    del mods

    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, lora).eval()
    layers = decoder_layers(peft_model)
    variants = [(f, m, b) for b in (False, True) for f, m in [*kinds, (0.0, "no-ffn")]]
    dec: dict[tuple[float, str, bool], list[tuple[float, float]]] = {v: [] for v in variants}
    kept: dict[tuple[float, str, bool], float | None] = {}
    loads: list[float] = []

    def generate(n_new: int, with_lora: bool) -> tuple[float, float]:
        kw = {"adapter_names": ["default"]} if with_lora else {}  # the engine's mixed-batch call
        t, c = time.perf_counter(), time.process_time()
        out = peft_model.generate(input_ids=ids, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, pad_token_id=tok.pad_token_id, **kw)
        if out.shape[1] - ids.shape[1] != n_new:
            raise RuntimeError(f"generated {out.shape[1] - ids.shape[1]} tokens, wanted {n_new}")
        return time.perf_counter() - t, time.process_time() - c

    class NoFFN(torch.nn.Module):
        """An MLP that returns zeros: the decode step without any FFN (gives the FFN's share)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.new_zeros(x.shape)

    @contextlib.contextmanager
    def no_ffn() -> object:
        mlps = [layer.mlp for layer in layers]
        for layer in layers:
            layer.mlp = NoFFN()
        try:
            yield None
        finally:
            for layer, mlp in zip(layers, mlps, strict=True):
                layer.mlp = mlp

    with torch.inference_mode():
        for _ in range(args.rounds):  # every variant once per round: load hits them alike
            loads.append(os.getloadavg()[0])
            for f, m, with_lora in variants:
                ctx = peft_model.disable_adapter() if not with_lora else contextlib.nullcontext()
                sp = no_ffn() if m == "no-ffn" else patch(peft_model, f, m)
                with ctx, sp as p:
                    generate(2, with_lora)  # warm-up
                    t1 = generate(1, with_lora)
                    if p is not None:
                        p.reset_counts()
                    tn = generate(args.new_tokens, with_lora)
                    kept[(f, m, with_lora)] = p.kept_fraction() if p is not None else (1.0 if f else 0.0)
                dec[(f, m, with_lora)].append(tuple((b - a) / (args.new_tokens - 1) for a, b in zip(t1, tn, strict=True)))

    def med(xs: list[tuple[float, float]], k: int) -> float:
        return statistics.median(x[k] for x in xs)

    dense_k = (1.0, "dense")
    ffn_table = {
        f"{m}-{int(f * 100)}%": {
            "kept_measured": round(ffn_kept.get((f, m), 1.0), 4),
            "cpu_ms": round(med(ffn_samples[(f, m)], 1) * 1e3, 3),
            "speedup_cpu": round(med(ffn_samples[dense_k], 1) / med(ffn_samples[(f, m)], 1), 3),
            "wall_ms": round(med(ffn_samples[(f, m)], 0) * 1e3, 3),
            "speedup_wall": round(med(ffn_samples[dense_k], 0) / med(ffn_samples[(f, m)], 0), 3),
        }
        for f, m in kinds
    }
    decode_table = {}
    for f, m, b in variants:
        d = dec[(1.0, "dense", b)]
        row = {
            "lora_brick": b,
            "method": m,
            "kept_target": f,
            "kept_measured": round(kept[(f, m, b)] or 0.0, 4),
            "cpu_ms_per_token": round(med(dec[(f, m, b)], 1) * 1e3, 2),
            "tokens_per_s_cpu": round(1 / med(dec[(f, m, b)], 1), 2),
            "decode_speedup_cpu": round(med(d, 1) / med(dec[(f, m, b)], 1), 3),
            "wall_ms_per_token": round(med(dec[(f, m, b)], 0) * 1e3, 2),
            "tokens_per_s_wall": round(1 / med(dec[(f, m, b)], 0), 2),
            "decode_speedup_wall": round(med(d, 0) / med(dec[(f, m, b)], 0), 3),
        }
        if f"{m}-{int(f * 100)}%" in ffn_table:
            row["ffn_only_speedup_cpu"] = ffn_table[f"{m}-{int(f * 100)}%"]["speedup_cpu"]
        decode_table[f"{'lora' if b else 'base'}-{m}" + ("" if m == "no-ffn" else f"-{int(f * 100)}%")] = row
    share = {
        ("lora" if b else "base"): round(1 - med(dec[(0.0, "no-ffn", b)], 1) / med(dec[(1.0, "dense", b)], 1), 3) for b in (False, True)
    }
    result = {
        "benchmark": "emergent-per-token",
        "model": base.to_json(),
        "command": f"nice -n 10 .venv/bin/python bench/bench_emergent.py --per-token --threads {args.threads} --rounds {args.rounds} --new-tokens {args.new_tokens} --groups {args.groups}",
        "machine": machine(
            torch, args.threads, load_start, shared="2 cores shared with other jobs; ratios use process CPU time",
            load_average_1min_per_round=[round(x, 2) for x in loads],
        ),
        "calibration_texts": len(calibration_texts()),
        "groups": args.groups,
        "lora_brick": "r=8 on q_proj, v_proj, gate_proj, up_proj, down_proj, random nonzero init; called with adapter_names as the peft engine does",
        "rounds": args.rounds,
        "statistic": "median over interleaved rounds",
        "ffn_share_of_decode_step": share,
        "ffn_only_ceiling_note": "decode speed-up if the FFN took no time at all: 1 / (1 - share)",
        "ffn_decode_1x1": ffn_table,
        "decode": {"prompt_tokens": ids.shape[1], "new_tokens": args.new_tokens, "batch": 1, "variants": decode_table},
    }
    out = args.out or Path(__file__).parent / "results" / "emergent_token.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"ffn_share": share, "ffn_decode_1x1": ffn_table, "decode": decode_table}, indent=1))


#: method -> (label, eval config prefix, eval selection) for the plots
PLOT_METHODS = {
    "static": ("static per-task mask", "task", "task"),
    "gate": ("per token, |act(gate)| (CATS)", "ffn", "token"),
    "act": ("per token, |act(gate) x up|", "act", "token-act"),
    "group": ("per token, 16 groups + router", "group", "token-group"),
}


def plot(root: Path) -> None:
    """Accuracy vs kept FFN share per method (the committed eval runs) and decode speed-up vs
    kept share (the committed benchmarks) into docs/emergent/token-{accuracy,speed}.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = root / "docs" / "emergent"
    fig, ax = plt.subplots(figsize=(6, 4.2))
    # each committed run against its own dense row: eval-token is 17 tasks x 40, eval-group 6 x 20
    for run, style in (("eval-token", "o-"), ("eval-group", "^--")):
        f = docs / run / "emergent.json"
        if not f.is_file():
            continue
        report = json.loads(f.read_text())
        rows, where = report["results"], f"{len(next(iter(report['results'].values()))['tasks'])} tasks x {report['n_per_task']}"
        for method, (label, prefix, _sel) in PLOT_METHODS.items():
            pts = sorted((r["fraction"], r["mean_accuracy"]) for n, r in rows.items() if n.split("-")[0] == prefix and "+" not in n)
            if pts and "dense" in rows:
                pts.append((1.0, rows["dense"]["mean_accuracy"]))
                ax.plot([100 * x for x, _ in pts], [y for _, y in pts], style, label=f"{label} ({where})")
    ax.set_xlabel("FFN neurons kept per token (%)")
    ax.set_ylabel("mean accuracy (starter bricks, greedy exact match)")
    ax.invert_xaxis()
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(docs / "token-accuracy.png", dpi=90)

    bench = json.loads((root / "bench" / "results" / "emergent_token.json").read_text())
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, lora in ((a1, False), (a2, True)):
        v = bench["decode"]["variants"]
        pre = "lora" if lora else "base"
        for method in ("gate", "act", "group"):
            pts = sorted([(1.0, 1.0), *((r["kept_target"], r["decode_speedup_cpu"]) for r in v.values() if r["method"] == method and r["lora_brick"] is lora)])
            ax.plot([100 * x for x, _ in pts], [y for _, y in pts], "o-", label=f"{PLOT_METHODS[method][0]}, decode")
        g = sorted([(1.0, 1.0), *((r["kept_target"], r["ffn_only_speedup_cpu"]) for r in v.values() if r["method"] == "group" and r["lora_brick"] is lora)])
        ax.plot([100 * x for x, _ in g], [y for _, y in g], "s--", label="groups, FFN only")
        ax.axhline(v[f"{pre}-no-ffn"]["decode_speedup_cpu"], color="grey", ls=":", label="no FFN at all (ceiling)")
        ax.axhline(1.3, color="red", ls=":", lw=0.8, label="target 1.3x")
        ax.set_title(("with" if lora else "without") + " a LoRA brick (q,v,gate,up,down)", fontsize=9)
        ax.set_xlabel("FFN neurons kept per token (%)")
        ax.invert_xaxis()
    a1.set_ylabel("speed-up vs dense (CPU time, batch 1)")
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(docs / "token-speed.png", dpi=90)


if __name__ == "__main__":
    main()
