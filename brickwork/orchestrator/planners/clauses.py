"""Clause splitting for the rules splitter: mask the inputs, then cut the request into clauses.

`mask` hides what must never be split (quoted text, ``rgb(...)``, ``!MM!DD!YYYY!`` formats and
the text after a colon, up to where a new task or list item starts); `split` cuts the masked
request into clauses:

1. lists give one clause per item. A list marker is a label (a number, a letter, a roman numeral,
   or after "step"/"task"/"part" also a number word) in one style (``1.``, ``1)``, ``(1)``,
   ``1 -``, ``1:``, ``a.``, ``A)``, ``(a)``, ``i)``, ``(ii)``, ``Step one:``, ``Part 2 -``); a list
   is a run of markers of one style whose labels count 1, 2, 3..., inline or on lines; bullets
   (``-``, ``*`` and the typographic dashes and dots ``•``, ``–``, ``—``, ``·``) are lines; lines
   without markers are a list when every one starts like a task ("capital of Chile" / "plural of
   'ox'" / "45 minus 12"). The marker is dropped from its item; the text before the first
   item is dropped unless it names an input, also when the first item shares a line with it;
2. otherwise sentences, then connectors inside a sentence (``then``, ``after that``, ``next``,
   ``also``, ``last,``, ``subsequently``, ``additionally``, ``;``, and ``, and`` / ``and`` / ``,``
   when a task verb or question word follows), then items parted by commas or a spaced slash when
   every item is a task ("plural of 'city', antonym of 'wide', 12 plus 9", "negate: 'x' / sort:
   'y'"). Openers ("To begin,", "First of all,") and ordinal subjects ("The first is ... The
   second is ...") lead a clause and are dropped from it. A sentence boundary counts only where the next sentence starts like a task: a verb, a
   question word, a preposition and a question word ("On which continent ..."), a head noun
   ("Antonym of ..."), or labels to choose from ("Spam or ham: ..."); other sentences stay with
   the one before (they are its input);
3. "Compare A and B and name the larger one" stays one clause, and so does a question about "this
   question" with the question after it.

A question joined by ", and" that says "its"/"it" ("What is the capital of Peru, and what is its
region?"), a task joined by "and also" that says "its"/"it" ("the plural of 'child' and also its
antonym") and a bare "and its Y" start with ``\\x03``: they ask about the same input as the
clause before ("and also" adds a task to the same sentence; "then" orders tasks, and its "it" is
the answer before).
"""

from __future__ import annotations

import re

from brickwork.orchestrator.planners.lexicon import (
    BANG, BULLETS, CHAT_QUESTION, CONN_WORDS, HEAD_NOUNS, IMPERATIVE_ALT, LEAD, LIST_MARK, NUMBER_WORDS, NUMBERISH, ORDINALS, PREFACE, QUOTED, RGB,
    ORDINAL_WORDS, ROMAN, TASKLIKE, TASKWORDS, VERB_ALT, ends_in_list_mark,
)

SAME_INPUT_MARK = "\x03"
_LINE_MARK = re.compile(rf"\s*(?:{LIST_MARK.pattern})\s*", re.I)
_BULLET = re.compile(rf"^\s*{BULLETS}\s+")
_AMPERSAND = re.compile(r"\s+&\s+")  # "spell it & give its plural": inputs are masked, so this is "and"
_GLUED_MARK = re.compile(r"(?m)^(\s*\d{1,2}[.)])(?=[^\W\d_])")  # "1.what's" on a line of its own
_SENT = re.compile(
    rf"(?:(?<=[.?!])|(?<=\x02)(?=\s+(?-i:[A-Z]))|(?<=[\x00\x02])(?=\s+(?:can|could|would)\s+you\b))\s+"
    # a sentence may start with "And" ("And the plural of 'box'."), and "and ...?" after a
    # question is a question of its own ("What is 34 plus 12? And 50 minus 7?")
    rf"(?=(?:and\s+)?{TASKLIKE})|(?<=\?)\s+(?=and\s+[^.!?\x00]*\?)", re.I
)
_CONNECT = re.compile(
    r"\s*;\s*(?:and\s+)?(?:then\s+)?"
    rf"|,?\s+(?:and\s+)?(?:{CONN_WORDS})\s*,?\s+"
    r"|\s*(?:->|→|=>)\s*"  # "plural of 'mouse' -> spell it": an arrow is "then"
    rf"|,\s+(?:and\s+)?{ORDINAL_WORDS}\s*[,:]?\s+"  # "firstly X, secondly Y"
    rf"|,?\s+(?:as\s+well\s+as|plus)\s+(?=(?:the\s+)?{HEAD_NOUNS}\b)"  # "the plural of X as well as the antonym of Y"
    rf"|,?\s+and\s+(?=\x03|(?:{VERB_ALT})\b|{CHAT_QUESTION})|,\s+and\s+(?=(?:the\s+)?{HEAD_NOUNS}\b)|\s+and\s+(?=the\s+{HEAD_NOUNS}\b)"
    r"|,?\s+and\s+(?=i\s+(?:need|want|would\s+like|'d\s+like)\b)"
    rf"|,\s+(?=(?:{IMPERATIVE_ALT})\b)",
    re.I,
)
_SAME_INPUT = re.compile(
    r"(,?\s+and\s+)(?=(?:what|which|where|how|is|does|do)\b[^.!?\x00]*\b(?:its|it)\b[^.!?\x00]*\?\W*$)", re.I
)
# "... of 'child' and also its antonym": "and also" inside a sentence adds a task on the same
# input ("then" orders tasks; a new sentence "Also, spell it." is left to `followups`)
_ALSO_SAME_INPUT = re.compile(r"(,?\s+and\s+also\s*,?\s+)(?=[^.!?\x00]*\bits?\b)", re.I)
# "... of 'child' and its antonym": a bare "its Y" joined by "and" shares the verb and the input
_AND_ITS = re.compile(r"(,?\s+and\s+)(?=its\s+[^\W\d_]+\W*$)", re.I)
_COLON_TASK = re.compile(rf":\s+(?=(?:{VERB_ALT})\b)", re.I)
_PAYLOAD_END = re.compile(
    rf";\s+(?=(?:and\s+)?(?:then\s+)?{TASKLIKE})|,\s+and\s+(?=(?:what|which|who|where|when|how)\b[^.!]*\?\W*$)|(?:[.?!;,]\s*|\s+)(?=(?:and\s+)?(?:{CONN_WORDS}|{ORDINALS})\b)|(?<=[.?!])\s+(?=(?:please|step\s*\d|\d[.)]|{VERB_ALT})\b)",
    re.I,
)
_TRAIL = re.compile(r"(?:[\s,]*\bplease\b)?[\s,;.\-–—]*$", re.I)
INTRO = re.compile(
    # "take" introduces an input ("Take the word 'mouse'.") unless it is the task ("Take 8 away from 47")
    r"^(?:here\s+is|here's|there\s+is|there's|think\s+of|take(?!.*\b(?:away|from|off)\b)(?=\s+(?:the|this|these|a|an)\b|\s*\x00)|consider|look\s+at|i\s+have|given|think\s+about)\b",
    re.I,
)
# "this question" names text that follows it: after a colon, or as the next sentence
_THIS_OBJECT = re.compile(r"\bthis\s+(?:question|text|sentence|message|sms|review|tweet)\s*$", re.I)
_COMPARE = re.compile(r"compare\b(?![^\x00]*[?.]$)", re.I)
_PICK_ONE = re.compile(r"^(?:and\s+)?(?:name|say|give|pick|choose|tell\s+me|identify|which\s+is)\b.*\b(?:one|bigger|larger|smaller|heavier)\b", re.I)
_SUM = re.compile(r"-?\d+(?:\.\d+)?\s+(?:plus|minus|times|divided\s+by|[-+x*/])\s+-?\d", re.I)
# "capital: France", "negate: 'x'": a task word, a colon and its input
_LABEL_ITEM = re.compile(r"[^\W\d_]+\s*:\s*(?:\x00|\S)", re.I)
# a list item: a head noun with its input, a sum, a label and its input
_TASK_ITEM = re.compile(rf"(?:the\s+)?{HEAD_NOUNS}\s+\S|-?\d+(?:\.\d+)?\s+(?:plus|minus|times|divided\s+by)\s+-?\d|[^\W\d_]+\s*:\s*\S", re.I)
_SLASH = re.compile(r"\s+/\s+")
_COMMA = re.compile(r"\s*,\s+")
_THIS_QUESTION = re.compile(r"\bthis\s+question\b[^\x00]*\?$", re.I)


def mask(text: str) -> tuple[str, list[str]]:
    """`text` with its inputs replaced by ``\\x00N\\x00``, and the spans they stand for."""
    spans: list[str] = []

    def keep(m: re.Match) -> str:
        spans.append(m.group(0))
        return f"\x00{len(spans) - 1}\x00"

    # a quote that ends a sentence ("Here is a sentence: 'It rains.' Negate it") is marked \x02
    text = QUOTED.sub(lambda m: keep(m) + ("\x02" if m.group(0)[-2:-1] in ".?!" else ""), text.strip())
    text = RGB.sub(keep, text)
    text = BANG.sub(lambda m: (spans.append("\x01" + m.group(0)), f"\x00{len(spans) - 1}\x00")[1], text)
    # the text after a colon is one input ("Classify this SMS: ..."), up to where a new task or
    # list item starts
    marks = [m.start() for m in _list_marks(text)]
    out, pos = [], 0
    for m in re.finditer(r":[ \t]+", text):
        if m.start() < pos:
            continue
        after = text[m.end() :]
        line_end = after.find("\n")
        after = after if line_end < 0 else after[:line_end]
        before = text[pos : m.start()].rsplit("\n", 1)[-1]
        before = re.split(r"[.?!;]\s+", before)[-1]
        tasklike = re.match(TASKWORDS, after, re.I) and not _THIS_OBJECT.search(before)
        if (len(after.split()) < 2 or tasklike or LEAD.match(after) or PREFACE.match(before.strip() + ":")
                or LEAD.fullmatch(before.strip() + ": ") or ends_in_list_mark(before.strip())):
            continue
        end = _PAYLOAD_END.search(after)
        cut = min([end.start() if end else len(after)] + [k - m.end() for k in marks if k > m.end()])
        payload = after[:cut].rstrip()
        if cut < len(after) and payload[-1:] in (".", "?", "!"):
            payload = payload[:-1]  # the sentence's end stays outside, so sentences still split
        if not payload or "\x00" in payload:
            continue
        out.append(text[pos : m.end()])
        spans.append(payload)
        out.append(f"\x00{len(spans) - 1}\x00")
        pos = m.end() + len(payload)
    text = "".join(out) + text[pos:]
    return text, spans


def clauses(masked: str) -> list[str]:
    """The masked request's clauses, wrappers stripped (see the module docstring)."""
    return [strip_clause(c.replace("\x02", "")) for c in _split(masked)]


def strip_clause(clause: str) -> str:
    c = LEAD.sub("", clause.strip())
    if c.startswith(SAME_INPUT_MARK):
        return SAME_INPUT_MARK + strip_clause(c[1:])
    c = _TRAIL.sub("", c) if not c.endswith("?") else c
    return c.strip()


def _list_marks(text: str) -> list[re.Match]:
    """The markers of a list ("1. .. 2. ..", "(a) .. (b) ..", "Step one: .. Step two: .."): the
    longest run of one style whose labels count 1, 2, 3...; none if fewer than two items."""
    marks = [(m, _style(m), _values(m)) for m in LIST_MARK.finditer(text)]
    best: list[re.Match] = []
    for style, kind in {(st, k) for _, st, vals in marks for k in vals}:
        run: list[re.Match] = []
        for m, st, vals in marks:
            if st == style and vals.get(kind) == len(run) + 1:
                run.append(m)
        if len(run) > len(best):
            best = run
    return best if len(best) >= 2 else []


def _style(m: re.Match) -> str:
    if m.group("word"):
        return f"{m.group('word').lower()} {m.group('wpunct') or ''}".strip()
    if m.group("plabel"):
        return "()"
    return m.group("punct").strip()


def _values(m: re.Match) -> dict[str, int]:
    """What a label counts as, by kind: "i" is the letter 9 and the roman 1; "one" only counts
    after "step"."""
    label = (m.group("wlabel") or m.group("plabel") or m.group("label")).lower()
    out: dict[str, int] = {}
    if label.isdigit():
        out["number"] = int(label)
    elif label in NUMBER_WORDS:
        if m.group("word"):
            out["number"] = NUMBER_WORDS.index(label) + 1
    else:
        if len(label) == 1:
            out["letter"] = ord(label) - ord("a") + 1
        if label in ROMAN:
            out["roman"] = ROMAN.index(label) + 1
    return out


def _list_items(text: str) -> list[str] | None:
    """One clause per list item; the text before the first item is kept only if it names an input
    ("The word 'mouse': (a) spell it (b) ..."), else it is a preamble ("Answer these:")."""
    marks = _list_marks(text)
    if not marks:
        return None
    bounds = [m.start() for m in marks] + [len(text)]
    items = [text[m.end() : bounds[i + 1]] for i, m in enumerate(marks)]
    pre = text[: marks[0].start()].strip()
    return ([pre] if _names_input(pre) else []) + [it for it in items if it.strip()]


def _line_marker(line: str) -> re.Match | None:
    """The bullet or list marker a line starts with (with the space after it), if any."""
    if m := _BULLET.match(line):
        return m
    m = _LINE_MARK.match(line)
    return m if m and _values(m) else None


def _names_input(text: str) -> bool:
    """Text before a list is kept only when it names an input ("The word 'mouse': (a) ...")."""
    return bool(text.strip()) and ("\x00" in text or bool(NUMBERISH.search(text)))


def _split(masked: str) -> list[str]:
    masked = _AMPERSAND.sub(" and ", _GLUED_MARK.sub(r"\1 ", masked))
    lines = _split_first_item([ln for ln in masked.splitlines() if ln.strip()])
    starts = [_line_marker(ln) for ln in lines]
    if sum(m is not None for m in starts) >= 2:
        first = next(i for i, m in enumerate(starts) if m is not None)
        return [pre for pre in lines[:first] if _names_input(pre)] + [
            ln[m.end() :] if m else ln for ln, m in zip(lines[first:], starts[first:], strict=True)
        ]
    items = _list_items(" ".join(lines))
    if items is not None:
        return items
    if (steps := _task_lines(lines)) is not None:
        return steps
    text = " ".join(lines)
    out: list[str] = []
    for sent in _SENT.split(text):
        for same in (_SAME_INPUT, _ALSO_SAME_INPUT, _AND_ITS):
            sent = same.sub(lambda m: m.group(1) + SAME_INPUT_MARK, sent)
        for part in (p for c in _CONNECT.split(sent) for p in _parallel_items(c)):
            if not part or not part.strip():
                continue
            # "Given the word 'x': spell it" -> intro + task; "Solve: What is 2 plus 2?" stays whole
            m = _COLON_TASK.search(part)
            if m and (INTRO.match(part) or PREFACE.match(part[: m.start()].strip() + ":")):
                out.extend([part[: m.start()], part[m.end() :]])
            else:
                out.append(part)
    return _join_comparison(_join_cataphora(out))


def _starts_task(text: str) -> bool:
    """A line or list item that starts like a task: a verb, a question word, a head noun ("plural
    of ..."), a sum ("45 minus 12") or a label and its input ("capital: France")."""
    c = LEAD.sub("", text.strip())
    return bool(re.match(TASKLIKE, c, re.I) or _SUM.match(c) or _LABEL_ITEM.match(c))


def _task_lines(lines: list[str]) -> list[str] | None:
    """Lines without markers, each a task ("capital of Chile" / "plural of 'ox'" / "45 minus 12"),
    are a list: one clause per line. Lines before the first that name no input (a preamble such
    as "For my notes:") are dropped; a line that does not start like a task means prose."""
    first = next((i for i, ln in enumerate(lines) if _starts_task(ln)), None)
    if first is None or len(lines) - first < 2 or not all(_starts_task(ln) for ln in lines[first:]):
        return None
    if any(ln.rstrip()[-1:] not in ":" and not _names_input(ln) for ln in lines[:first]):
        return None
    return [ln for ln in lines[:first] if _names_input(ln)] + lines[first:]


def _parallel_items(part: str) -> list[str]:
    """ "plural of 'city', antonym of 'wide', 12 plus 9" and "negate: 'x' / sort: 'y'": a clause of
    items parted by commas or by a spaced slash, every item a task of its own, is one clause per
    item. One item that is not a task ("Which is smaller, a hamster or a rabbit?", "antonym of
    'old', 6 letters") keeps the clause whole."""
    for sep in (_SLASH, _COMMA):
        items = sep.split(part)
        if len(items) >= 2 and all(it.strip() and _is_item(it) for it in items):
            return items
    return [part]


def _is_item(text: str) -> bool:
    """An item of a comma or slash list. Verbs and question words are left out: "Which is smaller,
    a hamster or a rabbit" is one question, and imperatives after a comma are `_CONNECT`'s."""
    c = LEAD.sub("", text.strip())
    return bool(_TASK_ITEM.match(c))


def _join_comparison(parts: list[str]) -> list[str]:
    """ "Compare the lion and the cat and name the larger one" is one task, not two."""
    out: list[str] = []
    for c in parts:
        if out and _COMPARE.match(strip_clause(out[-1])) and _PICK_ONE.match(c.strip()):
            out[-1] = f"{out[-1].rstrip()} and {c.strip()}"
        else:
            out.append(c)
    return out


def _join_cataphora(parts: list[str]) -> list[str]:
    """ "Is this question about a person or a place? Who wrote Hamlet?" is one step: the sentence
    after a question about "this question" is its input, unless a connector starts a new task."""
    out: list[str] = []
    for c in parts:
        prev = out[-1].strip() if out else ""
        if prev and _THIS_QUESTION.search(prev) and "\x00" not in prev and not LEAD.match(c.strip()) and re.search(r"\?\W*$", c):
            out[-1] = f"{prev} {c.strip()}"
        else:
            out.append(c)
    return out


def _split_first_item(lines: list[str]) -> list[str]:
    """ "The word: 'x'. 1. Spell it" + "2. Reverse it": the list's first item starts mid-line."""
    starts = {ln.lstrip()[:2] for ln in lines[1:]}
    bullets = {b + " " for b in "-*•–—·▪◦‣⁃"}
    for marker, next_items in ((r"1[.)]", {"2.", "2)"}), (BULLETS, bullets)):
        if not starts & next_items:
            continue
        for i, ln in enumerate(lines):
            m = re.search(rf"(?<=[.:?!])\s+(?={marker}\s)", ln)
            if m and _line_marker(ln) is None:
                return lines[:i] + [ln[: m.start()], ln[m.end() :]] + lines[i + 1 :]
    return lines
