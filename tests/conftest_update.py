"""Fixtures for the update/grow tests: a tiny brick trained for real, and feedback events.

The toy brick answers one prompt family with a constant ("Codename for X?" -> "falcon"): a LoRA
learns that in a few steps, and a confident answer is a stable thing to check locality on.
Corrections teach a second family ("Secret word for X?" -> "zebra").
"""

from __future__ import annotations

import json
from pathlib import Path

WORDS = [
    "apple", "river", "stone", "cloud", "lamp", "tiger", "chair", "ocean", "piano", "candle", "forest", "mirror",
    "garden", "rocket", "silver", "window", "bottle", "castle", "pencil", "basket", "harbor", "meadow", "violin", "summit",
    "lantern", "marble", "pepper", "saddle", "thunder", "velvet", "walnut", "yellow",
]
TOY_STEPS = 16


def codename(w: str) -> str:
    return f"Codename for {w}?"


def secret(w: str) -> str:
    return f"Secret word for {w}?"


def toy_train_config(steps: int = TOY_STEPS):
    from brickwork.bricks.training import TrainConfig

    return TrainConfig(steps=steps, batch_size=8, lr=3e-3, top_layers=2, warmup_steps=2, seed=0)


def build_toy_brick(out: Path, base) -> Path:
    """Train the toy brick (v1) into `out`: adapter, brick.json and its data files."""
    from brickwork.bricks.lineage import Item, write_items
    from brickwork.bricks.training import train_lora
    from tests.conftest import make_manifest

    train = [Item(text=codename(w), answer="falcon") for w in WORDS[:20]]
    held = [Item(text=codename(w), answer="falcon") for w in WORDS[20:28]]
    train_lora([(it.text, it.answer) for it in train], base=base, config=toy_train_config(), out_dir=out, progress=False)
    write_items(out / "data" / "train.jsonl", train)
    write_items(out / "data" / "heldout.jsonl", held)
    m = make_manifest("toy", base, description="Give the codename for a word.", examples=[codename(w) for w in WORDS[:4]])
    cfg = json.loads((out / "adapter_config.json").read_text())
    m = m.replace(target_modules=sorted(cfg["target_modules"]))
    (out / "brick.json").write_text(json.dumps(m.to_json()))
    return out


def add_step_feedback(fb, *, text: str, output: str, correction: str | None, bricks: list[dict]):
    """One feedback event as the orchestrator records it (prompt = the user text the engine got)."""
    return fb.add(
        run_id=f"run:{text}",
        step_id="s1",
        kind="correction" if correction is not None else "good",
        correction=correction,
        instruction=text,
        subgoal=text,
        prompt=text,
        output=output,
        bricks=bricks,
    )
