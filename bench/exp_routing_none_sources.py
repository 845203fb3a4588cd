"""Experiment: which none texts make the nearest-none-text penalty work?

The shipped router drops every brick's score by ``gamma * max(0, n - c - delta)`` (n: cosine of the
request's nearest none text, c: of its nearest brick row; `classifier.none_penalty`). This scores
the routing eval's queries (``brickwork.evals.routing.build_queries``, both halves, bare inputs 100
per task) with the none class *and* the penalty trained on one part of
``brickwork/data/routing/none_train.jsonl`` at a time (rows by writer, see PROVENANCE.md), each
with and without the penalty; the threshold is re-fit on the calib half every time with the
eval's objective and tie rule (`calibrate_thresholds`), and the report half is what is shown.
Scoring is the eval's own (`_variant_scores`), on the starter manifests (no adapters needed).

    .venv/bin/python bench/exp_routing_none_sources.py

Writes bench/results/exp-routing-none-sources.json (about five minutes on two cores).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

from brickwork.evals.routing import (
    Variant,
    _variant_scores,
    build_queries,
    calibrate_thresholds,
    eval_rows,
    metrics,
    starter_manifest,
    to_base,
)
from brickwork.models import resolve_base_model
from brickwork.retrieval_index import classifier as clf
from brickwork.retrieval_index.cache import EmbeddingCache
from brickwork.retrieval_index.embedder import load_embedder
from brickwork.retrieval_index.features import FeatureConfig
from brickwork.retrieval_index.index import embedding_cache_path
from brickwork.tasks import load_tasks

OUT = Path(__file__).resolve().parent / "results" / "exp-routing-none-sources.json"
#: rows of none_train.jsonl by writer (PROVENANCE.md)
PARTS = {
    "rows 1-420 (the eval's author, avoiding its request types)": (0, 420),
    "rows 421-753 (first helper)": (420, 753),
    "rows 754-2350 (four more helpers)": (753, 2350),
    "all 2350": (0, 2350),
}


def main() -> int:
    t0 = time.time()
    tasks, base = load_tasks(), resolve_base_model()
    emb, cache = load_embedder(None), EmbeddingCache(embedding_cache_path())
    manifests = {n: starter_manifest(tasks[n], base) for n in sorted(tasks)}
    names = list(manifests)
    indexed = {n: {e.strip() for e in (*m.examples, *m.routing_samples)} for n, m in manifests.items()}
    halves = {h: build_queries(tasks, indexed, split=h, per_template=3, bare_per_task=100, seed=0) for h in ("calib", "report")}
    qsem = {h: cache.embed(emb, [q.text for q in qs]) for h, qs in halves.items()}
    shipped = FeatureConfig()
    all_none = list(clf.none_texts())
    results: dict[str, Any] = {}
    for part, (a, b) in PARTS.items():
        part_rows = eval_rows(manifests, emb, cache, all_none[a:b])  # embeddings come from the cache
        for label, gamma in (("classifier only", 0.0), (f"+ nearest none text gamma={shipped.none_neighbour_weight}", shipped.none_neighbour_weight)):
            v = Variant(
                name=label,
                lexical_weight=shipped.lexical_weight,
                classifier_weight=shipped.classifier_weight,
                none_class=True,
                none_neighbour_weight=gamma,
                none_neighbour_margin=shipped.none_neighbour_margin,
            )
            sc = {h: _variant_scores(v, qsem[h], [q.text for q in qs], part_rows, shipped.lexical_dim) for h, qs in halves.items()}
            thr, cal = calibrate_thresholds(*sc["calib"], halves["calib"], single=True)
            rep = metrics(sc["report"][0], halves["report"], names, to_base(*sc["report"], thr))
            results.setdefault(part, {})[label] = {
                "none_texts": b - a,
                "threshold": thr[0],
                "calib": cal,
                "report": {
                    "instruction_top1": rep["instruction"]["top1"],
                    "bare_top1": rep["bare"]["top1"],
                    "instruction_to_base": rep["instruction"]["to_base"],
                    "bare_to_base": rep["bare"]["to_base"],
                    "out_of_scope_to_base": rep["out_of_scope"]["to_base"],
                    "near_miss_to_base": rep["out_of_scope"]["near_miss_to_base"],
                    "far_to_base": rep["out_of_scope"]["far_to_base"],
                },
            }
            r = results[part][label]["report"]
            print(f"{part:58s} {label:34s} thr {thr[0]:.3f}  OOS->base {r['out_of_scope_to_base']:.3f}  bare->base {r['bare_to_base']:.3f}", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "experiment": "routing: none texts by writer, with and without the nearest-none-text penalty",
                "features": shipped.to_json(),
                "queries": {h: {s: sum(q.set == s for q in qs) for s in ("instruction", "bare", "out_of_scope")} for h, qs in halves.items()},
                "results": results,
                "machine": platform.platform(),
                "seconds": round(time.time() - t0, 1),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
