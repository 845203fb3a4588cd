"""Chat around a request: what the rules splitter drops before and between its clauses.

Two mechanisms, one for each place chat turns up:

- `strip_chat` cuts the request out of the chat around it: a greeting or thanks before it ("Hey,",
  "Good morning!", "ok so"), a sign-off after it ("Thanks!", "Cheers!", "lol"), a preamble that
  says what it is for, with no task word before its colon ("quick ones for my notes: ..."), and
  whole sentences or leading "..., but" clauses of filler before or after it;
- `is_filler` says whether a clause carries no task at all: it has no input (no quote, number or
  colon payload), does not ask a question, and every word is a word of chat (apologies, thanks,
  wishes, "help me with a word") or a function word. "Sorry to bother you again." is filler;
  "Compose a slogan for a bakery" is not, though no brick knows the verb: filler is recognised by
  what it is made of, not by the absence of a known task verb.
"""

from __future__ import annotations

import re

from brickwork.orchestrator.planners.lexicon import IMPERATIVE_ALT, QUOTED, TASK_START, ends_in_list_mark

_GREETING = re.compile(
    r"^(?:(?:hey|hi|hello|hiya|good\s+(?:morning|afternoon|evening)|thanks|thank\s+you|ok(?:ay)?|so|um+|hmm+)"
    r"(?:\s+(?:there|so\s+much|a\s+lot|for\s+earlier|again|so))*\s*(?:[,!.]+\s*|\s+(?=so\b)|\s+(?=my\b)|(?<=\bso)\s+|\s+(?=(?:can|could|would)\s+(?:u|you)\b)))+",
    re.I,
)
_SIGN_OFF = re.compile(r"(?:[\s,.!?]+(?:thanks(?:\s+(?:a\s+lot|so\s+much|in\s+advance))?|thank\s+you|cheers|thx|ty|lol|haha|xx?)[\s.!]*)+$", re.I)
_CHAT_PREAMBLE = re.compile(
    # a number only counts the things ("I need 2 things - ..."); a colon or a dash ends it
    r"^(?P<pre>(?:[^:\x00\d?]|\d+(?=\s+(?:questions?|ones?|things?|tasks?)\b)){0,60}\b"
    r"(?:notes|flashcards?|quiz|homework|favou?r|questions?|ones?|things?|tasks?|couple|few)\b[^:\x00\d?]{0,30}?)(?::|\s+[-–—]+)\s+",
    re.I,
)
# the words chat is made of; a clause of only these (and function words) asks for nothing
_CHAT_WORDS = frozenset(
    """sorry apologies apology apologise apologize bother bothering disturb again hope hoping well
    thanks thank grateful appreciate appreciated appreciation much lot help helping hand favour favor
    quick question questions thing things stuff basic silly dumb simple obvious stupid rush hurry mind wondering
    curious hi hello hey hiya morning afternoon evening good great lovely nice day weekend cheers ok okay so
    um umm hmm lol haha please plz pls kindly best awesome wonderful amazing star legend really very just bit little
    quite too still also more another once one back asking ask wonder sure fine doing going hard again
    studying working busy advance time pain nuisance pest obliged indebted"""
    .split()
)
_FUNCTION_WORDS = frozenset(
    """i i'm im me my mine we us our you you're youre your u it it's its this that these those there here
    a an the to for of with about on in at by from as if but and or so is are am was were be been being
    have has had do does did can could would will shall should may might must not no all any some
    for word sentence number ur r ya yr""".split()
)
_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
# a segment of chat at the start ("Sorry to bother you again." / "Apologies if this is basic, but")
_LEADING_SEGMENT = re.compile(r"^(?P<seg>[^.!?\x00]+?)(?:[.!?]+\s+|,\s*(?:but|so)\s+|\s+[-–—]+\s+)")
_TRAILING_SEGMENT = re.compile(r"(?<=[.!?])\s+(?P<seg>[^.!?\x00]+)[.!?]*\s*$")


def is_filler(clause: str) -> bool:
    """True for a clause that carries no task: chat words and function words only, no input, not a
    question (``\\x00`` marks a masked input)."""
    c = clause.strip()
    if not c or "\x00" in c or QUOTED.search(c) or re.search(r"\d|\?\s*$", c):
        return False
    words = [w.lower() for w in _TOKEN.findall(c)]
    return bool(words) and all(w in _CHAT_WORDS or w in _FUNCTION_WORDS for w in words) and any(w in _CHAT_WORDS for w in words)


def strip_chat(instruction: str) -> str:
    """The request without the chat around it: "Hey, quick ones for my notes: A, and B. Thanks!"
    -> "A, and B". A preamble is dropped only where no task word comes before its colon."""
    text = instruction.strip()
    masked = QUOTED.sub(lambda m: "\x00" * len(m.group(0)), text)  # positions stay; quotes untouched
    start = m.end() if (m := _GREETING.match(masked)) else 0
    while (m := _LEADING_SEGMENT.match(masked[start:])) and is_filler(m.group("seg")):
        start += m.end()
        if g := _GREETING.match(masked[start:]):
            start += g.end()
    m = _CHAT_PREAMBLE.match(masked[start:])
    # ... nor where its colon ends a list marker ("Step one: ...")
    if m and not re.search(rf"\b(?:{IMPERATIVE_ALT})\b|{TASK_START}", m.group("pre"), re.I) and not ends_in_list_mark(m.group("pre").strip()):
        start += m.end()
    end = m.start() if (m := _SIGN_OFF.search(masked, start)) else len(text)
    while (m := _TRAILING_SEGMENT.search(masked[start:end])) and is_filler(m.group("seg")):
        end = start + m.start()
    out = text[start:end].strip()
    return out if out else text
