"""Routed vs base on the BBH generation tasks, per item: its route and both answers (the figures
behind docs/harness.md's diagnosis).

    python bench/results/harness-oos/diagnose_bbh_gen.py LIBRARY OUT.json   # 60 items per task
"""
import json, sys
from pathlib import Path
from transformers import AutoTokenizer
from brickwork.evals.harness.bbh import bbh_names, write_bbh_tasks
from brickwork.evals.harness.model import BrickworkLM
from brickwork.evals.harness.suite import evaluate, item_routes
from brickwork.orchestrator.sdk import Brickwork

import tempfile

root = write_bbh_tasks(tempfile.mkdtemp())
names = [n for n in bbh_names(["gen"])]
samples, out = {}, []
with Brickwork(sys.argv[1], engine="peft", planner="rules", checkpoints=False) as bw:
    tok = AutoTokenizer.from_pretrained(bw.store.base.path)
    for cfg in ("base", "routed"):
        lm = BrickworkLM(brickwork=bw, tokenizer=tok, bricks=cfg, batch_size=16)
        samples[cfg] = {}
        res = evaluate(lm, names, root, limit=60, use_cache=None, samples=samples[cfg])
        print(cfg, {n: {k: v for k, v in r.items() if k.startswith("exact_match,")} for n, r in res.items()}, flush=True)
    items = item_routes(lm, samples)
resp = {(cfg, n, s["doc_id"]): s["resps"][0][0] for cfg in samples for n, rows in samples[cfg].items() for s in rows}
for it in items:
    it["base_text"] = resp[("base", it["task"], it["doc_id"])]
    it["routed_text"] = resp[("routed", it["task"], it["doc_id"])]
Path(sys.argv[2]).write_text(json.dumps(items, indent=1))
