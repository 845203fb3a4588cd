"""The OpenAI-compatible server (brickwork.server) on the FakeEngine: fast, no model."""

from __future__ import annotations

import json
import threading

import pytest
from fastapi.testclient import TestClient

from brickwork.server.streaming import SafeDeltas
from brickwork.serving.fake import FakeEngine
from tests.conftest_orchestrator import FakeStore, KeywordRetriever, brick_answer


class CharTokenizer:
    """One token per character."""

    vocab_size = 0x110000
    eos_token_id = None

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


@pytest.fixture
def make_client(tmp_path):
    from brickwork.orchestrator.sdk import Brickwork
    from brickwork.server import create_app

    made = []

    def make(respond=lambda r: brick_answer(r) if isinstance(r.prompt, str) else None, **options):
        from brickwork.prompts import CHATML

        engine = FakeEngine(respond=respond)
        bw = Brickwork(engine=engine, planner="rules", retriever=KeywordRetriever(), store=FakeStore(tmp_path / f"lib{len(made)}"))
        client = TestClient(create_app(bw, **{"tokenizer": CharTokenizer(), "prompts": CHATML, **options}))
        client.bw = bw  # tests that wait on the engine queue look at bw.engine (the BatchingEngine)
        made.append(bw)
        return client, engine

    yield make
    for bw in made:
        bw.close()


@pytest.fixture
def client(make_client):
    return make_client()


def user(text):
    return [{"role": "user", "content": text}]


def test_planned_chat_runs_the_pipeline_and_feedback_round_trips(client):
    c, engine = client
    r = c.post("/v1/chat/completions", json={"model": "brickwork", "messages": user("Give the plural of 'mouse'.")})
    out = r.json()
    assert r.status_code == 200 and out["object"] == "chat.completion"
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "mice"}
    assert out["choices"][0]["finish_reason"] == "stop"
    trace = out["brickwork"]
    assert trace["mode"] == "planned" and [b["name"] for b in trace["steps"][0]["bricks"]] == ["english_plural"]
    u = out["usage"]
    assert u["prompt_tokens"] > 0 and u["completion_tokens"] > 0 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    fb = c.post("/v1/feedback", json={"run_id": trace["run_id"], "step_id": trace["steps"][0]["id"], "good": True})
    assert fb.status_code == 200 and fb.json()["status"] == "recorded"


def test_planned_chat_honours_sampling_fields(client):
    c, engine = client
    body = {"messages": user("hello there my friend"), "max_tokens": 2, "temperature": 0.7, "top_p": 0.9, "seed": 3, "stop": ["zzz"]}
    out = c.post("/v1/chat/completions", json=body).json()
    assert out["choices"][0]["finish_reason"] == "length"
    [req] = engine.calls[-1]
    s = req.sampling
    assert (s.max_tokens, s.temperature, s.top_p, s.seed) == (2, 0.7, 0.9, 3) and s.stop[0] == "zzz"


def test_conversation_is_one_step_routed_from_the_last_user_message_through_the_chat_template(client):
    c, engine = client
    msgs = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Give the plural of 'mouse'."},
        {"role": "assistant", "content": "mice"},
        {"role": "user", "content": "Now spell wolf"},
    ]
    out = c.post("/v1/chat/completions", json={"messages": msgs}).json()
    assert out["brickwork"]["mode"] == "step" and [b["name"] for b in out["brickwork"]["bricks"]] == ["spell_word"]
    [req] = engine.calls[-1]
    assert req.prompt.startswith("<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nGive the plural")
    assert "<|im_start|>assistant\nmice<|im_end|>" in req.prompt and req.prompt.endswith("<|im_start|>assistant\n")
    assert out["usage"]["prompt_tokens"] == len(req.prompt)  # one token per character


def test_n_and_logprobs_and_brick_models(client):
    c, engine = client
    body = {"model": "english_plural:0.5+spell_word:0.5", "messages": user("wolf"), "n": 2, "logprobs": True, "top_logprobs": 1, "seed": 5}
    out = c.post("/v1/chat/completions", json=body).json()
    assert [ch["index"] for ch in out["choices"]] == [0, 1]
    assert out["choices"][0]["logprobs"]["content"][0]["top_logprobs"][0]["logprob"] == -0.5
    reqs = engine.calls[-1]
    assert [r.sampling.seed for r in reqs] == [5, 6] and [b.weight for b in reqs[0].bricks] == [0.5, 0.5]
    assert out["brickwork"]["how"] == "model"


def test_response_format_and_tools_use_constrained_decoding(client):
    c, engine = client
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    out = c.post("/v1/chat/completions", json={"messages": user("Where?"), "response_format": rf}).json()
    assert json.loads(out["choices"][0]["message"]["content"]) == {"city": "x"}
    assert engine.calls[-1][0].sampling.json_schema == schema

    tools = [{"type": "function", "function": {"name": "weather", "parameters": schema}}]
    for choice in ("required", {"type": "function", "function": {"name": "weather"}}, "auto", None):
        body = {"messages": user("Weather in Paris?"), "tools": tools, **({"tool_choice": choice} if choice else {})}
        out = c.post("/v1/chat/completions", json=body).json()
        ch = out["choices"][0]
        assert ch["finish_reason"] == "tool_calls", choice
        [call] = ch["message"]["tool_calls"]
        assert call["function"]["name"] == "weather" and json.loads(call["function"]["arguments"]) == {"city": "x"}
        assert "weather" in engine.calls[-1][0].prompt  # the tools are described to the model

    out = c.post("/v1/chat/completions", json={"messages": user("Hi"), "tools": tools, "tool_choice": "none"}).json()
    assert out["choices"][0]["message"].get("tool_calls") is None and engine.calls[-1][0].sampling.json_schema is None


def test_tool_auto_can_answer_in_text(make_client):
    c, _ = make_client(respond=lambda req: '{"content":"It is sunny."}' if req.sampling.json_schema else None)
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    out = c.post("/v1/chat/completions", json={"messages": history, "tools": tools}).json()
    assert out["choices"][0]["message"]["content"] == "It is sunny." and out["choices"][0]["finish_reason"] == "stop"


def sse_events(text):
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_chat_streaming_deltas_add_up_to_the_reply_with_events_and_usage(client):
    c, _ = client
    body = {"messages": user("Give the plural of 'mouse', then spell it letter by letter.")}
    whole = c.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    with c.stream("POST", "/v1/chat/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        chunks = sse_events(r.read().decode())
    text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"])
    assert text == whole == "m i c e"
    kinds = [ch["brickwork"].get("event") for ch in chunks if "brickwork" in ch and "event" in ch["brickwork"]]
    assert kinds[:1] == ["plan"] and "route" in kinds and "step" in kinds
    assert chunks[-1]["usage"]["total_tokens"] > 0 and chunks[-1]["choices"] == []
    content_chunks = [ch for ch in chunks if ch["choices"] and ch["choices"][0]["delta"].get("content")]
    assert len(content_chunks) > 1  # token by token, not one final blob
    assert [ch["choices"][0]["finish_reason"] for ch in chunks if ch["choices"] and ch["choices"][0]["finish_reason"]] == ["stop"]


def test_tool_call_streams_as_one_tool_calls_delta(client):
    c, _ = client
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    with c.stream("POST", "/v1/chat/completions", json={"messages": user("x"), "tools": tools, "tool_choice": "required", "stream": True}) as r:
        chunks = sse_events(r.read().decode())
    calls = [ch["choices"][0]["delta"]["tool_calls"] for ch in chunks if ch["choices"] and "tool_calls" in ch["choices"][0]["delta"]]
    assert len(calls) == 1 and calls[0][0]["function"]["name"] == "weather" and calls[0][0]["index"] == 0


def test_completions_are_raw_continuations_of_string_list_and_token_prompts(client):
    c, engine = client
    out = c.post("/v1/completions", json={"model": "base", "prompt": "The capital of Peru is"}).json()
    assert out["object"] == "text_completion" and engine.calls[-1][0].prompt == "The capital of Peru is"
    assert engine.calls[-1][0].sampling.max_tokens == 16
    out = c.post("/v1/completions", json={"model": "base", "prompt": ["a b", "c d"], "n": 2}).json()
    assert [ch["index"] for ch in out["choices"]] == [0, 1, 2, 3]
    out = c.post("/v1/completions", json={"model": "spell_word", "prompt": [104, 105]}).json()
    assert engine.calls[-1][0].prompt == (104, 105) and engine.calls[-1][0].bricks[0].name == "spell_word"
    assert out["usage"]["prompt_tokens"] == 2


def test_echo_logprobs_in_the_legacy_format_with_the_requests_bricks(client):
    c, engine = client
    body = {"model": "spell_word", "prompt": ["one two three", "four five"], "echo": True, "max_tokens": 0, "logprobs": 1}
    out = c.post("/v1/completions", json=body).json()
    ch = out["choices"][0]
    lp = ch["logprobs"]
    assert ch["text"] == "one two three" and lp["tokens"] == ["one", " two", " three"]
    assert lp["token_logprobs"][0] is None and all(isinstance(x, float) for x in lp["token_logprobs"][1:])
    assert lp["text_offset"] == [0, 3, 7] and lp["top_logprobs"][0] is None and len(lp["top_logprobs"][1]) == 1
    [first, _] = engine.calls[-1]
    assert first.bricks[0].name == "spell_word" and first.top_logprobs == 1
    base = c.post("/v1/completions", json={**body, "model": "base"}).json()
    assert base["choices"][0]["logprobs"]["token_logprobs"] != lp["token_logprobs"]  # bricks change the scores
    gen = c.post("/v1/completions", json={**body, "prompt": "one two", "max_tokens": 1}).json()["choices"][0]
    assert len(gen["logprobs"]["tokens"]) == 3 and gen["text"].startswith("one two")


def test_completion_streaming(client):
    c, _ = client
    body = {"model": "base", "prompt": "alpha beta gamma", "max_tokens": 8}
    whole = c.post("/v1/completions", json=body).json()["choices"][0]["text"]
    with c.stream("POST", "/v1/completions", json={**body, "stream": True}) as r:
        chunks = sse_events(r.read().decode())
    assert "".join(ch["choices"][0]["text"] for ch in chunks if ch["choices"]) == whole


class TurnTokenizer(CharTokenizer):
    """A base model whose chat template is not ChatML (``<|role|>`` turns ending in ``<|end|>``)."""

    chat_template = "turns"
    all_special_tokens = ["<|end|>"]
    eos_token = "<|end|>"

    def get_added_vocab(self):
        return {}

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False, continue_final_message=False):
        text = "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages)
        return text[: -len("<|end|>\n")] if continue_final_message else text + ("<|assistant|>\n" if add_generation_prompt else "")


def test_tokenize_reports_the_engines_max_model_len_else_the_base_models_context(tmp_path):
    from types import SimpleNamespace

    from brickwork.orchestrator.sdk import Brickwork
    from brickwork.prompts import CHATML
    from brickwork.server import create_app

    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 8192}))
    store = FakeStore(tmp_path / "lib")
    store.base = SimpleNamespace(fingerprint="sha256:fake", path=base)
    for engine, want in ((FakeEngine(), 8192), (FakeEngine(), 512)):
        if want == 512:
            engine.options = SimpleNamespace(max_model_len=512)  # the vllm engines' option
        with Brickwork(engine=engine, planner="rules", retriever=KeywordRetriever(), store=store) as bw:
            c = TestClient(create_app(bw, tokenizer=CharTokenizer(), prompts=CHATML))
            assert c.post("/tokenize", json={"prompt": "hi"}).json()["max_model_len"] == want


def test_a_non_chatml_base_model_renders_chats_and_stops_with_its_own_template(tmp_path):
    from brickwork.orchestrator.sdk import Brickwork
    from brickwork.prompts import PromptFormat
    from brickwork.server import create_app

    store = FakeStore(tmp_path / "lib")
    store.prompts = PromptFormat.from_tokenizer(TurnTokenizer(), name="turns")  # what BrickStore.prompts gives
    engine = FakeEngine(respond=lambda r: "pong<|end|><|user|>\nmore")
    with Brickwork(engine=engine, planner="rules", retriever=KeywordRetriever(), store=store) as bw:
        c = TestClient(create_app(bw, tokenizer=CharTokenizer()))
        msgs = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "pong"}, {"role": "user", "content": "ping again"}]
        out = c.post("/v1/chat/completions", json={"model": "base", "messages": msgs, "stop": ["zzz"]}).json()
        [req] = engine.calls[-1]
        want = "<|system|>\nAnswer briefly.<|end|>\n<|user|>\nping<|end|>\n<|assistant|>\npong<|end|>\n<|user|>\nping again<|end|>\n<|assistant|>\n"
        assert req.prompt == want and req.sampling.stop == ("zzz", "<|end|>")
        assert out["choices"][0]["message"]["content"] == "pong" and out["usage"]["prompt_tokens"] == len(want)
        assert c.post("/tokenize", json={"messages": msgs}).json()["count"] == len(want)
        with c.stream("POST", "/v1/chat/completions", json={"model": "base", "messages": msgs, "stream": True}) as r:
            chunks = sse_events(r.read().decode())
        assert "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"]) == "pong"
        planned = c.post("/v1/chat/completions", json={"model": "base", "messages": user("ping")}).json()
        [req] = engine.calls[-1]  # a planned one-step run: the SDK's step prompt, the same format
        assert req.prompt == store.prompts.render("ping") and "<|im_end|>" not in req.sampling.stop
        assert planned["choices"][0]["message"]["content"] == "pong"
        done = c.post("/v1/completions", json={"model": "base", "prompt": "ping", "max_tokens": 4}).json()
        assert done["choices"][0]["text"] == "pong" and engine.calls[-1][0].sampling.stop == ("<|end|>",)


def test_models_tokenize_detokenize_health(client):
    c, _ = client
    ids = [m["id"] for m in c.get("/v1/models").json()["data"]]
    assert ids[:2] == ["brickwork", "base"] and "spell_word" in ids
    assert c.get("/v1/models/spell_word").json()["id"] == "spell_word"
    assert c.get("/v1/models/spell_word:0.5+english_plural:0.5").status_code == 200
    r = c.get("/v1/models/ghost")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    t = c.post("/tokenize", json={"prompt": "hi", "return_token_strs": True}).json()
    assert t == {"count": 2, "tokens": [104, 105], "max_model_len": None, "token_strs": ["h", "i"]}
    chat = "<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert c.post("/tokenize", json={"messages": user("hi")}).json()["count"] == len(chat)  # what a chat request sends
    assert c.post("/detokenize", json={"tokens": [104, 105]}).json() == {"prompt": "hi"}
    assert c.get("/health").json()["status"] == "ok"


class AddedToken:
    """What Hugging Face tokenizers keep special tokens in (`init_kwargs` holds these)."""

    def __init__(self, content):
        self.content = content


class Backend:
    def __str__(self):
        return "rust"


class ConfiguredTokenizer(CharTokenizer):
    eos_token = "<|im_end|>"
    init_kwargs = {
        "bos_token": AddedToken("<|im_start|>"), "eos_token": AddedToken("<|im_end|>"), "model_max_length": 8192,
        "added_tokens_decoder": {0: AddedToken("<|endoftext|>")}, "vocab_file": None, "tokenizer_file": "/srv/tok.json",
        "name_or_path": "/srv/models/base", "chat_template": "the tokenizer's own", "backend": Backend(),
    }


@pytest.mark.parametrize(
    "tok, want",
    [
        (CharTokenizer(), {"eos_token": None, "tokenizer_class": "CharTokenizer"}),
        (ConfiguredTokenizer(), {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "model_max_length": 8192,
                                 "added_tokens_decoder": {"0": "<|endoftext|>"}, "backend": "rust", "tokenizer_class": "ConfiguredTokenizer"}),
    ],
)
def test_tokenizer_info_is_vllms_route_with_the_template_chats_are_rendered_with(make_client, tok, want):
    """`GET /tokenizer_info` as vLLM serves it (lm-eval's remote tokenizer reads it): the
    tokenizer's config as JSON, no server paths, and a chat template that renders a conversation
    exactly as the server renders it for a chat request."""
    import jinja2

    c, engine = make_client(tokenizer=tok)
    info = c.get("/tokenizer_info").json()
    template = info.pop("chat_template")
    assert info == want
    msgs = [{"role": "user", "content": "Give the plural of 'mouse'."}, {"role": "assistant", "content": "mice"}, {"role": "user", "content": "wolf"}]
    c.post("/v1/chat/completions", json={"model": "base", "messages": msgs})
    [req] = engine.calls[-1]
    assert jinja2.Environment().from_string(template).render(messages=msgs, add_generation_prompt=True) == req.prompt
    assert c.post("/tokenize", json={"prompt": "hi", "add_special_tokens": True}).json()["tokens"] == [104, 105]


M = user("hi")


@pytest.mark.parametrize(
    "path, body, status, needle",
    [
        ("/v1/chat/completions", b"{not json", 400, "not valid JSON"),
        ("/v1/chat/completions", b"[1]", 400, "JSON object"),
        ("/v1/chat/completions", {"messages": []}, 400, "messages"),
        ("/v1/chat/completions", {"messages": M, "max_tokens": "many"}, 400, "max_tokens"),
        ("/v1/chat/completions", {"messages": M, "max_tokens": 100000}, 400, "max_tokens"),
        ("/v1/chat/completions", {"messages": M, "temperature": -1}, 400, "temperature"),
        ("/v1/chat/completions", {"messages": M, "top_p": 0}, 400, "top_p"),
        ("/v1/chat/completions", {"messages": M, "n": 0}, 400, "n"),
        ("/v1/chat/completions", {"messages": M, "presence_penalty": 0.5}, 400, "presence_penalty"),
        ("/v1/chat/completions", {"messages": M, "logit_bias": {"1": 5}}, 400, "logit_bias"),
        ("/v1/chat/completions", {"messages": M, "top_logprobs": 2}, 400, "logprobs"),
        ("/v1/chat/completions", {"messages": M, "top_logprobs": 50, "logprobs": True}, 400, "top_logprobs"),
        ("/v1/chat/completions", {"messages": M, "tool_choice": "required"}, 400, "needs `tools`"),
        ("/v1/chat/completions", {"messages": M, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}, 400, "'g'"),
        ("/v1/chat/completions", {"messages": M, "response_format": {"type": "json_schema"}}, 400, "schema"),
        ("/v1/chat/completions", {"messages": M, "response_format": {"type": "yaml"}}, 400, "response_format"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}, {"role": "user", "content": "x"}]}, 400, "text content"),
        ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, 400, "role"),
        ("/v1/chat/completions", {"messages": M, "model": "ghost"}, 404, "ghost"),
        ("/v1/chat/completions", {"messages": M, "model": "spell_word+"}, 404, "model"),
        ("/v1/chat/completions", {"messages": M, "stream_options": {"include_usage": True}}, 400, "stream_options"),
        ("/v1/completions", {"prompt": 3}, 400, "prompt"),
        ("/v1/completions", {"prompt": []}, 400, "prompt"),
        ("/v1/completions", {"prompt": "x", "max_tokens": 0}, 400, "echo"),
        ("/v1/completions", {"prompt": "x", "suffix": "y"}, 400, "suffix"),
        ("/v1/completions", {"prompt": [[1, -2]]}, 400, "prompt"),
        ("/v1/feedback", {"run_id": "r", "step_id": "s"}, 400, "exactly one"),
        ("/v1/nothing", {}, 404, "Not Found"),
    ],
)
def test_bad_requests_get_clear_errors_in_openais_shape(client, path, body, status, needle):
    c, _ = client
    r = c.post(path, content=body) if isinstance(body, bytes) else c.post(path, json=body)
    err = r.json()["error"]
    assert r.status_code == status, err
    assert needle in err["message"] + str(err.get("param")) and set(err) == {"message", "type", "param", "code"}
    assert "Traceback" not in r.text


def test_oversized_body_is_413_and_auth_is_required_when_a_key_is_set(make_client):
    c, _ = make_client(api_key="sk-test", max_body_bytes=1000)
    assert c.get("/health").status_code == 200
    r = c.post("/v1/chat/completions", json={"messages": M})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert c.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = {"Authorization": "Bearer sk-test"}
    assert c.get("/v1/models", headers=ok).status_code == 200
    r = c.post("/v1/chat/completions", json={"messages": user("x" * 5000)}, headers=ok)
    assert r.status_code == 413 and "bytes" in r.json()["error"]["message"]


def test_unknown_fields_are_logged_not_fatal(client, caplog):
    c, _ = client
    with caplog.at_level("WARNING", logger="brickwork.server"):
        r = c.post("/v1/chat/completions", json={"messages": M, "frobnicate": 1})
    assert r.status_code == 200 and "frobnicate" in caplog.text


def test_concurrent_requests_share_engine_batches_and_a_full_queue_is_503(make_client):
    release = threading.Event()

    def slow(req):
        release.wait(10)
        return None

    c, engine = make_client(respond=slow, max_concurrency=4, max_queue=0)
    results = []

    def one(i):
        results.append(c.post("/v1/completions", json={"model": "base", "prompt": f"p {i}"}).status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for _ in range(200):
        if c.app.state.gate.inflight == 4:
            break
        threading.Event().wait(0.01)
    assert c.app.state.gate.inflight == 4
    r = c.post("/v1/completions", json={"model": "base", "prompt": "one too many"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded"
    for _ in range(500):  # admitted is not yet queued: release only once all four reached the engine
        if engine.calls and sum(map(len, engine.calls)) + c.bw.engine.queued() >= 4:
            break
        threading.Event().wait(0.01)
    release.set()
    for t in threads:
        t.join()
    assert results == [200] * 4
    assert max(len(call) for call in engine.calls) > 1  # gathered into shared batches


def test_a_disconnecting_clients_queued_request_never_reaches_the_engine(tmp_path):
    """On a real uvicorn port (the test client never disconnects): while one request holds the
    engine, other clients give up (waiting or streaming); their requests leave the engine's queue
    and are not run."""
    import httpx

    from brickwork.orchestrator.sdk import Brickwork
    from brickwork.prompts import CHATML
    from brickwork.server import create_app
    from tests.test_server_real import uvicorn_app

    release = threading.Event()
    engine = FakeEngine(respond=lambda r: (release.wait(20), None)[1] if "hold" in r.prompt else None)
    bw = Brickwork(engine=engine, planner="rules", retriever=KeywordRetriever(), store=FakeStore(tmp_path / "lib"))
    try:
        with uvicorn_app(create_app(bw, tokenizer=CharTokenizer(), prompts=CHATML)) as url:
            held: list[int] = []
            first = threading.Thread(target=lambda: held.append(httpx.post(f"{url}/completions", json={"model": "base", "prompt": "hold"}, timeout=30).status_code))
            first.start()
            for _ in range(500):
                if engine.calls:
                    break
                threading.Event().wait(0.01)
            for path, body in (("completions", {"model": "base", "prompt": "gone"}),
                               ("chat/completions", {"model": "base", "messages": user("gone"), "n": 2}),
                               ("completions", {"model": "base", "prompt": "gone", "stream": True})):
                with pytest.raises(httpx.TimeoutException):
                    httpx.post(f"{url}/{path}", json=body, timeout=0.3)
            for _ in range(500):  # the server notices the disconnect on its next look (0.5 s)
                if bw.engine.stats.cancelled == 4:
                    break
                threading.Event().wait(0.01)
            assert bw.engine.stats.cancelled == 4  # a completion, a chat with n=2, a streamed completion
            release.set()
            first.join(10)
            after = httpx.post(f"{url}/completions", json={"model": "base", "prompt": "after"}, timeout=10)
            assert held == [200] and after.status_code == 200 and after.json()["choices"][0]["text"] == "[base] after"
            assert [[r.prompt for r in call] for call in engine.calls] == [["hold"], ["after"]]
    finally:
        release.set()
        bw.close()


@pytest.mark.parametrize(
    "stops, raws, final, expect",
    [
        ((), [" He", " Hel", " Hello", " Hello ", " Hello wo", " Hello world"], "Hello world", ["He", "l", "lo", " wo", "rld"]),
        (("END",), ["ab", "ab E", "ab EN", "ab ENxy"], "ab ENxy", ["ab", " ENxy"]),
        (("END",), ["ab", "ab E", "ab END", "ab END more"], "ab", ["ab"]),
        ((), ["caf", "caf\ufffd", "café"], "café", ["caf", "é"]),
    ],
)
def test_safe_deltas_concatenate_to_the_final_text(stops, raws, final, expect):
    d = SafeDeltas(stops)
    got = [x for x in (d.update(r) for r in raws) if x]
    rest = d.finish(final)
    assert "".join(got) + rest == final
    assert got + ([rest] if rest else []) == expect


def test_serve_refuses_an_open_host_without_a_key():
    from brickwork.cli import main

    assert main(["serve", "--host", "0.0.0.0"]) != 0
