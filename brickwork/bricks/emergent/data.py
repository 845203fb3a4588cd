"""Categories of the bundled tasks and the tokenised instances the analysis runs on.

The paper grouped 1,000 single-category instances into 7 categories (coding, math, linguistic,
knowledge, translation, ethics, writing). The 17 bundled tasks fall into 6 categories by the
ability they exercise:

============== ========================================================= ====================
category       tasks                                                     paper's nearest
============== ========================================================= ====================
arithmetic     two_digit_addition, two_digit_subtraction, number_to_words math
knowledge      country_capital, country_region, larger_animal,           knowledge
               color_from_rgb
lexical        antonym, english_plural, sentence_negation                linguistic
symbolic       spell_word, word_sorting, date_reformat                   (string manipulation)
classification sentiment_binary, sms_spam, trec_question_type            (ethics/writing-like
                                                                          judgement of a text)
multilingual   language_id (German, Spanish, French, Italian, Japanese,  translation
               Dutch, Polish, Portuguese, Russian, English hotel reviews)
============== ========================================================= ====================

An instance is one example rendered exactly as a task query (`Task.query(e, "definition")`
inside `render_prompt`) followed by its reference answer. Its tokens are split into a per-task
*prefix* (chat header + definition, identical for every instance of the task, so it is computed
once per task and reused through the KV cache) and a per-instance *suffix* (the input, the
assistant header and the answer). Selection instances come from the train split, evaluation
instances from the test split, never mixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from brickwork.tasks import Split, Task, load_tasks, render_prompt, sample

CATEGORIES: dict[str, tuple[str, ...]] = {
    "arithmetic": ("two_digit_addition", "two_digit_subtraction", "number_to_words"),
    "knowledge": ("country_capital", "country_region", "larger_animal", "color_from_rgb"),
    "lexical": ("antonym", "english_plural", "sentence_negation"),
    "symbolic": ("spell_word", "word_sorting", "date_reformat"),
    "classification": ("sentiment_binary", "sms_spam", "trec_question_type"),
    "multilingual": ("language_id",),
}


def category_of(task_id: str) -> str:
    for cat, tasks in CATEGORIES.items():
        if task_id in tasks:
            return cat
    raise KeyError(task_id)


@dataclass(frozen=True)
class Prefix:
    """One task's shared prompt head: token ids and which of them are prompt (definition) tokens."""

    task_id: str
    ids: tuple[int, ...]
    prompt_from: int  # positions >= prompt_from are definition tokens (the chat header is not)


@dataclass(frozen=True)
class Instance:
    """One example's suffix tokens; positions are indices into `ids`.

    `prompt` marks the input tokens; with the prefix's definition tokens they are the user-message
    tokens whose mean absolute activation is a neuron's value on this instance (the newline
    between definition and input counts for neither). `content` marks tokens whose
    prediction counts in the perplexity (input + answer); `answer` the answer tokens alone.
    """

    task_id: str
    category: str
    ids: tuple[int, ...]
    prompt: tuple[int, ...]
    content: tuple[int, ...]
    answer: tuple[int, ...]
    text: str = field(repr=False, default="")


def _split_template(query: str) -> tuple[str, str]:
    full = render_prompt(query)
    i = full.index(query.strip())
    return full[:i], full[i + len(query.strip()) :]


def build_instances(
    tokenizer: Any,
    *,
    split: Split,
    per_category: int,
    max_input_tokens: int = 64,
    seed: int = 0,
    categories: dict[str, tuple[str, ...]] | None = None,
) -> tuple[dict[str, Prefix], list[Instance]]:
    """`per_category` instances per category (spread evenly over its tasks) from `split`."""
    categories = categories or CATEGORIES
    tasks = load_tasks()

    def enc(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    prefixes: dict[str, Prefix] = {}
    instances: list[Instance] = []
    for cat, task_ids in categories.items():
        base, extra = divmod(per_category, len(task_ids))
        for j, tid in enumerate(task_ids):
            task: Task = tasks[tid]
            n = base + (1 if j < extra else 0)
            head, tail = _split_template(task.query("X"))
            head_ids, def_ids = enc(head), enc(task.definition + "\n")
            tail_ids = enc(tail)
            prefixes[tid] = Prefix(task_id=tid, ids=tuple(head_ids + def_ids[:-1]), prompt_from=len(head_ids))
            for e in sample(task.split(split), n, seed=seed):
                in_ids = enc(e.input.strip())[:max_input_tokens]
                ans_ids = enc(e.output)
                ids = def_ids[-1:] + in_ids + tail_ids + ans_ids
                n_in, n_tail = len(in_ids), len(tail_ids)
                answer = tuple(range(1 + n_in + n_tail, len(ids)))
                instances.append(
                    Instance(
                        task_id=tid,
                        category=cat,
                        ids=tuple(ids),
                        prompt=tuple(range(1, 1 + n_in)),
                        content=tuple(range(1, 1 + n_in)) + answer,
                        answer=answer,
                        text=task.query(e),
                    )
                )
    return prefixes, instances
