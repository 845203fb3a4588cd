"""What describes a starter brick: its description, example instructions and tags, from task data.

The retrieval index embeds exactly these fields, so they come from the data, never placeholders:
the task's definition, the source dataset's own instruction where it is a real one, and a seeded
sample of training inputs (test inputs are never used, so routing evals stay honest).
"""

from __future__ import annotations

from brickwork.tasks import Task, sample

N_EXAMPLE_INPUTS = 24


def starter_description(task: Task) -> str:
    return task.definition


def starter_examples(task: Task, *, n_inputs: int = N_EXAMPLE_INPUTS, seed: int = 0) -> list[str]:
    examples: list[str] = []
    src = task.source_instruction.strip()
    if src and not src.startswith("("):  # parenthesised ones are provenance notes, not instructions
        examples.append(src)
    examples += [e.input for e in sample(task.split("train"), n_inputs, seed=seed)]
    return examples


def starter_tags(task: Task) -> list[str]:
    return ["starter", task.output_type]
