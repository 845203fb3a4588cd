"""The independent planner set (issue 24) and the rules splitter's rules for real phrasing."""

from __future__ import annotations

import collections
import json
import re

import pytest

from brickwork.evals.plan import FRESH, FRESH2, FRESH3, FRESH3_DEV, FRESH4, FRESH5, INDEPENDENT, load_sets, score_plan
from brickwork.orchestrator.planners.base import parse_plan
from brickwork.orchestrator.planners.chat import strip_chat
from brickwork.orchestrator.planners.rules import RulesPlanner

TRAIN = INDEPENDENT.with_name("train.jsonl")


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _normal(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def _words(text: str) -> set[str]:
    return set(_normal(text).split())


# -- the independent set ----------------------------------------------------------------------
def test_independent_set_is_well_formed_and_balanced():
    rows = _rows(INDEPENDENT)
    assert len(rows) >= 100
    for r in rows:
        assert set(r) == {"instruction", "plan", "kind", "split"}, r
        assert r["split"] in ("dev", "test"), r
        parse_plan(json.dumps(r["plan"]), planner="gold", check_grounding=False)  # raises if malformed
    per_kind = collections.Counter((r["kind"], r["split"]) for r in rows)
    for kind in {r["kind"] for r in rows}:
        assert per_kind[(kind, "dev")] == per_kind[(kind, "test")], kind
    assert {"numbered", "lettered", "and_its", "two_sentence", "chat_wrapped", "unserved_step", "plain"} <= {r["kind"] for r in rows}


@pytest.mark.parametrize("path", [INDEPENDENT, FRESH, FRESH2, FRESH3_DEV, FRESH3, FRESH4, FRESH5], ids=lambda p: p.name)
def test_hand_written_sets_are_not_in_the_planner_training_data(path):
    train = [r["input"] for r in _rows(TRAIN)]
    train_norm = {_normal(t) for t in train}
    train_words = [_words(t) for t in train]
    for r in _rows(path):
        inst = r["instruction"]
        assert _normal(inst) not in train_norm, inst
        w = _words(inst)
        # near duplicates: the same words up to a few (Jaccard >= 0.8)
        near = [t for t, tw in zip(train, train_words) if len(w & tw) / len(w | tw) >= 0.8]
        assert not near, (inst, near[:2])


def test_plan_eval_reports_the_two_halves_apart():
    sets = load_sets(0, 0, ("independent-dev", "independent-test"))
    dev, test = sets["independent-dev"], sets["independent-test"]
    assert len(dev) == len(test) == len(_rows(INDEPENDENT)) // 2
    assert not {i for i, _, _ in dev} & {i for i, _, _ in test}


# -- the rules splitter on real phrasing (instructions written for these tests) ---------------
@pytest.mark.parametrize(
    "instruction, subgoals, inputs, deps",
    [
        # numbered and lettered lists, inline or on lines; a preamble without an input is dropped
        ("Could you help? 1. Pluralize 'moth'. 2. What is 12 plus 30?", ["Pluralize 'moth'", "What is 12 plus 30?"], ["moth", None], [(), ()]),
        ("(a) Spell 'kite' (b) Negate 'Dogs bark.' (c) Which is larger, a cat or a lynx?",
         ["Spell 'kite'", "Negate 'Dogs bark.'", "Which is larger, a cat or a lynx?"], ["kite", "Dogs bark.", None], [(), (), ()]),
        ("a) reformat 2020-05-17 as !MM!DD!YYYY! b) give the opposite of 'loud'",
         ["reformat 2020-05-17 as !MM!DD!YYYY!", "give the opposite of 'loud'"], ["2020-05-17", "loud"], [(), ()]),
        ("(A) Give the capital of Chad.\n(B) Spell that city backwards.", ["Give the capital of Chad", "Spell {s1} backwards"], [None, "{s1}"], [(), ("s1",)]),
        # an item's text after a colon ends where the next item starts
        ("(1) Sort these words: oak elm ash (2) Name a tree that grows in deserts",
         ["Sort these words: oak elm ash", "Name a tree that grows in deserts"], ["oak elm ash", None], [(), ()]),
        # a relative "that" is not a reference
        ("Spell 'kite', then name a bird that sings at night.", ["Spell 'kite'", "name a bird that sings at night"], ["kite", None], [(), ()]),
        # markers out of order are not a list
        ("Write 5 in words. 3. Done?", ["Write 5 in words. 3. Done?"], [None], [()]),
        # ", and what is its Y?": the same input, not the first answer
        ("What is the capital of Chad, and what is its region?",
         ["What is the capital of Chad", "what is the region of Chad?"], [None, "Chad"], [(), ()]),
        ("Negate 'Owls hunt at night.', and what language is it in?",
         ["Negate 'Owls hunt at night.'", "what language is Owls hunt at night. in?"], ["Owls hunt at night.", "Owls hunt at night."], [(), ()]),
        # ... but "then ... it" still works on the answer
        ("Give the plural of 'moth', then spell it.", ["Give the plural of 'moth'", "spell {s1}"], ["moth", "{s1}"], [(), ("s1",)]),
        # one step stated across two sentences: a clause that tells where the input came from
        ("My neighbour sent me this: 'Parcel left by the door.' Is it spam?", ["Is Parcel left by the door. spam?"], ["Parcel left by the door."], [()]),
        ("Think of the country Chad. Which region is it in?", ["Which region is Chad in?"], ["Chad"], [()]),
        ("I have a noun for you. It is 'moth', and I want its plural.", ["I want the plural of moth"], ["moth"], [()]),
        ("There's a date, 2020-05-17. Put it in !MM!DD!YYYY! format.", ["Put 2020-05-17 in !MM!DD!YYYY! format"], ["2020-05-17"], [()]),
        # ... a label with no verb is a task, not an intro
        ("Larger animal: cat, lynx? Then spell it.", ["Larger animal: cat, lynx?", "spell {s1}"], ["cat, lynx", "{s1}"], [(), ("s1",)]),
        # chat around the request
        ("Hey, two for my notes: the capital of Chad, and the plural of 'moth'. Thanks!",
         ["the capital of Chad", "the plural of 'moth'"], [None, "moth"], [(), ()]),
        ("ok so my teacher wrote 'Homework is due Monday.' can you negate that sentence lol",
         ["negate Homework is due Monday."], ["Homework is due Monday."], [()]),
    ],
)
def test_rules_split_real_phrasing(instruction, subgoals, inputs, deps):
    plan = RulesPlanner().plan(instruction)
    assert [s.subgoal for s in plan.steps] == subgoals
    assert [s.input for s in plan.steps] == inputs
    assert [s.depends_on for s in plan.steps] == deps


@pytest.mark.parametrize(
    "instruction, subgoals, inputs, deps",
    [
        # one list-marker grammar: a label (number, letter, roman numeral, "step" + number word) in
        # one style, counting 1, 2, 3..., inline or on lines; the marker is dropped from the item
        ("1 - Pluralize 'moth'\n2 - Write 14 in words", ["Pluralize 'moth'", "Write 14 in words"], ["moth", "14"], [(), ()]),
        ("1: Negate 'It snows.'\n2: Spell 'snow'", ["Negate 'It snows.'", "Spell 'snow'"], ["It snows.", "snow"], [(), ()]),
        ("1.spell 'lamp'\n2.write 9 in words", ["spell 'lamp'", "write 9 in words"], ["lamp", "9"], [(), ()]),
        ("Step one: spell 'owl'. Step two: negate 'Cats purr.'", ["spell 'owl'", "negate 'Cats purr.'"], ["owl", "Cats purr."], [(), ()]),
        ("Task 1: sort 'pear fig' Task 2: spell 'kite'", ["sort 'pear fig'", "spell 'kite'"], ["pear fig", "kite"], [(), ()]),
        ("a. Antonym of 'wet' b. Plural of 'foot'", ["Antonym of 'wet'", "Plural of 'foot'"], ["wet", "foot"], [(), ()]),
        ("i) what is 20 plus 5 ii) what is 9 minus 3 iii) spell 'dog'",
         ["what is 20 plus 5", "what is 9 minus 3", "spell 'dog'"], [None, None, "dog"], [(), (), ()]),
        ("(i) capital of Chad (ii) region of Peru", ["capital of Chad", "region of Peru"], [None, None], [(), ()]),
        ("Q1: capital of Chad Q2: region of Peru", ["capital of Chad", "region of Peru"], [None, None], [(), ()]),
        ("#1 spell 'cat' #2 spell 'dog'", ["spell 'cat'", "spell 'dog'"], ["cat", "dog"], [(), ()]),
        # ordinal words are connectors, after a comma or starting a sentence, with a comma or a colon
        ("firstly spell 'cat', secondly negate 'I am late.', thirdly write 40 in words",
         ["spell 'cat'", "negate 'I am late.'", "write 40 in words"], ["cat", "I am late.", "40"], [(), (), ()]),
        ("First: plural of 'goose'. Second: antonym of 'big'. Third: capital of Peru.",
         ["plural of 'goose'", "antonym of 'big'", "capital of Peru"], ["goose", "big", None], [(), (), ()]),
        ("Give the first and second letters of 'cat'.", ["Give the first and second letters of 'cat'"], ["cat"], [()]),
        # "btw", "oh, and", "as well as" / "plus" before a head noun start a task; "12 plus 9" does not
        ("spell 'lamp' letter by letter. btw what's the capital of Laos?",
         ["spell 'lamp' letter by letter", "what's the capital of Laos?"], ["lamp", None], [(), ()]),
        ("Create a slogan for my bakery. Oh, and what is 45 minus 12?", ["Create a slogan for my bakery", "what is 45 minus 12?"], [None, None], [(), ()]),
        ("Give the plural of 'bus' as well as the antonym of 'old'.", ["Give the plural of 'bus'", "the antonym of 'old'"], ["bus", "old"], [(), ()]),
        ("Plural of 'goose' plus the antonym of 'sad', please.", ["Plural of 'goose'", "the antonym of 'sad'"], ["goose", "sad"], [(), ()]),
        ("what is 12 plus 9 plus 3", ["what is 12 plus 9 plus 3"], [None], [()]),
        # "And ..." starts a sentence-task; "and ...?" after a question is a question of its own; "&" is "and"
        ("Give me the antonym of 'hot'. And the plural of 'box'.", ["Give me the antonym of 'hot'", "the plural of 'box'"], ["hot", "box"], [(), ()]),
        ("what is 34 plus 12? and 50 minus 7?", ["what is 34 plus 12?", "50 minus 7?"], [None, None], [(), ()]),
        ("spell 'queue' (letter by letter please) & give its plural",
         ["spell 'queue' (letter by letter please)", "give the plural of queue"], ["queue", "queue"], [(), ()]),
        # question words and "please" as typed in chat
        ("whats the capital of chad and whats the plural of 'ox'", ["whats the capital of chad", "whats the plural of 'ox'"], [None, "ox"], [(), ()]),
        ("plz spell 'cat' then negate 'I ran.'", ["spell 'cat'", "negate 'I ran.'"], ["cat", "I ran."], [(), ()]),
        ("hiya, hope ur good! wat is the opposite of 'up'? cheers", ["wat is the opposite of 'up'"], ["up"], [()]),
        # an arrow is "then"; a dash before "and" is not part of the subgoal
        ("plural of 'mouse' -> spell it letter by letter", ["plural of 'mouse'", "spell {s1} letter by letter"], ["mouse", "{s1}"], [(), ("s1",)]),
        ("What language is 'Hola, amigo' - and is it positive or negative?",
         ["What language is 'Hola, amigo'", "is Hola, amigo positive or negative?"], ["Hola, amigo", "Hola, amigo"], [(), ()]),
        # "X and the plural of Y" without a comma; a counted preamble ended by a dash is chat
        ("I need 2 things - the capital of Chad and the plural of 'ox'", ["the capital of Chad", "the plural of 'ox'"], [None, "ox"], [(), ()]),
        # "its in" is "it's in"; "the plural has" names the answer before
        ("say if 'I hate Mondays' is positive or negative and what language its in",
         ["say if 'I hate Mondays' is positive or negative", "what language I hate Mondays in"], ["I hate Mondays", "I hate Mondays"], [(), ()]),
        ("Pluralise 'hero'. Afterwards count how many letters the plural has.",
         ["Pluralise 'hero'", "count how many letters {s1} has"], ["hero", "{s1}"], [(), ("s1",)]),
        # bullets of either kind; an intro line without an input is dropped
        ("do these for me\n- spell 'kite'\n* plural of 'moth'", ["spell 'kite'", "plural of 'moth'"], ["kite", "moth"], [(), ()]),
        # one marker is not a list
        ("Rate it from 1 - 10. Spell 'kite'.", ["Rate it from 1 - 10", "Spell 'kite'"], [None, "kite"], [(), ()]),
        ("Choose plan b. Spell 'kite'.", ["Choose plan b", "Spell 'kite'"], [None, "kite"], [(), ()]),
        ("I like plan b. Spell 'kite'.", ["Spell 'kite'"], ["kite"], [()]),  # a context sentence (roles.py)
        # "and also its Y" and a bare "and its Y" in one sentence: two tasks on one input
        ("Give the plural of 'foot' and also its antonym.", ["Give the plural of 'foot'", "the antonym of foot"], ["foot", "foot"], [(), ()]),
        ("Tell me the capital of Chad and its region.", ["Tell me the capital of Chad", "the region of Chad"], [None, "Chad"], [(), ()]),
        # ... but a new sentence "Also, spell it." is left to the kinds table (an antonym is a word: a chain)
        ("Give the antonym of 'wet'. Also, spell it.", ["Give the antonym of 'wet'", "spell {s1}"], ["wet", "{s1}"], [(), ("s1",)]),
        # a question is a sentence: its language is asked of the question, not of its answer type
        ("What kind of answer does 'Who won?' want? Also, what language is it?",
         ["What kind of answer does 'Who won?' want?", "what language is Who won??"], ["Who won?", "Who won?"], [(), ()]),
        # "there" after a preposition, and "that is" at the end, are the answer before
        ("Name the capital of Chad. Suggest a walk around there.", ["Name the capital of Chad", "Suggest a walk around {s1}"], [None, "{s1}"], [(), ("s1",)]),
        ("Negate 'It rains.' then say what language that is", ["Negate 'It rains.'", "say what language {s1} is"], ["It rains.", "{s1}"], [(), ("s1",)]),
        ("ok so spell 'kite'", ["spell 'kite'"], ["kite"], [()]),
        ("hey can u spell 'cat' and also tell me its plural lol", ["spell 'cat'", "tell me the plural of cat"], ["cat", "cat"], [(), ()]),
    ],
)
def test_rules_list_markers_and_same_input(instruction, subgoals, inputs, deps):
    plan = RulesPlanner().plan(instruction)
    assert [s.subgoal for s in plan.steps] == subgoals
    assert [s.input for s in plan.steps] == inputs
    assert [s.depends_on for s in plan.steps] == deps


@pytest.mark.parametrize(
    "instruction, wanted",
    [
        ("Good morning! Spell 'kite'.", "Spell 'kite'."),
        ("Thanks so much! One more thing: write 17 in words. Cheers!", "write 17 in words"),
        ("Hi there, quick favour for my homework: what is 30 minus 4?", "what is 30 minus 4?"),
        # no chat: untouched, and quotes are never cut
        ("Negate 'Thanks for coming.'", "Negate 'Thanks for coming.'"),
        # a colon after a task word is the task's input, not a preamble
        ("Classify these questions: who wrote it?", "Classify these questions: who wrote it?"),
    ],
)
def test_strip_chat(instruction, wanted):
    assert strip_chat(instruction) == wanted


def test_the_rules_score_the_independent_set_through_the_eval():
    """The real parts of `brickwork eval plan` on the independent set (rules only, no model)."""
    sets = load_sets(0, 0, ("independent-dev", "independent-test"))
    planner = RulesPlanner()
    for name, items in sets.items():
        scores = [score_plan(p, g) for p, (_, g, _) in zip(planner.plan_batch([i for i, _, _ in items]), items, strict=True)]
        assert sum(s.correct for s in scores) / len(scores) >= 0.9, name


@pytest.mark.parametrize(
    "instruction, subgoals, inputs, deps",
    [
        # a bare count sentence announces the steps ("Two things."), it is not one
        ("Three questions. Spell 'owl'. Negate 'Cats purr.'", ["Spell 'owl'", "Negate 'Cats purr.'"], ["owl", "Cats purr."], [(), ()]),
        # "I want its Y" / "I'd like the plural of ..." starts a task of its own sentence
        ("My word is 'moth'. I'd like its plural.", ["I'd like the plural of moth"], ["moth"], [()]),
        # apologies and thanks of other words are chat; "would you mind" is a polite lead
        ("Sorry to be a nuisance. Would you mind spelling 'owl'? Much obliged.", ["spelling 'owl'?"], ["owl"], [()]),
        # a back-reference noun phrase before a stranded preposition ("... the reversed word in?")
        ("Reverse 'stop'. Which language is the reversed word from?", ["Reverse 'stop'", "Which language is {s1} from?"], ["stop", "{s1}"], [(), ("s1",)]),
        # "answer type" gives a label, so "it's" after it is the same question; "it's" -> "<input> is"
        ("Classify 'Who won?' by its answer type, then say what language it's in.",
         ["Classify 'Who won?' by its answer type", "say what language Who won? is in"], ["Who won?", "Who won?"], [(), ()]),
    ],
)
def test_rules_fourth_session_phrasing(instruction, subgoals, inputs, deps):
    plan = RulesPlanner().plan(instruction)
    assert [s.subgoal for s in plan.steps] == subgoals
    assert [s.input for s in plan.steps] == inputs
    assert [s.depends_on for s in plan.steps] == deps


# -- fifth session: a clause classifier by form (roles.py), step separators, back-references ----
@pytest.mark.parametrize(
    "clause, wanted",
    [
        # context: a statement with a subject, no input and no request cue
        ("I'm writing a birthday card for my aunt", "context"),
        ("We're studying for a geography test on Monday", "context"),
        ("My teacher gave us homework", "context"),
        ("You are a helpful assistant", "context"),
        ("I love this song", "context"),  # a bare "I love" asks for nothing; "I'd love" does
        # ... or one that only announces a count of unnamed things
        ("My brother is learning German and wants three words checked", "context"),
        # carrier: a statement that holds an input
        ("The password hint is \x000\x00", "carrier"),
        ("Her favourite number is 7", "carrier"),
        ("Found this message on my car: \x000\x00", "carrier"),
        # request: imperative (any verb), question, modal request, task label
        ("Recommend a film about space", "request"),
        ("Is that more than 40?", "request"),
        ("whats 3 plus 4", "request"),
        ("Could you spell \x000\x00", "request"),
        ("I'd like a poem about rain", "request"),
        ("I need a sentence negated", "request"),
        ("I was wondering which continent Laos is in", "request"),
        ("capital of Peru", "request"),
        ("45 minus 12", "request"),
    ],
)
def test_clause_roles(clause, wanted):
    from brickwork.orchestrator.planners.roles import role

    assert role(clause, ["'x'"]) == wanted


@pytest.mark.parametrize(
    "instruction, subgoals, inputs, deps",
    [
        # a context sentence is dropped, before the request or glued to its input
        ("We're studying for a geography test on Monday. What's the capital of Chad?", ["What's the capital of Chad?"], [None], [()]),
        ("I'm writing a card. Could you spell 'congratulations'?", ["spell 'congratulations'?"], ["congratulations"], [()]),
        ("My brother is learning German and wants three words checked. What's the plural of 'mouse'?",
         ["What's the plural of 'mouse'?"], ["mouse"], [()]),
        ("I have a puzzle for you. 'Birds sing.' Make it negative.", ["Make Birds sing. negative"], ["Birds sing."], [()]),
        ("I love this song. What language is 'Volare'?", ["What language is 'Volare'?"], ["Volare"], [()]),
        # a statement that holds an input introduces it, without "I"/"my" and without "it"
        ("The password hint is 'lantern'. Spell it backwards.", ["Spell lantern backwards"], ["lantern"], [()]),
        ("Her favourite number is 7. Triple it.", ["Triple 7"], ["7"], [()]),
        # ... a task named without its complement, or a bare choice question, asks it of that input
        ("The clue is 'humid'. What's the antonym?", ["What's the antonym of humid?"], ["humid"], [()]),
        ("Found this on my car: 'Your warranty expires, call now'. spam or ham?",
         ["Your warranty expires, call now: spam or ham?"], ["Your warranty expires, call now"], [()]),
        # step separators: commas or spaced slashes between task items, lines without markers,
        # typographic bullets
        ("capital of Peru, plural of 'goose', 50 minus 8", ["capital of Peru", "plural of 'goose'", "50 minus 8"], [None, "goose", None], [(), (), ()]),
        ("antonym of 'tall' / 33 plus 4 / region of Fiji", ["antonym of 'tall'", "33 plus 4", "region of Fiji"], ["tall", None, None], [(), (), ()]),
        ("What is the capital of Chad?\nWhat is the capital of Peru?", ["What is the capital of Chad?", "What is the capital of Peru?"], [None, None], [(), ()]),
        ("notes:\n— plural of 'cat'\n— capital of Peru", ["plural of 'cat'", "capital of Peru"], ["cat", None], [(), ()]),
        ("· spell 'dog'\n· negate 'It rains.'", ["spell 'dog'", "negate 'It rains.'"], ["dog", "It rains."], [(), ()]),
        # ... but one item that is not a task keeps the clause whole
        ("Which is smaller, a hamster or a rabbit?", ["Which is smaller, a hamster or a rabbit?"], [None], [()]),
        ("Give a synonym of 'big', 5 letters", ["Give a synonym of 'big', 5 letters"], ["big"], [()]),
        ("Spell 'owl'\nThanks a lot", ["Spell 'owl'"], ["owl"], [()]),
        # openers and connectors of sequence and addition; ordinal subjects number steps in prose
        ("To start with, negate 'The dog barks.' Subsequently, say whether the result is positive or negative.",
         ["negate 'The dog barks.'", "say whether {s1} is positive or negative"], ["The dog barks.", "{s1}"], [(), ("s1",)]),
        ("First of all, spell 'apple'. Additionally, give the plural of 'pear'.", ["spell 'apple'", "give the plural of 'pear'"], ["apple", "pear"], [(), ()]),
        ("I have two questions. The first is the capital of Chad. The second is the plural of 'goose'.",
         ["the capital of Chad", "the plural of 'goose'"], [None, "goose"], [(), ()]),
        # back-references: a participle noun phrase anywhere, "there" after any verb, a pronoun
        # subject with a number of its own, a head noun without its complement on the same input
        ("Reverse 'stop'. Is the reversed word a real word?", ["Reverse 'stop'", "Is {s1} a real word?"], ["stop", "{s1}"], [(), ("s1",)]),
        ("Negate 'It snows.' Then is the negated sentence positive or negative?",
         ["Negate 'It snows.'", "is {s1} positive or negative?"], ["It snows.", "{s1}"], [(), ("s1",)]),
        ("What's the capital of Peru? Suggest a museum to visit there.", ["What's the capital of Peru?", "Suggest a museum to visit {s1}"], [None, "{s1}"], [(), ("s1",)]),
        ("Which region is Chad in? And what's the capital there?", ["Which region is Chad in?", "what's the capital of Chad?"], [None, "Chad"], [(), ()]),
        ("Which region is Chad in? And the capital?", ["Which region is Chad in?", "the capital of Chad?"], [None, "Chad"], [(), ()]),
        ("What is the capital of Chad? What language do they speak there?",
         ["What is the capital of Chad?", "What language do they speak in Chad?"], [None, "Chad"], [(), ()]),
        ("Subtract 9 from 50. Is that bigger than 40?", ["Subtract 9 from 50", "Is {s1} bigger than 40?"], [None, "{s1}"], [(), ("s1",)]),
        ("Add 3 and 4. Was it under 10?", ["Add 3 and 4", "Was {s1} under 10?"], [None, "{s1}"], [(), ("s1",)]),
        # ... and what stays as it was
        ("Count how many words there are in 'a b c'.", ["Count how many words there are in 'a b c'"], ["a b c"], [()]),
        ("Is this question about a person or a place? Who wrote Hamlet?",
         ["Is this question about a person or a place? Who wrote Hamlet?"], ["Who wrote Hamlet?"], [()]),
    ],
)
def test_rules_fifth_session_clause_classifier(instruction, subgoals, inputs, deps):
    plan = RulesPlanner().plan(instruction)
    assert [s.subgoal for s in plan.steps] == subgoals
    assert [s.input for s in plan.steps] == inputs
    assert [s.depends_on for s in plan.steps] == deps
