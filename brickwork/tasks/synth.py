"""Composite instructions with gold plans, generated from the bundled tasks.

One generator feeds both sides, kept apart by `part`:

- ``part="train"``: train-split inputs, train phrasings, train connectors — the planner brick's data;
- ``part="test"``: test-split inputs, *held-out* phrasings, connectors and intros — the ``plan``
  and ``compose`` eval suites. Nothing the planner brick saw is reused.

Structures: one task; two or three independent tasks; a chain where a later step works on an
earlier step's output ("..., then spell it"); two tasks on the same input ("What is the capital
of Peru and which region is it in?"); an intro naming the input once ("Here is the word 'mouse'.
Give its plural, then spell it."). A pronoun refers to the previous step's output when that
output can be the next task's input, otherwise to the input named earlier — the rule the planner
learns. Gold outputs of chained steps are computed (spelling, numbers in words) or looked up in
the task data, so whole-answer accuracy is exact.

Example::

    for c in generate(3, part="test", seed=0):
        print(c.instruction, c.plan_target())
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from brickwork.tasks.phrasings import (
    CONNECTORS,
    INTROS,
    OTHER_TASKS,
    TASKS,
    Part,
    Phrasing,
    split_items,
)
from brickwork.tasks.bundled import Example, load_tasks

MAX_INPUT_CHARS = 120

# What each bundled task outputs, as an input kind for a following step.
OUT_KIND: dict[str, str] = {
    "antonym": "adjective",
    "english_plural": "noun",
    "country_capital": "city",
    "country_region": "region",
    "color_from_rgb": "colour",
    "larger_animal": "animal",
    "two_digit_addition": "number",
    "two_digit_subtraction": "number",
    "sentence_negation": "statement",
}
# Which output kinds a task of input kind K accepts.
ACCEPTS: dict[str, set[str]] = {
    "word": {"adjective", "noun", "city", "region", "colour", "animal", "word"},
    "noun": {"noun", "animal"},
    "adjective": {"adjective"},
    "number": {"number"},
    "sentence": {"statement"},
    "statement": {"statement"},
    "animal": {"animal"},
}
QUOTE_KINDS = {"sentence": '"', "statement": '"', "sms": '"', "question": '"', "word": "'", "noun": "'", "adjective": "'", "words": "'"}


@dataclass(frozen=True, kw_only=True)
class GoldStep:
    """One step of a gold plan: `template` holds ``{x}`` where `input` goes; refs are ``{1}``."""

    task: str
    template: str
    input: str
    expected: tuple[str, ...] | None = None  # accepted outputs (None: unknown, e.g. an unbundled task)
    example: Example | None = None  # the data example behind this step (None for chained steps)

    @property
    def subgoal(self) -> str:
        return self.template.replace("{x}", self.input)

    @property
    def refs(self) -> list[int]:
        return [int(m) for m in re.findall(r"\{(\d)\}", self.input)]


@dataclass(frozen=True, kw_only=True)
class Composite:
    instruction: str
    steps: tuple[GoldStep, ...]
    structure: str
    connector: str

    def plan_target(self) -> str:
        """The planner brick's output for this instruction (compact JSON)."""
        return json.dumps([{"subgoal": s.template, "input": s.input} for s in self.steps], ensure_ascii=False, separators=(",", ":"))

    def to_json(self) -> dict[str, Any]:
        return {
            "instruction": self.instruction,
            "structure": self.structure,
            "steps": [
                {"task": s.task, "subgoal": s.subgoal, "input": s.input, "expected": list(s.expected) if s.expected else None}
                for s in self.steps
            ],
        }


# -- gold functions for chained steps ---------------------------------------------------------
_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_in_words(n: int) -> str:
    """The data's style (checked against all 3000 `number_to_words` examples): 'four thousand, four hundred and forty-eight'."""
    if n < 0:
        return "minus " + number_in_words(-n)

    def small(k: int) -> str:
        if k < 20:
            return _ONES[k]
        t, o = divmod(k, 10)
        return _TENS[t] + ("-" + _ONES[o] if o else "")

    if n < 100:
        return small(n)
    th, rest = divmod(n, 1000)
    parts = [small(th) + " thousand"] if th else []
    h, r = divmod(rest, 100)
    if h:
        parts.append(_ONES[h] + " hundred")
    s = ", ".join(parts)
    if r:
        s = f"{s} and {small(r)}" if s else small(r)
    return s


@cache
def _plural_lookup() -> dict[str, str]:
    return {e.input.lower(): e.output for e in load_tasks()["english_plural"].examples}


def chained_gold(task: str, value: str) -> str | None:
    """The correct output of `task` applied to `value` (an earlier step's output), if known."""
    v = value.strip()
    if task == "spell_word":
        return " ".join(v.lower()) if re.fullmatch(r"[^\W\d_]+", v) else None
    if task == "number_to_words":
        return number_in_words(int(v)) if re.fullmatch(r"\d{1,4}", v) else None
    if task == "english_plural":
        return _plural_lookup().get(v.lower())
    if task == "language_id":
        return "English"  # chained only after sentence_negation, whose sentences are English
    return None


# Chains the eval can score exactly (second task's gold computable from the first's).
SCORABLE_CHAINS: tuple[tuple[str, str], ...] = (
    ("antonym", "spell_word"),
    ("english_plural", "spell_word"),
    ("country_capital", "spell_word"),
    ("country_region", "spell_word"),
    ("color_from_rgb", "spell_word"),
    ("larger_animal", "spell_word"),
    ("larger_animal", "english_plural"),
    ("two_digit_addition", "number_to_words"),
    ("two_digit_subtraction", "number_to_words"),
    ("sentence_negation", "language_id"),
)


# -- inputs -----------------------------------------------------------------------------------
@cache
def _pools(split: str) -> dict[str, list[Example]]:
    t = load_tasks()

    def ok(e: Example) -> bool:
        return len(e.input) <= MAX_INPUT_CHARS and "\n" not in e.input

    by_task = {tid: [e for e in task.split(split) if ok(e)] for tid, task in t.items()}  # type: ignore[arg-type]
    animals = sorted({a.strip() for e in by_task["larger_animal"] for a in e.input.split(",")})
    kinds: dict[str, list[Example]] = {
        "word": by_task["spell_word"],
        "noun": by_task["english_plural"],
        "adjective": by_task["antonym"],
        "country": by_task["country_capital"],
        "sentence": by_task["sentiment_binary"],
        "statement": by_task["sentence_negation"],
        "number": by_task["number_to_words"],
        "date": by_task["date_reformat"],
        "rgb": by_task["color_from_rgb"],
        "question": by_task["trec_question_type"],
        "sms": by_task["sms_spam"],
        "words": by_task["word_sorting"],
        "animals": by_task["larger_animal"],
        "animal": [Example(input=a, output="", split=split) for a in animals],
    }
    return {**{f"task:{k}": v for k, v in by_task.items()}, **kinds}


def _parts(task: str, text: str) -> dict[str, str]:
    if task == "larger_animal":
        a, _, b = text.partition(",")
        return {"a": a.strip(), "b": b.strip()}
    m = re.search(r"(-?\d+)\s+(?:plus|minus)\s+(-?\d+)", text)
    return {"a": m.group(1), "b": m.group(2)} if m else {}


def _fill(template: str, task: str, text: str, rng: random.Random) -> tuple[str, str] | None:
    """(template with quotes fixed, input) for one direct template, or None if it cannot take `text`."""
    tpl, _, fmt = template.partition("|")
    if fmt:
        parts = _parts(task, text)
        if not parts:
            return None
        value = fmt.format(**parts)
    else:
        value = text
    for q, other in (("'", '"'), ('"', "'")):
        if f"{q}{{x}}{q}" in tpl and q in value:
            if other in value:
                return None
            tpl = tpl.replace(f"{q}{{x}}{q}", f"{other}{{x}}{other}")
    return tpl, value


# -- rendering --------------------------------------------------------------------------------
_CAP_BEFORE = re.compile(r"(^|[.?!]\s+|\n(- |\d\. )?|Step \d: )$")
_NEEDS_IMPERATIVE = ("Please {", "Could you {")


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


@dataclass
class _Clause:
    text: str  # with {x} still in it
    value: str  # what {x} becomes in the instruction
    question: bool


def _render(connector: str, clauses: list[_Clause]) -> tuple[str, list[str]] | None:
    """Fill the connector; return the instruction and each clause's template as it appears there."""
    out: list[str] = []
    templates: list[str] = []
    i = 0
    pattern = connector
    while i < len(pattern):
        m = re.match(r"\{(\d)\}", pattern[i:])
        if not m:
            out.append(pattern[i])
            i += 1
            continue
        k = int(m.group(1)) - 1
        c = clauses[k]
        before = "".join(out)
        nxt = pattern[i + len(m.group(0)) : i + len(m.group(0)) + 1]
        text = c.text
        if any(before.endswith(p[:-1]) for p in _NEEDS_IMPERATIVE) and c.question:
            return None
        if _CAP_BEFORE.search(before) or before.endswith(") ") or before.endswith(": ") and before.startswith(("Can you", "Quick")):
            text = _cap(text)
        consumed = len(m.group(0))
        if c.question:
            if nxt == ".":
                consumed += 1  # the clause's own "?" ends the sentence
            elif nxt in (",", ";", " "):
                text = text[:-1] if text.endswith("?") else text
        templates.append(text)
        out.append(text.replace("{x}", c.value))
        i += consumed
    return "".join(out), templates


def _direct(rng: random.Random, task: str, ph: Phrasing, part: Part, text: str) -> _Clause | None:
    for _ in range(8):
        tpl = rng.choice(split_items(ph.direct, part))
        filled = _fill(tpl, task, text, rng)
        if filled:
            t, v = filled
            return _Clause(text=t, value=v, question=t.endswith("?"))
    return None


_OUTPUT_WORDS = re.compile(r"\b(result|answer|sum|output)\b")


def _pronoun(rng: random.Random, ph: Phrasing, part: Part, *, to_input: bool = False) -> tuple[str, str] | None:
    """A pronoun form; `to_input` drops forms that can only mean an earlier output ("the result")."""
    forms = split_items(ph.pronoun, part) or list(ph.pronoun)
    if to_input:
        forms = [f for f in forms if not _OUTPUT_WORDS.search(f[0])]
    return rng.choice(forms) if forms else None


def _phrasing(task: str) -> Phrasing:
    return TASKS.get(task) or OTHER_TASKS[task]


def example_requests(task: str, n: int, *, seed: int = 0) -> list[str]:
    """Up to `n` single requests for bundled task `task` in the *train* part's wordings, filled with
    its *train*-split inputs (deterministic for a seed): example instructions for its brick's
    manifest. Held-out wordings and test inputs are never used, so the eval suites stay blind."""
    if task not in TASKS:
        return []
    rng = random.Random(f"{seed}:{task}")
    templates = split_items(TASKS[task].direct, "train")
    pool = [e for e in _pools("train")[f"task:{task}"] if "{" not in e.input and "}" not in e.input]
    out: list[str] = []
    for tpl in rng.sample(templates, len(templates)):
        if len(out) >= n or not pool:
            break
        filled = _fill(tpl, task, rng.choice(pool).input, rng)
        if filled:
            t, v = filled
            out.append(_cap(t.replace("{x}", v)))
    return out


def requests_for_inputs(task: str, inputs: Sequence[str], *, seed: int = 0) -> list[str]:
    """Each of `inputs` asked for in one of bundled task `task`'s *train*-part wordings, in turn
    (an input a wording cannot take is skipped): routing samples for its brick's manifest."""
    if task not in TASKS:
        return []
    rng = random.Random(f"requests:{seed}:{task}")
    templates = split_items(TASKS[task].direct, "train")
    out: list[str] = []
    for i, x in enumerate(inputs):
        filled = _fill(templates[i % len(templates)], task, x, rng)
        if filled:
            t, v = filled
            out.append(_cap(t.replace("{x}", v)))
    return out


class _Gen:
    def __init__(self, part: Part, seed: int, other_share: float, tasks: list[str] | None) -> None:
        self.part: Part = part
        self.split = "test" if part == "test" else "train"
        self.rng = random.Random(seed)
        self.other_share = other_share
        self.tasks = tasks or sorted(TASKS)
        self.pools = _pools(self.split)
        self.connectors = {n: split_items(c, part) for n, c in CONNECTORS.items()}
        self.intros = split_items(INTROS, part)

    # one step with its own input
    def pick_task(self, exclude: set[str]) -> str:
        if self.other_share and self.rng.random() < self.other_share:
            choices = [t for t in OTHER_TASKS if t not in exclude]
        else:
            choices = [t for t in self.tasks if t not in exclude]
        return self.rng.choice(choices)

    def example_for(self, task: str) -> Example | None:
        if task in TASKS:
            pool = self.pools[f"task:{task}"]
        else:
            kind = OTHER_TASKS[task].kind
            if kind == "none":
                return Example(input="", output="", split=self.split)
            pool = self.pools[kind]
        return self.rng.choice(pool) if pool else None

    def direct_step(self, task: str) -> tuple[_Clause, GoldStep] | None:
        ex = self.example_for(task)
        if ex is None:
            return None
        clause = _direct(self.rng, task, _phrasing(task), self.part, ex.input)
        if clause is None:
            return None
        expected = ex.accepted() if task in TASKS else None
        step = GoldStep(task=task, template=clause.text, input=clause.value, expected=expected, example=ex if task in TASKS else None)
        return clause, step

    def compose(self, clauses: list[_Clause], steps: list[GoldStep], structure: str, prefix: str = "") -> Composite | None:
        n = len(clauses)
        for _ in range(6):
            connector = self.rng.choice(self.connectors[n])
            rendered = _render(connector, clauses)
            if rendered is None:
                continue
            text, templates = rendered
            gold = tuple(
                GoldStep(task=s.task, template=t, input=s.input, expected=s.expected, example=s.example)
                for s, t in zip(steps, templates, strict=True)
            )
            return Composite(instruction=(prefix + text).strip(), steps=gold, structure=structure, connector=connector)
        return None

    # structures
    def independent(self, n: int) -> Composite | None:
        clauses, steps, used = [], [], set()
        for _ in range(n):
            task = self.pick_task(used)
            used.add(task)
            got = self.direct_step(task)
            if got is None:
                return None
            clauses.append(got[0])
            steps.append(got[1])
        return self.compose(clauses, steps, "single" if n == 1 else "independent")

    def chain_pair(self, scorable: bool) -> tuple[str, str] | None:
        if scorable:
            pairs = [p for p in SCORABLE_CHAINS if p[0] in self.tasks and p[1] in self.tasks]
        else:
            pairs = [
                (a, b)
                for a in self.tasks
                if a in OUT_KIND
                for b in list(TASKS) + list(OTHER_TASKS)
                if b != a and _phrasing(b).pronoun and OUT_KIND[a] in ACCEPTS.get(_phrasing(b).kind, set())
            ]
        return self.rng.choice(pairs) if pairs else None

    def chained(self, scorable: bool, extra: int) -> Composite | None:
        pair = self.chain_pair(scorable)
        if pair is None:
            return None
        a, b = pair
        got = self.direct_step(a)
        if got is None:
            return None
        c1, s1 = got
        expected2: tuple[str, ...] | None = None
        if s1.expected is not None:
            golds = [chained_gold(b, v) for v in s1.expected]
            if scorable and any(g is None for g in golds):
                return None
            expected2 = tuple(dict.fromkeys(g for g in golds if g is not None)) or None
        form = _pronoun(self.rng, _phrasing(b), self.part)
        if form is None:
            return None
        surface, target = form
        c2 = _Clause(text=surface, value="", question=surface.endswith("?"))
        s2 = GoldStep(task=b, template=target, input="{1}", expected=expected2 if b in TASKS else None)
        clauses, steps = [c1, c2], [s1, s2]
        used = {a, b}
        for _ in range(extra):
            task = self.pick_task(used)
            used.add(task)
            more = self.direct_step(task)
            if more is None:
                return None
            clauses.append(more[0])
            steps.append(more[1])
        comp = self.compose(clauses, steps, "chain")
        if comp is None:
            return None
        # the pronoun clause's template is the *target* (self-contained) form, not the surface one
        fixed = list(comp.steps)
        fixed[1] = GoldStep(task=b, template=_match_case(comp.steps[1].template, target), input="{1}", expected=s2.expected)
        return Composite(instruction=comp.instruction, steps=tuple(fixed), structure=comp.structure, connector=comp.connector)

    def same_input(self) -> Composite | None:
        """Two tasks on one input; the second refers to it with a pronoun (unambiguous by kind)."""
        a = self.pick_task(set())
        kind = _phrasing(a).kind
        out = OUT_KIND.get(a)
        cands = [
            b
            for b in (self.tasks + list(OTHER_TASKS) if self.other_share else self.tasks)
            if b != a and _phrasing(b).kind == kind and _phrasing(b).pronoun and not (out and out in ACCEPTS.get(kind, set()))
        ]
        if not cands:
            return None
        b = self.rng.choice(cands)
        got = self.direct_step(a)
        if got is None:
            return None
        c1, s1 = got
        form = _pronoun(self.rng, _phrasing(b), self.part, to_input=True)
        if form is None or s1.example is None and a in TASKS:
            return None
        surface, target = form
        ex = s1.example
        expected = None
        if b in TASKS and ex is not None:
            bex = next((e for e in load_tasks()[b].examples if e.input == ex.input), None)
            expected = bex.accepted() if bex else ("English",) if b == "language_id" and a == "sentiment_binary" else None
            if expected is None:
                return None
        c2 = _Clause(text=surface, value="", question=surface.endswith("?"))
        comp = self.compose([c1, c2], [s1, GoldStep(task=b, template=target, input=s1.input, expected=expected)], "same_input")
        if comp is None:
            return None
        fixed = list(comp.steps)
        fixed[1] = GoldStep(task=b, template=_match_case(comp.steps[1].template, target), input=s1.input, expected=expected, example=ex)
        return Composite(instruction=comp.instruction, steps=tuple(fixed), structure="same_input", connector=comp.connector)

    def intro(self) -> Composite | None:
        """An intro names the input; one or two clauses refer to it (and the second maybe to the first's output)."""
        a = self.rng.choice([t for t in self.tasks if _phrasing(t).pronoun])
        ph = _phrasing(a)
        ex = self.example_for(a)
        if ex is None or not self.intros:
            return None
        q = QUOTE_KINDS.get(ph.kind, "")
        if q and q in ex.input:
            return None
        shown = f"{q}{ex.input}{q}"
        intro = self.rng.choice(self.intros)
        noun = ph.noun if ph.noun != "it" else "this"
        prefix = intro.format(noun=noun, Noun=_cap(noun), x=shown) + " "
        surface, target = _pronoun(self.rng, ph, self.part, to_input=True) or ("", "")
        if not surface:
            return None
        c1 = _Clause(text=surface, value="", question=surface.endswith("?"))
        s1 = GoldStep(task=a, template=target, input=ex.input, expected=ex.accepted(), example=ex)
        clauses, steps, targets = [c1], [s1], [target]
        # maybe a second clause: a chain on the first's output
        nxt = [b for (x, b) in SCORABLE_CHAINS if x == a and b in self.tasks]
        if nxt and self.rng.random() < 0.6:
            b = self.rng.choice(nxt)
            golds = [chained_gold(b, v) for v in ex.accepted()]
            if all(g is not None for g in golds):
                form = _pronoun(self.rng, _phrasing(b), self.part)
                if form:
                    clauses.append(_Clause(text=form[0], value="", question=form[0].endswith("?")))
                    steps.append(GoldStep(task=b, template=form[1], input="{1}", expected=tuple(dict.fromkeys(g for g in golds if g))))
                    targets.append(form[1])
        comp = self.compose(clauses, steps, "intro", prefix=prefix)
        if comp is None:
            return None
        fixed = tuple(
            GoldStep(task=s.task, template=_match_case(s.template, t), input=s.input, expected=s.expected, example=s.example)
            for s, t in zip(comp.steps, targets, strict=True)
        )
        return Composite(instruction=comp.instruction, steps=fixed, structure="intro", connector=comp.connector)


def _match_case(rendered: str, target: str) -> str:
    """The target form, capitalised (and with or without "?") the way its clause was rendered."""
    t = _cap(target) if rendered[:1].isupper() else target
    if t.endswith("?") and not rendered.endswith("?"):
        t = t[:-1]
    return t


STRUCTURES: dict[str, float] = {"single": 0.25, "independent": 0.3, "chain": 0.27, "same_input": 0.08, "intro": 0.1}


def generate(
    n: int,
    *,
    part: Part = "train",
    seed: int = 0,
    other_share: float = 0.0,
    tasks: list[str] | None = None,
    structures: dict[str, float] | None = None,
    scorable: bool = True,
) -> list[Composite]:
    """`n` composite instructions with gold plans (deterministic for a seed), no duplicates.

    `other_share` mixes in steps of tasks no bundled brick covers (their expected output is None);
    `scorable` keeps only chains whose gold outputs can be computed.
    """
    g = _Gen(part, seed, other_share, tasks)
    weights = structures or STRUCTURES
    names, probs = list(weights), list(weights.values())
    out: list[Composite] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n and attempts < n * 50:
        attempts += 1
        kind = g.rng.choices(names, probs)[0]
        if kind == "single":
            c = g.independent(1)
        elif kind == "independent":
            c = g.independent(g.rng.choice((2, 2, 3)))
        elif kind == "chain":
            c = g.chained(scorable, extra=g.rng.choice((0, 0, 0, 1)))
        elif kind == "same_input":
            c = g.same_input()
        else:
            c = g.intro()
        if c is None or c.instruction in seen:
            continue
        seen.add(c.instruction)
        out.append(c)
    return out
