"""Validation of a brick directory before anything is accepted into the library.

Every problem is collected and reported at once (as vLLM's LoRA loader does), so a user fixes an
adapter in one round trip. Only safetensors are ever opened; pickled weights are refused unread.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from brickwork.bricks.manifest import MANIFEST_NAME, Manifest
from brickwork.errors import AdapterError, BaseModelMismatch
from brickwork.models import BaseModel, weight_shapes

# vLLM's LoRA kernels accept only these ranks (vllm/config/lora.py).
VLLM_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")

_shape_cache: dict[str, dict[str, tuple[int, ...]]] = {}


def _base_shapes(base: BaseModel) -> dict[str, tuple[int, ...]]:
    if base.fingerprint not in _shape_cache:
        _shape_cache[base.fingerprint] = weight_shapes(base)
    return _shape_cache[base.fingerprint]


def refuse_pickles(path: Path) -> None:
    found = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if found:
        raise AdapterError(
            f"{path}: refusing pickled weight files {found}; Brickwork only loads safetensors "
            "(convert with `peft`'s save_pretrained(safe_serialization=True))"
        )


def read_adapter_config(path: Path) -> dict:
    cfg_path = path / ADAPTER_CONFIG
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AdapterError(f"{path}: no {ADAPTER_CONFIG}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{cfg_path}: not valid JSON ({exc})") from exc
    if not isinstance(cfg, dict):
        raise AdapterError(f"{cfg_path}: expected a JSON object")
    return cfg


def lora_config_problems(cfg: dict, *, max_rank: int | None = None) -> list[str]:
    """What would stop PEFT or vLLM from loading this LoRA config."""
    problems = []
    if str(cfg.get("peft_type", "")).upper() != "LORA":
        problems.append(f"`peft_type` should be 'LORA', got {cfg.get('peft_type')!r}")
    r = cfg.get("r")
    if not isinstance(r, int) or r not in VLLM_RANKS:
        problems.append(f"`r` should be one of {VLLM_RANKS} (vLLM's ranks), got {r!r}")
    elif max_rank is not None and r > max_rank:
        problems.append(f"`r` {r} is above the configured maximum rank {max_rank}")
    if cfg.get("use_dora"):
        problems.append("DoRA adapters (`use_dora: true`) are not supported by vLLM")
    if cfg.get("bias", "none") != "none":
        problems.append(f"`bias` should be 'none' (vLLM has no LoRA biases), got {cfg.get('bias')!r}")
    if cfg.get("modules_to_save"):
        problems.append(f"`modules_to_save` is not supported, got {cfg.get('modules_to_save')!r}")
    tm = cfg.get("target_modules")
    if not tm:
        problems.append("`target_modules` is missing or empty")
    return problems


def lora_weight_problems(path: Path, base: BaseModel, rank: int) -> list[str]:
    """Open the safetensors header and check every LoRA tensor against the base model's shapes."""
    from safetensors import SafetensorError, safe_open

    weights = path / ADAPTER_WEIGHTS
    if not weights.is_file():
        return [f"no {ADAPTER_WEIGHTS}"]
    base_shapes = _base_shapes(base)
    problems: list[str] = []
    try:
        with safe_open(str(weights), framework="numpy") as st:
            keys = list(st.keys())
            if not keys:
                return [f"{ADAPTER_WEIGHTS} holds no tensors"]
            for key in keys:
                shape = tuple(st.get_slice(key).get_shape())
                m = _LORA_KEY.match(key)
                if not m:
                    problems.append(f"unexpected tensor {key!r} (only lora_A/lora_B weights are allowed)")
                    continue
                target = base_shapes.get(m["module"] + ".weight")
                if target is None:
                    problems.append(f"{key}: the base model has no module {m['module']!r}")
                    continue
                out_f, in_f = target[0], target[-1]
                want = (rank, in_f) if m["ab"] == "A" else (out_f, rank)
                if shape != want:
                    problems.append(f"{key}: shape {list(shape)} does not fit the base model (expected {list(want)})")
    except (SafetensorError, OSError, ValueError) as exc:
        return [f"{ADAPTER_WEIGHTS} is corrupt or not safetensors ({exc})"]
    return problems


def validate_lora_dir(path: Path, base: BaseModel, *, max_rank: int | None = None) -> dict:
    """Validate a PEFT LoRA directory against `base`; return its adapter config."""
    path = Path(path)
    refuse_pickles(path)
    cfg = read_adapter_config(path)
    problems = lora_config_problems(cfg, max_rank=max_rank)
    if not problems:
        problems += lora_weight_problems(path, base, cfg["r"])
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
