"""The bundled tasks as lm-eval tasks: YAML configs over local JSON Lines files, no hub.

`write_tasks(dir)` writes, per bundled task ``T``, ``data/T.{train,test}.jsonl`` and

- ``brickwork_T_gen``: ``generate_until`` on the task's user message (its definition, then the
  input), until a newline (the model adds its base's end of turn: ``--model brickwork`` and
  ``brickwork serve`` both stop there), scored by exact match against the output or any accepted
  answer (case and trailing punctuation ignored, as `brickwork.tasks.is_correct` does); tag
  ``brickwork_gen``;
- ``brickwork_T_mc`` for the tasks with a closed label set: ``multiple_choice`` over the labels
  (``acc``, ``acc_norm``); tag ``brickwork_mc``.

Data paths in the YAML files are absolute (HF ``datasets`` resolves relative ``data_files``
against the working directory), so the files are written per machine, by default under
``$BRICKWORK_CACHE/harness/tasks``. Use them with lm-eval's ``--include_path``; run with
``--apply_chat_template`` so a prompt is exactly what the bricks were trained on.

    python -m brickwork.evals.harness.tasks [DIR]     # writes the files, prints DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from brickwork import _atomic
from brickwork.tasks import Task, load_tasks

VERSION = 1
TAG_GEN = "brickwork_gen"
TAG_MC = "brickwork_mc"
# Trailing whitespace and punctuation, ignored by exact match (brickwork.tasks.normalize).
TRAILING = r"[\s.!?,;:'\"]+$"
HOOK = "brickwork.evals.harness.hooks.process_docs"


def default_dir() -> Path:
    from brickwork.models import cache_dir

    return cache_dir() / "harness" / "tasks"


def task_names(task: Task) -> list[str]:
    """The lm-eval task names made from one bundled task."""
    names = [f"brickwork_{task.task_id}_gen"]
    if task.labels:
        names.append(f"brickwork_{task.task_id}_mc")
    return names


def docs(task: Task, split: str) -> list[dict[str, Any]]:
    """One JSON object per example: the user message, the answers, and the label index."""
    out = []
    lower = [label.lower() for label in task.labels or ()]
    for e in task.split(split):  # type: ignore[arg-type]
        d: dict[str, Any] = {"query": task.query(e), "input": e.input, "output": e.output, "answers": list(e.accepted())}
        if task.labels:
            d["label"] = lower.index(e.output.strip().lower()) if e.output.strip().lower() in lower else -1
        out.append(d)
    return out


def gen_config(task: Task, data: dict[str, Path], max_gen_toks: int) -> dict[str, Any]:
    return {
        "task": f"brickwork_{task.task_id}_gen",
        "tag": [TAG_GEN],
        **_common(data),
        "output_type": "generate_until",
        "doc_to_target": "answers",
        "generation_kwargs": {"until": ["\n"], "max_gen_toks": max_gen_toks, "do_sample": False},
        "metric_list": [
            {"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
             "ignore_case": True, "regexes_to_ignore": [TRAILING]},
        ],
    }


def mc_config(task: Task, data: dict[str, Path]) -> dict[str, Any]:
    assert task.labels  # only called for label tasks
    return {
        "task": f"brickwork_{task.task_id}_mc",
        "tag": [TAG_MC],
        **_common(data),
        "output_type": "multiple_choice",
        "doc_to_target": "label",
        "doc_to_choice": list(task.labels),
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
    }


def _common(data: dict[str, Path]) -> dict[str, Any]:
    return {
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {k: str(v) for k, v in data.items()}},
        "training_split": "train",
        "test_split": "test",
        "fewshot_split": "train",
        "doc_to_text": "{{query}}",
        "metadata": {"version": VERSION},
    }


def write_tasks(directory: str | Path | None = None, tasks: list[str] | None = None) -> Path:
    """Write the task files (idempotent: unchanged files are left alone); returns the directory."""
    root = Path(directory).expanduser().resolve() if directory is not None else default_dir()
    all_tasks = load_tasks()
    chosen = [all_tasks[t] for t in (tasks or sorted(all_tasks))]
    (root / "data").mkdir(parents=True, exist_ok=True)
    tok = _tokenizer()
    for task in chosen:
        data = {}
        for split in ("train", "test"):
            path = root / "data" / f"{task.task_id}.{split}.jsonl"
            _write(path, "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs(task, split)))
            data[split] = path
        longest = max(len(tok.encode(a, add_special_tokens=False)) for e in task.examples for a in e.accepted()) if tok else 48
        _write(root / f"brickwork_{task.task_id}_gen.yaml", _yaml(gen_config(task, data, longest + 8)))
        if task.labels:
            _write(root / f"brickwork_{task.task_id}_mc.yaml", _yaml(mc_config(task, data)))
    return root


def _tokenizer() -> Any:
    """The base model's tokenizer, to size each task's `max_gen_toks` (None if it cannot load)."""
    try:
        from transformers import AutoTokenizer

        from brickwork.models import resolve_base_model

        return AutoTokenizer.from_pretrained(resolve_base_model().path)
    except Exception:  # noqa: BLE001 - sizing only; a fixed length works too
        return None


def _yaml(config: dict[str, Any]) -> str:
    import yaml

    body = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=1000)
    # safe_dump cannot write lm-eval's !function tag; the hook's import registers the model
    return f"# Written by brickwork.evals.harness.tasks; edits are overwritten.\n{body}process_docs: !function {HOOK}\n"


def _write(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        _atomic.write_text(path, text)


if __name__ == "__main__":
    print(write_tasks(sys.argv[1] if len(sys.argv) > 1 else None))
