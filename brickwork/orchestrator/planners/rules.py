"""The deterministic rule-based splitter: the fallback planner, and the baseline the brick must beat.

It works in three passes, each in its own module:

1. `chat.strip_chat` drops the chat around the request (greetings, apologies, sign-offs,
   "quick ones for my notes:" preambles);
2. `clauses.mask` hides the inputs and `clauses.clauses` cuts the request into clauses (lists,
   sentences, connectors);
3. each clause is classified here, by what it is made of and by its form (`roles.role`: a
   statement with no input and no request cue is **context**, one with an input is a **carrier**,
   anything that asks is a **request**; cues of mood, not word lists of one set):

   - **filler** (`chat.is_filler`): chat words only, no input, no question: dropped;
   - **context** ("I'm drafting an email to a client.", "My teacher asked us a question today"):
     dropped, also when it stands before a sentence it would otherwise be glued to;
   - **input carrier**: an input and no task words ("Here it is: '...'", "The words are: x y z",
     "It is 'harbour'"), or a statement that holds an input ("The word of the day is 'serene'.",
     "Got this text from my bank: '...'"): it fills the step before when that step names an object it does not
     give ("Negate a sentence for me. Here it is: '...'" is one step), else it introduces the
     input a later "it" means ("Here is the word 'mouse'. Spell it.");
   - **intro**: a clause that tells where an input came from and asks nothing ("My friend texted
     me this: '...'", "Think of the country Chile", "Take the word 'x'"): as a carrier;
   - **task**: a step. Its input is its quoted text, else the text after a colon, else an rgb value,
     date or number, else none. A task with no input of its own that says "it", "the result",
     "that word", "the larger one", or names the thing the step before asked for ("Spell the
     colour.") works on the step before's answer (``{sN}``), or on the introduced input if there
     is no step before; but a bare "it"/"its" in a task that cannot take that answer and can take
     the step before's input is a **follow-up on the same input** (`followups.same_input`: "What
     is the capital of Peru? Next, which part of the world is it in?" asks about Peru), and so is
     a question joined by ", and" that says "its" ("..., and what is its region?"). Also read as
     references: "there" after a verb ("visit there"; the same input where the kinds say so: "And
     the capital there?"), a participle noun phrase anywhere ("is the negated version positive?"),
     "that"/"it" as the subject of a question with a number of its own ("Is that more than 70?"),
     a head noun without its complement ("What's the opposite?") and a bare choice question
     ("spam or not?").

A plain single-task instruction yields one step. When nothing is left, the whole instruction is
one step.
"""

from __future__ import annotations

import re

from brickwork.orchestrator.planners.base import single_step_plan
from brickwork.orchestrator.planners.chat import is_filler, strip_chat
from brickwork.orchestrator.planners.clauses import INTRO, SAME_INPUT_MARK, clauses, mask
from brickwork.orchestrator.planners.followups import same_input
from brickwork.orchestrator.planners.lexicon import (
    HEAD_NOUNS, MASK, NUMBERISH, PREFACE, TASK_START, VERB_ALT, dequote, unmask,
)
from brickwork.orchestrator.planners.roles import role
from brickwork.orchestrator.types import Plan, Step, step_id

_INTRO_NOUN = re.compile(r"^(?:here\s+is|here's|there\s+is|there's|think\s+of|take|consider|look\s+at|i\s+have|given|think\s+about)?\s*(?:the|this|these|a|an)\s+\w+\s*:?\s*(.+?)[.:]?$", re.I)
_ANAPHOR = re.compile(
    r"\b(?:the\s+(?:larg|bigg|small|heavi|light|tall|short|fast|slow|old|young|long|strong|high|low)(?:er|est)\s+one|the\s+(?:result|answer|output|sum|difference)|th(?:at|is|ose)\s+(?:word|words|number|sentence|country|date|"
    r"message|question|colour|color|result|answer|text|city|animal|region|language|capital|name)|it|its|them|"
    r"that(?=\s*(?:$|[.?!,;]|\s+(?:into|in|to|as|out|letter|backwards|for|with|please|and|then)\b|\s+(?:is|was)\W*$))|"
    # "there" as a pronoun is the place the step before named ("a day trip from there", "visit
    # there"); "there is" and a clause-initial "there" are not ("count how many words there are")
    r"(?<=\w\s)there(?!\s*(?:is|are|was|were|'s|’s|be|will|has|have|had|might|may|must|seems?|exists?)\b))\b",
    re.I,
)
_BACK_NP = re.compile(
    # "the negated version", "the sorted list": a past participle marks the answer of a step before,
    # wherever it stands ("is the negated version positive?"), unless an "of X" gives its own object
    r"\bthe\s+(?:(\w+ed)\s+(?:word|words|number|sentence|text|list|date|version|form|one|result|output|phrase|answer)\b(?!\s+of\b)"
    r"|(\w{4,})(?:\s+name)?"
    r"(?=\s*$|\s*[.?!,;]|\s+(?:out|letter|backwards|one|into|as|with|using|has|have|contains|in\s+(?:words|capital|reverse|roman|german|french|spanish))"
    # a preposition left at the end ("What language is the negated sentence in?")
    r"|\s+(?:in|on|from|about|of|to|for)\s*[.?!]*\s*$))",
    re.I,
)
# the nouns of `HEAD_NOUNS`: a task named without its "of X" ("What's the opposite?") asks it of
# the input before
HEAD_WORDS = r"(?:antonym|opposite|synonym|plural|singular|capital|spelling|translation|negation|sentiment|language|continent|region)"
_BARE_HEAD = re.compile(rf"\bthe\s+{HEAD_WORDS}(?=\s*[?.!]*\s*$)", re.I)
# a question with no object, only the answers to choose from ("spam or not?", "positive or negative?")
_ELLIPTIC = re.compile(r"^(?:[^\W\d_]+\s+or\s+[^\W\d_]+)\s*\?+\s*$", re.I)
# "there" as a pronoun ("visit there"), not the "there" of "there is" nor one starting the clause
_THERE = re.compile(r"(?<=\w\s)there\b(?!\s*(?:is|are|was|were|'s|’s|be|will|has|have|had|might|may|must|seems?|exists?)\b)", re.I)
_NAMED = re.compile(r"\bthe\s+(?:word|noun|adjective|number|country|date|value)\s+(?!(?:is|are|was)\b)([^\s\x00,.;?!]+)", re.I)
# words after "its" that show it is "it's" ("what language its in")
_NOT_A_NOUN = frozenset("in on at from about a an the not spoken written located been is".split())
_QUESTION_PAYLOAD = re.compile(r"^(.*\?)\s+(\S.*)$")
# the words an input carrier is made of ("Here it is:", "The words are:", "It is"): no task word
_CARRIER_WORDS = frozenset(
    """here there it is are was s the this that these those a an my one goes word words sentence number text
    message question date value list phrase name country string input they""".split()
)
# a step that names an object without giving it ("Negate a sentence for me", "I need some words sorted")
_OPEN_SLOT = re.compile(
    r"\b(?:a|an|some|this|these|the\s+following)\s+(?:\w+\s+)?(?:word|words|sentence|number|text|question|message|date|phrase|list|country|name|string)\b",
    re.I,
)


class RulesPlanner:
    """Deterministic splitter; see the module docstring for the rules."""

    name = "rules"

    def plan_batch(self, instructions: list[str]) -> list[Plan]:
        return [self.plan(i) for i in instructions]

    def plan(self, instruction: str) -> Plan:
        masked, spans = mask(strip_chat(instruction))
        parts = [p for c in clauses(masked) for p in _sentences(c, spans)]
        steps: list[Step] = []
        intro_input: str | None = None
        for i, c in enumerate(parts):
            if not c or PREFACE.match(unmask(c, spans)) or is_filler(c):
                continue
            # a clause joined as a task on the same input ("... and also its antonym") is a request
            kind = "request" if c.startswith(SAME_INPUT_MARK) else role(c, spans)
            if kind == "context":
                continue
            if _is_carrier(c, spans) or (kind == "carrier" and not INTRO.match(c)):
                if steps and _open(steps[-1]):
                    steps[-1] = _fill(steps[-1], c, spans)
                else:
                    intro_input = _input_of(c, spans) or intro_input
                continue
            if INTRO.match(c) or _is_intro_only(c) or _introduces(c, parts[i + 1] if i + 1 < len(parts) else "", spans):
                intro_input = _input_of(c, spans) or _intro_noun(unmask(c, spans)) or intro_input
                continue
            steps.append(_step(len(steps), c, spans, intro_input, steps))
        if not steps:
            return single_step_plan(instruction, self.name)
        return Plan(steps=tuple(steps), planner=self.name)


def _sentences(clause: str, spans: list[str]) -> list[str]:
    """The clause, with its last sentences apart where they are all filler or carriers ("Spell
    'owl'. Thank you."); sentences before stay with the first, as its input ("Negate this
    sentence. It rains.", "Is this SMS spam? Okay... see you at 6")."""
    sents = re.split(r"(?<=[.!?])\s+(?=[^\W\d_]|\x00)", clause)
    lead: list[str] = []
    # a context sentence before is no one's input ("I've got a sentence for you. 'It rains.'")
    while len(sents) > 1 and role(sents[0].rstrip(" .!"), spans) == "context":
        lead.append(sents.pop(0).rstrip(" .!"))
    if lead:
        return lead + _sentences(" ".join(sents), spans)
    k = len(sents)
    while k > 1 and (is_filler(sents[k - 1].rstrip(" .!")) or _is_carrier(sents[k - 1].rstrip(" .!"), spans)):
        k -= 1
    pieces = [" ".join(sents[:k])] + sents[k:]
    return [p.rstrip(" .!") for p in pieces[:-1]] + pieces[-1:]


def _is_carrier(clause: str, spans: list[str]) -> bool:
    """An input and nothing that asks for anything: "Here it is: '...'", "The number is 7310"."""
    if _input_of(clause, spans) is None or clause.rstrip().endswith("?"):
        return False
    words = re.findall(r"[^\W\d_]+", MASK.sub(" ", clause).lower())
    return all(w in _CARRIER_WORDS for w in words)


def _open(step: Step) -> bool:
    return step.input is None and not step.depends_on and bool(_OPEN_SLOT.search(step.subgoal))


def _fill(step: Step, carrier: str, spans: list[str]) -> Step:
    """ "Negate a sentence for me" + "Here it is: 'x'": one step, its input the carrier's."""
    subgoal = f"{step.subgoal.rstrip(' .')}. {unmask(carrier, spans)}"
    return Step(id=step.id, subgoal=subgoal, input=_input_of(carrier, spans))


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
    bare = MASK.sub(" ", clause)
    if not re.search(r"\b(?:i|my|me|we|our|us)\b", bare, re.I):
        return False
    task = rf"\b(?:{VERB_ALT}|need|want|like)\b|\b{HEAD_NOUNS}\b"  # "I need the antonym of 'x'" asks
    if _input_of(clause, spans) is None or re.search(task, bare, re.I) or re.match(TASK_START, bare, re.I):
        return False
    nxt = following.lstrip(SAME_INPUT_MARK)
    return bool(nxt) and _input_of(nxt, spans) is None and bool(_ANAPHOR.search(nxt))


def _input_of(clause: str, spans: list[str]) -> str | None:
    for m in MASK.finditer(clause):
        span = spans[int(m.group(1))]
        if not span.startswith("\x01"):  # \x01 marks a format such as !MM!DD!YYYY!, not an input
            return dequote(span)
    m = _NAMED.search(clause)  # "the word wolf", "the number 47"
    if m:
        return m.group(1)
    nums = NUMBERISH.findall(MASK.sub(" ", clause))
    return nums[0] if len(nums) == 1 else None  # "What is 82 plus 23?" has no single input


def _intro_noun(text: str) -> str | None:
    m = _INTRO_NOUN.match(text.strip())
    return dequote(m.group(1).strip()) if m else None


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


def _task_text(step: Step) -> str:
    """What a step asks, without its input (a quoted sentence may hold task words of its own)."""
    return step.subgoal.replace(step.input, " ") if step.input and not step.depends_on else step.subgoal


def _its_to(ref: str, text: str) -> str:
    """ "its region" -> "the region of Peru"; "its in" is the common typo of "it's in": "Peru's in"."""
    def sub(k: re.Match) -> str:
        word = k.group(1)
        return f"{ref} {word}" if word.lower() in _NOT_A_NOUN else f"the {word} of {ref}"

    return re.sub(r"\bits\s+(\w+)", sub, text, count=1, flags=re.I)


def _same_input_step(index: int, text: str, previous: Step | None, bare: re.Match | None = None) -> Step:
    """ "..., and what is its region?": "its" is the previous step's input, not its answer; so is
    "there" ("Which continent is Chad in? And the capital there?") and a head noun without its
    complement (`bare`: "What is the capital of Chad? And the region?")."""
    ref = None
    if previous is not None:
        ref = previous.input if previous.input and not previous.depends_on else _entity(previous.subgoal)
    if ref is None:
        return Step(id=step_id(index), subgoal=text)
    if bare is not None:
        return Step(id=step_id(index), subgoal=_complete(text, bare, ref), input=ref)
    new = _its_to(ref, text)
    if new == text:  # "what language it's in" -> "what language <ref> is in"
        new = re.sub(r"\bit\b(['’]s\b)?", lambda k: ref + (" is" if k.group(1) else ""), text, count=1, flags=re.I)
    if new == text:  # "what's the capital there?" -> "what's the capital of <ref>?"
        new = _THERE.sub(lambda k: ("of " if re.search(rf"\b{HEAD_WORDS}\s*$", text[: k.start()], re.I) else "in ") + ref, text, count=1)
    return Step(id=step_id(index), subgoal=new, input=ref)


def _topic_pronoun(clause: str) -> re.Match | None:
    """The pronoun a question is about, even with a number of its own: "Is that more than 70?",
    "Was it over 100?", "That is under 50, right?"."""
    aux = re.match(r"(?:is|was|are|were|does|did|will|would)\s+", clause, re.I)
    m = re.compile(r"(?:that|it)\b", re.I).match(clause, aux.end() if aux else 0)
    if m and (aux or re.match(r"\s+(?:is|was)\b", clause[m.end() :], re.I)):
        return m
    return None


def _complete(text: str, m: re.Match, ref: str) -> str:
    """Give a head noun its missing complement ("What's the opposite?" -> "What's the opposite
    of <ref>?"), or an elliptic question its object ("spam or not?" -> "<ref>: spam or not?")."""
    if m.re is _ELLIPTIC:
        return f"{ref}: {text}"
    return text[: m.end()] + " of " + ref + text[m.end() :]


def _step(index: int, clause: str, spans: list[str], intro_input: str | None, earlier: list[Step]) -> Step:
    if clause.startswith(SAME_INPUT_MARK):
        clause = clause[1:]
        if _input_of(clause, spans) is None:
            return _same_input_step(index, unmask(clause, spans), earlier[-1] if earlier else None)
    own = _input_of(clause, spans)
    text = unmask(clause, spans)
    # a number of its own is the clause's input, unless the clause asks about "that" or "it"
    topic = _topic_pronoun(clause) if own is not None and (earlier or intro_input is not None) and "\x00" not in clause else None
    if topic is not None:
        own = None  # "Is that more than 70?": the number is what the answer before is compared with
    if own is None and topic is None:
        m = _QUESTION_PAYLOAD.match(text)  # "Is this text spam? Free entry in 2 a weekly comp..."
        if m and not _ANAPHOR.search(m.group(2)):
            own = m.group(2).strip()
    if own is not None:
        return Step(id=step_id(index), subgoal=text, input=own)
    m = topic
    if m is None and not NUMBERISH.search(MASK.sub(" ", clause)):  # a clause with a number of its own refers to nothing earlier
        m = (_ANAPHOR.search(clause) or (_back_reference(clause, earlier[-1].subgoal) if earlier else None)
             or _BARE_HEAD.search(clause) or _ELLIPTIC.match(clause))
    if m:
        bare = m.re is _BARE_HEAD or m.re is _ELLIPTIC
        if earlier and (bare or m.group(0).lower() in ("it", "its", "them", "there")) and same_input(_task_text(earlier[-1]), clause, pronoun=not bare):
            return _same_input_step(index, text, earlier[-1], m if bare else None)
        if earlier:
            ref = "{" + earlier[-1].id + "}"
            deps: tuple[str, ...] = (earlier[-1].id,)
        elif intro_input is not None:
            ref, deps = intro_input, ()
        else:
            return Step(id=step_id(index), subgoal=text)
        word = m.group(0).lower()
        if bare:
            new = _complete(text, m, ref)
        elif word.endswith(" one"):  # "name the larger one" -> "name the larger of <input>"
            new = text[: m.start()] + word.rsplit(" ", 1)[0] + " of " + ref + text[m.end() :]
        elif word == "its":
            new = _its_to(ref, text)
        else:
            new = text[: m.start()] + ref + text[m.end() :]
        return Step(id=step_id(index), subgoal=new, input=ref, depends_on=deps)
    return Step(id=step_id(index), subgoal=text)
