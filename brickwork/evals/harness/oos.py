"""Out-of-scope tasks: public facts no brick was made for, generated locally (no data to ship).

Issue 23 asks that routing do no harm on work outside the library: routed must not score below
the base model where no brick applies. No public lm-eval benchmark data (BoolQ, HellaSwag, ...)
is reachable offline here (the installed lm-eval ships task configs only, pointing at the hub), so
these tasks are generated from facts anyone can check, deterministically (a fixed seed):

- ``brickwork_oos_parity``: is a number even or odd;
- ``brickwork_oos_weekday``: the day after a given day of the week;
- ``brickwork_oos_month``: the month after a given month.

Each is an lm-eval ``multiple_choice`` task (``acc``, ``acc_norm``) with the tag
``brickwork_oos``, written beside the bundled tasks by `write_oos_tasks`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

TAG_OOS = "brickwork_oos"
SEED = 23
N_ITEMS = {"train": 20, "test": 100}
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")


def _parity(rng: random.Random) -> dict[str, Any]:
    n = rng.randrange(100, 10_000)
    return {"query": f"Is the number {n} even or odd? Answer with one word.", "label": n % 2}


def _next_in(cycle: tuple[str, ...], what: str) -> Callable[[random.Random], dict[str, Any]]:
    def make(rng: random.Random) -> dict[str, Any]:
        i = rng.randrange(len(cycle))
        return {"query": f"Which {what} comes right after {cycle[i]}? Answer with one word.", "label": (i + 1) % len(cycle)}

    return make


# task id -> (item maker, choices)
TASKS: dict[str, tuple[Callable[[random.Random], dict[str, Any]], list[str]]] = {
    "parity": (_parity, ["even", "odd"]),
    "weekday": (_next_in(DAYS, "day of the week"), list(DAYS)),
    "month": (_next_in(MONTHS, "month"), list(MONTHS)),
}


def oos_names() -> list[str]:
    return [f"brickwork_oos_{t}" for t in TASKS]


def items(task_id: str, split: str) -> list[dict[str, Any]]:
    """The split's items: the same on every machine (seeded per task and split)."""
    make, _ = TASKS[task_id]
    rng = random.Random(f"{SEED}:{task_id}:{split}")
    return [make(rng) for _ in range(N_ITEMS[split])]


def write_oos_tasks(directory: str | Path) -> Path:
    """Write the out-of-scope task files (data + YAML) into `directory`; returns it."""
    from brickwork.evals.harness.tasks import _common, _write, _yaml

    root = Path(directory).expanduser().resolve()
    (root / "data").mkdir(parents=True, exist_ok=True)
    for task_id, (_, choices) in TASKS.items():
        data = {}
        for split in N_ITEMS:
            path = root / "data" / f"oos_{task_id}.{split}.jsonl"
            _write(path, "".join(json.dumps(d) + "\n" for d in items(task_id, split)))
            data[split] = path
        config = {
            "task": f"brickwork_oos_{task_id}",
            "tag": [TAG_OOS],
            **_common(data),
            "output_type": "multiple_choice",
            "doc_to_target": "label",
            "doc_to_choice": choices,
            "metric_list": [
                {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
            ],
        }
        _write(root / f"brickwork_oos_{task_id}.yaml", _yaml(config))
    return root
