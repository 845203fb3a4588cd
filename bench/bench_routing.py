"""Routing decision latency: what one query costs from its vector to the decision (brick or base).

Two libraries, single queries one at a time, one BLAS thread:

- **17 bricks**: the manifest-only starter library (the real index: rows, brick classifier with the
  none class, the kept none vectors of the nearest-none-text penalty, the form regions) and the shipped router;
  queries are the routing eval's (instructions, bare inputs, out-of-scope, real requests). Timed
  twice: the decision alone (`search_vectors` + `Router.route`, the query already embedded) and the
  whole routed search (`BrickIndex.search` embedding the query with MiniLM + route).
- **1,000 bricks** (synthetic, as bench_retrieval.py builds them: clustered vectors in the index's
  896-d space, 13 rows per brick = a description and 12 examples): exact search, a brick
  classifier of the real shape (1,001 classes; random weights: latency does not depend on their
  values) and as many none vectors as the starter library keeps.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_routing.py [--queries 300]

Writes bench/results/routing-latency.json. Targets (issue 21): p50 <= 5 ms at 17 bricks, < 20 ms at 1,000.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "routing-latency.json"


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3), "mean_ms": round(float(a.mean()), 3)}


def timed(fn, items) -> list[float]:
    fn(items[0])
    out = []
    for x in items:
        t = time.perf_counter()
        fn(x)
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_retrieval import queries_near, synthetic_library
    from brickwork.bricks import BrickStore
    from brickwork.evals.routing import build_manifest_library, build_queries
    from brickwork.retrieval_index import BrickIndex, Router, none_data
    from brickwork.retrieval_index.ann import Ann, AnnConfig
    from brickwork.retrieval_index.search import BrickTable
    from brickwork.tasks import load_tasks

    res: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "omp_threads": os.environ.get("OMP_NUM_THREADS")}}
    tmp = Path(tempfile.mkdtemp(prefix="bench-routing-"))
    try:
        store = build_manifest_library(tmp / "lib")
        index = BrickIndex.open(BrickStore(tmp / "lib"))
        router = Router.for_index(index)
        tasks = load_tasks()
        indexed = {b.name: {e.strip() for e in (*b.manifest.examples, *b.manifest.routing_samples)} for b in store.list()}
        qs = [q.text for q in build_queries(tasks, indexed, split="report", bare_per_task=10)]
        qs += [r.text for r in none_data.none_rows() if r.source.startswith("arena")][:100]
        rng = random.Random(0)
        qs = rng.sample(qs, min(a.queries, len(qs)))
        vecs = index.embed_queries(qs)
        # the decision from the vector and the text (the form penalty reads the text's length and lines)
        dec = timed(lambda vq: router.route(index.search_vectors(vq[0][None, :], 5, [vq[1]])[0]), list(zip(vecs, qs, strict=True)))
        full = timed(lambda q: router.route(index.search(q, 5)), qs)
        n_none = 0 if index._none is None else len(index._none)
        res["bricks_17"] = {
            "rows": index.rows,
            "none_vectors": n_none,
            "queries": len(qs),
            "decision_from_vector": stats(dec),
            "embed_and_decide": stats(full),
        }
        dim = vecs.shape[1]
        rows, centres = synthetic_library(1000, 13, dim)
        names = [f"b{i:04d}" for i in range(1000)]
        fields = np.tile(np.array([0] + [1] * 12, np.int8), 1000)
        g = np.random.default_rng(0)
        clf_w = (0.1 * g.standard_normal((1001, dim + 1))).astype(np.float32)
        none = g.standard_normal((n_none, dim)).astype(np.float32)
        none /= np.linalg.norm(none, axis=1, keepdims=True)
        f = index.features
        table = BrickTable(names, [1] * 1000, [13] * 1000, rows, Ann.build(rows, AnnConfig()), fields, classifier=clf_w,
                           classifier_weight=f.classifier_weight, none=none, none_weight=f.none_neighbour_weight, none_margin=f.none_neighbour_margin,
                           form=np.stack([g.integers(80, 400, 1000), g.integers(1, 3, 1000)], 1), form_weight=f.form_weight, form_slack=f.form_slack)
        q = queries_near(centres, a.queries)
        texts = [qs[i % len(qs)] for i in range(len(q))]
        syn = timed(lambda vq: router.route(table.search(vq[0][None, :], 5, [vq[1]])[0]), list(zip(q, texts, strict=True)))
        res["bricks_1000"] = {"rows": len(rows), "kind": table.kind, "none_vectors": n_none, "queries": len(q), "decision_from_vector": stats(syn)}
        res["embedding_note"] = "embed_and_decide includes MiniLM on one query (the decision itself is decision_from_vector)"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
