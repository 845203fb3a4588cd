"""Merging bricks into a new brick with PEFT's `add_weighted_adapter`.

Methods (a registry keyed by name; an unknown name lists what exists):

    cat          exact weighted sum of the sources' deltas; rank = sum of ranks (padded to a vLLM rank)
    svd          the exact sum, re-factored by SVD to `svd_rank` (default: the largest source rank)
    linear       weighted sum of the A and B factors separately (cheap, rough: cross terms)
    ties         TIES on the factors: trim to `density`, elect signs, disjoint mean
    dare_ties    DARE (random drop to `density`, rescale) then TIES sign election
    dare_linear  DARE then a weighted sum

Sources may differ in rank, target modules and layers: each is first *aligned* to a common shape
(the union of their modules and layers, the largest rank) by zero padding and by folding its
scaling into B, which changes none of their deltas, so every method works on any set of bricks of
one base model. The result is padded up to a rank vLLM accepts (zero rows/columns, exact), checked
by the store's validation, and recorded with its lineage (`provenance.parents`), a description and
examples combined from the sources, and (optionally) its retention measured: the merged brick's
accuracy on each source brick's test items next to the source's own.

Example::

    result = merge_bricks(store, "plural_and_spell", [("english_plural", 1.0), ("spell_word", 1.0)],
                          config=MergeConfig(method="cat"))
    result.brick.manifest.provenance["parents"]   # [{"name": "english_plural", "version": 1, ...}, ...]
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from brickwork.bricks.lineage import BaseRunner, strip_adapters, tasks_of, test_items_by_task
from brickwork.bricks.manifest import Manifest, check_name
from brickwork.bricks.refs import BrickSpec
from brickwork.bricks.store import Brick, BrickStore
from brickwork import lora
from brickwork.lora import VLLM_RANKS
from brickwork.errors import AdapterError, ConfigError
from brickwork.models import BaseModel

MergeMethod = Literal["cat", "linear", "ties", "dare_ties", "dare_linear", "svd"]
Progress = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class MethodSpec:
    """How one merge method behaves: `exact` methods reproduce the weighted sum of the deltas."""

    name: str
    exact: bool
    uses_density: bool
    summary: str


METHODS: dict[str, MethodSpec] = {
    m.name: m
    for m in (
        MethodSpec(name="cat", exact=True, uses_density=False, summary="exact weighted sum, rank = sum of ranks"),
        MethodSpec(name="linear", exact=False, uses_density=False, summary="weighted sum of A and B factors"),
        MethodSpec(name="ties", exact=False, uses_density=True, summary="TIES: trim, elect sign, disjoint mean"),
        MethodSpec(name="dare_ties", exact=False, uses_density=True, summary="DARE drop + TIES sign election"),
        MethodSpec(name="dare_linear", exact=False, uses_density=True, summary="DARE drop + weighted sum"),
        MethodSpec(name="svd", exact=False, uses_density=False, summary="exact sum re-factored by SVD to svd_rank"),
    )
}


def method_spec(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown merge method {name!r}; choose one of: {', '.join(METHODS)}") from None


@dataclass(frozen=True, kw_only=True)
class MergeConfig:
    """How to merge. `density` is for ties/dare_*; `svd_rank` for svd; `seed` makes DARE repeatable."""

    method: str = "cat"
    density: float = 0.5
    svd_rank: int | None = None
    majority_sign_method: Literal["total", "frequency"] = "total"
    max_rank: int = max(VLLM_RANKS)
    seed: int = 0

    def __post_init__(self) -> None:
        method_spec(self.method)
        if not isinstance(self.density, int | float) or not 0.0 < self.density <= 1.0:
            raise ConfigError(f"`density` should be in (0, 1], got {self.density!r}.")
        if self.svd_rank is not None and (not isinstance(self.svd_rank, int) or self.svd_rank < 1):
            raise ConfigError(f"`svd_rank` should be a positive integer, got {self.svd_rank!r}.")
        if self.majority_sign_method not in ("total", "frequency"):
            raise ConfigError(
                f"`majority_sign_method` should be 'total' or 'frequency', got {self.majority_sign_method!r}."
            )
        if self.max_rank not in VLLM_RANKS:
            raise ConfigError(f"`max_rank` should be one of {VLLM_RANKS}, got {self.max_rank!r}.")


# A merge source is a brick as the user names it (``NAME[@VERSION][:WEIGHT]``): the one spec class.
MergeSource = BrickSpec


def allowed_rank(r: int, *, max_rank: int = max(VLLM_RANKS)) -> int:
    """The smallest vLLM-allowed rank >= r, or an error naming the limit and what to do."""
    try:
        return lora.padded_rank(r, max_rank=max_rank)
    except AdapterError:
        raise ConfigError(
            f"a merged rank of {r} exceeds the maximum rank {max_rank}; merge fewer bricks with `cat`, "
            "or use `--method svd --svd-rank R` to compress"
        ) from None


# -- alignment -------------------------------------------------------------------------------
def read_lora(path: Path) -> tuple[dict, dict[str, tuple[Any, Any]]]:
    """(adapter config, {module path: (A, B * scaling)}) in float32 (per-module scaling, so
    ``alpha_pattern`` / ``rank_pattern`` adapters merge too)."""
    cfg, factors = lora.read_factors(path)
    if cfg.get("use_dora"):
        raise AdapterError(f"{path}: DoRA adapters cannot be merged")
    return cfg, {module: (a, b * lora.scaling(cfg, module, a.shape[0])) for module, (a, b) in factors.items()}


def _align(sources: list[tuple[dict, dict]], base: BaseModel, out_dirs: list[Path]) -> dict:
    """Write every source as a LoRA over the same modules, layers and rank; return the shared config."""
    import torch

    from brickwork.models import weight_shapes

    shapes = weight_shapes(base)
    rank = max(max(a.shape[0] for a, _ in mods.values()) for _, mods in sources)
    names = sorted({m.rsplit(".", 1)[-1] for _, mods in sources for m in mods})
    layers = sorted({i for _, mods in sources for m in mods if (i := lora.layer_index(m)) is not None})
    all_layers = sorted({i for k in shapes if (i := lora.layer_index(k)) is not None})
    wanted = sorted(
        k[: -len(".weight")]
        for k in shapes
        if k.endswith(".weight")
        and k[: -len(".weight")].rsplit(".", 1)[-1] in names
        and lora.layer_index(k) in layers
    )
    known = {m for _, mods in sources for m in mods}
    if not known <= set(wanted):
        raise AdapterError(f"modules the base model does not have: {sorted(known - set(wanted))[:5]}")
    cfg = lora.plain_config(
        rank, names, None if layers == all_layers else layers, base_name=str(base.path)
    )  # scaling 1: the sources' scalings are folded into B
    for (_, mods), out in zip(sources, out_dirs, strict=True):
        factors = {}
        for module in wanted:
            out_f, in_f = shapes[module + ".weight"][0], shapes[module + ".weight"][-1]
            a, b = mods.get(module, (torch.zeros(0, in_f), torch.zeros(out_f, 0)))
            factors[module] = lora.pad_factors(a, b, rank)
        lora.write_adapter(out, factors, cfg)
    return cfg


# -- merging ---------------------------------------------------------------------------------
def merge_adapters(
    base: BaseModel,
    sources: Sequence[tuple[Path, float]],
    out_dir: Path,
    *,
    config: MergeConfig = MergeConfig(),
    model: Any | None = None,
) -> dict:
    """Merge PEFT LoRA directories with weights into `out_dir` (adapter files only); return its config.

    `model` may be a loaded base model (transformers) to reuse; it is left without adapters.
    """
    import torch
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict

    if len(sources) < 2:
        raise ConfigError(f"a merge needs at least two source bricks, got {len(sources)}")
    spec = method_spec(config.method)
    read = [read_lora(Path(p)) for p, _ in sources]
    dtypes = {d for p, _ in sources for d in _tensor_dtypes(Path(p))}
    out_dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    if model is None:
        from brickwork.models import load_base_model

        model, _ = load_base_model(base)
    work = Path(tempfile.mkdtemp(prefix=".merge-", dir=out_dir.parent))
    try:
        aligned = [work / f"src{i}" for i in range(len(sources))]
        _align(read, base, aligned)
        names = [f"src{i}" for i in range(len(sources))]
        try:
            peft_model = PeftModel.from_pretrained(model, str(aligned[0]), adapter_name=names[0])
            for name, path in zip(names[1:], aligned[1:], strict=True):
                peft_model.load_adapter(str(path), adapter_name=name)
            torch.manual_seed(config.seed)  # DARE drops at random
            peft_model.add_weighted_adapter(
                adapters=names,
                weights=[float(w) for _, w in sources],
                adapter_name="merged",
                # svd = the exact sum (cat) truncated by SVD; see _truncate_svd for why not PEFT's own
                combination_type="cat" if spec.name == "svd" else spec.name,
                density=config.density if spec.uses_density else None,
                majority_sign_method=config.majority_sign_method,
            )
            state = get_peft_model_state_dict(peft_model, adapter_name="merged")
            merged_cfg = peft_model.peft_config["merged"]
            rank = int(merged_cfg.r)
            target_modules = sorted(merged_cfg.target_modules)
            layers = merged_cfg.layers_to_transform
            if spec.name == "svd":
                rank = config.svd_rank or max(a.shape[0] for _, mods in read for a, _ in mods.values())
                state = _truncate_svd(state, rank)
        except (ValueError, RuntimeError, KeyError, TypeError) as exc:
            raise AdapterError(f"PEFT could not merge with method {spec.name!r}: {exc}") from exc
        finally:
            strip_adapters(model)
        padded = allowed_rank(rank, max_rank=config.max_rank)
        pairs: dict[str, dict[str, Any]] = {}
        for key, t in state.items():
            parsed = lora.parse_key(key)
            if parsed is not None:
                pairs.setdefault(parsed[0], {})[parsed[1]] = t.detach().to(torch.float32)
        factors = {module: lora.pad_factors(ab["A"], ab["B"], padded) for module, ab in pairs.items()}
        # PEFT's merged adapter has scaling 1 (alpha = r); plain_config keeps that at the padded rank.
        cfg = lora.plain_config(
            padded, target_modules, list(layers) if layers is not None else None, base_name=str(base.path)
        )
        lora.write_adapter(out_dir, factors, cfg, dtype=out_dtype)
        return {**cfg, "merged_rank": rank}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _truncate_svd(state: dict[str, Any], rank: int) -> dict[str, Any]:
    """Best rank-`rank` factors of each module's delta B @ A, computed from the factors.

    Same result as PEFT's ``combination_type="svd"`` (an SVD of the dense weighted sum, truncated)
    but through QR of the thin factors: an SVD of an R x R core instead of the full out x in
    matrix, which took ~1 s a module on this 2-core machine (minutes a merge) and now takes ms.
    """
    import torch

    pairs: dict[str, dict[str, Any]] = {}
    for key, t in state.items():
        parsed = lora.parse_key(key)
        if parsed is not None:
            pairs.setdefault(parsed[0], {})[parsed[1]] = t.detach().to(torch.float32)
    out = {}
    for module, ab in pairs.items():
        a, b = ab["A"], ab["B"]  # (R, in), (out, R)
        qb, rb = torch.linalg.qr(b)  # b = qb rb
        qa, ra = torch.linalg.qr(a.T)  # a = ra^T qa^T
        u, s, vh = torch.linalg.svd(rb @ ra.T)
        k = min(rank, s.shape[0])
        new_b = torch.zeros(b.shape[0], rank)
        new_a = torch.zeros(rank, a.shape[1])
        new_b[:, :k] = (qb @ u[:, :k]) * s[:k]
        new_a[:k] = vh[:k] @ qa.T
        out[lora.tensor_key(module, "A")] = new_a
        out[lora.tensor_key(module, "B")] = new_b
    return out


def _tensor_dtypes(path: Path) -> list[Any]:
    from safetensors import safe_open

    with safe_open(str(path / lora.ADAPTER_WEIGHTS), framework="pt") as st:
        keys = list(st.keys())[:1]
        return [st.get_tensor(k).dtype for k in keys]


# -- bricks ----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Retention:
    """The merged brick next to one source brick on that source's test items."""

    source: str
    task: str
    n: int
    source_accuracy: float
    merged_accuracy: float

    @property
    def retention(self) -> float | None:
        return self.merged_accuracy / self.source_accuracy if self.source_accuracy > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "task": self.task,
            "n": self.n,
            "source_accuracy": round(self.source_accuracy, 4),
            "merged_accuracy": round(self.merged_accuracy, 4),
            "retention": None if self.retention is None else round(self.retention, 4),
        }


@dataclass(frozen=True, kw_only=True)
class MergeResult:
    brick: Brick | None
    adapter_dir: Path | None
    method: str
    rank: int
    merged_rank: int
    retention: list[Retention] = field(default_factory=list)
    seconds: float = 0.0

    def mean_retention(self) -> float | None:
        vals = [r.retention for r in self.retention if r.retention is not None]
        return sum(vals) / len(vals) if vals else None


def combined_description(manifests: Sequence[Manifest]) -> str:
    """The sources' descriptions joined, so retrieval finds the merged brick for each of them."""
    parts = []
    for m in manifests:
        d = m.description.strip()
        if d and d not in parts:
            parts.append(d)
    return " | ".join(parts)


def combined_examples(manifests: Sequence[Manifest], *, limit: int = 48) -> list[str]:
    """Round-robin over the sources' examples (each keeps an equal share), de-duplicated."""
    out: list[str] = []
    queues = [list(m.examples) for m in manifests]
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                ex = q.pop(0)
                if ex not in out:
                    out.append(ex)
    return out


def merge_bricks(
    store: BrickStore,
    name: str,
    sources: Sequence[MergeSource | tuple[str, float] | str],
    *,
    config: MergeConfig = MergeConfig(),
    description: str | None = None,
    measure: bool = True,
    eval_items: int | None = 100,
    eval_seed: int = 0,
    command: str | None = None,
    progress: Progress | None = None,
    add: bool = True,
    runner: BaseRunner | None = None,
) -> MergeResult:
    """Merge bricks of `store` into brick `name` (a new brick, or a new version of it).

    With `measure`, retention is measured on each source's test items (at most `eval_items` a
    source, a seeded sample) and recorded in the manifest's `metrics`. With `add=False` nothing is
    written to the store (the merged adapter is left in a temporary folder: `result.adapter_dir`).
    `runner` scores adapters (a `BaseRunner`, shared across calls to load the base model once).
    """
    import time

    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    check_name(name)
    srcs = [_as_source(s) for s in sources]
    if len({(s.name, s.version) for s in srcs}) != len(srcs):
        raise ConfigError("the same brick version is listed twice among the merge sources")
    bricks = [store.get(s.name, s.version) for s in srcs]
    not_lora = [b.name for b in bricks if b.manifest.kind != "lora"]
    if not_lora:
        raise ConfigError(f"only lora bricks can be merged; {not_lora} are not")
    base = store.base
    work = store.scratch_dir(f"merge-{name}.")
    try:
        say(f"merging {', '.join(f'{b.name}@{b.version}:{s.weight:g}' for b, s in zip(bricks, srcs, strict=True))} "
            f"with {config.method}")
        runner = runner or BaseRunner(base)
        out = work / "adapter"
        cfg = merge_adapters(base, [(b.path, s.weight) for b, s in zip(bricks, srcs, strict=True)], out,
                             config=config, model=getattr(runner, "model", None))
        say(f"merged adapter: rank {cfg['merged_rank']}" + (f" padded to {cfg['r']}" if cfg["r"] != cfg["merged_rank"] else ""))
        retention: list[Retention] = []
        if measure:
            for brick in bricks:
                for task_id, items in test_items_by_task(brick.manifest, brick.path, n=eval_items, seed=eval_seed).items():
                    say(f"retention: {brick.name} on {task_id} ({len(items)} test items)")
                    src_acc = runner.score(brick.path, items).accuracy
                    merged_acc = runner.score(out, items).accuracy
                    retention.append(Retention(source=brick.name, task=task_id, n=len(items),
                                               source_accuracy=src_acc, merged_accuracy=merged_acc))
                    say(f"  {brick.name}: source {src_acc:.3f}, merged {merged_acc:.3f}")
        manifests = [b.manifest for b in bricks]
        tasks = sorted({t for m in manifests for t in tasks_of(m)})
        metrics: dict[str, Any] = {}
        if retention:
            metrics["retention"] = [r.to_json() for r in retention]
            vals = [r.retention for r in retention if r.retention is not None]
            if vals:
                metrics["mean_retention"] = round(sum(vals) / len(vals), 4)
            metrics["exact_match"] = round(sum(r.merged_accuracy * r.n for r in retention) / max(1, sum(r.n for r in retention)), 4)
        manifest = Manifest(
            name=name,
            version=1,
            kind="lora",
            description=description or combined_description(manifests),
            examples=combined_examples(manifests),
            tags=sorted({t for m in manifests for t in m.tags} | {"merged", f"merge:{config.method}"}),
            base_model=base.to_json(),
            rank=int(cfg["r"]),
            target_modules=list(cfg["target_modules"]),
            provenance={
                "parents": [{"name": b.name, "version": b.version, "weight": s.weight}
                            for b, s in zip(bricks, srcs, strict=True)],
                "operation": "merge",
                "method": config.method,
                "merge_config": {"density": config.density, "svd_rank": config.svd_rank,
                                 "majority_sign_method": config.majority_sign_method, "seed": config.seed},
                "tasks": tasks,
                "command": command,
            },
            metrics=metrics,
        )
        brick = None
        if add:
            brick = store.add(out, manifest)
            say(f"added {brick.name} v{brick.version} (rank {manifest.rank})")
        else:
            (out / "brick.json").write_text(json.dumps(manifest.to_json(), indent=2))
        return MergeResult(
            brick=brick,
            adapter_dir=None if add else out,
            method=config.method,
            rank=int(cfg["r"]),
            merged_rank=int(cfg["merged_rank"]),
            retention=retention,
            seconds=time.perf_counter() - t0,
        )
    finally:
        if add:
            shutil.rmtree(work, ignore_errors=True)


def _as_source(s: MergeSource | tuple[str, float] | str) -> MergeSource:
    if isinstance(s, MergeSource):
        return s
    if isinstance(s, str):
        return MergeSource.parse(s)
    name, weight = s
    return MergeSource(name=check_name(name), weight=float(weight))
