"""Orchestrator unit tests: planners, plan parsing, the graph, batching, resume — on fakes (fast)."""

from __future__ import annotations

import json
import threading

import pytest

from brickwork.errors import BackendError, ConfigError, PlanError
from brickwork.serving.batching import BatchingEngine
from brickwork.orchestrator.planners.base import PLAN_SCHEMA, parse_plan
from brickwork.orchestrator.planners.brick import BrickPlanner
from brickwork.orchestrator.planners.rules import RulesPlanner
from brickwork.tasks.synth import chained_gold, generate, number_in_words
from brickwork.orchestrator.types import Plan, Step
from brickwork.serving.fake import FakeEngine
from tests.conftest_orchestrator import FakeStore, KeywordRetriever, brick_answer


@pytest.fixture
def bw(tmp_path):
    from brickwork.orchestrator.sdk import Brickwork

    engine = FakeEngine(respond=brick_answer)
    b = Brickwork(engine=engine, planner="rules", retriever=KeywordRetriever(), store=FakeStore(tmp_path / "lib"))
    yield b
    b.close()


# -- rules planner ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "instruction",
    [
        "What is the capital of Peru?",
        "Give the plural of 'mouse'.",
        "Is 'I loved it, and then I hated it' positive or negative?",
        "Classify this SMS: Free entry in 2 a weekly comp. Txt WIN to 80082 now!",
        "What is 82 plus 23?",
        "Reformat 1999-12-31 as !MM!DD!YYYY!.",
        "Which is larger, a dog or a cougar?",
        "What is the last letter of 'apple'?",
        'Tell me whether "The food was cold. Service was slow." is positive or negative.',
        "Is this question about a person or a location? Who painted the Mona Lisa?",
    ],
)
def test_rules_single_task_is_one_step(instruction):
    plan = RulesPlanner().plan(instruction)
    assert len(plan.steps) == 1, plan
    assert plan.steps[0].depends_on == ()


@pytest.mark.parametrize(
    ("instruction", "subgoals", "inputs", "deps"),
    [
        (
            "Give the plural of 'mouse', then spell it letter by letter.",
            ["Give the plural of 'mouse'", "spell {s1} letter by letter"],
            ["mouse", "{s1}"],
            [(), ("s1",)],
        ),
        (
            "Give the plural of the word 'wolf', then write the number 47 in words.",
            ["Give the plural of the word 'wolf'", "write the number 47 in words"],
            ["wolf", "47"],
            [(), ()],
        ),
        ("1. Spell 'cat'\n2. Pluralize 'dog'\n3. Capital of Peru?", ["Spell 'cat'", "Pluralize 'dog'", "Capital of Peru?"], ["cat", "dog", None], [(), (), ()]),
        ("Here is the word 'mouse'. Make it plural.", ["Make mouse plural"], ["mouse"], [()]),
        # "take" is the task here, not an intro
        ("Take 15 away from 90, then spell the word 'garden'.", ["Take 15 away from 90", "spell the word 'garden'"], [None, "garden"], [(), ()]),
        ("Pluralize 'ox'. Last, what is 4 plus 5?", ["Pluralize 'ox'", "what is 4 plus 5?"], ["ox", None], [(), ()]),
        # the question after "this question" is its input, not a step
        (
            "Spell 'tree'. Then is this question about a number or a place? How tall is Everest?",
            ["Spell 'tree'", "is this question about a number or a place? How tall is Everest?"],
            ["tree", "How tall is Everest?"],
            [(), ()],
        ),
        ("Answer this question: Where is Lima?", ["Answer this question: Where is Lima?"], ["Where is Lima?"], [()]),
        ("The year: 1984. Write that number in words.", ["Write 1984 in words"], ["1984"], [()]),
        ("These animals: cat, horse. Name the bigger one.", ["Name the bigger of cat, horse"], ["cat, horse"], [()]),
        (
            "Compare the mouse and the moose and say which one is heavier, then spell it.",
            ["Compare the mouse and the moose and say which one is heavier", "spell {s1}"],
            [None, "{s1}"],
            [(), ("s1",)],
        ),
        # sentences that start with a head noun or a preposition and a question word
        (
            "Spell 'rain' backwards. Opposite of cold? In which continent is Chile?",
            ["Spell 'rain' backwards", "Opposite of cold?", "In which continent is Chile?"],
            ["rain", None, None],
            [(), (), ()],
        ),
        ("Spam or ham: see you at 5, and what is 2 plus 2?", ["Spam or ham: see you at 5", "what is 2 plus 2?"], ["see you at 5", None], [(), ()]),
        # a semicolon inside an input does not end it; "second," does
        (
            "Label this review: I liked it; the ending was weak. Then translate 'hello' into French.",
            ["Label this review: I liked it; the ending was weak", "translate 'hello' into French"],
            ["I liked it; the ending was weak", "hello"],
            [(), ()],
        ),
        (
            "First, sort these words: pear apple fig; second, count the letters in 'banana'.",
            ["sort these words: pear apple fig", "count the letters in 'banana'"],
            ["pear apple fig", "banana"],
            [(), ()],
        ),
        # a list whose first item shares a line with the intro
        ("The sentence: 'It is raining.'\n- Negate it\n- Name its language", ["Negate It is raining.", "Name the language of {s1}"], ["It is raining.", "{s1}"], [(), ("s1",)]),
        # a quote that ends a sentence, and "the negated sentence" / "the colour" referring back
        (
            "Here is a sentence: 'Birds fly.' Negate it, then name the language of the negated sentence.",
            ["Negate Birds fly.", "name the language of {s1}"],
            ["Birds fly.", "{s1}"],
            [(), ("s1",)],
        ),
        ("What colour is rgb(0, 0, 255)? Spell the colour backwards.", ["What colour is rgb(0, 0, 255)?", "Spell {s1} backwards"], ["rgb(0, 0, 255)", "{s1}"], [(), ("s1",)]),
        ("Give the capital of France. Then give the capital city of Italy.", ["Give the capital of France", "give the capital city of Italy"], [None, None], [(), ()]),
    ],
)
def test_rules_splits(instruction, subgoals, inputs, deps):
    plan = RulesPlanner().plan(instruction)
    assert [s.subgoal for s in plan.steps] == subgoals
    assert [s.input for s in plan.steps] == inputs
    assert [s.depends_on for s in plan.steps] == deps


# -- plan parsing -------------------------------------------------------------------------------
def test_parse_compact_plan_with_reference():
    inst = "Give the plural of 'mouse', then spell it."
    plan = parse_plan('[{"subgoal":"Give the plural of \'{x}\'","input":"mouse"},{"subgoal":"spell {x}","input":"{1}"}]', planner="brick", instruction=inst)
    assert [s.subgoal for s in plan.steps] == ["Give the plural of 'mouse'", "spell {s1}"]
    assert plan.steps[1].depends_on == ("s1",) and plan.steps[1].input == "{s1}"


def test_parse_design_shape():
    raw = {"steps": [{"id": "a", "subgoal": "Capital of Peru?", "depends_on": []}, {"id": "b", "subgoal": "Spell {a}", "depends_on": ["a"]}]}
    plan = parse_plan(raw, planner="openai", instruction="Capital of Peru? Spell it.", check_grounding=False)
    assert [s.id for s in plan.steps] == ["s1", "s2"]
    assert plan.steps[1].subgoal == "Spell {s1}" and plan.steps[1].depends_on == ("s1",)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("not json", "not JSON"),
        ("[]", "1 to 8 steps"),
        (json.dumps([{"subgoal": "s", "input": ""}] * 9), "1 to 8 steps"),
        ('[{"subgoal":"spell {x}","input":"{2}"},{"subgoal":"plural of mouse","input":"mouse"}]', "not an earlier step"),
        ('[{"subgoal":"Give the plural of {x}","input":"elephant"}]', "not in the instruction"),
        ('[{"subgoal":"Give the plural of {x}","input":"mouse"}]', "leaves out"),
        ('[{"subgoal":"","input":"mouse"}]', "non-empty"),
        ('{"plan": 1}', "list of steps"),
    ],
)
def test_parse_rejects(raw, why):
    with pytest.raises(PlanError, match=why):
        parse_plan(raw, planner="brick", instruction="Give the plural of 'mouse', then spell 'cat'.")


def test_brick_planner_falls_back_to_rules_on_malformed_output():
    engine = FakeEngine(respond=lambda req: '[{"subgoal":"Translate {x} to Klingon","input":"spaceship"}]')
    [plan] = BrickPlanner(engine).plan_batch(["Give the plural of 'mouse', then spell it letter by letter."])
    assert plan.planner == "rules" and plan.fallback_reason
    assert len(plan.steps) == 2 and plan.steps[1].depends_on == ("s1",)
    # the planner asked for schema-constrained JSON
    assert engine.calls[0][0].sampling.json_schema == PLAN_SCHEMA


# the rules chain here ("it" is the capital: the letters of Lima) ...
_LETTERS = "Name the capital of Peru; how many letters does it have?"
# ... and read this one as the same input (a region is asked of a country, not of its capital)
_SAME_INPUT = "Name the capital of Peru; which region is it in?"
_CHAIN = "Negate 'Cats are big.', then name the language of that sentence."
_OWN = "Which continent is Chile on? Next, spell the word corner one letter at a time."
_THREE = (
    '[{"subgoal":"Name the capital of {x}","input":"Peru"},{"subgoal":"how many letters does {x} have?","input":"Peru"},'
    '{"subgoal":"Name {x}","input":"{1}"}]'
)


@pytest.mark.parametrize(
    ("instruction", "raw", "cross_check", "planner", "why"),
    [
        # reads "it" as the input named earlier where the rules chain: the rules' reading is used
        (_LETTERS, '[{"subgoal":"Name the capital of {x}","input":"Peru"},{"subgoal":"how many letters does {x} have?","input":"Peru"}]',
         True, "rules", "s2 works on no earlier step, the rules splitter's on s1"),
        # agrees with the rules: kept; also where the rules read a follow-up on the same input
        (_LETTERS, '[{"subgoal":"Name the capital of {x}","input":"Peru"},{"subgoal":"how many letters does {x} have?","input":"{1}"}]',
         True, "brick", None),
        (_SAME_INPUT, '[{"subgoal":"Name the capital of {x}","input":"Peru"},{"subgoal":"which region is {x} in?","input":"Peru"}]',
         True, "brick", None),
        # grounded and well-formed, but one step too many: rejected by the cross-check, kept without it
        (_LETTERS, _THREE, True, "rules", "3 steps, the rules splitter finds 2"),
        (_LETTERS, _THREE, False, "brick", None),
        # same count, steps that are not the instruction's clauses in order
        (_LETTERS, '[{"subgoal":"how many letters does {x} have?","input":"Peru"},{"subgoal":"Name the capital of {x}","input":"Peru"}]',
         True, "rules", "is not the rules splitter's"),
        # an input lifted from another clause (where the rules chain, or where the clause has its own)
        (_CHAIN, '[{"subgoal":"Negate \'{x}\'","input":"Cats are big."},{"subgoal":"name the language of {x}","input":"Cats"}]',
         True, "rules", "s2 works on no earlier step, the rules splitter's on s1"),
        (_OWN, '[{"subgoal":"Which continent is {x} on?","input":"Chile"},{"subgoal":"spell the word {x} one letter at a time","input":"Chile"}]',
         True, "rules", "takes input 'Chile' from outside its clause"),
        (_CHAIN, '[{"subgoal":"Negate \'{x}\'","input":"Cats are big."},{"subgoal":"name the language of {x}","input":"{1}"}]',
         True, "brick", None),
        # a chain where the clause names its own input
        (_OWN, '[{"subgoal":"Which continent is {x} on?","input":"Chile"},{"subgoal":"spell {x} one letter at a time","input":"{1}"}]',
         True, "rules", "s2 works on s1, the rules splitter's on no earlier step"),
    ],
)
def test_brick_planner_cross_checks_segmentation(instruction, raw, cross_check, planner, why):
    engine = FakeEngine(respond=lambda req: raw)
    [plan] = BrickPlanner(engine, cross_check=cross_check, check_grounding=False).plan_batch([instruction])
    assert plan.planner == planner, plan.fallback_reason
    if why is None:
        assert plan.fallback_reason is None
    else:
        assert why in plan.fallback_reason and plan.raw == raw
    if planner == "brick" and instruction == _LETTERS and len(plan.steps) == 2:
        assert plan.steps[1].input == "{s1}" and plan.steps[1].depends_on == ("s1",)
    if planner == "brick" and instruction == _SAME_INPUT:
        assert plan.steps[1].input == "Peru" and plan.steps[1].depends_on == ()


def test_brick_planner_agreeing_plan_keeps_the_instruction_wording_and_the_brick_inputs():
    inst = "Think about this sentence \"Some clubs are exclusive.\". Can you tell me: Write its negation."
    raw = '[{"subgoal":"Think about this sentence: {x}","input":"Some clubs are exclusive."}]'
    [plan] = BrickPlanner(FakeEngine(respond=lambda req: raw), check_grounding=False).plan_batch([inst])
    assert plan.planner == "brick" and plan.fallback_reason is None and plan.raw == raw
    [step] = plan.steps
    assert step.subgoal == "Write the negation of Some clubs are exclusive." and step.input == "Some clubs are exclusive."


def test_brick_planner_engine_failure_falls_back():
    class Broken:
        name = "broken"

        def generate(self, requests):
            raise BackendError("server down")

    [plan] = BrickPlanner(Broken()).plan_batch(["What is the capital of Peru?"])
    assert plan.planner == "rules" and "server down" in plan.fallback_reason


# -- the graph ----------------------------------------------------------------------------------
def test_two_step_dependent_passes_output(bw):
    r = bw.run("Give the plural of 'mouse', then spell it letter by letter.")
    s1, s2 = r.steps
    assert s1.output == "mice" and [b.name for b in s1.bricks] == ["english_plural"]
    assert s2.depends_on == ("s1",) and "mice" in s2.subgoal
    assert s2.output == "m i c e" and r.answer == "m i c e"
    # the brick was asked in its own format: description + input
    assert s1.prompt == "Give the plural form of the given English noun.\nmouse"


def test_dependent_step_is_routed_with_the_earlier_output_masked(tmp_path):
    """'name the language of <a negated sentence>' must not go to the negation brick because the
    sentence it got looks like that brick's examples: the retriever sees the output masked."""
    from brickwork.orchestrator.sdk import Brickwork

    retriever = KeywordRetriever()
    with Brickwork(engine=FakeEngine(respond=brick_answer), planner="rules", retriever=retriever, store=FakeStore(tmp_path / "lib")) as b:
        r = b.run("Give the plural of 'mouse', then spell it letter by letter.")
    assert retriever.queries == ["Give the plural of 'mouse'", "spell X letter by letter"]
    assert r.steps[1].subgoal == "spell mice letter by letter"  # the trace shows what ran


def test_independent_steps_share_one_engine_call(bw):
    r = bw.run("Give the plural of 'wolf'. Also, what is the capital of Peru?")
    assert r.answer == "wolves\nLima"
    sizes = [len(c) for c in bw.engine.engine.calls]
    assert sizes == [2], sizes


def test_no_brick_fits_runs_on_base(bw):
    r = bw.run("Write a haiku about the sea.")
    assert r.steps[0].bricks == () and r.steps[0].output.startswith("[base]")
    assert r.to_json()["steps"][0]["bricks"] == []


def test_json_contract(bw):
    d = bw.run("Give the plural of 'mouse', then spell it letter by letter.").to_json()
    assert list(d) == ["run_id", "instruction", "answer", "steps", "seconds"]
    for s in d["steps"]:
        assert list(s) == ["id", "subgoal", "depends_on", "bricks", "output", "engine", "seconds"]
        for b in s["bricks"]:
            assert list(b) == ["name", "version", "weight", "score"]
    json.dumps(d)


def test_a_retriever_that_explains_puts_its_why_in_the_trace(tmp_path):
    """`ExplainingRetriever` (route_with_reasons) is used when the retriever has it; a plain
    retriever (only `route`, as a user's own) still works and leaves no `why`."""
    from brickwork.orchestrator.context import ExplainingRetriever
    from brickwork.orchestrator.sdk import Brickwork

    class Explaining(KeywordRetriever):
        def route_with_reasons(self, queries, inputs=None):
            return [(c, {"decision": "brick" if c else "base", "reason": "keyword"}) for c in self.route(queries, inputs)]

    assert isinstance(Explaining(), ExplainingRetriever) and not isinstance(KeywordRetriever(), ExplainingRetriever)
    with Brickwork(engine=FakeEngine(respond=brick_answer), planner="rules", retriever=Explaining(), store=FakeStore(tmp_path / "lib")) as b:
        d = b.run("Give the plural of 'wolf'. Also, write a haiku about the sea.").to_json()
    assert [s["why"] for s in d["steps"]] == [{"decision": "brick", "reason": "keyword"}, {"decision": "base", "reason": "keyword"}]
    assert d["steps"][1]["bricks"] == []


def test_fixed_bricks_and_base(bw):
    r = bw.run("mouse", bricks=["english_plural:0.5"])
    assert len(r.steps) == 1 and r.steps[0].bricks[0].weight == 0.5 and r.steps[0].bricks[0].score is None
    assert r.plan.planner == "fixed"
    r = bw.run("Give the plural of 'mouse', then spell it.", base_only=True)
    assert len(r.steps) == 1 and r.steps[0].bricks == ()
    with pytest.raises(Exception, match="no brick named"):
        bw.run("x", bricks=["nope"])
    with pytest.raises(ConfigError):
        bw.run("   ")


def test_stream_events(bw):
    events = list(bw.stream("Give the plural of 'mouse', then spell it letter by letter."))
    kinds = [e["event"] for e in events]
    assert kinds == ["start", "plan", "route", "step", "route", "step", "answer", "done"]
    assert events[-1]["result"]["answer"] == "m i c e"


def test_run_batch_merges_engine_calls_and_keeps_order(bw):
    inst = ["Give the plural of 'wolf'", "Spell 'cat'", "What is the capital of Peru?", "Give the plural of 'mouse', then spell it."]
    results = bw.run_batch(inst)
    assert [r.instruction for r in results] == inst
    assert [r.answer for r in results] == ["wolves", "c a t", "Lima", "m i c e"]
    calls = bw.engine.engine.calls
    assert len(calls) < len(inst) + 1, [len(c) for c in calls]  # 5 generations in at most 4 batches


def test_resume_after_crash_does_not_redo_finished_steps(tmp_path):
    from brickwork.orchestrator.sdk import Brickwork

    state = {"fail": True}

    def flaky(req):
        if "spell" in req.prompt.lower() or "letters" in req.prompt.lower():
            if state["fail"]:
                raise BackendError("engine died")
        return brick_answer(req)

    engine = FakeEngine(respond=flaky)
    b = Brickwork(engine=engine, planner="rules", retriever=KeywordRetriever(), store=FakeStore(tmp_path / "lib"))
    events = []
    with pytest.raises(BackendError):
        for ev in b.stream("Give the plural of 'mouse', then spell it letter by letter.", run_id="crash-1"):
            events.append(ev)
    assert [e["event"] for e in events if e["event"] == "step"] == ["step"]
    b.close()
    state["fail"] = False
    engine2 = FakeEngine(respond=flaky)
    b2 = Brickwork(engine=engine2, planner="rules", retriever=KeywordRetriever(), store=FakeStore(tmp_path / "lib"))
    partial = b2.get_run("crash-1")
    assert [s.id for s in partial.steps] == ["s1"]
    r = b2.resume("crash-1")
    assert r.answer == "m i c e" and [s.output for s in r.steps] == ["mice", "m i c e"]
    assert len(engine2.calls) == 1 and "mice" in engine2.calls[0][0].prompt  # only step 2 ran
    b2.close()


def test_feedback_through_sdk(bw):
    r = bw.run("Give the plural of 'mouse'.")
    ev = bw.feedback(r.run_id, "s1", correction="mice!")
    assert ev.kind == "correction" and ev.bricks[0]["name"] == "english_plural" and ev.output == "mice"
    with pytest.raises(ConfigError, match="no finished step"):
        bw.feedback(r.run_id, "s9", good=True)
    with pytest.raises(ConfigError):
        bw.feedback(r.run_id, "s1")


def test_graph_is_a_subgraph(bw):
    """The compiled graph embeds in a parent LangGraph graph."""
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    from brickwork.orchestrator.context import Deps
    from brickwork.orchestrator.graph import compile_graph

    class Parent(TypedDict, total=False):
        instruction: str
        answer: str

    parent = StateGraph(Parent, context_schema=Deps)
    parent.add_node("brickwork", compile_graph())
    parent.add_edge(START, "brickwork")
    parent.add_edge("brickwork", END)
    out = parent.compile().invoke({"instruction": "Give the plural of 'wolf'."}, context=bw.deps)
    assert out["answer"] == "wolves"


# -- batching -----------------------------------------------------------------------------------
def test_batching_engine_coalesces_threads():
    from brickwork.serving.engine import Request

    inner = FakeEngine()
    eng = BatchingEngine(inner, window_s=1.0)
    results = {}
    for _ in range(4):
        eng.enter()

    def call(i):
        results[i] = eng.generate([Request(prompt=f"p{i}")])[0].text
        eng.leave()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {i: f"[base] p{i}" for i in range(4)}
    assert sum(len(c) for c in inner.calls) == 4 and len(inner.calls) <= 2


# -- the composite generator --------------------------------------------------------------------
def test_generator_is_deterministic_and_held_out():
    from brickwork.tasks.phrasings import CONNECTORS, TASKS, split_items

    a = [c.instruction for c in generate(30, part="test", seed=3)]
    assert a == [c.instruction for c in generate(30, part="test", seed=3)]
    for ph in TASKS.values():
        assert not set(split_items(ph.direct, "train")) & set(split_items(ph.direct, "test"))
    assert not set(split_items(CONNECTORS[2], "train")) & set(split_items(CONNECTORS[2], "test"))
    train_inputs = {s.input for c in generate(200, part="train", seed=0) for s in c.steps}
    test_inputs = {s.input for c in generate(200, part="test", seed=0) for s in c.steps if not s.refs}
    assert len(test_inputs - train_inputs) > 0.8 * len(test_inputs)


def test_generated_gold_plans_parse_and_chains_score():
    for c in generate(60, part="test", seed=1):
        plan = parse_plan(c.plan_target(), planner="gold", instruction=c.instruction, check_grounding=False)
        assert len(plan.steps) == len(c.steps)
        assert all(s.expected for s in c.steps), c.to_json()
    assert number_in_words(4448) == "four thousand, four hundred and forty-eight"
    assert chained_gold("spell_word", "Lima") == "l i m a"
    assert chained_gold("number_to_words", "105") == "one hundred and five"


def test_plan_json_roundtrip():
    p = Plan(steps=(Step(id="s1", subgoal="a", input="x"), Step(id="s2", subgoal="b {s1}", input="{s1}", depends_on=("s1",))), planner="rules")
    assert Plan.from_json(json.loads(json.dumps(p.to_json()))) == p
    assert [s.id for s in p.sinks()] == ["s2"]


# -- the OpenAI-compatible planner ----------------------------------------------------------------
def test_openai_planner_success_and_fallbacks():
    import httpx

    from brickwork.orchestrator.planners.openai import OpenAIPlanner

    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        inst = body["messages"][-1]["content"]
        if "boom" in inst:
            return httpx.Response(500, json={"error": "overloaded"})
        if "garbage" in inst:
            return httpx.Response(200, json={"choices": [{"message": {"content": "Sure! Step 1: ..."}}]})
        plan = {"steps": [{"subgoal": "Give the plural of '{x}'", "input": "mouse"}, {"subgoal": "spell {x}", "input": "{1}"}]}
        return httpx.Response(200, json={"choices": [{"message": {"content": json.dumps(plan)}}]})

    p = OpenAIPlanner(base_url="http://llm/v1", model="big", transport=httpx.MockTransport(handler))
    ok, boom, garbage = p.plan_batch(
        ["Give the plural of 'mouse', then spell it.", "boom: spell 'cat'", "garbage: spell 'cat'"]
    )
    assert ok.planner == "openai" and ok.steps[1].depends_on == ("s1",)
    assert seen[0]["response_format"]["type"] == "json_schema" and seen[0]["temperature"] == 0
    assert boom.planner == "rules" and "500" in boom.fallback_reason
    assert garbage.planner == "rules" and "not JSON" in garbage.fallback_reason
    with pytest.raises(ConfigError, match="base_url and model"):
        OpenAIPlanner(base_url="", model="")
