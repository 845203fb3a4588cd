"""Hand-written ways to ask for each task, the connectors that join them, and tasks no brick covers.

The lists live in ``brickwork/data/phrasings.json``; this module gives them their types.
The composite-instruction generator (`synth.py`) draws from these. Every list is split by position
into a *train* part and a *held-out* part (every 4th entry, see `split_items`): the planner brick
is trained on train phrasings with train-split inputs only; the `plan` and `compose` eval suites
use held-out phrasings and connectors with test-split inputs, so they measure generalisation to
wording the planner never saw, not recall.

Template syntax:
- ``{x}`` is where the step's input goes, verbatim (quotes around it, if any, are in the template).
- ``TEMPLATE|FORMAT`` builds the input from parts of a two-part example (``{a}``, ``{b}``), e.g. the
  two animals of ``larger_animal`` or the two numbers of the arithmetic tasks.
- A pronoun form is ``(surface, target)``: ``surface`` refers back with "it", "the result", ...;
  ``target`` is the self-contained subgoal with ``{x}`` for what "it" stands for (an earlier step's
  output, or an input mentioned earlier).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

PHRASINGS_FILE = Path(__file__).parent.parent / "data" / "phrasings.json"
T = TypeVar("T")
Part = Literal["train", "test", "all"]


def split_items(items: list[T] | tuple[T, ...], part: Part) -> list[T]:
    """Every 4th item (index 3, 7, ...) is held out for evaluation."""
    if part == "all":
        return list(items)
    held = [x for i, x in enumerate(items) if i % 4 == 3]
    return held if part == "test" else [x for i, x in enumerate(items) if i % 4 != 3]


@dataclass(frozen=True)
class Phrasing:
    """How to ask for one task: direct forms (with the input) and pronoun forms (referring back)."""

    kind: str  # what the task takes as input: word, noun, adjective, country, sentence, ...
    direct: tuple[str, ...]
    pronoun: tuple[tuple[str, str], ...] = field(default=())
    noun: str = "it"  # how an intro names the input: "the word", "this sentence", ...


def _phrasing(d: dict) -> Phrasing:
    return Phrasing(
        kind=d["kind"],
        noun=d.get("noun", "it"),
        direct=tuple(d["direct"]),
        pronoun=tuple((surface, target) for surface, target in d.get("pronoun", ())),
    )


_DATA = json.loads(PHRASINGS_FILE.read_text(encoding="utf-8"))
# The bundled tasks.
TASKS: dict[str, Phrasing] = {name: _phrasing(d) for name, d in _DATA["tasks"].items()}
# Tasks no starter brick covers: they teach the planner to segment by form, not by topic.
OTHER_TASKS: dict[str, Phrasing] = {name: _phrasing(d) for name, d in _DATA["other_tasks"].items()}
# Intros that name an input once; later clauses refer to it with a pronoun.
INTROS: tuple[str, ...] = tuple(_DATA["intros"])
# How clauses are joined: {1}, {2}, {3} are clauses; "{n}." or "{n}?" ends a sentence (a question
# clause keeps its "?").
CONNECTORS: dict[int, tuple[str, ...]] = {int(n): tuple(forms) for n, forms in _DATA["connectors"].items()}
