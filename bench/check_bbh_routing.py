"""Check: where does the shipped index + router send the BIG-Bench Hard items of the out-of-scope harness?

Routing only, no generation: each of the first `--limit` items of the three bundled BBH tasks
(brickwork/data/harness/bbh/) is routed on the query `BrickworkLM.route` gives the chat prompt
lm-eval's ``bbh_zeroshot`` builds for it with the chat template (`model.chat_query`: the task's
description, which lm-eval puts in the system turn, then the user message "Q: <input>\\nA:"), and,
with ``--user-only``, on the user message alone (how the harness routed before 2026-12-08). With
the ask bar at 0.30, the user-only routing on the harness run's library gave that run's own counts
(boolean_expressions 38/60 to `sentence_negation`, sports_understanding 58/60, web_of_lies 0/60),
so it stands in for the 27-minute harness run when only the routing changed. A temporary library
of the starter manifests (no adapters needed).

    .venv/bin/python bench/check_bbh_routing.py [--limit 60] [--user-only]

Writes bench/results/check-bbh-routing.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

from brickwork.evals.routing import build_manifest_library

DATA = Path(__file__).resolve().parents[1] / "brickwork" / "data" / "harness" / "bbh"
OUT = Path(__file__).resolve().parent / "results" / "check-bbh-routing.json"
TASKS = ("boolean_expressions", "sports_understanding", "web_of_lies")


def description(config: Path) -> str:
    """The ``description`` of an lm-eval task config (a JSON-quoted string; the file's ``!function``
    tags keep a plain YAML loader from reading the rest)."""
    m = re.search(r'^"?description"?:\s*(".*")\s*$', config.read_text(encoding="utf-8"), re.M)
    return json.loads(m.group(1)) if m else ""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=60)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--user-only", action="store_true", help="route on the user message alone, not the chat's query")
    a = ap.parse_args()
    from brickwork.evals.harness.bbh import lm_eval_config
    from brickwork.evals.harness.model import chat_query
    from brickwork.retrieval_index import BrickIndex, Router

    t0 = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="bbh-routing-"))
    try:
        index = BrickIndex.open(build_manifest_library(tmp / "lib"))
        router = Router.for_index(index)
        out: dict[str, object] = {"check": __doc__.splitlines()[0], "limit": a.limit, "features": index.features.to_json(),
                                  "threshold": router.config.min_score, "query": "user message" if a.user_only else "chat_query", "tasks": {}}
        for task in TASKS:
            docs = [json.loads(line) for line in (DATA / f"{task}.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
            desc = "" if a.user_only else description(lm_eval_config(task))
            queries = [chat_query([{"role": "system", "content": desc}, {"role": "user", "content": f"Q: {d['input']}\nA:"}]) for d in docs[: a.limit]]
            routes = [router.route(h) for h in index.search_batch(queries)]
            counts = Counter(r[0].name if r else "base" for r in routes)
            out["tasks"][task] = {"items": len(queries), "to_base": counts.pop("base", 0), "to_bricks": dict(counts.most_common())}  # type: ignore[index]
            print(task, out["tasks"][task], flush=True)  # type: ignore[index]
        out["seconds"] = round(time.time() - t0, 1)
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
