"""Build the planner brick: generate composite instructions from the tasks' train splits, train a
small LoRA on (instruction -> compact plan JSON), write it to ``brickwork/data/planner/brick``.

Reproduce the committed brick (a few minutes on 2 CPU cores)::

    nice -n 10 .venv/bin/python -m brickwork.orchestrator.planners.train

The training data (``brickwork/data/planner/train.jsonl``) is written next to the brick; it is
generated deterministically from the seed, from train-split inputs and train phrasings only
(`synth.generate(part="train")`), so the ``plan``/``compose`` evals (held-out phrasings, test
inputs) never see it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from brickwork.orchestrator.planners.brick import PLANNER_DIR, PLANNER_NAME, planner_user_text
from brickwork.tasks.synth import generate

DESCRIPTION = (
    "Planner: splits an instruction into steps, as compact JSON "
    '[{"subgoal": ..., "input": ...}]; {x} marks the input, {1} the output of step 1.'
)


def training_pairs(n: int, *, seed: int, other_share: float, max_chars: int = 160) -> list[tuple[str, str]]:
    """`n` (instruction, plan JSON) pairs; instructions longer than `max_chars` are left out
    (they cost the most to train on and teach nothing the shorter ones do not)."""
    comps = generate(3 * n, part="train", seed=seed, other_share=other_share)
    comps = [c for c in comps if len(c.instruction) <= max_chars]
    return [(planner_user_text(c.instruction), c.plan_target()) for c in comps[:n]]


def main(argv: list[str] | None = None) -> int:
    from brickwork.bricks.manifest import Manifest
    from brickwork.bricks.training import TrainConfig, command_line, data_hash, train_lora
    from brickwork.models import resolve_base_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=PLANNER_DIR, help="folder for brick/ and train.jsonl (default: the package's)")
    p.add_argument("--examples", type=int, default=1200, help="composite instructions to train on (default: %(default)s)")
    p.add_argument("--max-chars", type=int, default=140, help="longest instruction trained on (default: %(default)s)")
    p.add_argument("--other-share", type=float, default=0.3, help="share of steps of tasks no brick covers")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--top-layers", type=int, default=6)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--max-len", type=int, default=160)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s; 1 is fastest on a shared 2-core box)")
    args = p.parse_args(argv)

    base = resolve_base_model()
    pairs = training_pairs(args.examples, seed=args.seed, other_share=args.other_share, max_chars=args.max_chars)
    cfg = TrainConfig(
        rank=args.rank,
        alpha=2.0 * args.rank,
        top_layers=args.top_layers,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup,
        max_len=args.max_len,
        seed=args.seed,
        threads=args.threads,
        save_dtype="float16",
    )
    t0 = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".planner-", dir=out) as tmp:
        staged = Path(tmp) / "brick"
        res = train_lora(pairs, base=base, config=cfg, out_dir=staged)
        manifest = Manifest(
            name=PLANNER_NAME,
            version=1,
            kind="lora",
            description=DESCRIPTION,
            examples=[q for q, _ in pairs[:8]],
            tags=["planner", "system"],
            base_model=base.to_json(),
            rank=cfg.rank,
            target_modules=list(cfg.target_modules),
            provenance={
                "data_hash": data_hash(pairs),
                "seed": args.seed,
                "config": cfg.to_json(),
                "generator": {"examples": args.examples, "max_chars": args.max_chars, "other_share": args.other_share, "part": "train"},
                "command": command_line(),
                "seconds": res.seconds,
                "seconds_per_step": res.seconds_per_step,
                "n_train_pairs": res.n_pairs,
                "first_loss": res.first_loss,
                "final_loss": res.final_loss,
                "parents": [],
            },
            metrics={},
        )
        (staged / "brick.json").write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        data = out / "train.jsonl"
        with open(data, "w", encoding="utf-8") as fh:
            for q, a in pairs:
                fh.write(json.dumps({"input": q, "output": a}, ensure_ascii=False) + "\n")
        final = out / "brick"
        if final.exists():
            shutil.rmtree(final)
        staged.rename(final)
    print(
        f"planner brick -> {out / 'brick'}: {res.n_pairs} pairs, {res.steps} steps, "
        f"{res.seconds:.0f} s ({res.seconds_per_step:.2f} s/step), loss {res.first_loss:.3f} -> {res.final_loss:.3f}; "
        f"total {time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
