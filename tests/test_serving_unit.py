"""Fast tests of the serving pieces that need no model: values, specs, ids, the fake, the HTTP client."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from brickwork.errors import BackendError, BrickNotFound, ConfigError
from brickwork.serving import (
    BrickRef,
    Completion,
    Engine,
    FakeEngine,
    Request,
    SamplingParams,
    brick_refs,
    create_engine,
    parse_brick_spec,
    register_engine,
)
from brickwork.serving.server_client import ServerClient
from brickwork.serving.vllm_engine import LoRAIds
from brickwork.tasks import render_prompt


def test_import_stays_light():
    import subprocess

    code = "import brickwork.serving, sys; print(sorted(m for m in ('torch','vllm','transformers','httpx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_tokens": 0}, "`max_tokens` should be a positive integer, got 0"),
        ({"max_tokens": True}, "`max_tokens` should be a positive integer"),
        ({"temperature": -1}, "`temperature` should be a finite number >= 0, got -1"),
        ({"temperature": float("inf")}, "`temperature` should be a finite number"),
        ({"stop": ("",)}, "`stop` should be a tuple of non-empty strings"),
        ({"stop": 5}, "`stop` should be a tuple of non-empty strings"),
        ({"json_schema": "{}"}, "`json_schema` should be a JSON schema object"),
        ({"json_schema": {"x": object()}}, "`json_schema` should be JSON-serialisable"),
    ],
)
def test_sampling_params_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SamplingParams(**kwargs)


def test_values_are_frozen_hashable_and_normalised():
    s = SamplingParams(stop=["\n", "<|im_end|>"], json_schema={"type": "object"})
    assert s.stop == ("\n", "<|im_end|>") and hash(s) == hash(SamplingParams(stop=("\n", "<|im_end|>"), json_schema={"type": "object"}))
    r = Request(prompt="p", bricks=[BrickRef(name="a", version=1, weight=1)])
    assert r.bricks == (BrickRef(name="a", version=1, weight=1.0),) and isinstance(r.bricks[0].weight, float)
    assert {r: 1}[Request(prompt="p", bricks=(BrickRef(name="a", version=1),))] == 1
    with pytest.raises(AttributeError):
        r.prompt = "q"  # type: ignore[misc]
    with pytest.raises(ConfigError, match="`prompt` should be a non-empty string"):
        Request(prompt="")


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [("a", ("a", None, 1.0)), ("a:0.5", ("a", None, 0.5)), ("a@3", ("a", 3, 1.0)), ("a@3:-0.25", ("a", 3, -0.25))],
)
def test_parse_brick_spec(spec, parsed):
    assert parse_brick_spec(spec) == parsed


@pytest.mark.parametrize("spec", ["", "a:x", "a@x:1", "a:inf", "@1"])
def test_parse_brick_spec_errors(spec):
    with pytest.raises(ConfigError, match="bad brick spec"):
        parse_brick_spec(spec)


def test_brick_refs_pin_active_versions(library, make_brick):
    library.add(make_brick("alpha"))
    library.add(make_brick("alpha"))
    library.rollback("alpha", to=1)
    assert brick_refs(library, ["alpha:0.5", "alpha@2"]) == (
        BrickRef(name="alpha", version=1, weight=0.5),
        BrickRef(name="alpha", version=2),
    )
    with pytest.raises(BrickNotFound):
        brick_refs(library, ["alpha@9"])


def test_lora_ids_are_unique_and_enforced():
    ids = LoRAIds()
    assert ids.id_for("a", "/x") == 1 and ids.id_for("b", "/y") == 2 and ids.id_for("a", "/x") == 1
    with pytest.raises(BackendError, match="refusing to reuse it"):
        ids.id_for("a", "/z")


def test_fake_engine_is_an_engine_and_deterministic():
    engine = FakeEngine()
    assert isinstance(engine, Engine)
    reqs = [
        Request(prompt=render_prompt("hello there"), bricks=(BrickRef(name="a", version=2, weight=0.5),)),
        Request(prompt=render_prompt("one two three four five"), sampling=SamplingParams(max_tokens=3)),
        Request(prompt="x", sampling=SamplingParams(json_schema={"type": "object", "properties": {"k": {"enum": ["v"]}}, "required": ["k"]})),
    ]
    outs = engine.generate(reqs)
    assert outs == engine.generate(reqs)
    assert outs[0] == Completion(text="[a@2:0.5] hello there", n_tokens=4)
    assert outs[1].n_tokens == 3 and json.loads(outs[2].text) == {"k": "v"}
    assert engine.calls == [reqs, reqs]
    with engine:
        pass
    with pytest.raises(BackendError, match="closed"):
        engine.generate(reqs)


def test_fake_engine_checks_bricks_against_a_store(library, make_brick):
    library.add(make_brick("alpha"))
    engine = FakeEngine(library, respond=lambda r: "scripted")
    assert engine.generate([Request(prompt="p", bricks=(BrickRef(name="alpha", version=1),))])[0].text == "scripted"
    with pytest.raises(BrickNotFound):
        engine.generate([Request(prompt="p", bricks=(BrickRef(name="beta", version=1),))])


def _wait_until(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_batching_engine_drops_a_cancelled_queued_job_before_the_engine_and_a_running_ones_result():
    from brickwork.serving.batching import BatchingEngine, Cancelled

    release = threading.Event()
    engine = FakeEngine(respond=lambda r: (release.wait(10), None)[1] if r.prompt == "busy" else None)
    eng = BatchingEngine(engine, window_s=0.01)
    results, cancel_queued, cancel_running = {}, threading.Event(), threading.Event()

    def call(prompt, cancelled):
        try:
            results[prompt] = eng.generate([Request(prompt=prompt)], cancelled=cancelled)[0].text
        except Cancelled:
            results[prompt] = "cancelled"

    running = threading.Thread(target=call, args=("busy", cancel_running))
    running.start()
    _wait_until(lambda: len(engine.calls) == 1)  # "busy" holds the engine
    queued = [threading.Thread(target=call, args=(p, cancel_queued if p == "queued" else None)) for p in ("queued", "kept")]
    for t in queued:
        t.start()
    _wait_until(lambda: len(eng._pending) == 2)
    cancel_queued.set()
    queued[0].join(5)  # a queued caller leaves at once, while the engine is still busy
    assert results == {"queued": "cancelled"} and eng.stats.cancelled == 1
    cancel_running.set()  # too late to leave its batch: the result is dropped
    release.set()
    running.join(5)
    queued[1].join(5)
    assert results == {"queued": "cancelled", "busy": "cancelled", "kept": "[base] kept"}
    assert [[r.prompt for r in call] for call in engine.calls] == [["busy"], ["kept"]]  # "queued" never ran
    assert eng.stats.requests == 2


def test_register_engine_makes_create_engine_build_it(library):
    register_engine("fake-test", FakeEngine)
    try:
        assert isinstance(create_engine("fake-test", library), FakeEngine)
    finally:
        from brickwork.serving import engine as engine_mod

        engine_mod._ENGINES.pop("fake-test", None)
        engine_mod._FACTORIES.pop("fake-test", None)


# -- the HTTP client against a scripted server -----------------------------------------------------
class Script:
    """Answers for a tiny HTTP server: a list of (status, body, delay_s) consumed per request."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.seen = []


@pytest.fixture
def scripted():
    servers = []

    def start(answers):
        script = Script(answers)

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                script.seen.append((self.command, self.path, self.rfile.read(n)))
                status, body, delay = script.answers.pop(0) if script.answers else (200, {}, 0)
                time.sleep(delay)
                if status is None:  # drop the connection without answering
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the time-out test)

            do_GET = do_POST = _answer

            def log_message(self, *a):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        client = ServerClient(f"http://127.0.0.1:{server.server_port}", timeout=1, control_timeout=1, connect_timeout=1, retries=2)
        return client, script

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def test_client_retries_unavailable_then_succeeds(scripted):
    client, script = scripted([(503, {"error": "warming up"}, 0), (200, {"data": [{"id": "base"}]}, 0)])
    assert client.models() == [{"id": "base"}]
    assert len(script.seen) == 2


def test_client_retries_a_dropped_connection(scripted):
    client, script = scripted([(None, None, 0), (200, {"data": []}, 0)])
    assert client.models() == [] and len(script.seen) == 2


def test_client_times_out_and_does_not_retry_a_slow_answer(scripted):
    client, script = scripted([(200, {"data": []}, 3)])
    t = time.monotonic()
    with pytest.raises(BackendError, match="did not answer GET /v1/models within 1s"):
        client.models()
    assert time.monotonic() - t < 2.5 and len(script.seen) == 1


def test_client_maps_http_errors(scripted):
    client, _ = scripted(
        [
            (400, {"error": {"message": "The lora adapter 'x' has already been loaded."}}, 0),
            (500, {"error": {"message": "LoRA rank 128 is greater than max_lora_rank 64."}}, 0),
            (404, {"detail": "Not Found"}, 0),
            (503, {}, 0), (503, {}, 0), (503, {}, 0),
        ]
    )  # fmt: skip
    client.load_adapter("x", "/p")  # already loaded counts as loaded
    from brickwork.errors import AdapterError

    with pytest.raises(AdapterError, match="greater than max_lora_rank 64"):
        client.load_adapter("y", "/p")
    with pytest.raises(BackendError, match="has no /v1/load_lora_adapter"):
        client.load_adapter("z", "/p")
    with pytest.raises(BackendError, match="failed GET /v1/models: HTTP 503"):
        client.models()  # three attempts, then the last answer is reported


def test_client_refused_connection_is_quick():
    from brickwork.serving.server_process import free_port

    client = ServerClient(f"http://127.0.0.1:{free_port()}", timeout=5, control_timeout=5, connect_timeout=1, retries=1)
    t = time.monotonic()
    with pytest.raises(BackendError, match="refused the connection"):
        client.models()
    assert time.monotonic() - t < 5
    assert client.healthy() is False


def test_vllm_cpu_gets_a_longer_step_timeout_unless_the_caller_sets_one(monkeypatch):
    from brickwork.serving import vllm_cpu_lora, vllm_engine

    monkeypatch.delenv("VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS", raising=False)
    monkeypatch.setenv(vllm_cpu_lora.ENV, vllm_cpu_lora.GROUPED)  # its default is tested in test_vllm_cpu_lora.py
    monkeypatch.setattr(vllm_engine, "vllm_cpu_installed", lambda: True)
    assert vllm_engine.cpu_defaults({"A": "1"}) == {"VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS": "1800", "A": "1"}
    assert vllm_engine.cpu_defaults({"VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS": "60"}) == {"VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS": "60"}
    monkeypatch.setenv("VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS", "90")
    assert vllm_engine.cpu_defaults({}) == {}
    monkeypatch.setattr(vllm_engine, "vllm_cpu_installed", lambda: False)
    monkeypatch.delenv("VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS")
    assert vllm_engine.cpu_defaults({}) == {}
