"""Does the base model know what a brick is asked to teach? country_capital, with the answer options given.

A LoRA trained on a few hundred country -> capital pairs can only recall capitals the base model
already holds; it cannot learn the capitals of countries it never trains on. This asks the base
model (no adapter) each country of the task's **train** split (the test split is not read) with four
capitals to choose from, and scores which option its reply names first, against chance (0.25). With
`--brick DIR` the starter brick is also scored open-ended on the same train-split countries (the
ones it was trained on) beside its held-out figure from brick.json, to show fit against recall.

    .venv/bin/python bench/bench_training_knowledge.py [--brick brickwork/data/starter/country_capital]

Writes bench/results/training-knowledge-country_capital.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def first_named(text: str, options: list[str]) -> str | None:
    """The option the reply names first (case-insensitive), or None."""
    low = text.lower()
    hits = [(low.find(o.lower()), o) for o in options if o.lower() in low]
    return min(hits)[1] if hits else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--brick", default=None, help="a country_capital brick directory to score on the same countries")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results/training-knowledge-country_capital.json")
    args = ap.parse_args()

    import torch

    from brickwork.bricks.manifest import Manifest
    from brickwork.bricks.training import evaluate_adapter
    from brickwork.models import resolve_base_model
    from brickwork.tasks import load_tasks

    torch.set_num_threads(args.threads)
    base = resolve_base_model()
    task = load_tasks()["country_capital"]
    rows = task.split("train")
    capitals = sorted({e.output for e in rows})
    rng = random.Random(0)
    items, options = [], []
    for e in rows:
        opts = rng.sample([c for c in capitals if c != e.output], 3) + [e.output]
        rng.shuffle(opts)
        items.append((f"What is the capital city of {e.input}? Answer with one of: {', '.join(opts)}.", e))
        options.append(opts)
    res = evaluate_adapter(base, None, items, max_new_tokens=24)
    picked = [first_named(o, opts) for o, opts in zip(res["outputs"], options, strict=True)]
    right = sum(p == e.output for p, (_, e) in zip(picked, items, strict=True))
    out = {
        "benchmark": "training-knowledge",
        "task": "country_capital",
        "split": "train (the test split is not read)",
        "n": len(rows),
        "base_picks_the_right_option": round(right / len(rows), 3),
        "base_names_no_option": round(sum(p is None for p in picked) / len(rows), 3),
        "chance": 0.25,
        "base_open_ended_exact_match": evaluate_adapter(base, None, [(task.query(e, "definition"), e) for e in rows])["exact_match"],
        "samples": [{"q": q, "answer": e.output, "reply": o} for (q, e), o in list(zip(items, res["outputs"], strict=True))[:6]],
        "command": "python bench/bench_training_knowledge.py" + (f" --brick {args.brick}" if args.brick else ""),
    }
    if args.brick:
        open_items = [(task.query(e, "definition"), e) for e in rows]
        out["brick_on_its_train_countries"] = evaluate_adapter(base, Path(args.brick), open_items)["exact_match"]
        out["brick_held_out_test"] = Manifest.load(Path(args.brick)).metrics["exact_match"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "samples"}, indent=1))


if __name__ == "__main__":
    main()
