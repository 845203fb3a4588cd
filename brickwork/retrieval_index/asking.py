"""What a request asks, with the input it carries taken out: the *ask view*.

A brick that must be asked for (manifest ``bare_inputs: false``, search.py) is chosen only when the
request asks for its task: the request's semantic cosine to the brick's description reaches
`FeatureConfig.ask_min_cos`. The input a request carries pulls that cosine down ("What kind of
answer does this question want? Why are electric cars less efficient in the northeast ?" reads
mostly like the question), so the test is also made on the request with its input taken out ("What
kind of answer does this question want?"), and the better of the two counts. A bare input has no
instruction to take the input out of: its view is itself, and it stays below the bar.

The input is found by its form, not by task: quoted spans, the text after a short lead ending in a
colon, numbers, dates and number tuples such as ``rgb(12, 200, 40)``, and, after a first sentence
that is a question or an order, the sentences that follow it.
"""

from __future__ import annotations

import re

#: a quoted span (straight or curly quotes) of at least two characters
_QUOTED = re.compile(r"'[^']{2,}'|\"[^\"]{2,}\"|“[^”]+”|‘[^’]{2,}’|«[^»]+»")
_TUPLE = re.compile(r"(?:rgba?\s*)?\(\s*\d+(?:\s*,\s*\d+){2,3}\s*\)|\brgb\s*\d+(?:\s*,\s*\d+){2}", re.I)
_DATE = re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b")
_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)*\b")
#: "<lead>: <input>" where the lead is an instruction of at most this many words
_LEAD_WORDS = 16
_LEAD = re.compile(r"^([^:\n]{3,160}?):\s*(\S.*)$", re.S)
#: a first sentence ending in "?" (or "." / "!") with more text after it
_FIRST = re.compile(r"^(.{8,160}?[?.!])\s+(\S.{2,})$", re.S)
_TOKEN = "X"


def ask_view(text: str) -> str | None:
    """`text` with the input it carries taken out, or None when nothing was taken out (a bare
    input, or a request with no recognisable input)."""
    t = text.strip()
    lead = _LEAD.match(t)
    if lead and len(lead.group(1).split()) <= _LEAD_WORDS:
        t = lead.group(1).strip()
    else:
        first = _FIRST.match(t)
        if first and _has_words(first.group(1)) >= 3:
            t = first.group(1).strip()
    for pat in (_QUOTED, _TUPLE, _DATE, _NUMBER):
        t = pat.sub(f" {_TOKEN} ", t)
    t = re.sub(r"\s+", " ", t).strip()
    if t == re.sub(r"\s+", " ", text.strip()) or _has_words(t) < 2:
        return None
    return t


def _has_words(t: str) -> int:
    return sum(1 for w in re.findall(r"[^\W\d_]+", t) if w != _TOKEN)
