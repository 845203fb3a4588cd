"""Brickwork's OpenAI-compatible API over a real HTTP socket, with the orchestrator on fakes."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from brickwork.serving.fake import FakeEngine
from brickwork.serving.openai_api import BrickworkAPI, make_server
from tests.conftest_orchestrator import FakeStore, KeywordRetriever, brick_answer


@pytest.fixture
def server(tmp_path):
    from brickwork.orchestrator.sdk import Brickwork

    bw = Brickwork(engine=FakeEngine(respond=brick_answer), planner="rules", retriever=KeywordRetriever(), store=FakeStore(tmp_path / "lib"))
    srv = make_server(BrickworkAPI(bw), "127.0.0.1", 0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()
    bw.close()


def call(url: str, path: str, body: dict | None = None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_chat_completion_runs_the_pipeline_and_feedback_round_trips(server):
    code, out = call(server, "/v1/chat/completions", {"model": "brickwork", "messages": [{"role": "user", "content": "Give the plural of 'mouse'."}]})
    assert code == 200 and out["object"] == "chat.completion"
    assert out["choices"][0]["message"]["content"] == "mice"
    trace = out["brickwork"]
    assert [b["name"] for b in trace["steps"][0]["bricks"]] == ["english_plural"]
    code, fb = call(server, "/v1/feedback", {"run_id": trace["run_id"], "step_id": trace["steps"][0]["id"], "good": True})
    assert code == 200 and fb["status"] == "recorded"


def test_models_lists_bricks_and_completions_with_fixed_bricks(server):
    code, out = call(server, "/v1/models")
    ids = [m["id"] for m in out["data"]]
    assert code == 200 and ids[:2] == ["brickwork", "base"] and "spell_word" in ids
    code, out = call(server, "/v1/completions", {"model": "spell_word", "prompt": "wolf"})
    assert code == 200 and out["choices"][0]["text"] == "w o l f"
    assert [b["name"] for b in out["brickwork"]["steps"][0]["bricks"]] == ["spell_word"]


@pytest.mark.parametrize(
    "path, body, raw, status, message",
    [
        ("/v1/chat/completions", {"messages": []}, None, 400, "non-empty list"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": True}, None, 400, "streaming"),
        ("/v1/completions", {"prompt": 3}, None, 400, "`prompt`"),
        ("/v1/completions", None, b"{not json", 400, "not valid JSON"),
        ("/v1/completions", {"model": "ghost", "prompt": "x"}, None, 404, "ghost"),
        ("/v1/feedback", {"run_id": "r", "step_id": "s"}, None, 400, "exactly one"),
        ("/v1/nothing", {}, None, 404, "no route"),
    ],
)
def test_bad_requests_get_clear_errors(server, path, body, raw, status, message):
    code, out = call(server, path, body, raw)
    assert code == status and message in out["error"]["message"]
