"""The bundled task data (``brickwork/data/tasks``), SmolLM2's prompt format, and answer scoring.

Prompts are owned by `brickwork.prompts` (each base model's own chat template); `render_prompt`
and `STOP` are the default base model's (SmolLM2's ChatML), kept for its callers. Scoring follows the data's PROVENANCE.md: compare
case-insensitively, ignore surrounding whitespace and trailing punctuation, accept any of
``answers``.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

from brickwork.prompts import CHATML_STOP, SYSTEM_PROMPT, chatml

TASKS_DIR = Path(__file__).parent.parent / "data" / "tasks"
Split = Literal["train", "test"]


def render_prompt(text: str, *, system: str = SYSTEM_PROMPT) -> str:
    """The default base model's prompt (SmolLM2's ChatML) for one user message, ready for generation.

    For a library's own base model use ``PromptFormat.for_base(store.base).render(text)``.
    """
    return chatml(text, system=system)


STOP = CHATML_STOP


@dataclass(frozen=True, kw_only=True)
class Example:
    input: str
    output: str
    split: str
    answers: tuple[str, ...] = ()

    def accepted(self) -> tuple[str, ...]:
        return (self.output, *self.answers)


@dataclass(frozen=True, kw_only=True)
class Task:
    task_id: str
    name: str
    definition: str
    source_instruction: str
    output_type: str
    labels: tuple[str, ...] | None
    metric: str
    examples: tuple[Example, ...] = field(repr=False)

    def split(self, which: Split) -> list[Example]:
        return [e for e in self.examples if e.split == which]

    def query(self, example: Example | str, style: str = "definition") -> str:
        """The user message asking this task about one input.

        style ``definition``: the task's one-line definition, then the input; ``bare``: the input
        alone (what a brick must also handle when routing picked it from a bare input).
        """
        text = example.input if isinstance(example, Example) else example
        if style == "bare":
            return text
        if style == "definition":
            return f"{self.definition}\n{text}"
        raise ValueError(f"`style` should be 'definition' or 'bare', got {style!r}.")


def load_task_file(path: Path) -> Task:
    d = json.loads(Path(path).read_text(encoding="utf-8"))
    examples = tuple(
        Example(input=e["input"], output=e["output"], split=e["split"], answers=tuple(e.get("answers") or ()))
        for e in d["examples"]
    )
    return Task(
        task_id=d["task_id"],
        name=d.get("name", d["task_id"]),
        definition=d["definition"],
        source_instruction=d.get("source_instruction") or "",
        output_type=d.get("output_type", "short_text"),
        labels=tuple(d["labels"]) if d.get("labels") else None,
        metric=d.get("metric", "exact_match"),
        examples=examples,
    )


@cache
def load_tasks(directory: Path = TASKS_DIR) -> dict[str, Task]:
    """All bundled tasks by id, sorted."""
    tasks = [load_task_file(p) for p in sorted(Path(directory).glob("*.json"))]
    return {t.task_id: t for t in tasks}


_TRAILING = re.compile(r"[\s.!?,;:'\"]+$")


def normalize(text: str) -> str:
    text = text.split(STOP)[0].strip().lower()
    text = _TRAILING.sub("", text)
    return re.sub(r"\s+", " ", text)


def is_correct(prediction: str, example: Example) -> bool:
    """Exact match after normalisation against the output or any accepted answer."""
    pred = normalize(prediction)
    return any(pred == normalize(a) for a in example.accepted())


def sample(examples: list[Example], n: int | None, *, seed: int = 0) -> list[Example]:
    """A seeded, order-stable sample of at most `n` examples (all of them when n is None)."""
    if n is None or n >= len(examples):
        return list(examples)
    rng = random.Random(seed)
    idx = sorted(rng.sample(range(len(examples)), n))
    return [examples[i] for i in idx]
