"""The rules splitter's clause classes: chat filler, input carriers, follow-ups on the same input
(instructions written for these tests; none is in an eval set)."""

from __future__ import annotations

import pytest

from brickwork.orchestrator.planners.chat import is_filler, strip_chat
from brickwork.orchestrator.planners.followups import kinds, same_input
from brickwork.orchestrator.planners.rules import RulesPlanner


def _plan(instruction: str) -> list[tuple[str, str | None, tuple[str, ...]]]:
    return [(s.subgoal, s.input, s.depends_on) for s in RulesPlanner().plan(instruction).steps]


@pytest.mark.parametrize(
    ("clause", "filler"),
    [
        ("Sorry to bother you again", True),
        ("Thanks so much for your help", True),
        ("Help me with a word", True),
        ("I hope you are well", True),
        # a task no brick knows is still a task: filler is what chat is made of, not an unknown verb
        ("Compose a slogan for a bakery", False),
        ("Sorry, what is 4 plus 4", False),  # a number is an input
        ("Is this a question?", False),  # a question asks something
        ("Help me with \x000\x00", False),  # a masked input
        ("the", False),  # function words alone are no chat
    ],
)
def test_is_filler(clause, filler):
    assert is_filler(clause) is filler


@pytest.mark.parametrize(
    ("instruction", "wanted"),
    [
        ("Sorry to bother you again. Spell 'owl'.", "Spell 'owl'."),
        ("Apologies if this is a silly question, but what is the capital of Chad?", "what is the capital of Chad?"),
        ("Hi! Sorry for all the questions. Negate 'It snows.'", "Negate 'It snows.'"),
        ("Pluralize 'ox'. Much appreciated!", "Pluralize 'ox'."),
        # a sentence with task words stays
        ("Sorry, I need the plural of 'ox'.", "Sorry, I need the plural of 'ox'."),
    ],
)
def test_strip_chat_drops_filler_sentences_around_the_request(instruction, wanted):
    assert strip_chat(instruction) == wanted


@pytest.mark.parametrize(
    ("instruction", "plan"),
    [
        # filler between tasks is no step
        ("Spell 'owl'. Thank you so much. Then give the plural of 'ox'.",
         [("Spell 'owl'", "owl", ()), ("give the plural of 'ox'", "ox", ())]),
        # an input carrier fills the step before when that step names an object it does not give
        ("Pluralize a word for me. Here it is: 'goose'.", [("Pluralize a word for me. Here it is: 'goose'", "goose", ())]),
        ("Write a number in words. The number is 4410.", [("Write a number in words. The number is 4410", "4410", ())]),
        # ... else it introduces the input a later "it" means
        ("Here it is: 'lantern'. Spell it letter by letter.", [("Spell lantern letter by letter", "lantern", ())]),
        # ... and a step that gives its own input is not filled
        ("Spell 'owl'. The word is 'hawk'.", [("Spell 'owl'", "owl", ())]),
    ],
)
def test_filler_and_input_carriers(instruction, plan):
    assert _plan(instruction) == plan


@pytest.mark.parametrize(
    ("instruction", "second"),
    [
        # "it" cannot be the answer (a city has no continent of its own here, a count no last letter):
        # the same input
        ("What is the capital of Mali? Next, which continent is it on?", ("which continent is Mali on?", "Mali", ())),
        ("Count the letters in 'banana'. Then, what letter does it end with?", ("what letter does banana end with?", "banana", ())),
        ("Write 58 in words. Next, write it in Roman numerals.", ("write 58 in Roman numerals", "58", ())),
        # "it" can be the answer: a chain
        ("Give the plural of 'ox'. Then, how many letters does it have?", ("how many letters does {s1} have?", "{s1}", ("s1",))),
        ("What is 14 plus 9? Then write it in words.", ("write {s1} in words", "{s1}", ("s1",))),
        ("What is the capital of Mali? Then spell it.", ("spell {s1}", "{s1}", ("s1",))),
        # "that city" / "the result" always mean the answer
        ("What is the capital of Mali? Next, which region is that city in?", ("which region is {s1} in?", "{s1}", ("s1",))),
        # a task the table does not know: a chain, as before
        ("Negate 'It rains.' Then summarise it in two words.", ("summarise {s1} in two words", "{s1}", ("s1",))),
    ],
)
def test_follow_ups_on_the_same_input_or_the_answer(instruction, second):
    steps = _plan(instruction)
    assert len(steps) == 2 and steps[1] == second


def test_kinds_and_same_input():
    assert kinds("What is the capital of Mali") == (frozenset({"country"}), frozenset({"city", "word"}))
    assert kinds("Write a haiku about the sea") is None
    assert same_input("What is the capital of Mali", "which continent is it on?")
    assert not same_input("What is the capital of Mali", "which continent is that city on?")  # no bare pronoun
    assert not same_input("Write a haiku", "which continent is it on?")  # unknown: a chain
