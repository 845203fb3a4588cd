"""Retrieval index benchmark: exact (flat) vs HNSW vs IVF at 1k / 10k / 100k bricks.

For each library size: build time, single-query search latency p50/p99 (brick-level top-5,
the query already embedded: this is `BrickIndex.search_vectors`), and recall@5 of each
approximate structure against exact search, all side by side in one run. Also the embedding
throughput of the default embedder (texts/s batched, one-query latency), which is the part of a
search the index does not control.

Bricks are synthetic, built to look like the real index: vectors in the index's own space
(384-d embedding + lexical half) with the real index's row structure (a description and example
rows per brick), drawn around topic clusters so that neighbouring bricks are close, as real
ones are (mixture of Gaussians on the sphere, seeded). Embedding 100k real descriptions would
take hours on two cores and would not change what is measured here.

    nice -n 10 .venv/bin/python bench/bench_retrieval.py [--sizes 1000,10000,100000] [--queries 300]

Writes bench/results/retrieval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from brickwork.retrieval_index.ann import AnnConfig
from brickwork.retrieval_index.features import FeatureConfig
from brickwork.retrieval_index.search import BrickTable

OUT = Path(__file__).resolve().parent / "results" / "retrieval.json"


def synthetic_library(n_bricks: int, rows_per_brick: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, brick centres): clustered unit vectors, `rows_per_brick` rows per brick."""
    rng = np.random.default_rng(seed)
    n_topics = max(8, n_bricks // 50)
    topics = rng.standard_normal((n_topics, dim)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    centres = topics[rng.integers(0, n_topics, n_bricks)] + 0.9 * rng.standard_normal((n_bricks, dim)).astype(np.float32) / np.sqrt(dim)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rows = np.repeat(centres, rows_per_brick, axis=0)
    rows += 0.8 * rng.standard_normal(rows.shape).astype(np.float32) / np.sqrt(dim)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float32), centres


def queries_near(centres: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dim = centres.shape[1]
    q = centres[rng.integers(0, len(centres), n)] + 1.0 * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def time_search(table: BrickTable, queries: np.ndarray, k: int) -> tuple[list[list[str]], np.ndarray]:
    table.search(queries[:5], k)  # warm up
    names, lat = [], []
    for q in queries:
        t = time.perf_counter()
        hits = table.search(q[None, :], k)[0]
        lat.append(time.perf_counter() - t)
        names.append([h.name for h in hits])
    return names, np.asarray(lat) * 1000


def recall(approx: list[list[str]], exact: list[list[str]]) -> float:
    return float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact, strict=True)]))


def bench_embedding(n_texts: int = 256) -> dict:
    from brickwork.retrieval_index import load_embedder

    rng = np.random.default_rng(0)
    verbs = ["Classify", "Translate", "Summarize", "Rewrite", "Extract", "Answer", "Convert", "Detect", "Sort", "Count"]
    objs = ["the sentiment of a review", "a date into ISO format", "the capital of a country", "a list of words", "spam in SMS messages"]
    texts = [f"{rng.choice(verbs)} {rng.choice(objs)} (variant {i})." for i in range(n_texts)]
    emb = load_embedder()
    t = time.perf_counter()
    emb.embed(texts[:8])
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    emb.embed(texts)
    batch_s = time.perf_counter() - t
    single = []
    for x in texts[:30]:
        t = time.perf_counter()
        emb.embed([x])
        single.append(time.perf_counter() - t)
    return {
        "embedder": str(emb.identity),
        "first_call_s_incl_model_load": round(load_s, 2),
        "batched_texts_per_s": round(n_texts / batch_s, 1),
        "single_query_ms_p50": round(float(np.percentile(single, 50)) * 1000, 2),
        "single_query_ms_p99": round(float(np.percentile(single, 99)) * 1000, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--rows-per-brick", type=int, default=4, help="description + examples per brick (default %(default)s)")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--kinds", default="flat,hnsw,ivf")
    ap.add_argument("--no-embedding", action="store_true")
    ap.add_argument("--ef-search", default="", help="extra HNSW efSearch values to measure on the same build, e.g. 128,256")
    ap.add_argument("--nprobe", default="", help="extra IVF nprobe values to measure on the same build, e.g. 64,128")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()

    feats = FeatureConfig()
    dim = feats.dim(384)
    cfg = AnnConfig()
    results = {
        "benchmark": "retrieval",
        "command": "nice -n 10 .venv/bin/python bench/bench_retrieval.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k in ("sizes", "rows_per_brick", "queries", "ef_search", "nprobe") and v),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "note": "2 cores"},
        "dim": dim,
        "ann_config": cfg.to_json(),
        "k": args.k,
        "sizes": [],
    }
    for n in [int(x) for x in args.sizes.split(",")]:
        vectors, centres = synthetic_library(n, args.rows_per_brick, dim)
        qs = queries_near(centres, args.queries)
        names = [f"b{i:06d}" for i in range(n)]
        row = {"bricks": n, "rows": len(vectors), "kinds": {}}
        exact_names = None
        for kind in args.kinds.split(","):
            t = time.perf_counter()
            table = BrickTable.build(names, [1] * n, [args.rows_per_brick] * n, vectors, cfg, kind=kind)
            build_s = time.perf_counter() - t
            got, lat = time_search(table, qs, args.k)
            entry = {
                "build_s": round(build_s, 3),
                "search_ms_p50": round(float(np.percentile(lat, 50)), 3),
                "search_ms_p99": round(float(np.percentile(lat, 99)), 3),
            }
            if kind == "flat":
                exact_names = got
            elif exact_names is not None:
                entry["recall_at_k_vs_flat"] = round(recall(got, exact_names), 4)
            row["kinds"][kind] = entry
            print(n, kind, entry, flush=True)
            # other search-time settings on the same structure (no rebuild)
            knob, values = {"hnsw": ("hnsw_ef_search", args.ef_search), "ivf": ("ivf_nprobe", args.nprobe)}.get(kind, ("", ""))
            for v in [int(x) for x in values.split(",") if x]:
                table.ann.cfg = replace(cfg, **{knob: v})
                got, lat = time_search(table, qs, args.k)
                e = {
                    "build_s": entry["build_s"],
                    "search_ms_p50": round(float(np.percentile(lat, 50)), 3),
                    "search_ms_p99": round(float(np.percentile(lat, 99)), 3),
                    "recall_at_k_vs_flat": round(recall(got, exact_names), 4) if exact_names is not None else None,
                }
                row["kinds"][f"{kind}({knob}={v})"] = e
                print(n, kind, knob, v, e, flush=True)
            del table
        flat = row["kinds"].get("flat", {}).get("search_ms_p50")
        for kind, e in row["kinds"].items():
            if kind != "flat" and flat:
                e["speedup_vs_flat_p50"] = round(flat / e["search_ms_p50"], 2)
        results["sizes"].append(row)
        del vectors
        write(results, Path(args.out))  # after every size: a long run that is stopped keeps what it measured
    if not args.no_embedding:
        results["embedding"] = bench_embedding()
        print(results["embedding"], flush=True)
    write(results, Path(args.out))
    return 0


def write(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
