"""Routing samples (`Manifest.routing_samples`) and the threshold rule, over several query draws.

The routing eval fills its templates and picks its bare inputs with one seed; a difference of a
point between two configurations can be that draw. Here each configuration is scored on the eval's
queries drawn with seeds 0-4 (both halves), thresholds fit on each calib half, side by side:

- starter manifests without routing samples / with them (`bricks.starter.starter_routing_samples`:
  72 more train inputs per brick, bare and in train-part wordings);
- calibration rule "most out-of-scope" (the previous rule: the best out-of-scope share on calib,
  middle of ties) / "one standard error" (`evals.routing.calibrate_thresholds`: the fewest in-scope
  queries lost among thresholds within one standard error of the best share).

Scoring is the shipped index's (hybrid w=0.5, classifier beta 0.8 with the none class, nearest
none text gamma 2 delta 0.05). Reports mean and worst of each report-half figure over the seeds.

    .venv/bin/python bench/exp_routing_samples.py [--seeds 5] [--out bench/results/exp-routing-samples.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from brickwork.evals import routing as R
from brickwork.models import resolve_base_model
from brickwork.retrieval_index import classifier as clf
from brickwork.retrieval_index.cache import EmbeddingCache
from brickwork.retrieval_index.embedder import load_embedder
from brickwork.retrieval_index.index import embedding_cache_path
from brickwork.tasks import load_tasks

SHIPPED = R.Variant(name="shipped", lexical_weight=0.5, classifier_weight=0.8, none_class=True,
                    none_neighbour_weight=2.0, none_neighbour_margin=0.05)
FIGURES = {
    "instr_top1": ("instruction", "top1"),
    "bare_top1": ("bare", "top1"),
    "bare_top1_any": ("bare", "top1_any"),
    "instr_to_base": ("instruction", "to_base"),
    "bare_to_base": ("bare", "to_base"),
    "oos_to_base": ("out_of_scope", "to_base"),
}
WORST = {"instr_top1": min, "bare_top1": min, "bare_top1_any": min, "instr_to_base": max, "bare_to_base": max, "oos_to_base": min}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("bench/results/exp-routing-samples.json"))
    args = ap.parse_args()
    t0 = time.time()
    tasks = load_tasks()
    base = resolve_base_model()
    with_samples = {n: R.starter_manifest(t, base) for n, t in sorted(tasks.items())}
    libraries = {"without routing samples": {n: m.replace(routing_samples=[]) for n, m in with_samples.items()},
                 "with routing samples": with_samples}
    # the same queries for both libraries: none of them is a routing sample
    indexed = {n: {e.strip() for e in (*m.examples, *m.routing_samples)} for n, m in with_samples.items()}
    emb = load_embedder()
    cache = EmbeddingCache(embedding_cache_path())
    rules = {"most out-of-scope": False, "one standard error": True}  # calibrate_thresholds(one_se=...)
    rows = {lib: R.eval_rows(ms, emb, cache, clf.none_texts()) for lib, ms in libraries.items()}
    per_seed: dict[str, list[dict[str, float]]] = {}
    draws = []
    for seed in range(args.seeds):
        halves = {h: R.build_queries(tasks, indexed, split=h, seed=seed) for h in ("calib", "report")}
        draws.append({h: {s: sum(q.set == s for q in qs) for s in R.SETS} for h, qs in halves.items()})
        qsem = {h: cache.embed(emb, [q.text for q in qs]) for h, qs in halves.items()}
        for lib in libraries:
            sc = {h: R._variant_scores(SHIPPED, qsem[h], [q.text for q in qs], rows[lib], 512) for h, qs in halves.items()}
            for rule, one_se in rules.items():
                t = R.calibrate_thresholds(*sc["calib"], halves["calib"], single=True, one_se=one_se)[0][0]
                m = R.metrics(sc["report"][0], halves["report"], rows[lib]["names"], R.to_base(*sc["report"], (t, t)))
                row = {"threshold": t, **{k: m[s][f] for k, (s, f) in FIGURES.items()}}
                per_seed.setdefault(f"{lib}, {rule}", []).append(row)
                print(f"seed {seed} {lib:24s} {rule:18s} " + " ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    summary = {}
    for name, rs in per_seed.items():
        summary[name] = {
            "mean": {k: float(np.mean([r[k] for r in rs])) for k in ("threshold", *FIGURES)},
            "worst": {k: float(WORST[k](r[k] for r in rs)) for k in FIGURES},
        }
    print("\nmean (worst) over seeds, report half:")
    print("| configuration | " + " | ".join(FIGURES) + " |")
    print("|---|" + "---|" * len(FIGURES))
    for name, s in summary.items():
        print(f"| {name} | " + " | ".join(f"{s['mean'][k]:.3f} ({s['worst'][k]:.3f})" for k in FIGURES) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"bench": "exp-routing-samples", "seeds": args.seeds, "variant": SHIPPED.__dict__,
                                    "queries_per_seed": draws, "summary": summary, "per_seed": per_seed,
                                    "seconds": round(time.time() - t0, 1)}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
