"""The server on the real peft engine, driven by the real clients: openai (sync, async, streaming),
langchain-openai, a LangGraph ReAct agent; server loglikelihoods against transformers + PEFT.

One uvicorn server for the module, few tokens per request (2 shared CPU cores).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import pytest

from tests.conftest_orchestrator import KeywordRetriever
from tests.conftest_serving import composite_cache, peft_engine, serving_root, serving_store  # noqa: F401

pytestmark = pytest.mark.integration
pytest.importorskip("openai")

KEY = "sk-test-brickwork"


@contextlib.contextmanager
def uvicorn_app(app):
    """`app` served by uvicorn on a free loopback port in a thread; yields the ``/v1`` base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        srv.should_exit = True
        t.join(10)


@pytest.fixture(scope="module")
def server(peft_engine, serving_store):  # noqa: F811
    from brickwork.orchestrator.sdk import Brickwork
    from brickwork.server import create_app

    bw = Brickwork(engine=peft_engine, store=serving_store, planner="rules", retriever=KeywordRetriever(), max_tokens=8)
    with uvicorn_app(create_app(bw, api_key=KEY, max_concurrency=8)) as url:
        yield url, bw
    bw.close()


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server[0], api_key=KEY, max_retries=0)


HELLO = [{"role": "user", "content": "Name a colour."}]


def test_openai_sync_chat_usage_and_length(client, server):
    from transformers import AutoTokenizer

    r = client.chat.completions.create(model="base", messages=[{"role": "system", "content": "Be brief."}, *HELLO], max_tokens=3)
    ch = r.choices[0]
    assert ch.finish_reason == "length" and ch.message.content and r.usage.completion_tokens == 3
    store = server[1].store
    tok = AutoTokenizer.from_pretrained(str(store.base.path))  # the base model's own template
    prompt = tok.apply_chat_template([{"role": "system", "content": "Be brief."}, *HELLO], tokenize=False, add_generation_prompt=True)
    assert prompt == store.prompts.render_chat([{"role": "system", "content": "Be brief."}, *HELLO])
    assert r.usage.prompt_tokens == len(tok.encode(prompt, add_special_tokens=False))
    import httpx

    t = httpx.post(server[0].removesuffix("/v1") + "/tokenize", json={"prompt": "hi"}, headers={"Authorization": f"Bearer {KEY}"}).json()
    assert t["max_model_len"] == 8192  # SmolLM2's context (config.json); the peft engine sets no lower limit
    assert r.model_extra["brickwork"]["mode"] == "step"


def test_openai_streaming_equals_the_whole_reply(client):
    body = {"model": "alpha", "messages": HELLO, "max_tokens": 6, "temperature": 0}
    whole = client.chat.completions.create(**body).choices[0].message.content
    chunks = list(client.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole and len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_openai_async_concurrent_and_planned(server):
    from openai import AsyncOpenAI

    async def main():
        c = AsyncOpenAI(base_url=server[0], api_key=KEY, max_retries=0)
        msgs = [[{"role": "user", "content": f"Count to {i}."}] for i in range(3)]
        return await asyncio.gather(*(c.chat.completions.create(model="base", messages=m, max_tokens=4) for m in msgs))

    outs = asyncio.run(main())
    assert all(o.choices[0].message.content for o in outs)
    seq = [o.model_extra["brickwork"]["steps"][0]["output"] for o in outs]
    assert all(seq)  # single user message: a planned run, with its trace


def test_openai_raw_completion_and_json_schema(client):
    r = client.completions.create(model="base", prompt="The sky is", max_tokens=3, temperature=0)
    assert r.choices[0].text and r.usage.prompt_tokens == 3
    schema = {"type": "object", "properties": {"colour": {"type": "string", "maxLength": 12}}, "required": ["colour"]}
    r = client.chat.completions.create(
        model="base", messages=HELLO, max_tokens=24,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    import json

    assert set(json.loads(r.choices[0].message.content)) == {"colour"}


def test_server_loglikelihoods_equal_transformers_peft(client, serving_store):
    import torch
    from peft import PeftModel

    from brickwork.models import load_base_model

    text = "The capital of France is Paris."
    r = client.completions.create(model="alpha", prompt=text, max_tokens=0, echo=True, logprobs=1)
    lp = r.choices[0].logprobs
    model, tok = load_base_model(serving_store.base)
    model = PeftModel.from_pretrained(model, str(serving_store.get("alpha").path)).eval()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    direct = torch.log_softmax(logits, -1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].tolist()
    assert lp.token_logprobs[0] is None and len(lp.token_logprobs) == len(ids)
    assert max(abs(a - b) for a, b in zip(lp.token_logprobs[1:], direct, strict=True)) < 1e-4
    base = client.completions.create(model="base", prompt=text, max_tokens=0, echo=True, logprobs=0)
    assert base.choices[0].logprobs.token_logprobs != lp.token_logprobs  # the brick is applied


@pytest.fixture(scope="module")
def chat_model(server):
    lc = pytest.importorskip("langchain_openai")
    return lc.ChatOpenAI(base_url=server[0], api_key=KEY, model="base", max_tokens=8, temperature=0, max_retries=0)


def test_langchain_invoke_batch_stream(chat_model):
    one = chat_model.invoke("Name a fruit.")
    assert one.content and one.usage_metadata["output_tokens"] > 0
    two = chat_model.batch(["Name a fruit.", "Name a tree."])
    assert two[0].content == one.content and two[1].content
    streamed = "".join(c.content for c in chat_model.stream("Name a fruit."))
    assert streamed == one.content


def test_langchain_structured_output_and_bound_tools(chat_model):
    from pydantic import BaseModel, Field

    chat_model = chat_model.model_copy(update={"max_tokens": 32})  # room for the JSON

    class Fruit(BaseModel):
        name: str = Field(max_length=12)

    out = chat_model.with_structured_output(Fruit).invoke("Name a fruit.")
    assert isinstance(out, Fruit) and out.name

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    for choice in ("get_weather", "any"):
        msg = chat_model.bind_tools([get_weather], tool_choice=choice).invoke("What is the weather in Paris?")
        assert msg.tool_calls and msg.tool_calls[0]["name"] == "get_weather" and "city" in msg.tool_calls[0]["args"]


def test_langgraph_react_agent_calls_its_tool(server):
    from langchain_openai import ChatOpenAI
    from langgraph.prebuilt import create_react_agent

    calls = []

    def get_weather(city: str) -> str:
        """Look up the current weather in a city."""
        calls.append(city)
        return f"It is sunny in {city}."

    model = ChatOpenAI(base_url=server[0], api_key=KEY, model="base", max_tokens=24, temperature=0, max_retries=0)
    agent = create_react_agent(model, [get_weather])
    try:
        agent.invoke({"messages": [("user", "Use get_weather to find the weather in Paris.")]}, {"recursion_limit": 6})
    except Exception as exc:  # a 135M model may keep calling; what matters is that the tool ran
        if type(exc).__name__ != "GraphRecursionError":
            raise
    assert calls
