"""Request form: the length and line count a brick's requests have, and a penalty outside them.

Similarity says what a request is *about*; it does not say whether the request has the *shape*
of anything a brick serves. A 3,000-character story request in six paragraphs reads, to an
embedding, like a long review (`sentiment_binary`'s input) or a hotel review in Russian
(`language_id`'s), yet no request for either brick is that long or spread over paragraphs. Each
brick's acceptance region on form is taken from its own manifest (description, examples,
description+example texts, routing samples: every text the index and classifier learn from), so
it holds for any library, not only the starter one:

- ``max_chars``: the longest of those texts (a request is an instruction plus an input, and
  the description+example texts are exactly that);
- ``max_lines``: the most non-empty lines any of them has.

A request's penalty for a brick is

    form_weight * ( ln(chars / (form_slack * max_chars))^+  +  LINE_COST * (lines - max_lines - 1)^+ )

(``x^+ = max(0, x)``): nothing inside the region (``form_slack`` times the longest text, one
line more than the most lines: an instruction on its own line), growing with the log of the
excess length and with each extra line. Like the nearest-none-text penalty it only lowers
scores, so the router's one calibrated threshold decides; the trace shows it as its own number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

#: an extra line beyond the region costs what a request e^0.25 (1.28) times too long costs
LINE_COST = 0.25


def text_form(texts: Sequence[str]) -> np.ndarray:
    """(texts, 2) float32: characters (stripped) and non-empty lines of each text."""
    out = np.zeros((len(texts), 2), dtype=np.float32)
    for i, t in enumerate(texts):
        t = t.strip()
        out[i, 0] = len(t)
        out[i, 1] = sum(1 for line in t.split("\n") if line.strip())
    return out


def brick_limits(texts: Iterable[str]) -> list[int]:
    """[max_chars, max_lines] of one brick's texts (its acceptance region on form)."""
    f = text_form(list(texts))
    if not len(f):
        return [1, 1]
    return [max(1, int(f[:, 0].max())), max(1, int(f[:, 1].max()))]


def limits_by_owner(texts: Sequence[str], owner: Sequence[int], bricks: int) -> np.ndarray:
    """(bricks, 2) `brick_limits` of each brick's texts, given each text's owning brick index."""
    by: dict[int, list[str]] = {}
    for t, o in zip(texts, owner, strict=True):
        by.setdefault(int(o), []).append(t)
    return np.asarray([brick_limits(by.get(b, [])) for b in range(bricks)], np.float32)


def form_penalty(qform: np.ndarray, limits: np.ndarray, weight: float, slack: float) -> np.ndarray:
    """(queries, bricks) what each brick's score loses for the request's form (module docstring)."""
    qform = np.asarray(qform, dtype=np.float32)
    limits = np.asarray(limits, dtype=np.float32)
    if weight == 0 or not len(limits) or not len(qform):
        return np.zeros((len(qform), len(limits)), dtype=np.float32)
    chars = np.maximum(qform[:, :1], 1.0)
    over = np.maximum(0.0, np.log(chars / (slack * limits[None, :, 0])))
    lines = np.maximum(0.0, qform[:, 1:2] - limits[None, :, 1] - 1.0) * LINE_COST
    return (weight * (over + lines)).astype(np.float32)


def describe(chars: float, lines: float, limit: Sequence[float], slack: float) -> str:
    """One line for the trace: the request's form against a brick's region."""
    return f"{int(chars)} chars / {int(lines)} lines vs brick's <= {int(math.ceil(slack * limit[0]))} chars / {int(limit[1]) + 1} lines"
