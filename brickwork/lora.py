"""The LoRA adapter format, owned in one place: read, check, scale, pad and write adapters.

A brick's adapter is PEFT's on-disk format, untouched (``adapter_config.json`` +
``adapter_model.safetensors``), so PEFT and vLLM load it as it is. Everything in Brickwork that
opens, combines or writes adapter files — validation on import, composites for serving, merges,
partner anchors — goes through this module, so the tensor-name rule, the scaling rule (``alpha /
r``, rsLoRA's ``alpha / sqrt(r)``, per-module ``rank_pattern`` / ``alpha_pattern``), the ranks
vLLM accepts and the config written for a new adapter exist once.

Only safetensors are ever opened; pickled weights are refused unread.

Example::

    cfg, factors = read_factors(path)                 # {module: (A, B)} in float32, unscaled
    for module, (a, b) in factors.items():
        delta = scaling(cfg, module, a.shape[0]) * (b @ a)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from brickwork import _atomic
from brickwork.errors import AdapterError

#: vLLM's LoRA kernels accept only these ranks (vllm/config/lora.py).
VLLM_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

# PEFT saves "base_model.model.<module>.lora_A.weight"; an adapter-name infix
# ("...lora_A.default.weight") appears in some third-party files and is accepted on read.
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")
LAYER = re.compile(r"^(?P<prefix>.*\.layers\.)(?P<idx>\d+)\.(?P<rest>.+)$")


def parse_key(key: str) -> tuple[str, str] | None:
    """``(module path, "A" | "B")`` of a LoRA tensor name, or None for anything else."""
    m = _KEY.match(key)
    return (m["module"], m["ab"]) if m else None


def tensor_key(module: str, ab: str) -> str:
    """The name PEFT saves a factor under."""
    return f"base_model.model.{module}.lora_{ab}.weight"


def layer_index(module: str) -> int | None:
    """The transformer layer a module path sits in (``model.layers.3.mlp.down_proj`` -> 3)."""
    m = LAYER.match(module)
    return int(m["idx"]) if m else None


def refuse_pickles(path: Path) -> None:
    """Refuse a directory holding any pickled weight file (they are never opened)."""
    found = sorted(str(p.relative_to(path)) for p in Path(path).rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if found:
        raise AdapterError(
            f"{path}: refusing pickled weight files {found}; Brickwork only loads safetensors "
            "(convert with `peft`'s save_pretrained(safe_serialization=True))"
        )


def read_config(path: Path) -> dict[str, Any]:
    """The adapter directory's ``adapter_config.json`` as a dict, or a clear `AdapterError`."""
    cfg_path = Path(path) / ADAPTER_CONFIG
    cfg = _atomic.read_json(cfg_path, AdapterError, missing=f"{path}: no {ADAPTER_CONFIG}")
    if not isinstance(cfg, dict):
        raise AdapterError(f"{cfg_path}: expected a JSON object")
    return cfg


def config_problems(cfg: dict[str, Any], *, max_rank: int | None = None) -> list[str]:
    """What in a LoRA config would stop PEFT or vLLM from loading it (empty when nothing)."""
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
    if not cfg.get("target_modules"):
        problems.append("`target_modules` is missing or empty")
    return problems


def _pattern_value(pattern: dict[str, Any] | None, module: str) -> Any:
    # PEFT's rule: a key matches a module-name suffix that starts at a "." boundary; first match wins.
    for key, value in (pattern or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return None


def module_rank(cfg: dict[str, Any], module: str) -> int:
    """The rank PEFT gives `module`: its ``rank_pattern`` entry, else ``r``."""
    r = _pattern_value(cfg.get("rank_pattern"), module)
    return int(cfg["r"] if r is None else r)


def scaling(cfg: dict[str, Any], module: str, rank: int | None = None) -> float:
    """PEFT's LoRA scaling of `module`: alpha / r (rsLoRA: alpha / sqrt(r)), patterns applied.

    `rank` is the module's actual rank (the A factor's rows) when known; otherwise the config's.
    """
    r = module_rank(cfg, module) if rank is None else int(rank)
    alpha = _pattern_value(cfg.get("alpha_pattern"), module)
    alpha = cfg.get("lora_alpha", r) if alpha is None else alpha
    return float(alpha) / (r**0.5 if cfg.get("use_rslora") else r)


def padded_rank(rank: int, *, max_rank: int | None = None) -> int:
    """The smallest rank vLLM accepts that holds `rank` (zero rows/columns fill the rest, exactly)."""
    limit = VLLM_RANKS[-1] if max_rank is None else max_rank
    for allowed in VLLM_RANKS:
        if rank <= allowed <= limit:
            return allowed
    raise AdapterError(f"a LoRA of rank {rank} exceeds the largest usable rank {limit} (vLLM's ranks: {VLLM_RANKS})")


def header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from the adapter's safetensors header (no tensor is read)."""
    from safetensors import SafetensorError, safe_open

    weights = Path(path) / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise AdapterError(f"{path}: no {ADAPTER_WEIGHTS}")
    try:
        with safe_open(str(weights), framework="numpy") as st:
            return {key: tuple(st.get_slice(key).get_shape()) for key in st.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise AdapterError(f"{path}: {ADAPTER_WEIGHTS} is corrupt or not safetensors ({exc})") from exc


def read_factors(path: Path) -> tuple[dict[str, Any], dict[str, tuple[Any, Any]]]:
    """``(adapter config, {module: (A, B)})``: float32 factors as stored (scaling not applied).

    Every tensor must be a LoRA factor and every module must have both; anything else is an
    `AdapterError` naming the file and tensor.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    refuse_pickles(path)
    cfg = read_config(path)
    try:
        tensors = load_file(str(path / ADAPTER_WEIGHTS))
    except FileNotFoundError as exc:
        raise AdapterError(f"{path}: no {ADAPTER_WEIGHTS}") from exc
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise AdapterError(f"{path}: cannot read {ADAPTER_WEIGHTS} ({exc})") from exc
    pairs: dict[str, dict[str, Any]] = {}
    for key, t in tensors.items():
        parsed = parse_key(key)
        if parsed is None:
            raise AdapterError(f"{path}: unexpected tensor {key!r} (only lora_A/lora_B weights of linear layers)")
        pairs.setdefault(parsed[0], {})[parsed[1]] = t.to(torch.float32)
    out = {}
    for module, ab in pairs.items():
        if set(ab) != {"A", "B"}:
            raise AdapterError(f"{path}: module {module!r} has lora_{''.join(ab)} but not both factors")
        out[module] = (ab["A"], ab["B"])
    return cfg, out


def pad_factors(a: Any, b: Any, rank: int) -> tuple[Any, Any]:
    """A (r x in) and B (out x r) zero-padded to `rank` (the delta B @ A is unchanged)."""
    import torch

    r = a.shape[0]
    if r == rank:
        return a.contiguous(), b.contiguous()
    a_pad = torch.zeros(rank, a.shape[1], dtype=a.dtype)
    b_pad = torch.zeros(b.shape[0], rank, dtype=b.dtype)
    a_pad[:r], b_pad[:, :r] = a, b
    return a_pad, b_pad


def plain_config(
    rank: int,
    target_modules: list[str],
    layers_to_transform: list[int] | None,
    *,
    base_name: Any,
    task_type: str = "CAUSAL_LM",
) -> dict[str, Any]:
    """A plain PEFT LoRA config with scaling 1 (alpha = rank), what Brickwork writes for adapters
    it computes (composites, merges, the zero adapter): their scalings are folded into a factor."""
    return {
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": base_name,
        "r": rank,
        "lora_alpha": rank,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": target_modules,
        "layers_to_transform": layers_to_transform,
        "use_dora": False,
        "use_rslora": False,
        "modules_to_save": None,
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "inference_mode": True,
    }


def write_adapter(out: Path, factors: dict[str, tuple[Any, Any]], config: dict[str, Any], *, dtype: Any = None) -> None:
    """Write ``{module: (A, B)}`` and `config` into `out` in PEFT's format (`out` is a staging
    directory: callers publish it atomically)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for module, (a, b) in sorted(factors.items()):
        tensors[tensor_key(module, "A")] = (a if dtype is None else a.to(dtype)).contiguous()
        tensors[tensor_key(module, "B")] = (b if dtype is None else b.to(dtype)).contiguous()
    save_file(tensors, str(out / ADAPTER_WEIGHTS))
    (out / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
