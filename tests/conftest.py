"""Shared fixtures: the real default base model, temporary libraries, quickly written adapters."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def base():
    """The real default base model (SmolLM2-135M-Instruct), resolved once per session."""
    from brickwork.models import resolve_base_model

    return resolve_base_model()


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`): tiny
    matmuls on a CPU shared with other busy processes are far slower with two spinning threads."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def library(tmp_path, base):
    """An empty brick library in tmp_path for the default base model."""
    from brickwork.bricks import BrickStore

    return BrickStore(tmp_path / "library", base=base)


def write_lora_adapter(
    path: Path,
    base,
    *,
    rank: int = 8,
    modules: tuple[str, ...] = ("q_proj", "v_proj"),
    layers: range | None = None,
    seed: int = 0,
    scale: float = 0.02,
) -> Path:
    """Write a PEFT-format LoRA adapter for `base` without loading the model (random weights).

    B is non-zero, so the adapter really changes outputs. Use it where a trained brick is not
    needed (store, index and engine tests); training tests train for real.
    """
    import torch
    from safetensors.torch import save_file

    from brickwork.models import weight_shapes

    shapes = weight_shapes(base)
    n_layers = 1 + max(int(k.split(".")[2]) for k in shapes if k.startswith("model.layers."))
    layers = layers if layers is not None else range(n_layers)
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for i in layers:
        for key, shape in shapes.items():
            if not key.startswith(f"model.layers.{i}.") or key.split(".")[-2] not in modules:
                continue
            mod = key[: -len(".weight")]
            out_f, in_f = shape
            tensors[f"base_model.model.{mod}.lora_A.weight"] = torch.randn(rank, in_f, generator=g) * scale
            tensors[f"base_model.model.{mod}.lora_B.weight"] = torch.randn(out_f, rank, generator=g) * scale
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "adapter_model.safetensors"))
    from brickwork.lora import plain_config

    cfg = {**plain_config(rank, list(modules), list(layers) if len(layers) != n_layers else None,
                          base_name=str(base.path)), "lora_alpha": 2 * rank}
    (path / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
    return path


def make_manifest(name: str, base, *, description: str | None = None, examples=(), rank: int = 8, **kw):
    from brickwork.bricks import Manifest

    return Manifest(
        name=name,
        version=1,
        kind="lora",
        description=description or f"test brick {name}",
        examples=list(examples),
        base_model=base.to_json(),
        rank=rank,
        target_modules=["q_proj", "v_proj"],
        **kw,
    )


@pytest.fixture
def make_brick(tmp_path, base):
    """make_brick(name, **kw) -> a complete brick directory (adapter + brick.json) outside any library."""
    counter = iter(range(10**6))

    def _make(name: str, *, seed: int | None = None, rank: int = 8, **kw) -> Path:
        d = tmp_path / "src" / f"{name}-{next(counter)}"
        write_lora_adapter(d, base, rank=rank, seed=seed if seed is not None else abs(hash(name)) % 1000)
        (d / "brick.json").write_text(json.dumps(make_manifest(name, base, rank=rank, **kw).to_json()))
        return d

    return _make


ROUTING_TASKS = ("english_plural", "two_digit_subtraction", "country_capital", "sms_spam")


def add_starter_manifests(library, base, tasks=ROUTING_TASKS):
    """Add starter-style bricks (real manifests, one placeholder adapter) for `tasks`; no training."""
    from brickwork.evals.routing import starter_manifest, write_placeholder_adapter
    from brickwork.tasks import load_tasks

    src = write_placeholder_adapter(library.root.parent / "adapter", base)
    all_tasks = load_tasks()
    for tid in tasks:
        library.add(src, starter_manifest(all_tasks[tid], base))
    return library


@contextmanager
def loaded_adapter(model: Any, adapter_dir: Path | None) -> Iterator[Any]:
    """`model` with the LoRA at `adapter_dir` applied by PEFT itself for the block (the bare model for
    None): the reference the engines' and partners' adapters are compared with."""
    if adapter_dir is None:
        yield model
        return
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        from brickwork.errors import AdapterError

        raise AdapterError(f"cannot load adapter {adapter_dir}: {exc}") from exc
    try:
        peft_model.eval()
        yield peft_model
    finally:
        from brickwork.bricks.lineage import strip_adapters

        strip_adapters(model)
