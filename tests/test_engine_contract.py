"""The engine contract: every engine (peft, vllm, vllm-server; real models, no fakes) passes these.

``BRICKWORK_TEST_ENGINES=peft`` narrows the run to some engines while developing.
"""

from __future__ import annotations

import json

import pytest

from brickwork.errors import AdapterError, BackendError, BaseModelMismatch, BrickNotFound, ConfigError
from brickwork.serving import BrickRef, Completion, Engine, PromptScore, Request, SamplingParams, ScoreRequest, available_engines
from brickwork.tasks import render_prompt
from tests.conftest_serving import (  # noqa: F401 - fixtures
    MAX_RANK,
    composite_cache,
    engine_params,
    peft_engine,
    serving_root,
    serving_store,
    server_engine,
    vllm_engine,
)

LONG = render_prompt("Write a long story about a dragon who learns to bake bread.")
FRANCE = render_prompt("What is the capital of France?")
A = BrickRef(name="alpha", version=1)
MIX = (BrickRef(name="alpha", version=1, weight=0.5), BrickRef(name="beta", version=1, weight=0.5))


@pytest.fixture(params=engine_params())
def engine(request) -> Engine:
    return request.getfixturevalue(request.param)


def test_registry_lists_the_three_engines():
    assert {"peft", "vllm", "vllm-server"} <= set(available_engines())


def test_is_an_engine(engine):
    assert isinstance(engine, Engine)
    assert engine.name in available_engines()


def test_empty_batch(engine):
    assert engine.generate([]) == []


def test_mixed_batch_keeps_request_order(engine):
    """Different configurations and lengths in one batch; each answer lands at its request's index."""
    configs = [(), (A,), MIX, (), MIX, (A,)]
    reqs = [Request(prompt=LONG, bricks=c, sampling=SamplingParams(max_tokens=2 + i)) for i, c in enumerate(configs)]
    outs = engine.generate(reqs)
    assert [type(o) for o in outs] == [Completion] * len(reqs)
    assert [o.n_tokens for o in outs] == [2 + i for i in range(len(reqs))]  # a long story never stops early
    assert all(o.text for o in outs)


def test_same_configuration_same_output_within_a_batch(engine):
    outs = engine.generate([Request(prompt=FRANCE, bricks=MIX, sampling=SamplingParams(max_tokens=8))] * 3)
    assert outs[0] == outs[1] == outs[2]


def test_stop_strings_end_the_text(engine):
    s = SamplingParams(max_tokens=24, stop=("<|im_end|>", " "))
    [out] = engine.generate([Request(prompt=LONG, sampling=s)])
    assert " " not in out.text and out.text and 1 <= out.n_tokens < 24


def test_json_schema_constrains_the_output(engine):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}, "sure": {"type": "boolean"}},
        "required": ["city", "sure"],
    }
    s = SamplingParams(max_tokens=40, json_schema=schema)
    outs = engine.generate([Request(prompt=FRANCE, sampling=s), Request(prompt=FRANCE, bricks=MIX, sampling=s)])
    for out in outs:
        value = json.loads(out.text)
        assert set(value) == {"city", "sure"} and isinstance(value["city"], str) and isinstance(value["sure"], bool)


def test_sampling_with_temperature_runs(engine):
    [out] = engine.generate([Request(prompt=FRANCE, bricks=(A,), sampling=SamplingParams(max_tokens=6, temperature=0.8))])
    assert 1 <= out.n_tokens <= 6


def test_finish_reason_says_why_the_reply_ended(engine):
    long, short = engine.generate([
        Request(prompt=LONG, sampling=SamplingParams(max_tokens=3)),
        Request(prompt=LONG, sampling=SamplingParams(max_tokens=48, stop=("<|im_end|>", " "))),
    ])
    assert (long.finish_reason, long.n_tokens) == ("length", 3)
    assert short.finish_reason == "stop" and short.n_tokens < 48


def test_logprobs_cover_each_generated_token(engine):
    s = SamplingParams(max_tokens=5, logprobs=3)
    out, plain = engine.generate([Request(prompt=LONG, bricks=(A,), sampling=s), Request(prompt=LONG, bricks=(A,), sampling=SamplingParams(max_tokens=5))])
    assert plain.logprobs is None and out.text == plain.text  # asking for logprobs changes nothing else
    assert out.logprobs is not None and len(out.logprobs) == 5
    assert "".join(t.token for t in out.logprobs).strip() == out.text
    for t in out.logprobs:
        assert t.logprob <= 0 and len(t.top) == 3
        assert [v for _, v in t.top] == sorted((v for _, v in t.top), reverse=True)
        assert t.top[0][0] == t.token and t.top[0][1] == pytest.approx(t.logprob, abs=1e-4)  # greedy: the chosen one is the best


def test_token_id_prompts_equal_text_prompts(engine, serving_store):
    from transformers import AutoTokenizer

    ids = tuple(AutoTokenizer.from_pretrained(serving_store.base.path)(FRANCE, add_special_tokens=False)["input_ids"])
    s = SamplingParams(max_tokens=6)
    by_text, by_ids = engine.generate([Request(prompt=FRANCE, bricks=MIX, sampling=s), Request(prompt=ids, bricks=MIX, sampling=s)])
    assert by_text == by_ids


def test_on_text_sees_the_reply_grow(engine):
    seen: list[str] = []
    [out] = engine.generate([Request(prompt=LONG, sampling=SamplingParams(max_tokens=6), on_text=seen.append)])
    assert seen and seen[-1].strip() == out.text
    assert all(b.startswith(a) for a, b in zip(seen, seen[1:]))


def test_score_gives_each_prompt_token_its_logprob(engine):
    text = "The capital of France is Paris."
    base, brick, again = engine.score([
        ScoreRequest(prompt=text, top_logprobs=2),
        ScoreRequest(prompt=text, bricks=(A,)),
        ScoreRequest(prompt=text, top_logprobs=2),
    ])
    assert isinstance(base, PromptScore) and base == again
    assert len(base.token_ids) == len(base.tokens) == len(base.logprobs) >= 6
    assert "".join(base.tokens) == text and base.logprobs[0] is None
    assert all(v is not None and v <= 0 for v in base.logprobs[1:])
    assert len(base.top) == len(base.token_ids) and all(len(t) == 2 for t in base.top[1:])
    assert base.logprobs[-2] > -3  # "Paris" after "The capital of France is" is likely
    assert brick.token_ids == base.token_ids and brick.logprobs != base.logprobs and brick.top == ()


def test_score_matches_the_logprobs_of_generation(engine):
    """Scoring prompt + reply gives the reply's tokens the logprobs generation reported."""
    [out] = engine.generate([Request(prompt=FRANCE, bricks=(A,), sampling=SamplingParams(max_tokens=4, logprobs=0))])
    [prompt] = engine.score([ScoreRequest(prompt=FRANCE, bricks=(A,))])
    [scored] = engine.score([ScoreRequest(prompt=FRANCE + "".join(t.token for t in out.logprobs), bricks=(A,))])
    n, m = len(prompt.token_ids), len(out.logprobs)
    assert scored.token_ids[:n] == prompt.token_ids and len(scored.token_ids) == n + m
    assert list(scored.logprobs[n:]) == pytest.approx([t.logprob for t in out.logprobs], abs=1e-3)


@pytest.mark.parametrize(
    ("bricks", "error", "match"),
    [
        ((BrickRef(name="nope", version=1),), BrickNotFound, "no brick named 'nope'"),
        ((BrickRef(name="alpha", version=9),), BrickNotFound, "no version 9"),
        ((BrickRef(name="foreign", version=1),), BaseModelMismatch, "made for base model 'smollm2-360m-instruct'"),
        ((BrickRef(name="misfit", version=1, weight=0.5), A), AdapterError, "does not fit the base model"),
        ((BrickRef(name="wide", version=1, weight=0.5), A), AdapterError, f"needs LoRA rank 128, above this engine's max_lora_rank {MAX_RANK}"),
    ],
    ids=["unknown-brick", "unknown-version", "other-base-model", "other-model-shapes", "rank-above-max"],
)
def test_bad_configurations_fail_before_anything_runs(engine, bricks, error, match):
    good = Request(prompt=FRANCE, sampling=SamplingParams(max_tokens=2))
    with pytest.raises(error, match=match):
        engine.generate([good, Request(prompt=FRANCE, bricks=bricks)])
    assert engine.generate([good])[0].n_tokens >= 1  # the engine is still usable


def test_a_single_request_is_not_a_batch(engine):
    with pytest.raises(ConfigError, match="wrap it in a list"):
        engine.generate(Request(prompt=FRANCE))  # type: ignore[arg-type]


@pytest.mark.integration
def test_closed_peft_engine_refuses_work(serving_store, composite_cache):
    from brickwork.serving import create_engine

    with create_engine("peft", serving_store, composite_cache=composite_cache, num_threads=1) as engine:
        assert engine.generate([Request(prompt=FRANCE, sampling=SamplingParams(max_tokens=1))])[0].n_tokens == 1
    with pytest.raises(BackendError, match="closed"):
        engine.generate([Request(prompt=FRANCE)])
    engine.close()  # idempotent


@pytest.mark.integration
def test_closed_attached_server_engine_refuses_work_and_leaves_the_server_clean(server_engine, serving_store):
    from brickwork.serving import create_engine

    with create_engine("vllm-server", serving_store, url=server_engine.url) as attached:
        attached.generate([Request(prompt=FRANCE, bricks=(BrickRef(name="gamma", version=1),), sampling=SamplingParams(max_tokens=1))])
        [name] = attached.live_adapters
    with pytest.raises(BackendError, match="closed"):
        attached.generate([Request(prompt=FRANCE)])
    on_server = {c["id"] for c in server_engine.client.models()}
    assert name not in on_server  # an attached engine unloads what it loaded


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("tgi", {}, "unknown engine 'tgi'; available engines: peft, vllm, vllm-server"),
        ("peft", {"batchsize": 4}, r"unknown option\(s\) \['batchsize'\] for engine 'peft'"),
        ("peft", {"batch_size": 0}, "`batch_size` should be a positive integer, got 0"),
        ("vllm", {"max_lora_rank": 24}, r"`max_lora_rank` should be one of vLLM's LoRA ranks"),
        ("vllm-server", {"url": "localhost:8000"}, "`url` should be an http"),
        ("vllm-server", {"max_live_adapters": 0}, "`max_live_adapters` should be a positive integer"),
        ("vllm", {"zero_adapter_for_base": "yes"}, "`zero_adapter_for_base` should be true, false or null"),
        ("vllm-server", {"zero_adapter_for_base": 1}, "`zero_adapter_for_base` should be true, false or null"),
    ],
)
def test_bad_engine_options(tmp_path, name, options, match):
    from brickwork.bricks import BrickStore
    from brickwork.serving import create_engine

    with pytest.raises(ConfigError, match=match):
        create_engine(name, BrickStore(tmp_path / "lib"), **options)
