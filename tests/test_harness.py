"""The lm-eval model (`brickwork.evals.harness`) over FakeEngine: fast, no model runs.

lm-eval's `Instance`s go in as the harness sends them; what reaches the engine and what comes
back are checked against FakeEngine's deterministic scores.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402

from brickwork.errors import ConfigError  # noqa: E402
from brickwork.serving.batching import BatchingEngine  # noqa: E402
from brickwork.serving import FakeEngine, Request, ScoreRequest  # noqa: E402
from brickwork.tasks import render_prompt  # noqa: E402
from tests.conftest_orchestrator import FakeStore, KeywordRetriever  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from brickwork.models import resolve_base_model

    return AutoTokenizer.from_pretrained(resolve_base_model().path)


@pytest.fixture
def fake(tmp_path):
    return SimpleNamespace(store=FakeStore(tmp_path), engine=FakeEngine(), retriever=KeywordRetriever())


def make_lm(fake, tokenizer, **kw):
    from brickwork.evals.harness.model import BrickworkLM

    from brickwork.prompts import CHATML

    bw = SimpleNamespace(store=fake.store, engine=BatchingEngine(fake.engine), retriever=fake.retriever)
    return BrickworkLM(brickwork=bw, tokenizer=tokenizer, **{"prompts": CHATML, **kw})


def inst(kind, args, idx=0):
    return Instance(request_type=kind, doc={}, arguments=args, idx=idx)


def scored(fake):
    return [r for call in fake.engine.calls for r in call if isinstance(r, ScoreRequest)]


# -- options ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"engine": "tgi"}, "`engine` should be one of"),
        ({"bricks": ""}, "`bricks` should be"),
        ({"bricks": "a:heavy"}, "weight 'heavy' is not a number"),
        ({"batch_size": 0}, "`batch_size` should be a positive integer"),
        ({"max_length": "long"}, "`max_length` should be a positive integer"),
        ({"libary": "x"}, "unknown model_args ['libary']"),
    ],
)
def test_bad_model_args(fake, tokenizer, kwargs, message):
    with pytest.raises(ConfigError) as exc:
        make_lm(fake, tokenizer, **kwargs)
    assert message in str(exc.value)


def test_model_args_string_is_parsed_like_lm_eval():
    from lm_eval.utils import simple_parse_args_string

    from brickwork.evals.harness.options import HarnessOptions

    opts, rest = HarnessOptions.from_kwargs(
        simple_parse_args_string("library=/tmp/lib,engine=vllm,bricks=a:0.5+b@2:0.5,batch_size=8") | {"device": None}
    )
    assert (opts.library, opts.engine, opts.batch_size) == ("/tmp/lib", "vllm", 8)
    assert opts.specs == ["a:0.5", "b@2:0.5"]
    assert rest == {"device": None}
    assert HarnessOptions.from_kwargs({"batch_size": "auto"})[0].batch_size == 16


def test_registered_in_lm_eval():
    import brickwork.evals.harness.model as model
    from lm_eval.api.registry import get_model

    assert get_model("brickwork") is model.BrickworkLM


# -- loglikelihood ------------------------------------------------------------------------------
def test_loglikelihood_sums_the_continuation_under_the_fixed_bricks(fake, tokenizer):
    lm = make_lm(fake, tokenizer, bricks="english_plural:0.5+spell_word:0.5", batch_size=2)
    reqs = [inst("loglikelihood", ("The plural of mouse is", " mice"), i) for i in range(3)]
    reqs.append(inst("loglikelihood", ("", "hello world"), 3))
    out = lm.loglikelihood(reqs)
    sent = scored(fake)
    assert len(sent) == 4 and {len(call) for call in fake.engine.calls} <= {1, 2}  # batches of batch_size
    assert all([b.name for b in r.bricks] == ["english_plural", "spell_word"] and r.top_logprobs == 1 for r in sent)
    ctx = tokenizer.encode("The plural of mouse is", add_special_tokens=False)
    cont = tokenizer.encode("The plural of mouse is mice", add_special_tokens=False)[len(ctx) :]
    expected = fake.engine.score([ScoreRequest(prompt=tuple(ctx + cont), bricks=sent[0].bricks)])[0]
    assert out[0][0] == pytest.approx(sum(expected.logprobs[-len(cont) :]))
    assert out[0][1] is True  # FakeEngine's top-1 is always the token itself
    assert out[3][0] < 0 and sent[-1].prompt[0] in (tokenizer.bos_token_id, tokenizer.eos_token_id)


def test_configurations_give_different_scores(fake, tokenizer):
    req = [inst("loglikelihood", ("Is this spam? Win a prize now", " spam"))]
    base = make_lm(fake, tokenizer, bricks="base").loglikelihood(req)[0][0]
    brick = make_lm(fake, tokenizer, bricks="country_capital").loglikelihood(req)[0][0]
    assert base != brick
    assert [r.bricks for r in scored(fake)][0] == ()


def test_greedy_is_false_when_a_token_is_not_the_argmax(fake, tokenizer):
    from brickwork.serving.engine import PromptScore

    class Picky(FakeEngine):
        def score(self, requests):
            return [
                PromptScore(token_ids=r.prompt, tokens=("x",) * len(r.prompt), logprobs=(None,) + (-1.0,) * (len(r.prompt) - 1),
                            top=((),) + ((("y", -0.5),),) * (len(r.prompt) - 1))
                for r in requests
            ]

    fake.engine = Picky()
    [(lp, greedy)] = make_lm(fake, tokenizer, bricks="base").loglikelihood([inst("loglikelihood", ("a b", " c d"))])
    assert greedy is False and lp < 0


def test_routed_routes_each_context_once_on_its_user_message(fake, tokenizer):
    lm = make_lm(fake, tokenizer, bricks="routed")
    ctx = render_prompt("Give the plural form of the given English noun.\nmouse")
    reqs = [inst("loglikelihood", (ctx, c), i) for i, c in enumerate(["mice", "mouses"])]
    reqs.append(inst("loglikelihood", (render_prompt("What is 2+2?"), "4"), 2))
    lm.loglikelihood(reqs)
    assert fake.retriever.queries == ["Give the plural form of the given English noun.\nmouse", "What is 2+2?"]
    assert [[b.name for b in r.bricks] for r in scored(fake)] == [["english_plural"], ["english_plural"], []]
    info = lm.get_model_info()
    assert info["brickwork_routes"] == {"english_plural@1:1": 2, "base": 1}


def test_routed_chat_prompt_routes_on_its_system_description_and_last_user_message(fake, tokenizer):
    """lm-eval puts a task's description in the system turn: it is part of the request's query."""
    from brickwork.evals.harness.model import chat_query

    lm = make_lm(fake, tokenizer, bricks="routed")
    chat = [{"role": "system", "content": "Evaluate the result of a random Boolean expression."},
            {"role": "user", "content": "Q: plural not ( True ) is"}]
    ctx = lm.apply_chat_template(chat)
    lm.loglikelihood([inst("loglikelihood", (ctx, " False"))])
    assert fake.retriever.queries == ["Evaluate the result of a random Boolean expression.\n\nQ: plural not ( True ) is"]
    assert chat_query([{"role": "user", "content": " a "}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]) == "c"
    assert chat_query([{"role": "system", "content": "s"}]) == ""


def test_loglikelihood_rolling_covers_every_token_once(fake, tokenizer):
    text = "one two three four five six seven eight nine ten eleven twelve"
    n_tokens = len(tokenizer.encode(text, add_special_tokens=False))
    lm = make_lm(fake, tokenizer, bricks="base", max_length=4)
    [total] = lm.loglikelihood_rolling([inst("loglikelihood_rolling", (text,))])
    sent = scored(fake)
    assert len(sent) >= n_tokens // 4 and all(len(r.prompt) <= 5 for r in sent)
    whole = make_lm(fake, tokenizer, bricks="base", max_length=64).loglikelihood_rolling([inst("loglikelihood_rolling", (text,))])
    assert total < 0 and whole[0] < 0


# -- generation ---------------------------------------------------------------------------------
def test_generate_until_honours_until_max_gen_toks_and_temperature(fake, tokenizer):
    fake.engine = FakeEngine(respond=lambda r: "alpha beta\ngamma delta epsilon")
    lm = make_lm(fake, tokenizer, bricks="english_plural")
    out = lm.generate_until([
        inst("generate_until", ("Q1", {"until": ["\n"], "max_gen_toks": 7, "do_sample": False})),
        inst("generate_until", ("Q2", {"until": ["delta"], "max_gen_toks": 3, "do_sample": True, "temperature": 0.7, "top_p": 0.9}), 1),
    ])
    assert out == ["alpha beta", "alpha beta gamma"]  # cut at "\n"; at 3 "tokens" (FakeEngine's are words)
    reqs = [r for call in fake.engine.calls for r in call if isinstance(r, Request)]
    s1, s2 = reqs[0].sampling, reqs[1].sampling
    assert (s1.max_tokens, s1.temperature, "\n" in s1.stop, "<|im_end|>" in s1.stop) == (7, 0.0, True, True)
    assert (s2.max_tokens, s2.temperature, s2.top_p, "delta" in s2.stop) == (3, 0.7, 0.9, True)
    assert all([b.name for b in r.bricks] == ["english_plural"] for r in reqs)


def test_generation_context_is_cut_on_the_left(fake, tokenizer):
    lm = make_lm(fake, tokenizer, bricks="base", max_length=16)
    lm.generate_until([inst("generate_until", (" ".join(["word"] * 50), {"max_gen_toks": 6}))])
    [req] = [r for call in fake.engine.calls for r in call]
    assert isinstance(req.prompt, tuple) and len(req.prompt) == 10


def test_chat_template_renders_the_bricks_prompt_format(fake, tokenizer):
    lm = make_lm(fake, tokenizer)
    assert lm.apply_chat_template([{"role": "user", "content": "Plural of mouse?"}]) == render_prompt("Plural of mouse?")
    shot = lm.apply_chat_template(
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A:"}],
        add_generation_prompt=False,
    )
    assert shot == "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA:"
    assert "<|im_start|>" in lm.chat_template(True) and lm.tokenizer_name
    with pytest.raises(ConfigError):
        lm.apply_chat_template([{"role": "robot", "content": "x"}])


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "Plural of mouse?"}],
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": " Q "}, {"role": "assistant", "content": "A"},
         {"role": "user", "content": "Q2"}],
        [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "The answer is"}],
    ],
)
def test_chatml_conversations_are_smollm2s_own_template_byte_for_byte(tokenizer, messages):
    """The server and the harness render the default base's chats as CHATML; SmolLM2's template
    (given a system message) must write the same bytes, gen prompt or continued final message."""
    from brickwork.prompts import CHATML, PromptFormat

    own = PromptFormat.from_tokenizer(tokenizer)
    for kw in ({}, {"add_generation_prompt": False}, {"continue_final_message": messages[-1]["role"] == "assistant"}):
        assert own.render_chat(messages, **kw) == CHATML.render_chat(messages, **kw)
    if len(messages) == 1:
        assert CHATML.render_chat(messages) == CHATML.render(messages[0]["content"])


# -- end to end through lm-eval -----------------------------------------------------------------
@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    from brickwork.evals.harness.tasks import write_tasks

    return write_tasks(tmp_path_factory.mktemp("harness-tasks"), ["sms_spam", "english_plural"])


def test_written_tasks_are_lm_eval_tasks(task_dir):
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(task_dir))
    names = set(tm.all_tasks)
    assert {"brickwork_sms_spam_mc", "brickwork_sms_spam_gen", "brickwork_english_plural_gen", "brickwork_mc"} <= names
    assert "brickwork_english_plural_mc" not in names  # open-ended task: generation only


@pytest.fixture(scope="module")
def oos_tasks(tmp_path_factory):
    """The out-of-scope tasks as `brickwork eval harness --out-of-scope` writes them, and one lm-eval
    TaskManager over them (indexing lm-eval's own tasks is the slow part: done once)."""
    from lm_eval.tasks import TaskManager

    from brickwork.evals.harness.suite import out_of_scope_tasks

    root = tmp_path_factory.mktemp("oos")
    names = out_of_scope_tasks(root, ["mc", "gen"])
    return names, TaskManager(include_path=str(root))


def test_out_of_scope_tasks_are_generated_facts_as_lm_eval_multiple_choice(oos_tasks):
    from brickwork.evals.harness.oos import DAYS, MONTHS, items, oos_names
    from brickwork.tasks import load_tasks

    names, tm = oos_tasks
    assert set(oos_names()) | {"brickwork_oos"} <= set(tm.all_tasks) and set(oos_names()) <= set(names)
    assert not {n.removeprefix("brickwork_oos_") for n in oos_names()} & set(load_tasks())  # no brick's task
    assert items("weekday", "test") == items("weekday", "test")  # seeded: the same everywhere
    for d in items("parity", "test"):
        assert d["label"] == int(d["query"].split()[3]) % 2
    for task, cycle in (("weekday", DAYS), ("month", MONTHS)):
        for d in items(task, "test"):
            given = next(w for w in cycle if f"after {w}?" in d["query"])
            assert cycle[d["label"]] == cycle[(cycle.index(given) + 1) % len(cycle)]


def test_shipped_bbh_files_are_the_upstream_copy_and_lm_eval_tasks(oos_tasks):
    """The three BIG-Bench Hard files ship unchanged (250 lines of {input, target}, the upstream
    sha256) and become lm-eval tasks: lm-eval's own zero-shot BBH prompt over the local file,
    a generation and a two-answer multiple-choice variant. No model runs."""
    import hashlib
    import json

    from lm_eval.tasks import get_task_dict

    from brickwork.evals.harness.bbh import TASKS, bbh_names, data_path, load
    from brickwork.tasks import load_tasks

    assert not set(TASKS) & set(load_tasks())  # no bundled task, so no brick, is one of them
    for task, (answers, sha) in TASKS.items():
        raw = data_path(task).read_bytes()
        rows = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
        assert len(rows) == 250 and raw.endswith(b"\n") and hashlib.sha256(raw).hexdigest() == sha
        assert all(set(r) == {"input", "target"} for r in rows) and {r["target"] for r in rows} == set(answers)
        assert load(task) == rows
    assert (data_path("web_of_lies").parent / "LICENSE").read_text().startswith("MIT License")
    names, tm = oos_tasks
    assert set(bbh_names()) | {"brickwork_bbh"} <= set(tm.all_tasks) and set(bbh_names()) <= set(names)
    tasks = get_task_dict(["brickwork_bbh_sports_understanding_gen", "brickwork_bbh_sports_understanding_mc"], tm)
    gen, mc = tasks["brickwork_bbh_sports_understanding_gen"], tasks["brickwork_bbh_sports_understanding_mc"]
    docs = list(gen.test_docs())
    assert len(docs) == 250 and docs[0] == load("sports_understanding")[0]
    for t in (gen, mc):  # lm-eval's bbh_zeroshot prompt and description, included from lm-eval itself
        assert t.doc_to_text(docs[0]) == f"Q: {docs[0]['input']}\nA:"
        assert t.config.description.startswith("Determine whether an artificially constructed sentence")
    assert gen.config.output_type == "generate_until" and gen.doc_to_target(docs[0]) == docs[0]["target"]
    assert [f["name"] for f in gen.config.filter_list] == ["strict-match", "flexible-extract"]
    assert "Q:" in gen.config.generation_kwargs["until"]
    assert mc.config.output_type == "multiple_choice" and mc.doc_to_choice(docs[0]) == ["yes", "no"]
    assert [m["metric"] for m in mc.config.metric_list] == ["acc", "acc_norm"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ('{"input": "x"}', "should be {'input': str, 'target'"),
        ('{"input": "x", "target": "maybe"}', "should be {'input': str, 'target'"),
        ('{"input": "x", "target": "yes"}', "1 valid examples, upstream has 250"),
    ],
)
def test_damaged_bbh_copy_fails_with_every_problem_named(tmp_path, monkeypatch, line, message):
    from brickwork.errors import BrickworkError
    from brickwork.evals.harness import bbh

    path = tmp_path / "sports_understanding.jsonl"
    path.write_text(line + "\n")
    monkeypatch.setattr(bbh, "data_path", lambda task: path)
    with pytest.raises(BrickworkError, match="sha256 differs") as err:
        bbh.load("sports_understanding")
    assert message in str(err.value)
    with pytest.raises(BrickworkError):
        bbh.write_bbh_tasks(tmp_path / "tasks")  # before writing any task file
    assert not list((tmp_path / "tasks").glob("*.yaml"))


def test_item_routes_record_each_items_bricks_and_scores():
    """Per item: the route its context got (through `BrickworkLM.route`, shared by all of its
    requests) and base/routed correctness on the task's first filter; summed per task."""
    from brickwork.evals.harness.suite import item_routes, routing_summary
    from brickwork.serving import BrickRef

    def sample(doc_id, ctx, score, flt="none", metric="acc"):
        return {"doc_id": doc_id, "arguments": [(ctx, " yes"), (ctx, " no")], "filter": flt, metric: score}

    samples = {
        "base": {"t_mc": [sample(0, "c0", 1.0), sample(1, "c1", 0.0)],
                 "t_gen": [sample(0, "g0", 0.0, "strict-match", "exact_match"), sample(0, "g0", 1.0, "flexible-extract", "exact_match")]},
        "routed": {"t_mc": [sample(0, "c0", 0.0), sample(1, "c1", 0.0)],
                   "t_gen": [sample(0, "g0", 1.0, "strict-match", "exact_match"), sample(0, "g0", 1.0, "flexible-extract", "exact_match")]},
    }
    brick = (BrickRef(name="spell_word", version=1, weight=1.0),)
    routes = {"c0": brick, "c1": (), "g0": brick}
    model = SimpleNamespace(route=lambda contexts: [routes[c] for c in contexts])
    items = item_routes(model, samples)
    assert items == [
        {"task": "t_mc", "doc_id": 0, "route": "spell_word@1:1", "base": 1.0, "routed": 0.0},
        {"task": "t_mc", "doc_id": 1, "route": "base", "base": 0.0, "routed": 0.0},
        {"task": "t_gen", "doc_id": 0, "route": "spell_word@1:1", "base": 0.0, "base [flexible-extract]": 1.0,
         "routed": 1.0, "routed [flexible-extract]": 1.0},
    ]
    summary = routing_summary(items)
    assert summary["t_mc"] == {"items": 2, "to_brick": 1, "bricks": {"spell_word@1:1": 1}, "base_on_brick_items": 1.0,
                               "routed_on_brick_items": 0.0, "changed": 1}
    assert summary["t_gen"]["routed_on_brick_items"] == 1.0 and summary["t_gen"]["changed"] == 1


def test_simple_evaluate_with_cache(fake, tokenizer, task_dir, tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    def run():
        lm = make_lm(fake, tokenizer, bricks="spell_word")
        return simple_evaluate(
            model=lm, tasks=["brickwork_sms_spam_mc", "brickwork_english_plural_gen"], limit=4,
            task_manager=TaskManager(include_path=str(task_dir)), apply_chat_template=True,
            use_cache=str(tmp_path / "cache" / "fake"), bootstrap_iters=0, log_samples=False,
        )

    res = run()
    assert set(res["results"]) == {"brickwork_sms_spam_mc", "brickwork_english_plural_gen"}
    assert 0 <= res["results"]["brickwork_sms_spam_mc"]["acc,none"] <= 1
    assert "exact_match,none" in res["results"]["brickwork_english_plural_gen"]
    assert res["config"]["brickwork_bricks"] == "spell_word"
    sent = [r for call in fake.engine.calls for r in call]
    assert len(sent) == 4 * 2 + 4 and sent[0].prompt  # two labels per spam item, one generation per plural
    # the chat template reached the engine: generation prompts are the bricks' own format
    assert any(isinstance(r, Request) and r.prompt.startswith("<|im_start|>system\nAnswer briefly.") for r in sent)
    calls = len(fake.engine.calls)
    run()
    assert len(fake.engine.calls) == calls  # --use_cache: a second run asks the engine nothing


def test_model_args_win_over_lm_eval_flags(fake, tokenizer):
    from brickwork.evals.harness.model import BrickworkLM
    from brickwork.prompts import CHATML

    bw = SimpleNamespace(store=fake.store, engine=BatchingEngine(fake.engine), retriever=fake.retriever)
    lm = BrickworkLM.create_from_arg_string(
        "bricks=base,batch_size=8", {"batch_size": 1, "device": None, "brickwork": bw, "tokenizer": tokenizer, "prompts": CHATML}
    )
    assert (lm.options.batch_size, lm.fixed) == (8, ())
