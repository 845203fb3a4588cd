"""Experiment (did not ship): can the base LLM, LoRA-tuned as a yes/no verifier, reject out-of-scope requests?

Issue 3's out-of-scope target (>= 0.90 sent to the base model at <= 0.05 of in-scope queries) is
far from the shipped router's 0.41. Near misses ("singular of mice" beside the plural brick) look
like their neighbour to an embedding and to a linear classifier on it, so this tries a reader
that sees the request and the brick's description together, token by token: SmolLM2-135M with a
LoRA trained to answer ``yes``/``no`` to

    Task: <description of the top retrieved brick>
    Request: <query>
    Is the request asking for this task? Answer yes or no.

Training data comes from the manifests only, like the brick classifier's: each brick's examples
with its own description (yes); each example *request* (the manifest's example requests and
source instruction, never its bare inputs, which other bricks may accept too) and each
``none_train.jsonl`` request with the descriptions of the two best other retrieved bricks (no).
The query sets are the routing eval's (``brickwork.evals.routing.build_queries``); the verifier's
threshold is fitted on the calib half with the eval's objective (each in-scope set <= 5% to the
base model, most out-of-scope to the base model), then the report half is scored. The shipped
router is scored on the same queries in the same run.

    .venv/bin/python bench/exp_routing_verifier.py [--steps 150] [--top-layers 8] [--bare-per-task 20]

Writes bench/results/exp-routing-verifier.json. About 20 minutes on two cores (training ~10,
scoring ~0.2 s per query).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "exp-routing-verifier.json"
MAX_IN_SCOPE_TO_BASE = 0.05


def verifier_prompt(query: str, description: str) -> str:
    return f"Task: {description}\nRequest: {query.strip()}\nIs the request asking for this task? Answer yes or no."


def training_pairs(store: Any, index: Any) -> list[tuple[str, str]]:
    from brickwork.tasks.synth import example_requests
    from brickwork.retrieval_index import classifier as clf
    from brickwork.tasks import load_tasks

    tasks = load_tasks()
    desc = {b.name: b.manifest.description for b in store.list()}
    items: list[tuple[str, str | None, bool]] = []  # (text, own brick, is a request)
    for b in store.list():
        requests = set(example_requests(b.name, 12))
        src = tasks[b.name].source_instruction.strip()
        items += [(e, b.name, e in requests or e == src) for e in b.manifest.examples]
    items += [(t, None, True) for t in clf.none_texts()]
    hits = index.search_batch([t for t, _, _ in items], k=4)
    pairs: list[tuple[str, str]] = []
    for (text, own, is_request), hs in zip(items, hits, strict=True):
        if own:
            pairs.append((verifier_prompt(text, desc[own]), "yes"))
        if is_request:
            pairs += [(verifier_prompt(text, desc[o]), "no") for o in [h.name for h in hs if h.name != own][:2]]
    random.Random(0).shuffle(pairs)
    return pairs


def p_yes(model: Any, tok: Any, prompts: list[str], batch: int = 16) -> np.ndarray:
    import torch

    from brickwork.tasks import render_prompt

    ids = [tok.convert_tokens_to_ids(tok.tokenize(w))[0] for w in ("yes", "no")]
    out = []
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            enc = tok([render_prompt(p) for p in prompts[i : i + batch]], return_tensors="pt", padding=True, add_special_tokens=False)
            logits = model(**enc, logits_to_keep=1).logits[:, -1, ids].float()
            out.append(torch.softmax(logits, -1)[:, 0].numpy())
    return np.concatenate(out)


def to_base_shares(recs: list[dict[str, Any]], based: np.ndarray) -> dict[str, float]:
    sets = np.array([r["set"] for r in recs])
    near = np.array([bool(r["near"]) for r in recs])
    oos = sets == "out_of_scope"
    return {
        "instruction_to_base": round(float(based[sets == "instruction"].mean()), 4),
        "bare_to_base": round(float(based[sets == "bare"].mean()), 4),
        "out_of_scope_to_base": round(float(based[oos].mean()), 4),
        "near_miss_to_base": round(float(based[oos & near].mean()), 4),
        "far_to_base": round(float(based[oos & ~near].mean()), 4),
    }


def decide(recs: list[dict[str, Any]], min_score: float | None, min_yes: float) -> np.ndarray:
    score = np.array([r["score"] for r in recs])
    yes = np.array([r["p_yes"] for r in recs])
    return (yes < min_yes) | ((score < min_score) if min_score is not None else False)


def fit(recs: list[dict[str, Any]], score_grid: list[float | None], yes_grid: np.ndarray) -> tuple[float | None, float] | None:
    best: tuple[float, float | None, float] | None = None
    for s in score_grid:
        for y in yes_grid:
            m = to_base_shares(recs, decide(recs, s, float(y)))
            if m["instruction_to_base"] > MAX_IN_SCOPE_TO_BASE or m["bare_to_base"] > MAX_IN_SCOPE_TO_BASE:
                continue
            if best is None or m["out_of_scope_to_base"] > best[0]:
                best = (m["out_of_scope_to_base"], s, float(y))
    return None if best is None else (best[1], best[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--top-layers", type=int, default=8)
    ap.add_argument("--bare-per-task", type=int, default=20)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    import torch
    from peft import PeftModel

    from brickwork.bricks.training import TrainConfig, train_lora
    from brickwork.evals.routing import build_manifest_library, build_queries
    from brickwork.models import load_base_model, resolve_base_model
    from brickwork.retrieval_index import BrickIndex, Router
    from brickwork.tasks import load_tasks

    t0 = time.time()
    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="brickwork-verifier-"))
    store = build_manifest_library(tmp / "library")
    index = BrickIndex.open(store)
    router = Router.for_index(index)
    desc = {b.name: b.manifest.description for b in store.list()}
    pairs = training_pairs(store, index)
    base = resolve_base_model()
    cfg = TrainConfig(steps=args.steps, batch_size=16, max_len=160, top_layers=args.top_layers, threads=2)
    train = train_lora(pairs, base=base, config=cfg, out_dir=tmp / "verifier")
    model, tok = load_base_model(base)
    model = PeftModel.from_pretrained(model, str(tmp / "verifier")).eval()
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tasks = load_tasks()
    indexed = {b.name: {e.strip() for e in b.manifest.examples} for b in store.list()}
    halves: dict[str, list[dict[str, Any]]] = {}
    score_seconds = 0.0
    for half in ("calib", "report"):
        qs = build_queries(tasks, indexed, split=half, bare_per_task=args.bare_per_task)
        hits = index.search_batch([q.text for q in qs], k=1)
        t = time.time()
        py = p_yes(model, tok, [verifier_prompt(q.text, desc[h[0].name]) for q, h in zip(qs, hits, strict=True)])
        score_seconds += time.time() - t
        halves[half] = [
            {"text": q.text, "set": q.set, "gold": q.gold, "near": q.near, "top1": h[0].name,
             "score": float(h[0].score), "shipped_to_base": not router.route(h), "p_yes": float(p)}
            for q, h, p in zip(qs, hits, py, strict=True)
        ]
    yes_grid = np.round(np.arange(0.0, 1.0, 0.005), 3)
    score_grid: list[float | None] = [float(s) for s in np.round(np.arange(0.15, 0.40, 0.005), 3)]
    rows: dict[str, Any] = {
        "shipped router (score threshold)": {
            h: to_base_shares(r, np.array([x["shipped_to_base"] for x in r])) for h, r in halves.items()
        }
    }
    for label, sgrid in (("verifier alone (p_yes threshold)", [None]), ("shipped score + verifier (two thresholds)", score_grid)):
        got = fit(halves["calib"], sgrid, yes_grid)
        if got is None:
            rows[label] = {"fit": "no threshold keeps the calib half's in-scope sets within budget"}
            continue
        rows[label] = {"min_score": got[0], "min_p_yes": got[1],
                       **{h: to_base_shares(r, decide(r, *got)) for h, r in halves.items()}}
    result = {
        "what": "out-of-scope rejection: shipped router vs an LLM yes/no verifier on the top brick, same queries, same run",
        "objective": f"each in-scope set <= {MAX_IN_SCOPE_TO_BASE} to base on the calib half; most out-of-scope to base",
        "rows": rows,
        "n": {h: {s: sum(r["set"] == s for r in recs) for s in ("instruction", "bare", "out_of_scope")} for h, recs in halves.items()},
        "training": {"pairs": len(pairs), "answers": {a: sum(p[1] == a for p in pairs) for a in ("yes", "no")}, **train.to_json()},
        "verifier_seconds_per_query": round(score_seconds / sum(len(r) for r in halves.values()), 4),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "seconds": round(time.time() - t0, 1),
    }
    result["training"].pop("adapter_dir", None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(rows, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
