"""Fixtures of the serving tests: one brick library, and one engine of each kind per test session.

Test modules import the fixtures they use from here. Fixture functions imported into two modules
become two pytest fixtures, so the expensive objects live in a process-wide cache (`_shared`) and
the fixtures only hand them out: one PEFT model, one in-process vLLM and one vLLM server for the
whole session, closed at its end.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_manifest, write_lora_adapter

# Random LoRA bricks standing in for trained starter bricks: (name, seed, rank). Their scale is
# modest so greedy decoding stays stable, yet each changes some outputs (checked by the tests).
BRICKS: tuple[tuple[str, int, int], ...] = (("alpha", 11, 8), ("beta", 12, 8), ("gamma", 13, 8), ("delta", 14, 16))
SCALE = 0.03
# The engines' default. (With vLLM-CPU's own LoRA ops a step costs in proportion to max_lora_rank;
# Brickwork's grouped kernels, serving/vllm_cpu_lora.py, removed that cost.)
MAX_RANK = 64
# vLLM-CPU's worker computes on one core by default (the other is left to its front end); one torch
# thread is also far faster than two on a CPU shared with other busy processes.
PEFT_THREADS = 1
# vLLM-CPU pins its worker to one core by default; on this shared CPU a busy neighbour on that
# core starves it (vLLM then aborts after its 300 s step time-out), so let the OS place it.
VLLM_ENV = {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1"}

_shared: dict[str, Any] = {}
_lock = threading.Lock()


def shared(key: str, make: Callable[[], Any]) -> Any:
    with _lock:
        if key not in _shared:
            _shared[key] = make()
        return _shared[key]


def close_shared() -> None:
    with _lock:
        items = list(_shared.items())
        _shared.clear()
    for _, obj in items:
        close = getattr(obj, "close", None)
        if close is not None:
            close()


@pytest.fixture(scope="session")
def serving_root(tmp_path_factory) -> Path:
    return shared("root", lambda: tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="session")
def serving_store(serving_root, base):
    """A library with the random bricks of `BRICKS`, built once per session."""

    def make():
        from brickwork.bricks import BrickStore

        store = BrickStore(serving_root / "library", base=base)
        for name, seed, rank in (*BRICKS, ("wide", 15, 64), ("foreign", 16, 8), ("misfit", 17, 8)):
            src = serving_root / "src" / name
            write_lora_adapter(src, base, rank=rank, seed=seed, scale=SCALE)
            store.add(src, make_manifest(name, base, rank=rank))
        make_foreign(store.get("foreign", 1).path)
        make_misfit(store.get("misfit", 1).path)
        for src in starter_dirs():
            store.add(src)
        return store

    return shared("store", make)


STARTER_DIR = Path(__file__).resolve().parents[1] / "brickwork" / "data" / "starter"


def starter_dirs() -> list[Path]:
    """The trained starter bricks shipped in brickwork/data/starter (sorted; may be none yet)."""
    if not STARTER_DIR.is_dir():
        return []
    return sorted(p for p in STARTER_DIR.iterdir() if (p / "brick.json").is_file() and (p / "adapter_config.json").is_file())


def make_foreign(path: Path) -> None:
    """Turn a stored brick into one made for another base model (as a stale library would hold)."""
    m = json.loads((path / "brick.json").read_text())
    m["base_model"] = {"id": "smollm2-360m-instruct", "fingerprint": "sha256:" + "0" * 32}
    (path / "brick.json").write_text(json.dumps(m))


def make_misfit(path: Path) -> None:
    """Give a stored brick's adapter the shapes of another model (hidden size 960)."""
    import torch
    from safetensors.torch import load_file, save_file

    t = load_file(str(path / "adapter_model.safetensors"))
    for key in [k for k in t if k.endswith("lora_A.weight")]:
        t[key] = torch.zeros(t[key].shape[0], 960)
    save_file(t, str(path / "adapter_model.safetensors"))


@pytest.fixture(scope="session")
def composite_cache(serving_root):
    from brickwork.serving.composite import CompositeCache

    return shared("cache", lambda: CompositeCache(serving_root / "composites", max_entries=32))


def _finalize(request) -> None:
    request.session.config.add_cleanup(close_shared)


@pytest.fixture(scope="session")
def peft_engine(request, serving_store, composite_cache):
    from brickwork.serving import create_engine

    _finalize(request)
    return shared(
        "peft",
        lambda: create_engine(
            "peft", serving_store, composite_cache=composite_cache, batch_size=32, max_lora_rank=MAX_RANK,
            num_threads=PEFT_THREADS,
        ),
    )


@pytest.fixture(scope="session")
def vllm_engine(request, serving_store, composite_cache):
    from brickwork.serving import create_engine

    _finalize(request)
    return shared(
        "vllm",
        lambda: create_engine(
            "vllm",
            serving_store,
            composite_cache=composite_cache,
            max_lora_rank=MAX_RANK,
            max_loras=4,
            env=VLLM_ENV,
            kv_cache_gb=0.5,
        ),
    )


@pytest.fixture(scope="session")
def server_engine(request, serving_store, composite_cache, serving_root):
    """A `vllm serve` launched (and owned) by the engine; other tests attach to its URL."""
    from brickwork.serving import create_engine

    _finalize(request)
    os.environ.pop("BRICKWORK_VLLM_URL", None)  # these tests need a server of their own
    return shared(
        "server",
        lambda: create_engine(
            "vllm-server",
            serving_store,
            composite_cache=composite_cache,
            max_lora_rank=MAX_RANK,
            max_loras=4,
            max_live_adapters=8,
            kv_cache_gb=0.5,
            env=VLLM_ENV,
            log_dir=str(serving_root / "server-logs"),
        ),
    )


ENGINE_FIXTURES = ("peft_engine", "vllm_engine", "server_engine")


def engine_params() -> list[Any]:
    """Parametrisation over the real engines; BRICKWORK_TEST_ENGINES=peft,vllm narrows it."""
    wanted = os.environ.get("BRICKWORK_TEST_ENGINES")
    names = [f for f in ENGINE_FIXTURES if not wanted or f.removesuffix("_engine").replace("server", "vllm-server") in wanted.split(",")]
    return [pytest.param(n, id=n.removesuffix("_engine"), marks=pytest.mark.integration) for n in names]
