"""The deterministic rule-based splitter: the fallback planner, and the baseline the brick must beat.

How it splits (quoted text, ``rgb(...)`` values and text after a colon are never split):

0. chat around the request is dropped (`strip_chat`): a greeting or thanks before it ("Hey,",
   "Good morning!", "ok so"), a sign-off after it ("Thanks!", "Cheers!", "lol"), and a preamble
   that says what it is for, with no task word before its colon ("quick ones for my notes: ...");
1. numbered or bulleted lists (``1. ...``, ``- ...``, ``1) ... 2) ...``, ``Step 1: ...``) give one
   step per item, also when the first item shares a line with an intro; so do inline or
   multi-line lists marked ``1. 2.``, ``(1) (2)``, ``(a) (b)``, ``a) b)`` (the markers must run in
   order; the text before the first item is dropped unless it names an input);
2. otherwise sentences, then connectors inside a sentence (``then``, ``after that``, ``next``,
   ``also``, ``last,``, ``;``, and ``, and`` / ``and`` / ``,`` when a task verb or question word
   follows). A sentence starts a new step only where it starts like a task: a verb, a question
   word, a preposition and a question word ("On which continent ..."), a head noun ("Antonym of
   ..."), or labels to choose from ("Spam or ham: ...");
3. wrappers ("Please", "Can you tell me:", "First,") are stripped; a clause that only introduces
   an input ("Here is the word 'mouse'.", "The number: 742.") is not a step, its input is what a
   later "it" means; "Compare A and B and name the larger one" stays one step; a question about
   "this question" takes the question after it as its input; a clause that tells where an input
   came from and asks nothing ("My friend texted me this: '...'", "Think of the country Chile",
   "It is 'harbour'") introduces the input a following "it" means;
4. a clause with no input of its own that says "it", "the result", "that word", "the negated
   sentence", "the larger one", or names the thing the step before asked for ("What colour is
   ...? Spell the colour.") depends on the step before it (the reference becomes ``{sN}``), or on
   the introduced input if there is no step before it; but a question joined by ", and" that says
   "its"/"it" ("What is the capital of Peru, and what is its region?") asks about the same input
   as the step before (the step's input, else the last capitalised name in it), not its answer;
5. a step's input is its quoted text, else the text after a colon, else an rgb value, date or
   number, else none.

A plain single-task instruction yields one step. When nothing is left, the whole instruction is
one step.
"""

from __future__ import annotations

import re

from brickwork.orchestrator.planners.base import single_step_plan
from brickwork.orchestrator.types import Plan, Step, step_id

VERBS = (
    "give write spell name tell say find translate make put turn convert classify identify detect decide "
    "determine sort alphabetize alphabetise arrange list negate rewrite reformat change pluralize pluralise add "
    "subtract compute calculate count reverse define use describe explain summarize summarise answer label rate "
    "pick compare output provide state express format separate split break check multiply triple solve work "
    "take sum capitalize reply respond suggest create generate shorten rephrase categorize categorise locate show "
    "what which who whom whose where when why how is are does do was were can could"
).split()
_VERB_ALT = "|".join(VERBS)
_IMPERATIVE_ALT = "|".join(v for v in VERBS if v not in {"what", "which", "who", "whom", "whose", "where", "when", "why", "how", "is", "are", "does", "do", "was", "were", "can", "could"})
_MASK = re.compile(r"\x00(\d+)\x00")
_BANG = re.compile(r"!\w+(?:!\w+)*!")  # "!MM!DD!YYYY!" is a format, not three sentences
_QUOTED = re.compile(r"\"[^\"\n]+\"|“[^”\n]+”|‘[^’\n]+’|(?<![\w])'[^'\n]+?'(?![\w])")
_RGB = re.compile(r"rgb\([^)]*\)", re.I)
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•]|step\s*\d+\s*[:.)])\s+", re.I)
_INLINE_LIST = re.compile(r"(?:^|\s)(?:\d\)|step\s*\d+\s*:)\s+", re.I)
# an inline list item marker: "1." "2)" "(3)" "(a)" "b)" "(C)"; items must run 1, 2, 3 or a, b, c
_MARK = re.compile(r"(?:^|(?<=\s))(?:\((?P<p>[a-zA-Z]|\d{1,2})\)|(?P<l>[a-zA-Z])\)|(?P<n>\d{1,2})[.)])(?=\s)")
_CONN_WORDS = r"then|after\s+that|afterwards|next|also|finally|lastly|last(?=\s*,)"
_ORDINALS = r"(?:second|third|fourth|fifth)(?:ly)?(?=\s*,)"
# a sentence can also start a task with a head noun ("Antonym of hot?"), a preposition and a
# question word ("On which continent is Fiji?") or the labels to choose from ("Spam or ham: ...")
_HEAD_NOUNS = (
    r"(?:antonym|opposite|synonym|plural|singular|capital|sum|difference|product|spelling|translation|"
    r"negation|sentiment|language|continent|region|colou?r|category|type|meaning|definition)\s+(?:of|for)"
)
_TASK_START = rf"(?:{_HEAD_NOUNS}|(?:on|in|at|from|to|for|by|of|with)\s+(?:which|what|whose|how)|\w+\s+or\s+\w+\s*[:?])"
_TASKWORDS = rf"(?:please|first(?:ly)?|second(?:ly)?|third(?:ly)?|step\s*\d|\d[.)]|here|take|consider|look|given|{_CONN_WORDS}|{_VERB_ALT})\b"
_TASKLIKE = rf"(?:{_TASK_START}|{_TASKWORDS})"
# a sentence boundary only where the next sentence starts like a task (else it is part of an input)
_SENT = re.compile(
    rf"(?:(?<=[.?!])|(?<=\x02)(?=\s+(?-i:[A-Z]))|(?<=[\x00\x02])(?=\s+(?:can|could|would)\s+you\b))\s+(?={_TASKLIKE})", re.I
)
_CONNECT = re.compile(
    r"\s*;\s*(?:and\s+)?(?:then\s+)?"
    rf"|,?\s+(?:and\s+)?(?:{_CONN_WORDS})\s*,?\s+"
    rf"|,?\s+and\s+(?=\x03|(?:{_VERB_ALT})\b)|,\s+and\s+(?=(?:the\s+)?{_HEAD_NOUNS}\b)"
    r"|,?\s+and\s+(?=i\s+(?:need|want|would\s+like|'d\s+like)\b)"
    rf"|,\s+(?=(?:{_IMPERATIVE_ALT})\b)",
    re.I,
)
# "What is the capital of Peru, and what is its region?": a question on the same input, not on the
# answer; the \x03 mark survives the split and tells `_step`
_SAME_INPUT = re.compile(
    r"(,?\s+and\s+)(?=(?:what|which|where|how|is|does|do)\b[^.!?\x00]*\b(?:its|it)\b[^.!?\x00]*\?\W*$)", re.I
)
_COLON_TASK = re.compile(rf":\s+(?=(?:{_VERB_ALT})\b)", re.I)
_PAYLOAD_END = re.compile(
    rf";\s+(?=(?:and\s+)?(?:then\s+)?{_TASKLIKE})|,\s+and\s+(?=(?:what|which|who|where|when|how)\b[^.!]*\?\W*$)|(?:[.?!;,]\s*|\s+)(?=(?:and\s+)?(?:{_CONN_WORDS}|{_ORDINALS})\b)|(?<=[.?!])\s+(?=(?:please|step\s*\d|\d[.)]|{_VERB_ALT})\b)",
    re.I,
)
_LEAD = re.compile(
    r"^(?:(?:please|first(?:ly)?|second(?:ly)?|third(?:ly)?|then|next|also|finally|lastly|last|and|"
    r"after\s+that|afterwards|step\s*\d+\s*[:.)]|\d+[.)]|[-*•]|could\s+you|can\s+you(?:\s+tell\s+me)?\s*:?|"
    r"quick\s+question\s*:|i\s+need\s+this\s*:|do\s+(?:two|three|four|the\s+following)\s+things?\s*:|"
    r"(?:two|three)\s+tasks\s*:|do\s+the\s+following\s*:)[\s,]*)+",
    re.I,
)
# chat around the request: a greeting or thanks before it, a sign-off after it, and a preamble
# that says what the request is for ("Hey, quick ones for my notes: ...")
_GREETING = re.compile(
    r"^(?:(?:hey|hi|hello|hiya|good\s+(?:morning|afternoon|evening)|thanks|thank\s+you|ok(?:ay)?|so|um+|hmm+)"
    r"(?:\s+(?:there|so\s+much|a\s+lot|for\s+earlier|again|so))*\s*(?:[,!.]+\s*|\s+(?=so\b)|\s+(?=my\b)))+",
    re.I,
)
_SIGN_OFF = re.compile(r"(?:[\s,.!?]+(?:thanks(?:\s+(?:a\s+lot|so\s+much|in\s+advance))?|thank\s+you|cheers|thx|ty|lol|haha|xx?)[\s.!]*)+$", re.I)
_CHAT_PREAMBLE = re.compile(
    r"^(?P<pre>[^:\x00\d?]{0,60}\b(?:notes|flashcards?|quiz|homework|favou?r|questions?|ones?|things?|tasks?|couple|few)\b[^:\x00\d?]{0,30}):\s+",
    re.I,
)
_TRAIL = re.compile(r"(?:[\s,]*\bplease\b)?[\s,;.]*$", re.I)
_PREFACE = re.compile(
    r"^(?:i\s+(?:need|have)\s+(?:two|three|\d)\s+\w+|do\s+(?:two|three)\s+things|(?:two|three)\s+tasks|do\s+the\s+following|"
    r"can\s+you\s+tell\s+me|quick\s+question|i\s+need\s+this)\W*$",
    re.I,
)
# "take" introduces an input ("Take the word 'mouse'.") unless it is the task ("Take 8 away from 47")
_INTRO = re.compile(
    r"^(?:here\s+is|here's|there\s+is|there's|think\s+of|take(?!.*\b(?:away|from|off)\b)(?=\s+(?:the|this|these|a|an)\b|\s*\x00)|consider|look\s+at|i\s+have|given|think\s+about)\b",
    re.I,
)
_INTRO_NOUN = re.compile(r"^(?:here\s+is|here's|there\s+is|there's|think\s+of|take|consider|look\s+at|i\s+have|given|think\s+about)?\s*(?:the|this|these|a|an)\s+\w+\s*:?\s*(.+?)[.:]?$", re.I)
_ANAPHOR = re.compile(
    r"\b(?:the\s+(?:larg|bigg|small|heavi|light|tall|short|fast|slow|old|young|long|strong|high|low)(?:er|est)\s+one|the\s+(?:result|answer|output|sum|difference)|th(?:at|is|ose)\s+(?:word|words|number|sentence|country|date|"
    r"message|question|colour|color|result|answer|text|city|animal|region|language|capital|name)|it|its|them|that(?=\s*(?:$|[.?!,;]|\s+(?:into|in|to|as|out|letter|backwards|for|with|please|and|then)\b)))\b",
    re.I,
)
# "this question" names text that follows it: after a colon, or as the next sentence
_THIS_OBJECT = re.compile(r"\bthis\s+(?:question|text|sentence|message|sms|review|tweet)\s*$", re.I)
_COMPARE = re.compile(r"compare\b(?![^\x00]*[?.]$)", re.I)
_PICK_ONE = re.compile(r"^(?:and\s+)?(?:name|say|give|pick|choose|tell\s+me|identify|which\s+is)\b.*\b(?:one|bigger|larger|smaller|heavier)\b", re.I)
_THIS_QUESTION = re.compile(r"\bthis\s+question\b[^\x00]*\?$", re.I)
_BACK_NP = re.compile(
    r"\bthe\s+(?:(\w+ed)\s+(?:word|words|number|sentence|text|list|date)|(\w{4,})(?:\s+name)?)"
    r"(?=\s*$|\s*[.?!,;]|\s+(?:out|letter|backwards|one|into|as|with|using|in\s+(?:words|capital|reverse|roman|german|french|spanish)))",
    re.I,
)
_NUMBERISH = re.compile(r"\d{4}-\d{2}-\d{2}|-?\d+(?:\.\d+)?")
_NAMED = re.compile(r"\bthe\s+(?:word|noun|adjective|number|country|date|value)\s+([^\s\x00,.;?!]+)", re.I)
_QUESTION_PAYLOAD = re.compile(r"^(.*\?)\s+(\S.*)$")


class RulesPlanner:
    """Deterministic splitter; see the module docstring for the rules."""

    name = "rules"

    def plan_batch(self, instructions: list[str]) -> list[Plan]:
        return [self.plan(i) for i in instructions]

    def plan(self, instruction: str) -> Plan:
        masked, spans = _mask(strip_chat(instruction))
        clauses = [_strip(c) for c in _clauses(masked)]
        steps: list[Step] = []
        intro_input: str | None = None
        for i, c in enumerate(clauses):
            if not c or _PREFACE.match(_unmask(c, spans)):
                continue
            if _INTRO.match(c) or _is_intro_only(c) or _introduces(c, clauses[i + 1] if i + 1 < len(clauses) else "", spans):
                intro_input = _input_of(c, spans) or _intro_noun(_unmask(c, spans)) or intro_input
                continue
            steps.append(_step(len(steps), c, spans, intro_input, steps))
        if not steps:
            return single_step_plan(instruction, self.name)
        return Plan(steps=tuple(steps), planner=self.name)


def strip_chat(instruction: str) -> str:
    """The request without the chat around it: "Hey, quick ones for my notes: A, and B. Thanks!"
    -> "A, and B". A preamble is dropped only where no task word comes before its colon."""
    text = instruction.strip()
    masked = _QUOTED.sub(lambda m: "\x00" * len(m.group(0)), text)  # positions stay; quotes untouched
    start = m.end() if (m := _GREETING.match(masked)) else 0
    m = _CHAT_PREAMBLE.match(masked[start:])
    if m and not re.search(rf"\b(?:{_IMPERATIVE_ALT})\b|{_TASK_START}", m.group("pre"), re.I):
        start += m.end()
    end = m.start() if (m := _SIGN_OFF.search(masked, start)) else len(text)
    out = text[start:end].strip()
    return out if out else text


def _mask(text: str) -> tuple[str, list[str]]:
    spans: list[str] = []

    def keep(m: re.Match) -> str:
        spans.append(m.group(0))
        return f"\x00{len(spans) - 1}\x00"

    # a quote that ends a sentence ("Here is a sentence: 'It rains.' Negate it") is marked \x02
    text = _QUOTED.sub(lambda m: keep(m) + ("\x02" if m.group(0)[-2:-1] in ".?!" else ""), text.strip())
    text = _RGB.sub(keep, text)
    text = _BANG.sub(lambda m: (spans.append("\x01" + m.group(0)), f"\x00{len(spans) - 1}\x00")[1], text)
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
        tasklike = re.match(_TASKWORDS, after, re.I) and not _THIS_OBJECT.search(before)
        if len(after.split()) < 2 or tasklike or _LEAD.match(after) or _PREFACE.match(before.strip() + ":") or _LEAD.fullmatch(before.strip() + ": "):
            continue
        end = _PAYLOAD_END.search(after)
        cut = min([end.start() if end else len(after)] + [k - m.end() for k in marks if k > m.end()])
        payload = after[:cut]
        payload = payload.rstrip()
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


def _unmask(text: str, spans: list[str]) -> str:
    return _MASK.sub(lambda m: spans[int(m.group(1))].lstrip("\x01"), text)


def _clauses(masked: str) -> list[str]:
    return [c.replace("\x02", "") for c in _split(masked)]


def _list_marks(text: str) -> list[re.Match]:
    """The markers of an inline or multi-line list ("1. .. 2. ..", "(a) .. (b) .."): the longest run
    1, 2, 3... or a, b, c... of one style; none if fewer than two items."""
    best: list[re.Match] = []
    for style, first in (("n", "1"), ("p", "1"), ("p", "a"), ("l", "a")):
        run: list[re.Match] = []
        for m in _MARK.finditer(text):
            v = m.group(style)
            if v is None or (style == "p" and v.isdigit() != first.isdigit()):
                continue
            want = first if not run else _next_mark(run[-1].group(style))
            if v.lower() == want:
                run.append(m)
        if len(run) > len(best):
            best = run
    return best if len(best) >= 2 else []


def _next_mark(v: str) -> str:
    return str(int(v) + 1) if v.isdigit() else chr(ord(v.lower()) + 1)


def _list_items(text: str) -> list[str] | None:
    """One clause per list item; the text before the first item is kept only if it names an input
    ("The word 'mouse': (a) spell it (b) ..."), else it is a preamble ("Answer these:")."""
    marks = _list_marks(text)
    if not marks:
        return None
    bounds = [m.start() for m in marks] + [len(text)]
    items = [text[m.end() : bounds[i + 1]] for i, m in enumerate(marks)]
    pre = text[: marks[0].start()].strip()
    keep_pre = bool(pre) and ("\x00" in pre or _NUMBERISH.search(pre))
    return ([pre] if keep_pre else []) + [it for it in items if it.strip()]


def _split(masked: str) -> list[str]:
    lines = _split_first_item([ln for ln in masked.splitlines() if ln.strip()])
    if sum(bool(_LIST_ITEM.match(ln)) for ln in lines) >= 2:
        return [ln for ln in lines if _LIST_ITEM.match(ln) or not ln.rstrip().endswith(":")]
    text = " ".join(lines)
    items = _list_items(text)
    if items is not None:
        return items
    if len(_INLINE_LIST.findall(text)) >= 2:
        return [p for p in _INLINE_LIST.split(text) if p.strip()]
    out: list[str] = []
    for sent in _SENT.split(text):
        sent = _SAME_INPUT.sub(lambda m: m.group(1) + "\x03", sent)
        for part in _CONNECT.split(sent):
            if not part or not part.strip():
                continue
            # "Given the word 'x': spell it" -> intro + task; "Solve: What is 2 plus 2?" stays whole
            m = _COLON_TASK.search(part)
            if m and (_INTRO.match(part) or _PREFACE.match(part[: m.start()].strip() + ":")):
                out.extend([part[: m.start()], part[m.end() :]])
            else:
                out.append(part)
    return _join_comparison(_join_cataphora(out))


def _join_comparison(clauses: list[str]) -> list[str]:
    """ "Compare the lion and the cat and name the larger one" is one task, not two."""
    out: list[str] = []
    for c in clauses:
        if out and _COMPARE.match(_strip(out[-1])) and _PICK_ONE.match(c.strip()):
            out[-1] = f"{out[-1].rstrip()} and {c.strip()}"
        else:
            out.append(c)
    return out


def _join_cataphora(clauses: list[str]) -> list[str]:
    """ "Is this question about a person or a place? Who wrote Hamlet?" is one step: the sentence
    after a question about "this question" is its input, unless a connector starts a new task."""
    out: list[str] = []
    for c in clauses:
        prev = out[-1].strip() if out else ""
        if prev and _THIS_QUESTION.search(prev) and "\x00" not in prev and not _LEAD.match(c.strip()) and re.search(r"\?\W*$", c):
            out[-1] = f"{prev} {c.strip()}"
        else:
            out.append(c)
    return out


def _split_first_item(lines: list[str]) -> list[str]:
    """ "The word: 'x'. 1. Spell it" + "2. Reverse it": the list's first item starts mid-line."""
    starts = {ln.lstrip()[:2] for ln in lines[1:]}
    for marker, next_items in ((r"1[.)]", {"2.", "2)"}), (r"[-*•]", {"- ", "* ", "• "})):
        if not starts & next_items:
            continue
        for i, ln in enumerate(lines):
            m = re.search(rf"(?<=[.:?!])\s+(?={marker}\s)", ln)
            if m and not _LIST_ITEM.match(ln):
                return lines[:i] + [ln[: m.start()], ln[m.end() :]] + lines[i + 1 :]
    return lines


def _strip(clause: str) -> str:
    c = _LEAD.sub("", clause.strip())
    if c.startswith("\x03"):
        return "\x03" + _strip(c[1:])
    c = _TRAIL.sub("", c) if not c.endswith("?") else c
    return c.strip()


def _is_intro_only(clause: str) -> bool:
    """A clause that is only an input, e.g. "The word: 'mouse'" or "'mouse'"."""
    c = clause.strip()
    return bool(
        re.fullmatch(r"(?:(?:the|this|these)\s+\w+\s*:?\s*)?\x00\d+\x00[.:]?", c, re.I)
        or re.fullmatch(r"(?:the|this|these)\s+\w+\s*:\s*[^\s:]+", c, re.I)  # "The number: 742"
        or re.fullmatch(r"(?:it|this|that)\s*(?:is|'s|was)\s+\x00\d+\x00[.:]?", c, re.I)  # "It is 'harbour'"
    )


def _introduces(clause: str, following: str, spans: list[str]) -> bool:
    """A clause that tells where an input came from and asks nothing ("My friend texted me this:
    '...'", "I got this message: ...") followed by one that says "it" and has no input of its own:
    the first names the input. A label with no verb ("Larger animal: cat, dog") is a task."""
    bare = _MASK.sub(" ", clause)
    if not re.search(r"\b(?:i|my|me|we|our|us)\b", bare, re.I):
        return False
    task = rf"\b(?:{_VERB_ALT}|need|want|like)\b|\b{_HEAD_NOUNS}\b"  # "I need the antonym of 'x'" asks
    if _input_of(clause, spans) is None or re.search(task, bare, re.I) or re.match(_TASK_START, bare, re.I):
        return False
    nxt = following.lstrip("\x03")
    return bool(nxt) and _input_of(nxt, spans) is None and bool(_ANAPHOR.search(nxt))


def _input_of(clause: str, spans: list[str]) -> str | None:
    for m in _MASK.finditer(clause):
        span = spans[int(m.group(1))]
        if not span.startswith("\x01"):  # \x01 marks a format such as !MM!DD!YYYY!, not an input
            return _dequote(span)
    m = _NAMED.search(clause)  # "the word wolf", "the number 47"
    if m:
        return m.group(1)
    nums = _NUMBERISH.findall(_MASK.sub(" ", clause))
    return nums[0] if len(nums) == 1 else None  # "What is 82 plus 23?" has no single input


def _intro_noun(text: str) -> str | None:
    m = _INTRO_NOUN.match(text.strip())
    return _dequote(m.group(1).strip()) if m else None


def _dequote(span: str) -> str:
    s = span.strip()
    if len(s) >= 2 and s[0] in "\"'“‘" and s[-1] in "\"'”’":
        return s[1:-1]
    return s


def _back_reference(clause: str, previous: str) -> re.Match | None:
    """ "the negated sentence", or "the colour" after a step that asked for a colour."""
    for m in _BACK_NP.finditer(clause):
        noun = m.group(2)
        if m.group(1) or re.search(rf"\b{re.escape(noun[:5])}", previous, re.I):
            return m
    return None


def _entity(subgoal: str) -> str | None:
    """The last capitalised name after the first word ("What is the capital of Peru" -> "Peru")."""
    names = re.findall(r"(?<=\s)[A-Z][^\W\d_]+(?:\s+[A-Z][^\W\d_]+)*", subgoal)
    return names[-1] if names else None


def _same_input_step(index: int, text: str, previous: Step | None) -> Step:
    """ "..., and what is its region?": "its" is the previous step's input, not its answer."""
    ref = None
    if previous is not None:
        ref = previous.input if previous.input and not previous.depends_on else _entity(previous.subgoal)
    if ref is None:
        return Step(id=step_id(index), subgoal=text)
    new = re.sub(r"\bits\s+(\w+)", lambda k: f"the {k.group(1)} of {ref}", text, count=1, flags=re.I)
    if new == text:
        new = re.sub(r"\bit\b", lambda k: ref, text, count=1, flags=re.I)
    return Step(id=step_id(index), subgoal=new, input=ref)


def _step(index: int, clause: str, spans: list[str], intro_input: str | None, earlier: list[Step]) -> Step:
    if clause.startswith("\x03"):
        clause = clause[1:]
        if _input_of(clause, spans) is None:
            return _same_input_step(index, _unmask(clause, spans), earlier[-1] if earlier else None)
    own = _input_of(clause, spans)
    text = _unmask(clause, spans)
    if own is None:
        m = _QUESTION_PAYLOAD.match(text)  # "Is this text spam? Free entry in 2 a weekly comp..."
        if m and not _ANAPHOR.search(m.group(2)):
            own = m.group(2).strip()
    if own is not None:
        return Step(id=step_id(index), subgoal=text, input=own)
    m = None
    if not _NUMBERISH.search(_MASK.sub(" ", clause)):  # a clause with a number of its own refers to nothing earlier
        m = _ANAPHOR.search(clause) or (_back_reference(clause, earlier[-1].subgoal) if earlier else None)
    if m:
        if earlier:
            ref = "{" + earlier[-1].id + "}"
            deps: tuple[str, ...] = (earlier[-1].id,)
        elif intro_input is not None:
            ref, deps = intro_input, ()
        else:
            return Step(id=step_id(index), subgoal=text)
        word = m.group(0).lower()
        if word.endswith(" one"):  # "name the larger one" -> "name the larger of <input>"
            new = text[: m.start()] + word.rsplit(" ", 1)[0] + " of " + ref + text[m.end() :]
        elif word == "its":
            new = re.sub(r"\bits\s+(\w+)", lambda k: f"the {k.group(1)} of {ref}", text, count=1, flags=re.I)
        else:
            new = text[: m.start()] + ref + text[m.end() :]
        return Step(id=step_id(index), subgoal=new, input=ref, depends_on=deps)
    return Step(id=step_id(index), subgoal=text)
