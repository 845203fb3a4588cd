"""Composite adapters: several bricks at several weights as one LoRA adapter (DESIGN.md §4).

vLLM applies one LoRA per request, so a step that uses bricks ``b_1..b_n`` at weights
``w_1..w_n`` runs on one adapter whose delta is exactly ``sum_i w_i * s_i * B_i A_i`` (``s_i`` is
brick i's LoRA scaling, alpha/r). That is PEFT's ``add_weighted_adapter(combination_type="cat")``:
stack ``w_i * s_i * A_i`` row-wise and ``B_i`` column-wise, rank = sum of ranks, alpha = rank so
the new scaling is 1. We compute the same tensors straight from the bricks' safetensors files
(no model is loaded; a test pins equality with PEFT's result) and also fix two cases PEFT's
version gets wrong for our purpose: bricks with different ``layers_to_transform`` (PEFT keeps
the first brick's) and rsLoRA bricks (PEFT keeps ``use_rslora`` with alpha = rank). The result
is zero-padded to the next rank vLLM accepts (1, 8, 16, 32, 64, 128, 256, 320, 512); zero rows
and columns change nothing.

Composites are cached on disk keyed by (base model, bricks' content digests, weights), built
atomically (staged, fsynced, renamed) and bounded by an LRU on last use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brickwork import _atomic, lora
from brickwork.errors import AdapterError, ConfigError
from brickwork.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from brickwork.models import BaseModel, weight_shapes

COMPOSITE_FORMAT = 1
COMPOSITE_INFO = "composite.json"

_digests: dict[tuple[Any, ...], str] = {}
_base_shapes: dict[str, dict[str, tuple[int, ...]]] = {}


def padded_rank(rank: int) -> int:
    """The smallest rank vLLM accepts that holds `rank` (zero padding fills the rest)."""
    try:
        return lora.padded_rank(rank)
    except AdapterError:
        raise AdapterError(
            f"a composite of rank {rank} exceeds vLLM's largest LoRA rank {lora.VLLM_RANKS[-1]}; use fewer or smaller bricks"
        ) from None


def adapter_digest(path: Path) -> str:
    """sha256 of a brick's adapter config and weights, memoised on (path, size, mtime)."""
    files = [Path(path) / ADAPTER_CONFIG, Path(path) / ADAPTER_WEIGHTS]
    try:
        stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    except FileNotFoundError as exc:
        raise AdapterError(f"{path}: missing adapter file {exc.filename}") from exc
    if stamp not in _digests:
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        _digests[stamp] = h.hexdigest()
    return _digests[stamp]


@dataclass(frozen=True, kw_only=True)
class Part:
    """One brick of a composite: where its adapter is, at which weight, and its content digest."""

    name: str
    version: int
    path: Path
    weight: float
    digest: str


def _shapes(base: BaseModel) -> dict[str, tuple[int, ...]]:
    if base.fingerprint not in _base_shapes:
        _base_shapes[base.fingerprint] = weight_shapes(base)
    return _base_shapes[base.fingerprint]


def cat_tensors(parts: Sequence[tuple[Path, float]], base: BaseModel) -> tuple[dict[str, Any], dict[str, Any]]:
    """The composite's ({module: (A, B)}, adapter_config) for `parts` = [(adapter_dir, weight), ...]."""
    import torch

    if not parts:
        raise ConfigError("a composite needs at least one brick")
    loaded = [(*lora.read_factors(Path(path)), weight) for path, weight in parts]

    # Every module any part touches, and, so that PEFT finds weights for every module it wraps,
    # every (module type x layer) combination of their union.
    shapes = _shapes(base)
    touched = {mod for _, factors, _ in loaded for mod in factors}
    leaves = {mod.rsplit(".", 1)[-1] for mod in touched}
    layered = [lora.layer_index(mod) for mod in touched]
    if all(i is not None for i in layered):
        layers = sorted({i for i in layered if i is not None})
        modules = sorted(
            key[: -len(".weight")]
            for key in shapes
            if key.endswith(".weight")
            and lora.layer_index(key[: -len(".weight")]) in layers
            and key[: -len(".weight")].rsplit(".", 1)[-1] in leaves
        )
        n_layers = len({i for k in shapes if (i := lora.layer_index(k)) is not None})
        layers_to_transform: list[int] | None = layers if len(layers) < n_layers else None
    else:
        modules, layers_to_transform = sorted(touched), None

    ranks = [max((a.shape[0] for a, _ in factors.values()), default=int(cfg.get("r", 0))) for cfg, factors, _ in loaded]
    rank = padded_rank(sum(ranks))
    out: dict[str, Any] = {}
    for mod in modules:
        target = shapes.get(mod + ".weight")
        if target is None:
            raise AdapterError(f"the base model has no module {mod!r}; the brick was made for another model")
        out_f, in_f = target[0], target[-1]
        a = torch.zeros(rank, in_f, dtype=torch.float32)
        b = torch.zeros(out_f, rank, dtype=torch.float32)
        offset = 0
        for (cfg, factors, weight), r in zip(loaded, ranks, strict=True):
            if mod in factors:
                ta, tb = factors[mod]
                rm = ta.shape[0]
                # PEFT's cat: weight and scaling go on A; B is copied.
                a[offset : offset + rm] = ta * (weight * lora.scaling(cfg, mod, rm))
                b[:, offset : offset + rm] = tb
            offset += r
        out[mod] = (a, b)
    first = loaded[0][0]
    config = lora.plain_config(
        rank, sorted(leaves), layers_to_transform,
        base_name=first.get("base_model_name_or_path"), task_type=first.get("task_type", "CAUSAL_LM"),
    )  # fmt: skip
    return out, config


def _write_adapter(out: Path, factors: dict[str, Any], config: dict[str, Any], info: dict[str, Any]) -> None:
    lora.write_adapter(out, factors, config)
    (out / COMPOSITE_INFO).write_text(json.dumps(info, indent=2) + "\n")


def write_composite(parts: Sequence[Part], base: BaseModel, out: Path) -> int:
    """Write the composite of `parts` into the (new, empty) directory `out`; return its rank."""
    tensors, config = cat_tensors([(p.path, p.weight) for p in parts], base)
    info = {
        "format_version": COMPOSITE_FORMAT,
        "base_model": base.to_json(),
        "rank": config["r"],
        "parts": [{"name": p.name, "version": p.version, "weight": p.weight, "digest": p.digest} for p in parts],
    }
    _write_adapter(out, tensors, config, info)
    return int(config["r"])


def write_zero_adapter(base: BaseModel, out: Path) -> int:
    """Write a rank-1 LoRA whose weights are all zero (every layer's ``q_proj``) into `out`.

    It changes nothing, so a request that carries it gets exactly the base model's output. vLLM-CPU
    needs it: its CPU LoRA kernels look adapters up by slot index, and the "no adapter" index -1
    selects the *last* slot, so a request without an adapter silently runs with whatever adapter
    sits there (see `VLLMOptions.zero_adapter_for_base`).
    """
    import torch

    shapes = _shapes(base)
    modules = sorted(k[: -len(".weight")] for k in shapes if k.endswith(".q_proj.weight"))
    if not modules:
        raise AdapterError(f"base model {base.id!r} has no q_proj layers to hang a zero adapter on")
    factors = {}
    for mod in modules:
        out_f, in_f = shapes[mod + ".weight"][0], shapes[mod + ".weight"][-1]
        factors[mod] = (torch.zeros(1, in_f, dtype=torch.float32), torch.zeros(out_f, 1, dtype=torch.float32))
    info = {"format_version": COMPOSITE_FORMAT, "base_model": base.to_json(), "rank": 1, "parts": []}
    _write_adapter(out, factors, lora.plain_config(1, ["q_proj"], None, base_name=base.id), info)
    return 1


def composite_key(parts: Sequence[Part], base: BaseModel) -> str:
    ident = {
        "format": COMPOSITE_FORMAT,
        "base": base.fingerprint,
        "parts": [[p.digest, repr(float(p.weight))] for p in parts],
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def canonical(parts: Sequence[Part]) -> list[Part]:
    """The order composites are built in: the sum commutes, so A+B and B+A share one cache entry."""
    return sorted(parts, key=lambda p: (p.name, p.version, p.digest, p.weight))


class CompositeCache:
    """Composite adapters on disk, keyed by content and weights, bounded by least-recent use.

    Entries used in the last `keep_recent_s` seconds are never evicted (another engine may be
    about to load them), so the bound is soft under bursts. An evicted entry is rebuilt on demand.

    Example::

        cache = CompositeCache()                      # under brickwork.models.cache_dir()
        path, rank = cache.get(parts, base)
    """

    def __init__(
        self, root: str | os.PathLike[str] | None = None, *, max_entries: int = 64, keep_recent_s: float = 60.0
    ) -> None:
        from brickwork.models import cache_dir

        if not isinstance(max_entries, int) or max_entries < 1:
            raise ConfigError(f"`max_entries` should be a positive integer, got {max_entries!r}.")
        self.root = Path(root).expanduser() if root is not None else cache_dir() / "composites"
        self.max_entries = max_entries
        self.keep_recent_s = keep_recent_s

    def path_for(self, parts: Sequence[Part], base: BaseModel) -> Path:
        return self.root / composite_key(canonical(parts), base)[:32]

    def get(self, parts: Sequence[Part], base: BaseModel) -> tuple[Path, int]:
        """The composite's directory (built if missing) and its rank."""
        parts = canonical(parts)
        return self._get(self.path_for(parts, base), lambda out: write_composite(parts, base, out))

    def zero(self, base: BaseModel) -> tuple[Path, int]:
        """The all-zero adapter of `base` (see `write_zero_adapter`), built once, and its rank."""
        return self._get(self.root / f"zero-{base.fingerprint.split(':')[-1][:24]}", lambda out: write_zero_adapter(base, out))

    def _get(self, path: Path, write: Any) -> tuple[Path, int]:
        if not (path / COMPOSITE_INFO).is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            with _atomic.file_lock(self.root / ".lock"):
                if not (path / COMPOSITE_INFO).is_file():
                    self._build(write, path)
                    self._evict(keep=path)
        self._touch(path)
        try:
            rank = int(json.loads((path / COMPOSITE_INFO).read_text())["rank"])
        except (OSError, ValueError, KeyError) as exc:
            raise AdapterError(f"composite cache entry {path} is unreadable ({exc}); delete it") from exc
        return path, rank

    def _build(self, write: Any, path: Path) -> None:
        staging = self.root / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=f"{path.name}.", dir=staging))
        try:
            write(staged)
            if path.exists():  # a half-deleted leftover (no composite.json): move it aside first
                _atomic.remove_tree(path, self.root / ".trash")
            _atomic.publish_dir(staged, path)
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    @staticmethod
    def _touch(path: Path) -> None:
        try:
            os.utime(path / COMPOSITE_INFO)
        except FileNotFoundError:
            pass

    def entries(self) -> list[Path]:
        """Cached composites, least recently used first."""
        if not self.root.is_dir():
            return []
        found = []
        for p in self.root.iterdir():
            info = p / COMPOSITE_INFO
            if p.name.startswith(".") or not info.is_file():
                continue
            try:
                found.append((info.stat().st_mtime, p))
            except FileNotFoundError:
                continue
        return [p for _, p in sorted(found)]

    def _evict(self, *, keep: Path) -> None:
        entries = [p for p in self.entries() if p != keep]
        excess = len(entries) + 1 - self.max_entries
        now = time.time()
        for p in entries:
            if excess <= 0:
                break
            try:
                if now - (p / COMPOSITE_INFO).stat().st_mtime < self.keep_recent_s:
                    continue
                _atomic.remove_tree(p, self.root / ".trash")
            except FileNotFoundError:
                pass
            excess -= 1
