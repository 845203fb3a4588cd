"""Follow-up questions: does "it" in a step mean the step before's answer, or the same input?

"Plural of 'mouse'. How many letters does it have?" counts the letters of the answer (*mice*);
"What is the capital of Peru? Next, which part of the world is it in?" asks about Peru, not Lima.
The difference is in what each step takes and gives: a capital is a city, and "which part of the
world is it in" takes a country. `same_input` compares the kinds of thing each clause takes
(`wants`) and gives (`gives`), from the task words in it:

- if the follow-up takes what the step before gives, "it" is that answer (a chain: the default);
- if it cannot take the answer but takes what the step before took, "it" is the same input;
- if either is unknown, it is a chain.

Only a bare pronoun ("it", "its", "them", and "there" for a place) or a head noun left without
its complement ("And the region?", `same_input(..., pronoun=False)`) is read this way; "the result", "the answer", "that
city" always mean the answer before.
"""

from __future__ import annotations

import re

# (pattern, what the task takes, what it gives); the first pattern that matches decides.
# "word" is anything spellable: a city, colour, language or animal name is also a word.
_TASKS: tuple[tuple[str, frozenset[str], frozenset[str]], ...] = tuple(
    (p, frozenset(w.split()), frozenset(g.split()))
    for p, w, g in (
        (r"\bhow\s+many\s+letters\b|\bnumber\s+of\s+letters\b|\bcount\b.*\bletters\b|\bletter\s+count\b", "word", "number"),
        (r"\b(?:first|last)\s+letter\b|\b(?:start|begin|end)s?\s+with\b", "word", "letter"),
        (r"\bcapital\b", "country", "city word"),
        # "How many people live there?" after a capital asks about the country, as a population does
        (r"\bpopulation\b|\bhow\s+many\s+people\b", "country", "number"),
        (r"\bcurrency\b|\bflag\b", "country", "currency word"),
        (r"\b(?:region|continent|part\s+of\s+the\s+world|where\s+in\s+the\s+world|located)\b", "country", "region word"),
        (r"\broman\s+numerals?\b", "number", "numeral"),
        (r"\bin\s+words\b", "number", "text"),
        (r"\b(?:plus|minus|times|add|subtract|sum|difference|multiply|double|triple|halve)\b", "number", "number"),
        (r"\b(?:colou?r)\b", "rgb", "colour word"),
        (r"\b(?:negate|negation|negative\s+form)\b", "sentence", "sentence"),
        (r"\bpositive\s+or\s+negative\b|\bsentiment\b|\bspam\b|\bham\b", "sentence", "label"),
        (r"\b(?:type|kind|sort)\s+of\s+answer\b|\banswer\s+(?:type|kind|category)\b", "question", "label"),
        # the language spoken in a place, not the language a text is in
        (r"\b(?:speak|spoken)\b", "country", "language word"),
        (r"\blanguage\b", "sentence question word", "language word"),  # a question is a sentence too
        (r"\btranslat", "sentence word", "sentence word"),
        (r"\b(?:sort|alphabeti[sz]e|alphabetical)\b", "words", "words"),
        (r"\b(?:plural|singular|antonym|opposite|synonym|rhym\w*|reverse\w*|backwards)\b", "word", "word"),
        (r"\bspell\w*\b|\bletter\s+by\s+letter\b", "word", "letters"),
        (r"\b(?:larger|bigger|heavier|smaller|lighter)\b", "animals", "animal word"),
        (r"\b(?:!MM!DD!YYYY!|date)\b", "date", "date"),
    )
)
_BARE_PRONOUN = re.compile(r"\b(?:it|its|them|there)\b", re.I)


def kinds(clause: str) -> tuple[frozenset[str], frozenset[str]] | None:
    """(what the clause's task takes, what it gives), or None for a task not in the table."""
    for pattern, wants, gives in _TASKS:
        if re.search(pattern, clause, re.I):
            return wants, gives
    return None


def same_input(previous: str, follow_up: str, *, pronoun: bool = True) -> bool:
    """True when "it" in `follow_up` means the input of the step `previous`, not its answer
    (`pronoun=False`: the follow-up refers back without a pronoun)."""
    before, after = kinds(previous), kinds(follow_up)
    if before is None or after is None or (pronoun and not _BARE_PRONOUN.search(follow_up)):
        return False
    (took, gave), (takes, _) = before, after
    return not (takes & gave) and bool(takes & took)
