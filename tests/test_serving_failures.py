"""A vLLM server that is missing, frozen, slow, killed or fed a bad adapter gives a clear error,
never a hang, and the engine works again once the server is back."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from brickwork.errors import AdapterError, BackendError
from brickwork.serving import BrickRef, Request, SamplingParams, create_engine
from brickwork.serving.server_process import free_port
from brickwork.tasks import render_prompt
from tests.conftest_serving import (  # noqa: F401 - fixtures
    MAX_RANK,
    composite_cache,
    serving_root,
    serving_store,
    server_engine,
)

pytestmark = pytest.mark.integration

FRANCE = render_prompt("What is the capital of France?")
STORY = render_prompt("Write a long story about a dragon who learns to bake bread.")
MIX = (BrickRef(name="alpha", version=1, weight=0.5), BrickRef(name="gamma", version=1, weight=0.5))
QUICK = SamplingParams(max_tokens=3)


def _ok(engine) -> None:
    outs = engine.generate([Request(prompt=FRANCE, sampling=QUICK), Request(prompt=FRANCE, bricks=MIX, sampling=QUICK)])
    assert all(o.n_tokens >= 1 for o in outs)


def test_server_not_running(serving_store):
    url = f"http://127.0.0.1:{free_port()}"
    t = time.monotonic()
    with pytest.raises(BackendError, match=f"the vLLM server at {url} refused the connection"):
        create_engine("vllm-server", serving_store, url=url, retries=1, connect_timeout=2)
    assert time.monotonic() - t < 15


def _ok_within(engine, seconds: float) -> None:
    """`_ok` with fresh attempts (each bound by the engine's own time-out) until `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            _ok(engine)
            return
        except BackendError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_frozen_server_times_out_then_recovers(server_engine, serving_store):
    attached = create_engine(
        "vllm-server", serving_store, url=server_engine.url, request_timeout=3, control_timeout=3, retries=0
    )
    try:
        _ok_within(attached, 60)  # its first request loads the composite adapter into the server
        os.killpg(server_engine.process.pid, signal.SIGSTOP)
        try:
            t = time.monotonic()
            with pytest.raises(BackendError, match="did not answer .* within 3s"):
                _ok(attached)
            assert time.monotonic() - t < 20
        finally:
            os.killpg(server_engine.process.pid, signal.SIGCONT)
        # The same engine works once the server answers again. A resumed server first finishes the
        # request queued while it was stopped, which on a busy 2-core machine can outlast the 3 s
        # time-out: give it a minute of fresh attempts, each still bound by the 3 s time-out.
        _ok_within(attached, 60)
    finally:
        attached.close()


def test_generation_slower_than_the_timeout(server_engine, serving_store):
    attached = create_engine("vllm-server", serving_store, url=server_engine.url, request_timeout=1, retries=0)
    try:
        t = time.monotonic()
        with pytest.raises(BackendError, match="did not answer POST /v1/completions within 1s"):
            attached.generate([Request(prompt=STORY, sampling=SamplingParams(max_tokens=400))] * 8)
        assert time.monotonic() - t < 15
    finally:
        attached.close()
    _ok(server_engine)


def test_server_rejects_bad_adapters_clearly_and_stays_up(server_engine, serving_store, serving_root, base):
    """Even past our own validation, the server's refusal is a clear AdapterError, not a crash."""
    from tests.conftest import write_lora_adapter

    big = write_lora_adapter(serving_root / "raw" / "rank128", base, rank=128, seed=5, layers=range(2))
    with pytest.raises(AdapterError, match=f"greater than max_lora_rank {MAX_RANK}"):
        server_engine.client.load_adapter("raw-rank128", str(big))
    with pytest.raises(AdapterError, match="could not load adapter raw-missing"):
        server_engine.client.load_adapter("raw-missing", str(serving_root / "raw" / "nothing-here"))
    assert server_engine.client.healthy()
    _ok(server_engine)


def test_launch_failure_reports_the_log(serving_store, serving_root):
    t = time.monotonic()
    with pytest.raises(BackendError, match=r"exited with code \d+ while starting(.|\n)*no-such-flag"):
        create_engine("vllm-server", serving_store, extra_args=("--no-such-flag",), log_dir=str(serving_root / "bad"))
    assert time.monotonic() - t < 180


def test_startup_timeout_kills_the_server(serving_store, serving_root):
    with pytest.raises(BackendError, match="did not become healthy within 1s"):
        create_engine("vllm-server", serving_store, startup_timeout=1, log_dir=str(serving_root / "slow"))
    log = (serving_root / "slow" / "vllm-server.log").read_text()
    assert "brickwork: starting" in log


def test_killed_mid_request_then_restarted(server_engine):
    """SIGKILL the server (all its processes) during a batch: a clear error; the next batch relaunches it."""
    _ok(server_engine)
    pid = server_engine.process.pid
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server_engine.generate([Request(prompt=STORY, bricks=MIX, sampling=SamplingParams(max_tokens=300))] * 4)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(3)
    os.killpg(pid, signal.SIGKILL)
    worker.join(timeout=60)
    assert not worker.is_alive(), "generate hung after the server was killed"
    assert len(errors) == 1 and isinstance(errors[0], BackendError), errors
    assert "killed by signal 9" in str(errors[0])
    starts = server_engine.process.starts
    _ok(server_engine)  # relaunched (restart=True) and adapters reloaded
    assert server_engine.process.starts == starts + 1 and server_engine.process.pid != pid
