"""Validation of a brick directory before anything is accepted into the library.

Every problem is collected and reported at once (as vLLM's LoRA loader does), so a user fixes an
adapter in one round trip. The adapter format's rules live in `brickwork.lora`; only
safetensors are ever opened; pickled weights are refused unread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from brickwork import lora
from brickwork.bricks.manifest import MANIFEST_NAME, Manifest
from brickwork.errors import AdapterError, BaseModelMismatch
from brickwork.lora import refuse_pickles
from brickwork.models import BaseModel, weight_shapes

_shape_cache: dict[str, dict[str, tuple[int, ...]]] = {}


def _base_shapes(base: BaseModel) -> dict[str, tuple[int, ...]]:
    if base.fingerprint not in _shape_cache:
        _shape_cache[base.fingerprint] = weight_shapes(base)
    return _shape_cache[base.fingerprint]


def lora_weight_problems(path: Path, base: BaseModel, cfg: dict) -> list[str]:
    """Check every tensor in the safetensors header against the base model's shapes."""
    try:
        shapes = lora.header_shapes(path)
    except AdapterError as exc:
        return [str(exc).removeprefix(f"{path}: ")]
    if not shapes:
        return [f"{lora.ADAPTER_WEIGHTS} holds no tensors"]
    base_shapes = _base_shapes(base)
    problems: list[str] = []
    for key, shape in shapes.items():
        parsed = lora.parse_key(key)
        if parsed is None:
            problems.append(f"unexpected tensor {key!r} (only lora_A/lora_B weights are allowed)")
            continue
        module, ab = parsed
        target = base_shapes.get(module + ".weight")
        if target is None:
            problems.append(f"{key}: the base model has no module {module!r}")
            continue
        rank = lora.module_rank(cfg, module)
        out_f, in_f = target[0], target[-1]
        want = (rank, in_f) if ab == "A" else (out_f, rank)
        if shape != want:
            problems.append(f"{key}: shape {list(shape)} does not fit the base model (expected {list(want)})")
    return problems


def validate_lora_dir(path: Path, base: BaseModel, *, max_rank: int | None = None) -> dict:
    """Validate a PEFT LoRA directory against `base`; return its adapter config."""
    path = Path(path)
    refuse_pickles(path)
    cfg = lora.read_config(path)
    problems = lora.config_problems(cfg, max_rank=max_rank)
    if not problems:
        problems += lora_weight_problems(path, base, cfg)
    if problems:
        raise AdapterError(f"{path}: invalid LoRA adapter:\n  - " + "\n  - ".join(problems))
    return cfg


# Validators for other brick kinds register here (emergent bricks: bricks/emergent/).
KIND_VALIDATORS: dict[str, Callable[[Path, Manifest, BaseModel], None]] = {}


def validate_brick_dir(path: Path, base: BaseModel) -> Manifest:
    """Validate a complete brick version directory (manifest + files) for the library of `base`."""
    path = Path(path)
    refuse_pickles(path)
    manifest = Manifest.load(path / MANIFEST_NAME)
    if manifest.base_model.get("fingerprint") != base.fingerprint:
        raise BaseModelMismatch(
            f"brick {manifest.name!r} was made for base model {manifest.base_model.get('id')!r} "
            f"({manifest.base_model.get('fingerprint')}), but this library uses {base.id!r} ({base.fingerprint})"
        )
    if manifest.kind == "lora":
        cfg = validate_lora_dir(path, base)
        if cfg["r"] != manifest.rank:
            raise AdapterError(f"{path}: brick.json says rank {manifest.rank}, adapter_config.json says {cfg['r']}")
    else:
        if manifest.kind not in KIND_VALIDATORS:
            import brickwork.bricks.emergent  # noqa: F401 - registers its validator
        validator = KIND_VALIDATORS.get(manifest.kind)
        if validator is None:
            raise AdapterError(f"{path}: no validator for brick kind {manifest.kind!r}")
        validator(path, manifest, base)
    return manifest
