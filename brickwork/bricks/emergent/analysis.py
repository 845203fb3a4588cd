"""The FFN analysis of "Configurable Foundation Models" (arXiv 2409.02877, §4) on any gated-FFN LM.

Three findings are tested, with the selection data (train split) kept apart from the evaluation
data (test split):

1. **Sparse activation** — the distribution of normalised activations (|a| / max |a| per token and
   layer, for |a| and for |a| x ||down_proj column||), and the loss change when the lowest p% of
   neurons (per token, per layer) are zeroed.
2. **Functional specialisation** — FuncScore: average precision of each neuron's per-instance
   value against a category's labels; best neuron and mean per layer, against shuffled labels.
3. **Functional partition** — zero each category's top-5% FuncScore neurons (by slicing them away)
   and measure perplexity on every category's held-out instances (a categories x categories
   matrix, with a random-5% control); overlaps of the top-5% sets against random sets.

Also: resident (always-on) neurons, co-activation clusters (MoEfication-style), per-task neuron
importance (what `build` and the eval keep) and each layer's block influence (1 - cos(in, out),
what picks skippable layers).

Example::

    model, tok = load_base_model()
    result = analyze(model, tok, base=resolve_base_model())
    write_analysis(result, Path("out"))     # analysis.json, scores.safetensors, report.md, *.png
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from brickwork import _atomic
from brickwork.bricks.emergent.data import CATEGORIES, build_instances
from brickwork.bricks.emergent.ffn import down_column_norms, gated_ffns
from brickwork.bricks.emergent.runner import Recorder, count_batches, per_token_sparsifier, run_pass
from brickwork.bricks.emergent.slicing import slice_ffn
from brickwork.bricks.emergent.stats import (
    cluster_neurons,
    funcscore,
    off_diagonal,
    overlap_matrix,
    random_overlap,
    resident_neurons,
    top_sets,
)
from brickwork.errors import ConfigError, ModelError
from brickwork.models import BaseModel

ANALYSIS_FORMAT = 1
ANALYSIS_JSON = "analysis.json"
SCORES_FILE = "scores.safetensors"


@dataclass(kw_only=True)
class AnalysisConfig:
    """Sizes and thresholds of one analysis; the defaults fit 20 minutes on 2 shared CPU cores."""

    n_select: int = 64  # train instances per category (selection: FuncScore, top sets, importance)
    n_eval: int = 24  # test instances per category (masking matrix)
    n_sparsity: int = 12  # test instances per category (sparsity curve)
    top_fraction: float = 0.05
    sparsity_levels: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9)
    shuffles: int = 3
    n_clusters: int = 16
    resident_quantile: float = 0.9
    resident_min_freq: float = 0.9
    max_input_tokens: int = 64
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_select", "n_eval", "n_sparsity", "n_clusters", "max_input_tokens", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"`{name}` should be a positive integer, got {v!r}.")
        for name in ("top_fraction", "resident_quantile", "resident_min_freq"):
            v = getattr(self, name)
            if not 0 < v < 1:
                raise ConfigError(f"`{name}` should be between 0 and 1, got {v!r}.")
        self.sparsity_levels = tuple(self.sparsity_levels)
        if not self.sparsity_levels or not all(0 < p < 1 for p in self.sparsity_levels):
            raise ConfigError(f"`sparsity_levels` should be fractions in (0, 1), got {self.sparsity_levels!r}.")
        if self.shuffles < 1:
            raise ConfigError(f"`shuffles` should be at least 1, got {self.shuffles!r}.")


@dataclass
class Analysis:
    """`summary` is what analysis.json holds; `arrays` go to scores.safetensors (what build reads)."""

    summary: dict[str, Any]
    arrays: dict[str, Any] = field(repr=False)


def _r(x: Any, nd: int = 4) -> Any:
    if isinstance(x, list):
        return [_r(v, nd) for v in x]
    if hasattr(x, "tolist"):
        return _r(x.tolist(), nd)
    return round(float(x), nd) if isinstance(x, float) else x


def analyze(
    model: Any,
    tokenizer: Any,
    *,
    base: BaseModel | None = None,
    config: AnalysisConfig | None = None,
    categories: dict[str, tuple[str, ...]] | None = None,
    progress: bool = True,
) -> Analysis:
    """Run the whole analysis on `model` (an HF causal LM with a gated FFN)."""
    import torch
    from tqdm.auto import tqdm

    cfg = config or AnalysisConfig()
    categories = categories or CATEGORIES
    cats = list(categories)
    ffns = gated_ffns(model)  # ModelError early for models without a gated FFN
    sizes = [f.size for f in ffns]
    if len(set(sizes)) != 1:
        raise ModelError(f"layers have different FFN widths {sorted(set(sizes))}; the analysis needs one width")
    n_layers, width = len(sizes), sizes[0]
    norms = down_column_norms(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    kw = {"max_input_tokens": cfg.max_input_tokens, "seed": cfg.seed, "categories": categories}
    sel_pre, sel = build_instances(tokenizer, split="train", per_category=cfg.n_select, **kw)
    ev_pre, ev = build_instances(tokenizer, split="test", per_category=cfg.n_eval, **kw)
    sp_pre, sp = build_instances(tokenizer, split="test", per_category=cfg.n_sparsity, **{**kw, "seed": cfg.seed + 1})
    bs = cfg.batch_size
    total = count_batches(sel, bs) + count_batches(ev, bs) * (len(cats) + 2) + count_batches(sp, bs) * (1 + 2 * len(cfg.sparsity_levels))
    timings: dict[str, float] = {}
    bar = tqdm(total=total, desc="emergent analyze", unit="batch", disable=not progress, mininterval=2.0)
    run = {"batch_size": bs, "progress": bar, "pad_id": pad_id}

    # 1. Selection pass (train split): per-instance neuron values.
    t = time.perf_counter()
    bar.set_postfix_str("selection")
    rec = Recorder(len(sel), sizes, norms)
    with rec.attached(model):
        run_pass(model, sel_pre, sel, recorder=rec, **run)
    values = rec.values()
    values_input = rec.values(with_definition=False)
    timings["selection"] = time.perf_counter() - t

    # 2. Statistics on the selection data only.
    t = time.perf_counter()
    cat_ids = torch.tensor([cats.index(i.category) for i in sel])
    fs = funcscore(values, cat_ids, len(cats), shuffles=cfg.shuffles, seed=cfg.seed)
    # Robustness: the same on input tokens only (instances of a task share their definition).
    fs_input = funcscore(values_input, cat_ids, len(cats), shuffles=1, seed=cfg.seed)
    overlap_input = overlap_matrix(top_sets(fs_input["scores"], cfg.top_fraction))
    del values_input
    fs_sets = top_sets(fs["scores"], cfg.top_fraction)  # (categories, layers, neurons)
    weighted = values * norms.unsqueeze(0)
    task_ids = list(dict.fromkeys(i.task_id for i in sel))
    task_imp = torch.stack([weighted[[k for k, i in enumerate(sel) if i.task_id == tid]].mean(0) for tid in task_ids])
    cat_imp = torch.stack([weighted[cat_ids == c].mean(0) for c in range(len(cats))])
    global_imp = weighted.mean(0)
    act_sets = top_sets(cat_imp, cfg.top_fraction)
    freq, resident = resident_neurons(values, cat_ids, len(cats), quantile=cfg.resident_quantile, min_freq=cfg.resident_min_freq)
    clusters = cluster_neurons(values, cfg.n_clusters, seed=cfg.seed)
    overlap = overlap_matrix(fs_sets)
    overlap_act = overlap_matrix(act_sets)
    overlap_rand = random_overlap(len(cats), n_layers, width, cfg.top_fraction, seed=cfg.seed)
    bi = (rec.bi_sum / rec.bi_n.clamp_min(1)).float()
    timings["statistics"] = time.perf_counter() - t

    # 3. Masking matrix (test split): slice away each category's top set, evaluate every category.
    t = time.perf_counter()
    ev_rows = {c: [k for k, i in enumerate(ev) if i.category == c] for c in cats}
    bar.set_postfix_str("masking: dense")
    dense = run_pass(model, ev_pre, ev, **run)
    ppl_dense = {c: dense.ppl(ev_rows[c]) for c in cats}
    ans_dense = {c: dense.ppl(ev_rows[c], "answer") for c in cats}

    def masked_ppl(drop: Any) -> tuple[list[float], list[float]]:
        keep = {layer: torch.nonzero(~drop[layer]).flatten().tolist() for layer in range(n_layers)}
        with slice_ffn(model, keep):
            res = run_pass(model, ev_pre, ev, **run)
        return (
            [res.ppl(ev_rows[c]) / ppl_dense[c] - 1 for c in cats],
            [res.ppl(ev_rows[c], "answer") / ans_dense[c] - 1 for c in cats],
        )

    matrix, matrix_ans = [], []
    for ci, c in enumerate(cats):
        bar.set_postfix_str(f"masking: {c}")
        row, row_ans = masked_ppl(fs_sets[ci])
        matrix.append(row)
        matrix_ans.append(row_ans)
    bar.set_postfix_str("masking: random")
    g = torch.Generator().manual_seed(cfg.seed + 7)
    rand_row, rand_row_ans = masked_ppl(top_sets(torch.rand(n_layers, width, generator=g), cfg.top_fraction))
    timings["masking"] = time.perf_counter() - t

    # 4. Sparsity curve (test split): zero the lowest p% per token and layer.
    t = time.perf_counter()
    bar.set_postfix_str("sparsity")
    sp_rows = list(range(len(sp)))
    sp_dense = run_pass(model, sp_pre, sp, **run)
    loss0 = sp_dense.nll_content.sum().item() / sp_dense.n_content.sum().item()
    curves: dict[str, dict[str, list[float]]] = {}
    for key, nrm in (("act", None), ("act_norm", norms)):
        losses = []
        for p in cfg.sparsity_levels:
            bar.set_postfix_str(f"sparsity: {key} {p:.0%}")
            with per_token_sparsifier(model, p, nrm):
                res = run_pass(model, sp_pre, sp, **run)
            losses.append(res.nll_content.sum().item() / res.n_content.sum().item())
        curves[key] = {
            "loss": losses,
            "loss_increase": [x - loss0 for x in losses],
            "relative_loss_increase": [x / loss0 - 1 for x in losses],
            "ppl_increase": [res_ppl - 1 for res_ppl in (torch.exp(torch.tensor(losses) - loss0)).tolist()],
        }
    timings["sparsity"] = time.perf_counter() - t
    bar.close()

    # 5. Summaries.
    hist = {k: (v / v.sum()).tolist() for k, v in rec.hist.items()}
    bins = rec.bins
    below = {k: sum(h[: int(0.2 * bins)]) for k, h in hist.items()}
    ov_diag, ov_off = off_diagonal(overlap)
    _, ov_act_off = off_diagonal(overlap_act)
    z = (values - values.mean(0)) / values.std(0).clamp_min(1e-8)
    cluster_info = []
    for j in range(cfg.n_clusters):
        member = clusters == j
        size = int(member.sum())
        if size == 0:
            cluster_info.append({"id": j, "size": 0, "per_layer": [0] * n_layers, "top_tasks": []})
            continue
        act = (z * member).sum((1, 2)) / size  # per selection instance
        per_task = {tid: act[[k for k, i in enumerate(sel) if i.task_id == tid]].mean().item() for tid in task_ids}
        top = sorted(per_task.items(), key=lambda kv: -kv[1])[:3]
        cluster_info.append(
            {
                "id": j,
                "size": size,
                "per_layer": member.sum(1).tolist(),
                "resident": int((member & resident).sum()),
                "top_tasks": [{"task": tid, "z": round(v, 3)} for tid, v in top],
            }
        )
    skip_order = [int(i) for i in torch.argsort(bi).tolist() if i != 0]
    in_top = act_sets.any(0)
    summary: dict[str, Any] = {
        "format_version": ANALYSIS_FORMAT,
        "model": base.to_json() if base is not None else {"id": type(model).__name__, "fingerprint": ""},
        "architecture": {"n_layers": n_layers, "intermediate_size": width, "n_neurons": n_layers * width},
        "config": {**asdict(cfg), "sparsity_levels": list(cfg.sparsity_levels)},
        "categories": cats,
        "category_tasks": {c: list(categories[c]) for c in cats},
        "tasks": task_ids,
        "n_instances": {
            "select": {c: int((cat_ids == k).sum()) for k, c in enumerate(cats)},
            "eval": {c: len(ev_rows[c]) for c in cats},
            "sparsity": len(sp_rows),
            "splits": {"select": "train", "eval": "test", "sparsity": "test"},
        },
        "selection": "top-5% FuncScore per layer on the train split (masking matrix and `overlap`)",
        "ppl_dense": {c: _r(v) for c, v in ppl_dense.items()},
        "ppl_dense_answer": {c: _r(v) for c, v in ans_dense.items()},
        "masking_ppl_increase": _r(matrix),
        "masking_ppl_increase_answer": _r(matrix_ans),
        "masking_random": {c: _r(v) for c, v in zip(cats, rand_row, strict=True)},
        "masking_random_answer": {c: _r(v) for c, v in zip(cats, rand_row_ans, strict=True)},
        "masking_summary": masking_summary(matrix, matrix_ans, rand_row, rand_row_ans),
        "overlap": _r(overlap),
        "overlap_random": _r(overlap_rand),
        "overlap_expected_random": cfg.top_fraction,
        "overlap_by_activation": _r(overlap_act),
        "overlap_summary": {
            "funcscore_off_diagonal_mean": _r(ov_off),
            "funcscore_off_diagonal_max": _r(max(overlap[i][j] for i in range(len(cats)) for j in range(len(cats)) if i != j)),
            "activation_off_diagonal_mean": _r(ov_act_off),
            "random": _r(overlap_rand),
        },
        "sparsity": {
            "levels": list(cfg.sparsity_levels),
            "loss_dense": _r(loss0),
            **{k: {kk: _r(vv) for kk, vv in v.items()} for k, v in curves.items()},
            "histogram": {"bin_edges": [round(i / bins, 3) for i in range(bins + 1)], **{k: _r(v, 5) for k, v in hist.items()}},
            "fraction_below_0.2": {k: _r(v) for k, v in below.items()},
        },
        "funcscore": {
            "per_layer": [
                {
                    "layer": layer,
                    "best": _r(fs["best"][layer].item()),
                    "mean": _r(fs["mean"][layer].item()),
                    "best_shuffled": _r(fs["best_shuffled"][layer].item()),
                    "mean_shuffled": _r(fs["mean_shuffled"][layer].item()),
                }
                for layer in range(n_layers)
            ],
            "by_category": {
                c: {"best": _r(fs["scores"][k].amax(-1).mean().item()), "prevalence": _r((cat_ids == k).float().mean().item())}
                for k, c in enumerate(cats)
            },
            "input_only": {
                "best_mean": _r(fs_input["best"].mean().item()),
                "best_shuffled_mean": _r(fs_input["best_shuffled"].mean().item()),
                "mean_mean": _r(fs_input["mean"].mean().item()),
                "mean_shuffled_mean": _r(fs_input["mean_shuffled"].mean().item()),
                "best_per_layer": _r(fs_input["best"]),
                "overlap_off_diagonal_mean": _r(off_diagonal(overlap_input)[1]),
                "top_set_agreement": _r(
                    (top_sets(fs_input["scores"], cfg.top_fraction) & fs_sets).sum().item() / fs_sets.sum().item()
                ),
            },
            "best_mean": _r(fs["best"].mean().item()),
            "best_shuffled_mean": _r(fs["best_shuffled"].mean().item()),
            "mean_mean": _r(fs["mean"].mean().item()),
            "mean_shuffled_mean": _r(fs["mean_shuffled"].mean().item()),
        },
        "resident": {
            "criterion": f"in the layer's top {1 - cfg.resident_quantile:.0%} on >= {cfg.resident_min_freq:.0%} of every category's selection instances",
            "count_per_layer": resident.sum(1).tolist(),
            "total": int(resident.sum()),
            "fraction": _r(resident.float().mean().item()),
            "share_of_activation_top_sets": _r((in_top & resident).sum().item() / max(1, int(resident.sum()))),
        },
        "layer_importance": {"block_influence": _r(bi), "skip_order": skip_order},
        "clusters": cluster_info,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    arrays = {
        "down_norms": norms.float(),
        "task_importance": task_imp.float(),
        "category_importance": cat_imp.float(),
        "global_importance": global_imp.float(),
        "funcscore": fs["scores"].float(),
        "resident": resident.to(torch.uint8),
        "resident_freq": freq.amin(0).float(),
        "clusters": clusters.to(torch.int32),
        "block_influence": bi,
    }
    return Analysis(summary=summary, arrays=arrays)


def masking_summary(matrix: list[list[float]], matrix_ans: list[list[float]], rand: list[float], rand_ans: list[float]) -> dict[str, Any]:
    """Diagonal vs off-diagonal of the masking matrices (means, medians, log-space means) and
    the random-5% control. Log-space (mean of log(1 + increase)) keeps one exploding category
    from dominating the average."""
    import math
    import statistics

    n = len(matrix)
    out: dict[str, Any] = {}
    for prefix, m, r in (("", matrix, rand), ("answer_", matrix_ans, rand_ans)):
        diag = [m[i][i] for i in range(n)]
        off = [m[i][j] for i in range(n) for j in range(n) if i != j]

        def glog(xs: list[float]) -> float:
            return math.exp(sum(math.log1p(max(x, -0.999)) for x in xs) / len(xs)) - 1

        out.update(
            {
                f"{prefix}diagonal_mean": _r(sum(diag) / n),
                f"{prefix}off_diagonal_mean": _r(sum(off) / len(off)),
                f"{prefix}random_mean": _r(sum(r) / len(r)),
                f"{prefix}diagonal_median": _r(statistics.median(diag)),
                f"{prefix}off_diagonal_median": _r(statistics.median(off)),
                f"{prefix}random_median": _r(statistics.median(r)),
                f"{prefix}diagonal_geomean": _r(glog(diag)),
                f"{prefix}off_diagonal_geomean": _r(glog(off)),
                f"{prefix}random_geomean": _r(glog(r)),
                # per evaluated category: is its own mask the most harmful one (column max)?
                f"{prefix}diagonal_is_column_max": [int(max(range(n), key=lambda i, j=j: m[i][j]) == j) for j in range(n)],
                f"{prefix}diagonal_is_row_max": [int(max(range(n), key=lambda j, i=i: m[i][j]) == i) for i in range(n)],
            }
        )
    return out


def write_analysis(result: Analysis, out: Path, *, plots: bool = True) -> Path:
    """Write analysis.json, scores.safetensors, report.md and (if `plots`) PNGs into `out`."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in result.arrays.items()}, str(out / SCORES_FILE), metadata={"format": "brickwork-emergent-analysis"})
    _atomic.write_json(out / ANALYSIS_JSON, result.summary)
    from brickwork.bricks.emergent.report import write_report

    write_report(result.summary, out, plots=plots)
    return out


def load_analysis(directory: Path) -> Analysis:
    """Read an analysis directory written by `write_analysis`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    try:
        summary = json.loads((directory / ANALYSIS_JSON).read_text(encoding="utf-8"))
        arrays = load_file(str(directory / SCORES_FILE))
    except FileNotFoundError as exc:
        raise ConfigError(f"{directory} is not an analysis directory (run `brickwork emergent analyze --out {directory}`): {exc}") from exc
    except (json.JSONDecodeError, SafetensorError) as exc:
        raise ConfigError(f"{directory}: corrupt analysis files ({exc})") from exc
    if summary.get("format_version") != ANALYSIS_FORMAT:
        raise ConfigError(f"{directory}: analysis format {summary.get('format_version')!r} is not supported")
    return Analysis(summary=summary, arrays=arrays)


def collect_task_importance(
    model: Any,
    tokenizer: Any,
    *,
    n_per_task: int = 24,
    seed: int = 0,
    batch_size: int = 16,
    max_input_tokens: int = 64,
    resident_quantile: float = 0.9,
    resident_min_freq: float = 0.9,
    tasks: list[str] | None = None,
    progress: bool = False,
    record: str = "prompt",
    task_context: Any = None,
) -> dict[str, Any]:
    """Per-task neuron importance (mean |a| x ||down col|| on `n_per_task` train instances of each
    task), the task-agnostic mean, resident neurons and block influence: what running a task with
    part of the model needs, without the full analysis.

    `record` and `task_context` are `run_pass`'s: ``record="all"`` with the task's LoRA brick
    active (``task_context``) ranks neurons by what the brick uses while answering, not only
    while reading the prompt."""
    import torch
    from tqdm.auto import tqdm

    from brickwork.tasks import load_tasks

    per_task = {tid: (tid,) for tid in (tasks or load_tasks())}
    sizes = [f.size for f in gated_ffns(model)]
    norms = down_column_norms(model)
    pre, inst = build_instances(
        tokenizer, split="train", per_category=n_per_task, max_input_tokens=max_input_tokens, seed=seed, categories=per_task
    )
    rec = Recorder(len(inst), sizes, norms)
    bar = tqdm(total=count_batches(inst, batch_size), desc="neuron importance", disable=not progress, mininterval=2.0)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with rec.attached(model):
        run_pass(
            model, pre, inst, recorder=rec, batch_size=batch_size, progress=bar, pad_id=pad_id, record=record, task_context=task_context
        )
    bar.close()
    values = rec.values()
    weighted = values * norms.unsqueeze(0)
    task_ids = list(per_task)
    idx = torch.tensor([task_ids.index(i.task_id) for i in inst])
    _, resident = resident_neurons(values, idx, len(task_ids), quantile=resident_quantile, min_freq=resident_min_freq)
    return {
        "tasks": task_ids,
        "task_importance": torch.stack([weighted[idx == k].mean(0) for k in range(len(task_ids))]),
        "global_importance": weighted.mean(0),
        "resident": resident,
        "block_influence": (rec.bi_sum / rec.bi_n.clamp_min(1)).float(),
    }
