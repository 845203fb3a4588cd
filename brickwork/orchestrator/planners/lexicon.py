"""The rules splitter's word lists and the patterns built from them, shared by its modules.

Masked text: `clauses.mask` replaces each quoted span, ``rgb(...)`` value, ``!MM!DD!YYYY!``
format and colon payload by ``\\x00N\\x00`` (N indexes the spans list), so no rule splits inside
an input; a span starting with ``\\x01`` is a format, not an input.
"""

from __future__ import annotations

import re

VERBS = (
    "give write spell name tell say find translate make put turn convert classify identify detect decide "
    "determine sort alphabetize alphabetise arrange list negate rewrite reformat change pluralize pluralise add "
    "subtract compute calculate count reverse define use describe explain summarize summarise answer label rate "
    "pick compare output provide state express format separate split break check multiply triple solve work "
    "take sum capitalize reply respond suggest create generate shorten rephrase categorize categorise locate show "
    "what which who whom whose where when why how is are does do was were can could"
).split()
QUESTION_WORDS = frozenset("what which who whom whose where when why how is are does do was were can could".split())
# question words as they are typed in chat ("whats the capital of chad and wats 12 plus 5"): they
# start a task, but are not task words after a colon (an SMS there says "Whats up")
CHAT_QUESTION = r"(?:whats|wats|wat|whos|wheres|hows)\b"
VERB_ALT = "|".join(VERBS)
IMPERATIVE_ALT = "|".join(v for v in VERBS if v not in QUESTION_WORDS)

MASK = re.compile(r"\x00(\d+)\x00")
BANG = re.compile(r"!\w+(?:!\w+)*!")  # "!MM!DD!YYYY!" is a format, not three sentences
QUOTED = re.compile(r"\"[^\"\n]+\"|“[^”\n]+”|‘[^’\n]+’|(?<![\w])'[^'\n]+?'(?![\w])")
RGB = re.compile(r"rgb\([^)]*\)", re.I)
NUMBERISH = re.compile(r"\d{4}-\d{2}-\d{2}|-?\d+(?:\.\d+)?")

# "btw" and "oh, and" start a task as "also" does
CONN_WORDS = r"then|after\s+that|afterwards|next|also|finally|lastly|last(?=\s*,)|btw|by\s+the\s+way|oh(?=\s*,?\s+and\b)"
# discourse markers of sequence and addition, the closed class "then" and "also" belong to; those
# that also occur inside a clause ("in addition to", "the day after this") count before a comma only
CONN_WORDS += r"|subsequently|additionally|in\s+addition(?=\s*,)|after\s+this(?=\s*,)|following\s+that|furthermore"
# markers that open the first step ("To begin, ...", "First of all, ..."): leads, not connectors
OPENERS = r"to\s+(?:begin|start)(?:\s+with)?|first\s+of\s+all|for\s+starters|first\s+off"
# an ordinal subject that numbers the steps in prose ("The first is how to spell 'x'. The second is ...")
ORDINAL_ITEM = (
    r"(?:the|my|our)\s+(?:first|second|third|fourth|fifth|next|last|final|other)"
    r"(?:\s+(?:one|thing|question|task|item|request|part|bit))?\s+(?:is|was|would\s+be)\b(?!\s+(?:to\s+)?(?:bigger|larger|smaller|heavier|lighter|longer|shorter)\b)"
)
ORDINAL_WORDS = r"(?:first|second|third|fourth|fifth)(?:ly)?"
ORDINALS = r"(?:second|third|fourth|fifth)(?:ly)?(?=\s*[,:])"
# a sentence can also start a task with a head noun ("Antonym of hot?"), a preposition and a
# question word ("On which continent is Fiji?") or the labels to choose from ("Spam or ham: ...")
HEAD_NOUNS = (
    r"(?:antonym|opposite|synonym|plural|singular|capital|sum|difference|product|spelling|translation|"
    r"negation|sentiment|language|continent|region|colou?r|category|type|meaning|definition)\s+(?:of|for)"
)
# "I want its opposite", "I'd like the plural of ...": a request for a named answer
WANT = r"(?:i\s+(?:want|need|would\s+like)|i'd\s+like)\s+(?:its\s+[^\W\d_]+|(?:the\s+)?" + HEAD_NOUNS + ")"
TASK_START = rf"(?:{CHAT_QUESTION}|{WANT}|(?:the\s+)?{HEAD_NOUNS}|(?:on|in|at|from|to|for|by|of|with)\s+(?:which|what|whose|how)|\w+\s+or\s+\w+\s*[:?])"
TASKWORDS = rf"(?:{ORDINAL_ITEM}|{OPENERS}|please|{ORDINAL_WORDS}|step\s*\d|\d[.)]|here|take|consider|look|given|{CONN_WORDS}|{VERB_ALT})\b"
TASKLIKE = rf"(?:{TASK_START}|{TASKWORDS})"

NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
ROMAN = ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x")
_LABEL = r"\d{1,2}|[ivx]{1,4}|[a-z]|" + "|".join(NUMBER_WORDS)
# a list marker (`clauses` says how lists are read): "1." "2)" "(3)" "4 -" "5:" "a." "B)" "(c)" "ii)" "Step one:"
LIST_MARK = re.compile(
    rf"(?:^|(?<=\s))(?:(?P<word>(?:step|task|part|question)\s+|q(?=\d)|\#)(?P<wlabel>{_LABEL})\s*(?P<wpunct>[:.)]|[-–](?=\s))?"
    rf"|\((?P<plabel>{_LABEL})\)|(?P<label>{_LABEL})(?P<punct>[.):]|\s+[-–](?=\s)))(?=\s|$)",
    re.I,
)


def ends_in_list_mark(text: str) -> bool:
    """True when the colon after `text` ends a list marker ("Step one", "Q1", "2")."""
    return any(m.end() == len(text) + 1 for m in LIST_MARK.finditer(text + ":"))


# the characters a bulleted line starts with (hyphen, asterisk, and the typographic dashes and dots)
BULLETS = r"[-*•–—·▪◦‣⁃]"

# wrappers in front of a clause ("Please", "First,", "Can you tell me:")
LEAD = re.compile(
    rf"^(?:(?:{ORDINAL_ITEM}|{OPENERS}|subsequently|additionally|in\s+addition|furthermore|please|plz|pls|{ORDINAL_WORDS}|then|next|also|finally|lastly|last|and|oh|btw|by\s+the\s+way|"
    r"after\s+that|afterwards|step\s*\d+\s*[:.)]|\d+[.)]|" + BULLETS + r"|(?:could|can)\s+u\b|could\s+you|can\s+you(?:\s+tell\s+me)?\s*:?|would\s+(?:you|u)\s+mind\b|"
    r"quick\s+question\s*:|i\s+need\s+this\s*:|do\s+(?:two|three|four|the\s+following)\s+things?\s*:|"
    r"(?:two|three)\s+tasks\s*:|do\s+the\s+following\s*:)[\s,:]*)+",
    re.I,
)
# a clause that only announces the steps ("Do two things:")
PREFACE = re.compile(
    r"^(?:i\s+(?:need|have)\s+(?:two|three|\d)\s+\w+|do\s+(?:two|three)\s+things|(?:two|three)\s+tasks|do\s+the\s+following|"
    r"can\s+you\s+tell\s+me|quick\s+question|i\s+need\s+this|"
    # a bare count of what follows ("Two things.", "A couple of questions:")
    r"(?:a\s+)?(?:two|three|four|five|\d|few|couple(?:\s+of)?)\s+(?:quick\s+)?(?:things|questions|tasks|ones|requests))\W*$",
    re.I,
)


def unmask(text: str, spans: list[str]) -> str:
    return MASK.sub(lambda m: spans[int(m.group(1))].lstrip("\x01"), text)


def dequote(span: str) -> str:
    s = span.strip()
    if len(s) >= 2 and s[0] in "\"'“‘" and s[-1] in "\"'”’":
        return s[1:-1]
    return s
