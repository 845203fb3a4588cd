"""What describes a starter brick: its description, examples, routing samples and tags, from task data.

The retrieval index embeds exactly these fields, so they come from the data, never placeholders:
the task's definition, the source dataset's own instruction where it is a real one, requests for
the task in varied everyday wording (the hand-written train-part phrasings of
`brickwork.tasks.phrasings`, filled with training inputs), and a seeded sample of
training inputs. `routing_samples` (for the router's classifier only, never index rows) are more
training inputs, bare and in those train-part phrasings. Test inputs and held-out phrasings are
never used, so routing evals stay honest.
"""

from __future__ import annotations

import random

from brickwork.tasks import Task, sample

#: starter tasks whose input is any text at all, so that a request to the assistant is itself a valid
#: input: their bricks must be asked for (manifest ``bare_inputs: false``; docs/retrieval.md,
#: "Bricks that must be asked for"). `language_id` takes any sentence in any language, and with an
#: English sentence embedder a non-English request cannot be told from its inputs (measured there).
#: A bare question is asked to be answered, not typed (`trec_question_type`), and a bare statement
#: asks for nothing, least of all its negation (`sentence_negation`).
ASKED_ONLY = frozenset({"language_id", "trec_question_type", "sentence_negation"})

N_EXAMPLE_INPUTS = 24
N_EXAMPLE_REQUESTS = 12
N_ROUTING_INPUTS = 72


def starter_description(task: Task) -> str:
    return task.definition


def starter_examples(
    task: Task, *, n_inputs: int = N_EXAMPLE_INPUTS, n_requests: int = N_EXAMPLE_REQUESTS, seed: int = 0
) -> list[str]:
    from brickwork.tasks.synth import example_requests

    examples: list[str] = []
    src = task.source_instruction.strip()
    if src and not src.startswith("("):  # parenthesised ones are provenance notes, not instructions
        examples.append(src)
    examples += example_requests(task.task_id, n_requests, seed=seed)
    examples += [e.input for e in sample(task.split("train"), n_inputs, seed=seed)]
    return examples


def starter_routing_samples(task: Task, *, n: int = N_ROUTING_INPUTS, seed: int = 0) -> list[str]:
    """`n` more training inputs (seeded; none of the examples), bare and each also asked for in one of
    the train-part wordings: the router's classifier learns from them what the brick's requests and
    bare inputs look like; the index does not embed them as rows."""
    from brickwork.tasks.synth import requests_for_inputs

    listed = {e.strip() for e in starter_examples(task, seed=seed)}
    pool = list(dict.fromkeys(e.input for e in task.split("train") if e.input.strip() not in listed))
    random.Random(seed).shuffle(pool)  # a larger n extends a smaller n's list
    inputs = pool[:n]
    return inputs + requests_for_inputs(task.task_id, inputs, seed=seed)


def starter_bare_inputs(task: Task) -> bool:
    """Whether the router may choose the starter brick for a bare input (see `ASKED_ONLY`)."""
    return task.task_id not in ASKED_ONLY


def starter_tags(task: Task) -> list[str]:
    return ["starter", task.output_type]
