"""Check: does the shipped index + router send each compose-eval subgoal to its task's brick?

Routes the gold steps of `brickwork eval compose`'s 240 test composites (seed 0) exactly as the
orchestrator's route node does (`nodes.route._routing_query`: a step whose input is an earlier
output is routed on its subgoal with that output masked), earlier outputs filled with the gold
step's expected output. Uses a temporary manifest-only starter library (no adapters needed), so
it runs in about a minute: a quick guard that a routing change does not cost composed
instructions, beside the 40-minute end-to-end compose eval.

    .venv/bin/python bench/check_compose_routing.py

Writes bench/results/check-compose-routing.json.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from brickwork.evals.plan import gold_plan
from brickwork.evals.routing import build_manifest_library
from brickwork.orchestrator.nodes.route import _routing_query
from brickwork.tasks.synth import generate
from brickwork.retrieval_index import BrickIndex, Router, retrieve

OUT = Path(__file__).resolve().parent / "results" / "check-compose-routing.json"


def main() -> int:
    t0 = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="brickwork-compose-routing-"))
    try:
        index = BrickIndex.open(build_manifest_library(tmp / "library"))
        router = Router.for_index(index)
        counts = {"right": 0, "to_base": 0, "wrong": 0}
        misses = []
        for c in generate(240, part="test", seed=0):
            plan = gold_plan(c)
            outputs = {st.id: (gs.expected[0] if gs.expected else "placeholder") for st, gs in zip(plan.steps, c.steps, strict=True)}
            for st, gs in zip(plan.steps, c.steps, strict=True):
                queries, inputs = _routing_query(st, *st.resolve(outputs))
                [(_, routes)] = retrieve(index, router, queries, inputs=inputs)
                got = routes[0].name if routes else None
                kind = "right" if got == gs.task else "to_base" if got is None else "wrong"
                counts[kind] += 1
                if kind != "right":
                    misses.append({"query": queries[0], "task": gs.task, "routed": got})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = sum(counts.values())
    report = {
        "check": "compose subgoals routed by the shipped index + router (gold plans, manifest-only starter library)",
        "steps": n,
        **{k: v / n for k, v in counts.items()},
        "threshold": router.config.min_score,
        "features": index.features.to_json(),
        "misses": misses,
        "seconds": round(time.time() - t0, 1),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("steps", "right", "to_base", "wrong", "threshold")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
