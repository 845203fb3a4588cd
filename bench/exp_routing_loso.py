"""Router designs side by side, each scored leave-one-source-out (evals/routing_sources.py).

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/exp_routing_loso.py [--out bench/results/exp-routing-loso.json]

Same queries and scoring code as `brickwork eval routing` (manifest-only 17-brick starter library).
For each design: per source OOS->base held out, the worst source, and the fold routers' in-scope
figures on the report half. Not an eval suite: a side-by-side of design choices.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from brickwork.evals import routing as R
from brickwork.evals import routing_sources as S

DESIGNS = (
    S.Design(name="before: written none texts only (shipped 2026-12-02)", legacy=True),
    S.Design(name="written none texts, train split, leave-one-source-out", real_requests=False),
    S.Design(name="+ real requests (gamma 2, delta 0.05)"),
    S.Design(name="+ real requests, none class x3", none_weight=3.0),
    S.Design(name="+ real requests, gamma 3", gamma=3.0),
    S.Design(name="+ real requests, delta 0.0", delta=0.0),
    S.Design(name="+ real requests, beta 1.6", beta=1.6),
    S.Design(name="+ real requests + opening (12 words), min", head="min"),
    S.Design(name="+ real requests + opening (12 words), mean", head="mean"),
    S.Design(name="+ real requests + opening (12 words), min, openings trained", head="min", train_heads=True),
    S.Design(name="+ real requests + opening (8 words), min", head="min", head_words=8),
    # 2026-12-07: the form penalty (retrieval_index/form.py: each brick's length / line region)
    S.Design(name="+ form penalty 0.1, slack 1.5", form_weight=0.1, form_slack=1.5),
    S.Design(name="+ form penalty 0.2, slack 1.5", form_weight=0.2, form_slack=1.5),
    S.Design(name="+ form penalty 0.2, slack 1.0", form_weight=0.2, form_slack=1.0),
    S.Design(name="+ form penalty 0.4, slack 1.5", form_weight=0.4, form_slack=1.5),
    S.Design(name="+ form penalty 0.4, slack 1.0", form_weight=0.4, form_slack=1.0),
    S.Design(name="+ form penalty 0.2, slack 1.0, none class x3", form_weight=0.2, form_slack=1.0, none_weight=3.0),
    S.Design(name="+ form penalty 0.2, slack 1.0 + opening (8 words), min", form_weight=0.2, form_slack=1.0, head="min", head_words=8),
    S.Design(name="+ form penalty 0.8, slack 1.0", form_weight=0.8, form_slack=1.0),
    S.Design(name="+ form penalty 0.4, slack 1.0, none class x3", form_weight=0.4, form_slack=1.0, none_weight=3.0),
    S.Design(name="+ form penalty 0.4, slack 1.0, gamma 3", form_weight=0.4, form_slack=1.0, gamma=3.0),
    S.Design(name="+ form penalty 2.0, slack 1.0 (near a hard region)", form_weight=2.0, form_slack=1.0),
    S.Design(name="+ form penalty 0.8, slack 1.0, none class x3", form_weight=0.8, form_slack=1.0, none_weight=3.0),
    S.Design(name="+ form penalty 0.8, slack 1.5", form_weight=0.8, form_slack=1.5),
    S.Design(name="+ form penalty 2.0, slack 1.5", form_weight=2.0, form_slack=1.5),
    # 2026-12-07 (second session), with the multilingual source: shipped = form 0.8, slack 1.5.
    # helper-e-multilingual held out: 0.229 shipped, 0.251 with openings trained (language_id takes 243-251)
    S.Design(name="shipped (form 0.8, slack 1.5)", form_weight=0.8, form_slack=1.5),
    S.Design(name="shipped + none openings trained (12 words)", form_weight=0.8, form_slack=1.5, train_heads=True),
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/exp-routing-loso.json")
    ap.add_argument("--bare-per-task", type=int, default=100)
    ap.add_argument("--designs", default="", help="comma-separated indices into DESIGNS (default: all)")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from brickwork.bricks import BrickStore
    from brickwork.retrieval_index import BrickIndex, none_data
    from brickwork.retrieval_index import classifier as clf
    from brickwork.retrieval_index.cache import EmbeddingCache
    from brickwork.retrieval_index.index import embedding_cache_path
    from brickwork.tasks import load_tasks

    t0 = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="loso-"))
    try:
        store = R.build_manifest_library(tmp / "lib")
        index = BrickIndex.open(store)
        tasks = load_tasks()
        bricks = {b.name: b for b in store.list()}
        indexed = {n: {e.strip() for e in (*b.manifest.examples, *b.manifest.routing_samples)} for n, b in bricks.items()}
        cache = EmbeddingCache(embedding_cache_path())
        rows = R.eval_rows({n: store.get(n).manifest for n in index.names}, index.embedder, cache, clf.none_texts())
        asked = {n for n, b in bricks.items() if not b.manifest.bare_inputs}
        halves = {h: R.build_queries(tasks, indexed, split=h, bare_per_task=a.bare_per_task, asked=asked) for h in ("calib", "report")}
        from brickwork.retrieval_index.features import FeatureConfig

        space = S.build_space(rows, index.embedder, cache, FeatureConfig(), halves)
        for w in (8, 12):
            S.add_heads(space, index.embedder, cache, FeatureConfig(), w)
        print(f"space ready {time.time() - t0:.0f}s", flush=True)
        folds = S.Folds(space)
        picks = [int(i) for i in a.designs.split(",")] if a.designs else range(len(DESIGNS))
        out = {}
        for i in picks:
            d = DESIGNS[i]
            r = S.leave_one_source_out(folds, d, none_data.sources())
            out[d.name] = r
            ps = r["per_source"]
            fr = r["fold_report_worst"]
            print("  " + json.dumps({k: round(v["to_base"], 3) for k, v in ps.items()}))
            print(f"\n## {d.name}  ({time.time() - t0:.0f}s)")
            print(f"worst held-out {r['worst_source']} {r['worst_to_base']}, mean {r['mean_held_out_to_base']}")
            print("  fold report worst: " + json.dumps({k: round(v, 3) for k, v in fr.items()}))
            for src, e in ps.items():
                print(f"  {src:34s} n={e['n']:4d} {'HELD' if e['held_out'] else 'seen'} to_base={e['to_base']:.3f} thr={e['threshold']:.3f} routed={e['routed_to']}")
            al = r["all_sources"]
            rep = al["report"]
            print(f"  all-sources fit: thr {al['threshold']:.3f} instr top1 {rep['instruction']['top1']:.3f} bare top1 {rep['bare']['top1']:.3f} "
                  f"instr->base {rep['instruction']['to_base']:.3f} bare->base {rep['bare']['to_base']:.3f}", flush=True)
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({"seconds": round(time.time() - t0), "designs": out}, indent=1, default=float) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
