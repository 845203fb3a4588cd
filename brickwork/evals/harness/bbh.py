"""Out-of-scope public benchmark: three BIG-Bench Hard tasks, shipped with the package, as lm-eval tasks.

BBH (Suzgun et al. 2022; MIT licence) is the data behind lm-eval's ``bbh`` task family. Three of
its tasks with short inputs and a two-answer set are copied unchanged into
``brickwork/data/harness/bbh/`` (provenance, licence and checksums in its ``PROVENANCE.md``):
``boolean_expressions`` (True/False), ``sports_understanding`` (yes/no) and ``web_of_lies``
(Yes/No). No brick was made for any of them: they measure whether routing harms work outside
the library.

`write_bbh_tasks(dir)` writes two lm-eval tasks per BBH task, tag ``brickwork_bbh``:

- ``brickwork_bbh_T_gen``: lm-eval's own ``bbh_zeroshot_T`` config (``include``d from the
  installed lm-eval, so its description, ``Q: {{input}}\\nA:`` prompt, stop strings, exact-match
  metric and its ``strict-match`` / ``flexible-extract`` filters are lm-eval's), with the data
  read from the shipped file instead of the hub;
- ``brickwork_bbh_T_mc``: the same config as ``multiple_choice`` over the task's two answers
  (``acc``, ``acc_norm``), zero-shot.

Both read the shipped JSON Lines file in place (``dataset_path: json``, absolute ``data_files``).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from brickwork.errors import BrickworkError, ConfigError

TAG_BBH = "brickwork_bbh"
N_EXAMPLES = 250
# task -> (its answer set, the upstream file's sha256)
TASKS: dict[str, tuple[tuple[str, str], str]] = {
    "boolean_expressions": (("True", "False"), "c44aaa1ef8c94fd7f41ff06765c9c72925c82b0c3312dee8a4300d8c075f0794"),
    "sports_understanding": (("yes", "no"), "a2b6b85c92333dce0ab2c120f8c13bcd6be04ca935a4a9a35684bd108e39aad1"),
    "web_of_lies": (("Yes", "No"), "4296b24cd2cde1b8e902117049b720a74b29436a8c2d55408d8a33d25320431f"),
}
VARIANTS: tuple[str, ...] = ("mc", "gen")


def bbh_names(variants: tuple[str, ...] | list[str] = VARIANTS) -> dict[str, tuple[str, str]]:
    """lm-eval task name -> (``bbh_T``, variant)."""
    return {f"brickwork_bbh_{t}_{v}": (f"bbh_{t}", v) for t in TASKS for v in VARIANTS if v in variants}


def data_path(task: str) -> Path:
    """The shipped upstream file of BBH task `task`."""
    if task not in TASKS:
        raise ConfigError(f"unknown BBH task {task!r}; shipped: {', '.join(TASKS)}")
    return Path(str(resources.files("brickwork") / "data" / "harness" / "bbh" / f"{task}.jsonl"))


def load(task: str) -> list[dict[str, str]]:
    """The task's examples, checked against the upstream copy: its sha256, 250 lines, each
    ``{"input", "target"}`` with the target in the answer set (every problem reported at once)."""
    path = data_path(task)
    answers, sha = TASKS[task]
    raw = path.read_bytes()
    problems = []
    if hashlib.sha256(raw).hexdigest() != sha:
        problems.append("sha256 differs from the upstream file's (PROVENANCE.md)")
    rows = []
    for n, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {n}: not JSON ({exc.msg})")
            continue
        if not isinstance(row, dict) or set(row) != {"input", "target"} or row.get("target") not in answers:
            problems.append(f"line {n}: should be {{'input': str, 'target': one of {answers}}}, got {line[:80]!r}")
            continue
        rows.append(row)
    if len(rows) != N_EXAMPLES:
        problems.append(f"{len(rows)} valid examples, upstream has {N_EXAMPLES}")
    if problems:
        raise BrickworkError(f"shipped BBH data {path} is not the upstream copy: " + "; ".join(problems[:5]))
    return rows


def lm_eval_config(task: str) -> Path:
    """lm-eval's own zero-shot BBH config for `task` (in the installed lm-eval)."""
    import lm_eval.tasks

    path = Path(lm_eval.tasks.__file__).parent / "bbh" / "zeroshot" / f"{task}.yaml"
    if not path.is_file():
        raise ConfigError(f"the installed lm-eval has no {path.name} under bbh/zeroshot (Brickwork's harness pins lm_eval==0.4.13)")
    return path


def gen_config(task: str) -> dict[str, Any]:
    return {
        "include": str(lm_eval_config(task)),
        "task": f"brickwork_bbh_{task}_gen",
        "tag": [TAG_BBH],
        **_local_data(task),
    }


def mc_config(task: str) -> dict[str, Any]:
    answers, _ = TASKS[task]
    return {
        "include": str(lm_eval_config(task)),
        "task": f"brickwork_bbh_{task}_mc",
        "tag": [TAG_BBH],
        **_local_data(task),
        "output_type": "multiple_choice",
        "doc_to_target": "target",  # the answer's text; lm-eval takes its index in the choices
        "doc_to_choice": list(answers),
        "generation_kwargs": None,
        "filter_list": None,
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
    }


def _local_data(task: str) -> dict[str, Any]:
    return {
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(data_path(task).resolve())}},
        "test_split": "test",
    }


def write_bbh_tasks(directory: str | Path) -> Path:
    """Write the BBH task YAML files into `directory` (the data is read in place); returns it."""
    from brickwork.evals.harness.tasks import _write, _yaml

    root = Path(directory).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    for task in TASKS:
        load(task)  # a damaged copy fails here, before any model runs
        _write(root / f"brickwork_bbh_{task}_gen.yaml", _yaml(gen_config(task)))
        _write(root / f"brickwork_bbh_{task}_mc.yaml", _yaml(mc_config(task)))
    return root
