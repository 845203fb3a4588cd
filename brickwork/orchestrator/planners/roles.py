"""What a clause of a request is, read from its form: context, a request, or an input carrier.

The rules splitter used to learn each new phrasing as a word list; these cues are the grammar
all those phrasings share, so they carry to sentences nobody wrote yet:

- **request** (a step): an imperative ("Recommend a book", whatever the verb), a question (it ends
  in "?" or starts with a question word or an auxiliary: "is 'x' spam", "whats 3 plus 4"), a
  modal request ("could you ...", "would you mind ...", "please ...", "I need / want / would like
  ...", "I was wondering whether ..."), or a task label ("plural of 'ox'", "45 minus 12");
- **carrier** (an input, no request): a statement, with a subject and no request cue, that holds an
  input ("The word of the day is 'serene'.", "Got this text from my bank: '...'");
- **context** (nothing to do): a statement with no input and no request cue ("I'm drafting an
  email to a client in Madrid.", "My teacher asked us a question today"), or one that only
  announces how many things follow ("... and need two answers checked").

A statement is told from an imperative by its start: a subject (a personal pronoun, a possessive
or determiner noun phrase with a finite verb after it) or, in chat, a past-tense verb with the
subject left out ("Got this text ...", "Found a word ..."). An imperative never starts with either.
"""

from __future__ import annotations

import re
from typing import Literal

from brickwork.orchestrator.planners.lexicon import HEAD_NOUNS, MASK, NUMBERISH, QUESTION_WORDS, TASK_START

Role = Literal["context", "request", "carrier"]

# "is", "does", "can" ... start a question only when a subject follows them
_AUX = r"(?:is|are|was|were|does|do|did|can|could|would|will|should|has|have)"
_QUESTION = re.compile(
    rf"\?\W*$|^(?:what|which|who|whom|whose|where|when|why|how|whats|wats|wat|whos|wheres|hows)\b|^{_AUX}\s+\S",
    re.I,
)
_MODAL_REQUEST = re.compile(
    r"\b(?:could|can|would|will|won't)\s+(?:you|u|ya)\b|^(?:please|pls|plz|kindly)\b|\bplease\b|\blet\s+me\s+know\b|\btell\s+me\b|"
    # "I need / want ...", "I'd like / love ...", "I'm wondering / curious ..."; not a bare "I love"
    r"\b(?:i|we)\s+(?:really\s+|just\s+|also\s+)?(?:need|want|wanna|wonder|would\s+like|would\s+love|would\s+appreciate)\b|"
    r"\b(?:i|we)(?:'d|\s+would)\s+(?:like|love|appreciate|be\s+grateful)\b|"
    r"\b(?:i|we)(?:'m|'re|\s+am|\s+are|\s+was|\s+were)\s+(?:wondering|curious|looking\s+for|trying\s+to|hoping)\b|\bhelp\s+me\b",
    re.I,
)
# a count of unnamed things ("two answers checked", "a few questions"): an announcement, no step
_ANNOUNCES = re.compile(
    r"\b(?:two|three|four|five|\d|a\s+few|a\s+couple(?:\s+of)?|several|some)\s+(?:quick\s+|small\s+|short\s+)?"
    r"(?:things|questions|answers|tasks|items|queries|requests|ones|problems|bits)\b",
    re.I,
)
_SUBJECT_PRONOUN = r"(?:i|i'm|im|i've|ive|i'd|we|we're|we've|he|she|they|he's|she's|they're|you're|it's|there's|there\s+(?:is|are|was))"
_DETERMINER = r"(?:my|our|his|her|their|your|the|this|that|these|those|a|an|one|some|today's|someone|somebody|a\s+friend)"
# a finite verb after a noun phrase ("... is", "... came to", "... asked"): copulas, -ed/-s forms
_FINITE = r"(?:is|are|was|were|has|have|had|'s|says|said|reads|goes|came|went|got|sent|wrote|asked|told|gave|made|\w+ed)"
_STATEMENT = re.compile(
    rf"^(?:{_SUBJECT_PRONOUN}\b|(?:it|you)\s+{_FINITE}\b|{_DETERMINER}\b(?:\s+[^\s\x00]+){{0,5}}?\s+{_FINITE}\b|"
    # a narrative verb with the subject left out, as typed in chat ("Got this text ...")
    r"(?:got|received|found|saw|heard|read|spotted|came\s+across)\s+(?:this|a|an|the|some)\b)",
    re.I,
)
_TASK_LABEL = re.compile(rf"^(?:the\s+)?{HEAD_NOUNS}\b|^-?\d+(?:\.\d+)?\s+(?:plus|minus|times|divided\s+by|[-+x*/])\s+-?\d", re.I)


def has_input(clause: str, spans: list[str]) -> bool:
    """A masked input (not a ``\\x01`` format) or a number of its own."""
    if any(not spans[int(m.group(1))].startswith("\x01") for m in MASK.finditer(clause)):
        return True
    return bool(NUMBERISH.search(MASK.sub(" ", clause)))


def is_question(clause: str) -> bool:
    return bool(_QUESTION.search(clause.strip()))


def is_request(clause: str) -> bool:
    """A question, a modal request or a task label: the clause asks for something."""
    c = clause.strip()
    return (
        is_question(c)
        or bool(_MODAL_REQUEST.search(MASK.sub(" ", c)))
        or bool(_TASK_LABEL.match(c))
        or bool(re.match(TASK_START, c, re.I))
    )


def is_statement(clause: str) -> bool:
    """A declarative sentence: it starts with a subject (see the module docstring)."""
    c = MASK.sub(" X ", clause.strip())
    first = re.match(r"[^\W\d_]+", c)
    if first and first.group(0).lower() in QUESTION_WORDS:
        return False
    return bool(_STATEMENT.match(c))


def role(clause: str, spans: list[str]) -> Role:
    """`"context"`, `"request"` or `"carrier"` for one masked clause (see the module docstring)."""
    if is_statement(clause) and not is_request(clause):
        return "carrier" if has_input(clause, spans) else "context"
    if not has_input(clause, spans) and not is_question(clause) and _ANNOUNCES.search(clause) and is_statement(clause):
        return "context"  # "I'm putting together a quiz and need two answers checked"
    return "request"
