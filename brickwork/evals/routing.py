"""routing: does retrieval pick the right brick, and no brick when none fits?

Three query sets, none of them indexed (provenance: ``brickwork/data/routing/PROVENANCE.md``):

- (a) ``instruction``: hand-written requests naming each task in other words than its
  description (``instructions.jsonl``), filled with task inputs;
- (b) ``bare``: task inputs with no instruction at all;
- (c) ``out_of_scope``: hand-written requests no brick serves, most of them near misses (same
  topic, different task: "singular of mice", "12 times 11", "population of Japan").

Each set has two disjoint halves. ``calib`` (templates and OOS items marked calib, filled with
*train* inputs that are not in the brick's manifest) is the only data thresholds and design
choices are fitted on; ``report`` (the other templates, filled with *test*-split inputs) is what
the headline table shows. Metrics: top-1, top-3, MRR of the gold brick; with the router: share
routed to the gold brick, to another brick, to the base model; for (c) the share routed to the
base model (out-of-scope recall) and, over all sets, the precision of "base model" decisions.

Configurations side by side: the plain baseline (description vectors only, embedding only, no
threshold), the shipped index + router, and ablations (embedding only; aggregation of a brick's
rows by max vs mean of top 3; lexical weight; weight of the brick classifier, refitted here from
the library's manifests exactly as the index fits it). A bare input that the bundled data lists under
several tasks (a country: capital and region) has no single right brick; bare top-1 is reported
strict (the query's own task) and *any listing brick* (each of those tasks counts), with a per-brick table. The library is ``--library``; when it holds no
bricks, a temporary manifest-only starter library is built (placeholder adapters; routing only
reads manifests) and the report says so.

    brickwork eval routing [--library DIR] [--out DIR] [--bare-per-task 100] [--calibrate]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

# the product's calibration rule and decision (evals measure them, they do not keep copies)
from brickwork.retrieval_index.calibration import calibrate, calibrate_thresholds, to_base

ROUTING_DATA = Path(__file__).resolve().parents[1] / "data" / "routing"
#: ``bare_asked``: bare inputs of bricks that must be asked for (manifest ``bare_inputs: false``):
#: the base model answers them by design, so they are reported apart and kept out of the in-scope
#: budget the threshold is calibrated under
SETS = ("instruction", "bare", "bare_asked", "out_of_scope")
_NUM = re.compile(r"-?\d+")


# -- the query sets -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    text: str
    gold: str | None  # brick name; None = out of scope
    set: str
    near: str | None = None  # for out-of-scope near misses: the brick it is close to
    also: tuple[str, ...] = ()  # bare inputs: other bricks whose bundled data lists this exact input


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def fill(template: str, text: str) -> str:
    """Put a task input into a template: {x} is the input, {a}/{b} the two numbers of an arithmetic input."""
    if "{a}" in template:
        nums = _NUM.findall(text)
        if len(nums) < 2:
            raise ValueError(f"input {text!r} has no two numbers for template {template!r}")
        return template.replace("{a}", nums[0]).replace("{b}", nums[1])
    return template.replace("{x}", text)


def _inputs(task: Any, split: str, exclude: set[str]) -> list[str]:
    """Inputs of `split`; for calib, train inputs the brick's manifest does not list (never indexed)."""
    if split == "calib":
        return [e.input for e in task.split("train") if e.input.strip() not in exclude]
    return [e.input for e in task.split("test")]


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _listed_inputs(task: Any) -> set[str]:
    """Every input the bundled data gives `task` (train and test), normalised."""
    return {_norm(e.input) for sp in ("train", "test") for e in task.split(sp)}


def build_queries(
    tasks: dict[str, Any],
    indexed: dict[str, set[str]],
    *,
    split: str,
    per_template: int = 3,
    bare_per_task: int | None = 100,
    seed: int = 0,
    asked: Collection[str] = (),
) -> list[Query]:
    """The eval queries of one half (``calib`` or ``report``) for the bricks in `indexed`; the bare
    inputs of the bricks in `asked` (which must be asked for) are set ``bare_asked``."""
    rng = random.Random(f"{seed}:{split}")
    out: list[Query] = []
    # calibration inputs avoid every indexed text (a country is an example of two bricks)
    every = set().union(*indexed.values()) if indexed else set()
    for row in _jsonl(ROUTING_DATA / "instructions.jsonl"):
        if row["split"] != split or row["task"] not in indexed:
            continue
        tpl, task = row["text"], tasks[row["task"]]
        if "{" not in tpl:
            out.append(Query(tpl, row["task"], "instruction"))
            continue
        pool = _inputs(task, split, every)
        for x in rng.sample(pool, min(per_template, len(pool))):
            out.append(Query(fill(tpl, x), row["task"], "instruction"))
    listed = {n: _listed_inputs(tasks[n]) for n in sorted(indexed)}
    for name in sorted(indexed):
        pool = _inputs(tasks[name], split, every)
        if bare_per_task and len(pool) > bare_per_task:
            pool = rng.sample(pool, bare_per_task)
        for x in pool:
            also = tuple(n for n in listed if n != name and _norm(x) in listed[n])
            out.append(Query(x, name, "bare_asked" if name in asked else "bare", also=also))
    # out of scope: calib = the calib rows of every none source (written and real requests;
    # never trained on); report = out_of_scope.jsonl's report half (a writer the router has seen:
    # the leave-one-source-out figures are the held-out ones, evals/routing_sources.py)
    from brickwork.retrieval_index import none_data

    for r in none_data.none_rows():
        if r.split == split:
            out.append(Query(r.text, None, "out_of_scope", r.near))
    return out


# -- a library to evaluate ------------------------------------------------------------------------
def write_placeholder_adapter(path: Path, base: Any) -> Path:
    """A valid rank-1 LoRA on one module, all zeros: enough for the store to accept a brick whose
    routing (manifest) is all that matters. Written with numpy; no torch."""
    from safetensors.numpy import save_file

    from brickwork.models import weight_shapes

    shapes = weight_shapes(base)
    key = next(k for k in sorted(shapes) if k.endswith("self_attn.q_proj.weight"))
    out_f, in_f = shapes[key]
    mod = key[: -len(".weight")]
    layer = int(mod.split(".")[2])
    path.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            f"base_model.model.{mod}.lora_A.weight": np.zeros((1, in_f), np.float32),
            f"base_model.model.{mod}.lora_B.weight": np.zeros((out_f, 1), np.float32),
        },
        str(path / "adapter_model.safetensors"),
    )
    cfg = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": 1,
        "lora_alpha": 1,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": ["q_proj"],
        "layers_to_transform": [layer],
        "use_dora": False,
        "modules_to_save": None,
    }
    (path / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
    return path


def starter_manifest(task: Any, base: Any) -> Any:
    """The manifest a starter brick for `task` has (description, examples, routing samples, tags from bricks.starter)."""
    from brickwork.bricks import Manifest
    from brickwork.bricks.starter import (
        starter_bare_inputs,
        starter_description,
        starter_examples,
        starter_routing_samples,
        starter_tags,
    )

    return Manifest(
        name=task.task_id,
        version=1,
        kind="lora",
        description=starter_description(task),
        examples=starter_examples(task),
        routing_samples=starter_routing_samples(task),
        bare_inputs=starter_bare_inputs(task),
        tags=starter_tags(task),
        base_model=base.to_json(),
        rank=1,
        target_modules=["q_proj"],
        provenance={"command": "brickwork eval routing (manifest-only library; placeholder adapter)"},
    )


def build_manifest_library(root: Path, *, base: Any = None, task_ids: Sequence[str] | None = None) -> Any:
    """A library at `root` holding starter-manifest bricks with placeholder adapters."""
    from brickwork.bricks import BrickStore
    from brickwork.models import resolve_base_model
    from brickwork.tasks import load_tasks

    base = base or resolve_base_model()
    store = BrickStore(root, base=base)
    tasks = load_tasks()
    src = Path(tempfile.mkdtemp(prefix="adapter-"))
    try:
        write_placeholder_adapter(src, base)
        for tid in task_ids or list(tasks):
            store.add(src, starter_manifest(tasks[tid], base))
    finally:
        shutil.rmtree(src, ignore_errors=True)
    return store


# -- scoring --------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Variant:
    """One retrieval configuration evaluated side by side."""

    name: str
    lexical_weight: float
    fields: str = "all"  # "all" | "description"
    classifier_weight: float = 0.0  # beta of the brick classifier blended in (retrieval_index/classifier.py)
    none_class: bool = False  # the classifier also learns a "none" class (none_train.jsonl)
    none_neighbour_weight: float = 0.0  # with the none class: gamma of classifier.none_penalty
    none_neighbour_margin: float = 0.0  # and its delta
    form_weight: float = 0.0  # the form penalty (retrieval_index/form.py); 0 off
    form_slack: float = 1.5
    #: bricks with ``bare_inputs: false`` must be asked for (retrieval_index/search.py); None: no gate
    ask_min_cos: float | None = None


def eval_rows(manifests: dict[str, Any], emb: Any, cache: Any, none_texts: Sequence[str]) -> dict[str, Any]:
    """What `_variant_scores` scores against: every brick's index rows and classifier texts (from
    `manifests`, {name: Manifest} in index order) and the none texts, with their embeddings."""
    from brickwork.retrieval_index.index import brick_texts, classifier_texts

    texts, fields, owner, aug_texts, aug_owner = [], [], [], [], []
    bare = np.asarray([m.bare_inputs for m in manifests.values()], bool)
    for i, m in enumerate(manifests.values()):
        tx, fx = brick_texts(m)
        aug = classifier_texts(m)
        texts += tx
        fields += fx
        owner += [i] * len(tx)
        aug_texts += aug
        aug_owner += [i] * len(aug)
    none_texts = list(none_texts)
    return {
        "names": list(manifests),
        "texts": texts,
        "fields": np.asarray(fields),
        "owner": np.asarray(owner),
        "bare_inputs": bare,
        "sem": cache.embed(emb, texts),
        "aug_texts": aug_texts,
        "aug_owner": np.asarray(aug_owner, dtype=np.int64),
        "aug_sem": cache.embed(emb, aug_texts),
        "none_texts": none_texts,
        "none_sem": cache.embed(emb, none_texts),
        # the requests' ask views (retrieval_index/asking.py), embedded as the index embeds them
        "embed": lambda ts: cache.embed(emb, ts),
    }


def _variant_scores(v: Variant, qsem: np.ndarray, qtexts: list[str], rows: dict[str, Any], lexical_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(queries, bricks) scores under variant `v`, computed by the product's `BrickTable` (the
    index's own scorer) on the variant's rows, classifier fit and weights, and the field (0
    description, 1 example) of the top brick's best row for each query."""
    from brickwork.retrieval_index import classifier as clf
    from brickwork.retrieval_index.ann import Ann
    from brickwork.retrieval_index.features import FeatureConfig, combine
    from brickwork.retrieval_index.search import AskGate, BrickTable

    cfg = FeatureConfig(lexical_weight=v.lexical_weight, lexical_dim=lexical_dim)
    mask = rows["fields"] == 0 if v.fields == "description" else np.ones(len(rows["fields"]), bool)
    rv = combine(rows["sem"][mask], [t for t, m in zip(rows["texts"], mask, strict=True) if m], cfg)
    qv = combine(qsem, qtexts, cfg)
    owner = rows["owner"][mask]
    w, kept = None, None
    if v.classifier_weight > 0:  # exactly what BrickIndex fits: rows + description+example texts
        # the fit depends on the vector space and the training texts only (not on beta, gamma or
        # the queries): one fit per such key, kept in `rows` for every variant and half
        key = (v.lexical_weight, v.fields, v.none_class)
        if key not in rows.setdefault("fits", {}):
            av = combine(rows["aug_sem"], rows["aug_texts"], cfg)
            none = combine(rows["none_sem"], rows["none_texts"], cfg) if v.none_class else None
            fit = clf.fit_library(rv, owner, av, rows["aug_owner"], len(rows["names"]), none)
            rows["fits"][key] = (fit, None if none is None else clf.kept_none(none, rv))
        w, kept = rows["fits"][key]
    limits = None
    if v.form_weight > 0:
        limits = form_limits(rows)
    table = BrickTable(
        rows["names"], [1] * len(rows["names"]), np.bincount(owner, minlength=len(rows["names"])), rv, Ann("flat", rv),
        rows["fields"][mask], classifier=w, classifier_weight=v.classifier_weight,
        none=kept, none_weight=v.none_neighbour_weight, none_margin=v.none_neighbour_margin,
        form=limits, form_weight=v.form_weight, form_slack=v.form_slack,
        ask=None if v.ask_min_cos is None else AskGate.of(rows["bare_inputs"], replace(cfg, ask_min_cos=v.ask_min_cos), rv.shape[1], rows["embed"]),
    )
    out, fields = table.scores(qv, qtexts)
    return out, fields[np.arange(len(qv)), out.argmax(1)]


def form_limits(rows: dict[str, Any]) -> np.ndarray:
    """Each brick's form region from the eval rows: the texts the index and classifier learn from
    (what `BrickIndex` stores per brick)."""
    from brickwork.retrieval_index.form import limits_by_owner

    return limits_by_owner([*rows["texts"], *rows["aug_texts"]], [*rows["owner"], *rows["aug_owner"]], len(rows["names"]))


def metrics(scores: np.ndarray, queries: Sequence[Query], names: list[str], based: np.ndarray) -> dict[str, dict[str, float]]:
    """Per set: top-1/top-3/MRR (in-scope sets) and routing outcomes given which queries went to base."""
    pos = {n: i for i, n in enumerate(names)}
    top1 = scores.argmax(1)
    to_base = based
    out: dict[str, dict[str, float]] = {}
    for s in SETS:
        idx = [i for i, q in enumerate(queries) if q.set == s]
        if not idx:
            continue
        r: dict[str, float] = {"n": len(idx)}
        if s != "out_of_scope":
            gold = np.array([pos[queries[i].gold] for i in idx])  # type: ignore[index]
            sc = scores[idx]
            rank = (sc > sc[np.arange(len(idx)), gold][:, None]).sum(1) + 1
            r["top1"] = float((rank == 1).mean())
            r["top3"] = float((rank <= 3).mean())
            r["mrr"] = float((1.0 / rank).mean())
            r["routed_correct"] = float(((top1[idx] == gold) & ~to_base[idx]).mean())
            r["routed_wrong"] = float(((top1[idx] != gold) & ~to_base[idx]).mean())
            r["to_base"] = float(to_base[idx].mean())
            # an input the bundled data lists under several tasks ("Peru": capital and region) has
            # each of their bricks as a right answer; strict top-1 above counts only the query's own
            accepted = [{pos[queries[i].gold], *(pos[a] for a in queries[i].also if a in pos)} for i in idx]  # type: ignore[index]
            hit_any = np.array([int(top1[i]) in acc for i, acc in zip(idx, accepted)])
            r["n_ambiguous"] = int(sum(len(acc) > 1 for acc in accepted))
            r["top1_any"] = float(hit_any.mean())
            r["routed_any"] = float((hit_any & ~to_base[idx]).mean())
        else:
            r["to_base"] = float(to_base[idx].mean())
            near = [i for i in idx if queries[i].near]
            far = [i for i in idx if not queries[i].near]
            r["near_miss_to_base"] = float(to_base[near].mean()) if near else float("nan")
            r["far_to_base"] = float(to_base[far].mean()) if far else float("nan")
        out[s] = r
    if "bare" in out and "bare_asked" in out:  # every bare input, as if no brick needed asking for
        idx = [i for i, q in enumerate(queries) if q.set in ("bare", "bare_asked")]
        out["bare_all"] = metrics(scores[idx], [replace(queries[i], set="bare") for i in idx], names, to_base[idx])["bare"]
    based_idx = np.where(to_base)[0]
    out["all"] = {
        "n": len(queries),
        "base_precision": float(np.mean([queries[i].gold is None for i in based_idx])) if len(based_idx) else float("nan"),
    }
    return out


def per_task(scores: np.ndarray, queries: Sequence[Query], names: list[str], based: np.ndarray, set_: str = "bare") -> dict[str, dict[str, Any]]:
    """`metrics` of `set_` for each gold brick's queries alone, plus the bricks they went to instead
    (most frequent first)."""
    top1 = scores.argmax(1)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted({q.gold for q in queries if q.set == set_ and q.gold}):
        idx = [i for i, q in enumerate(queries) if q.set == set_ and q.gold == name]
        m = metrics(scores[idx], [queries[i] for i in idx], names, based[idx])[set_]
        wrong: dict[str, int] = {}
        for i in idx:
            if not based[i] and names[top1[i]] != name:
                wrong[names[top1[i]]] = wrong.get(names[top1[i]], 0) + 1
        out[name] = {**m, "instead": dict(sorted(wrong.items(), key=lambda kv: (-kv[1], kv[0])))}
    return out


# -- the suite ------------------------------------------------------------------------------------
VARIANTS = (
    Variant(name="baseline: description only, embedding only", lexical_weight=0.0, fields="description"),
    Variant(name="embedding only, all rows, max", lexical_weight=0.0),
    Variant(name="hybrid w=0.3, all rows, max", lexical_weight=0.3),
    Variant(name="hybrid w=0.5, all rows, max", lexical_weight=0.5),
    Variant(name="hybrid w=0.7, all rows, max", lexical_weight=0.7),
    Variant(name="hybrid w=0.5, max + classifier beta=0.2", lexical_weight=0.5, classifier_weight=0.2),
    Variant(name="hybrid w=0.5, max + classifier beta=0.4", lexical_weight=0.5, classifier_weight=0.4),
    Variant(name="hybrid w=0.5, max + classifier beta=0.8", lexical_weight=0.5, classifier_weight=0.8),
    Variant(name="hybrid w=0.5, max + classifier with none class beta=0.4", lexical_weight=0.5, classifier_weight=0.4, none_class=True),
    Variant(name="hybrid w=0.5, max + classifier with none class beta=0.8", lexical_weight=0.5, classifier_weight=0.8, none_class=True),
    Variant(name="hybrid w=0.5, max + classifier with none class beta=1.6", lexical_weight=0.5, classifier_weight=1.6, none_class=True),
    *(
        Variant(
            name=f"hybrid w=0.5, max + classifier with none class beta=0.8 + nearest none text gamma={g} delta={d}",
            lexical_weight=0.5,
            classifier_weight=0.8,
            none_class=True,
            none_neighbour_weight=g,
            none_neighbour_margin=d,
        )
        for g, d in ((1.0, 0.05), (1.0, 0.1), (2.0, 0.05), (2.0, 0.1), (3.0, 0.05))
    ),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bare-per-task", type=int, default=100, help="bare inputs per task and half (0: all; default %(default)s)")
    p.add_argument("--per-template", type=int, default=3, help="inputs per instruction template (default %(default)s)")
    p.add_argument("--calibrate", action="store_true", help="write the calibrated router to <library>/index/router.json")
    p.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    report = run(
        library=args.library,
        out=Path(args.out),
        bare_per_task=args.bare_per_task or None,
        per_template=args.per_template,
        install_calibration=args.calibrate,
        seed=args.seed,
    )
    print(report["markdown"])
    print(f"\nreport: {Path(args.out) / 'routing.json'} and routing.md")
    return 0


def run(
    *,
    library: str | Path | None,
    out: Path,
    bare_per_task: int | None = 100,
    per_template: int = 3,
    install_calibration: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    from brickwork.bricks import BrickStore
    from brickwork.retrieval_index import BrickIndex, Router
    from brickwork.retrieval_index import classifier as clf
    from brickwork.retrieval_index.cache import EmbeddingCache
    from brickwork.retrieval_index.index import embedding_cache_path
    from brickwork.tasks import load_tasks

    t0 = time.time()
    store = BrickStore(library)
    tmp: Path | None = None
    note = f"library {store.root}"
    if not store.names():
        tmp = Path(tempfile.mkdtemp(prefix="brickwork-routing-"))
        store = build_manifest_library(tmp / "library")
        note = "the library holds no bricks: evaluated a temporary manifest-only starter library (17 bricks, placeholder adapters)"
        install_calibration = False
    try:
        index = BrickIndex.open(store)
        tasks = load_tasks()
        bricks = {b.name: b for b in store.list() if b.name in tasks}
        if not bricks:
            raise SystemExit("the library has no bricks named after bundled tasks; the routing eval needs them")
        # what the library learned from (index rows and classifier-only inputs) is never a query
        indexed = {n: {e.strip() for e in (*b.manifest.examples, *b.manifest.routing_samples)} for n, b in bricks.items()}
        names = index.names
        cache = EmbeddingCache(embedding_cache_path())
        emb = index.embedder
        rows = eval_rows({n: store.get(n).manifest for n in names}, emb, cache, clf.none_texts())
        asked = {n for n, b in bricks.items() if not b.manifest.bare_inputs}
        halves = {
            h: build_queries(tasks, indexed, split=h, per_template=per_template, bare_per_task=bare_per_task, seed=seed, asked=asked)
            for h in ("calib", "report")
        }
        qsem = {h: cache.embed(emb, [q.text for q in qs]) for h, qs in halves.items()}
        # Consistency: the shipped index must score exactly as the eval's own computation of its variant.
        shipped = Variant(
            name="shipped",
            lexical_weight=index.features.lexical_weight,
            classifier_weight=index.features.classifier_weight,
            none_class=index.features.none_class,
            none_neighbour_weight=index.features.none_neighbour_weight,
            none_neighbour_margin=index.features.none_neighbour_margin,
            form_weight=index.features.form_weight,
            form_slack=index.features.form_slack,
            ask_min_cos=index.features.ask_min_cos,
        )
        router = Router.for_index(index)
        dim = index.features.lexical_dim
        for h, qs in halves.items():
            s_index, f_index = index.scores(index.embed_queries([q.text for q in qs[:50]]), [q.text for q in qs[:50]])
            s_eval, f_eval = _variant_scores(shipped, qsem[h][:50], [q.text for q in qs[:50]], rows, dim)
            if not np.allclose(s_index, s_eval, atol=2e-3):
                raise RuntimeError("the eval's scoring differs from the index's; refusing to report")
        results: dict[str, Any] = {"variants": {}}
        for v in VARIANTS:
            sc = {h: _variant_scores(v, qsem[h], [q.text for q in qs], rows, dim) for h, qs in halves.items()}
            entry: dict[str, Any] = {"no_threshold": {h: metrics(sc[h][0], halves[h], names, to_base(*sc[h], None)) for h in halves}}
            for label, single in (("one_threshold", True), ("two_thresholds", False)):
                thr, cal = calibrate_thresholds(*sc["calib"], halves["calib"], single=single)
                entry[label] = {"thresholds": thr, "calibration": cal, **{h: metrics(sc[h][0], halves[h], names, to_base(*sc[h], thr)) for h in halves}}
            results["variants"][v.name] = entry
        sc_ship = {h: _variant_scores(shipped, qsem[h], [q.text for q in qs], rows, dim) for h, qs in halves.items()}
        ship_thr = (router.config.min_score, router.config.min_score_example if router.config.min_score_example is not None else router.config.min_score)
        results["shipped"] = {
            "router": router.config.to_json(),
            "thresholds": ship_thr,
            "index": {"embedder": str(index.identity), "features": index.features.to_json(), "kind": index.kind, "rows": index.rows},
            **{h: metrics(sc_ship[h][0], halves[h], names, to_base(*sc_ship[h], ship_thr)) for h in halves},
            "per_task": {
                s: per_task(sc_ship["report"][0], halves["report"], names, to_base(*sc_ship["report"], ship_thr), s)
                for s in ("instruction", "bare", "bare_asked")
            },
        }
        # one threshold for both kinds of match: two fit the calibration half better but hold up worse
        # on the report half (docs/retrieval.md)
        # the product's calibration path (retrieval_index/calibration.py) writes the router
        new_config, cal = calibrate(
            *sc_ship["calib"],
            halves["calib"],
            base=router.config,
            data="brickwork/data/routing (calib half): instructions.jsonl filled with held-out train inputs, "
            "held-out train inputs (bare), the calib rows of every out-of-scope source (out_of_scope.jsonl's calib half, "
            "none_train.jsonl and requests.jsonl rows of split calib)",
            embedder=str(index.identity),
            embedder_fingerprint=index.identity.fingerprint,
            features=index.features.to_json(),
            library=note,
        )
        new_router = Router(new_config)
        thr = (new_config.min_score, new_config.min_score_example)
        # leave one source out: each out-of-scope source routed by a router that never saw it
        from brickwork.evals import routing_sources as srcs
        from brickwork.retrieval_index import none_data

        space = srcs.build_space(rows, emb, cache, index.features, halves)
        folds = srcs.Folds(space)
        design = srcs.Design.of(index.features, name="shipped design")
        results["leave_one_source_out"] = {
            "shipped": srcs.leave_one_source_out(folds, design, none_data.sources()),
            "before": srcs.leave_one_source_out(
                folds, replace(design, name="before: written none texts only (2026-12-02)", legacy=True, form_weight=0.0, ask_min_cos=None),
                none_data.sources(),
            ),
        }
        results["recalibrated"] = {
            "thresholds": thr,
            **{h: metrics(sc_ship[h][0], halves[h], names, to_base(*sc_ship[h], thr)) for h in halves},
        }
        out.mkdir(parents=True, exist_ok=True)
        new_router.save(out / "router.json")
        if install_calibration:
            new_router.save(index.dir / "router.json")
        results.update(
            {
                "suite": "routing",
                "note": note,
                "bricks": len(names),
                "queries": {h: {s: sum(q.set == s for q in qs) for s in SETS} for h, qs in halves.items()},
                "seconds": round(time.time() - t0, 1),
            }
        )
        results["markdown"] = to_markdown(results)
        (out / "routing.json").write_text(json.dumps({k: v for k, v in results.items() if k != "markdown"}, indent=2) + "\n")
        (out / "routing.md").write_text(results["markdown"] + "\n")
        return results
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _f(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def to_markdown(r: dict[str, Any]) -> str:
    from brickwork.evals import routing_sources

    head = [f"# routing eval ({r['bricks']} bricks)", "", r["note"], ""]
    if "leave_one_source_out" in r:
        head += [*routing_sources.to_markdown(r["leave_one_source_out"]), "", "## Query sets, shipped router, ablations", ""]
    lines = [f"# routing eval ({r['bricks']} bricks)", "", r["note"], ""]
    q = r["queries"]["report"]
    lines.append(
        f"Report half: {q['instruction']} instruction queries, {q['bare']} bare inputs, {q['out_of_scope']} out-of-scope "
        "queries (none indexed, none used for calibration; the out-of-scope ones are out_of_scope.jsonl's report half, a "
        "writer whose other rows the router trained on: *seen*, see the leave-one-source-out table for held-out figures). "
        "Thresholds: (description-matched, example-matched)."
    )
    lines += [
        "",
        "| configuration | instr top-1 | instr top-3 | instr MRR | bare top-1 | bare top-1, any listing brick | bare top-3 | bare MRR | thresholds | instr→base | bare→base | OOS→base | near-miss→base | far→base | base precision |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def row(name: str, m: dict[str, Any], thr: Any) -> str:
        i, b, o = m["instruction"], m["bare"], m["out_of_scope"]
        t = "none" if thr is None else (f"{thr[0]:.3f}" if thr[0] == thr[1] else f"{thr[0]:.3f} / {thr[1]:.3f}")
        return (
            f"| {name} | {_f(i['top1'])} | {_f(i['top3'])} | {_f(i['mrr'])} | {_f(b['top1'])} | {_f(b.get('top1_any'))} | {_f(b['top3'])} | {_f(b['mrr'])} | "
            f"{t} | {_f(i['to_base'])} | {_f(b['to_base'])} | {_f(o['to_base'])} | "
            f"{_f(o['near_miss_to_base'])} | {_f(o['far_to_base'])} | {_f(m['all']['base_precision'])} |"
        )

    base = next(iter(r["variants"].values()))
    lines.append(row("baseline (description only, embedding only, no threshold)", base["no_threshold"]["report"], None))
    lines.append(row("**shipped index + shipped router**", r["shipped"]["report"], r["shipped"]["thresholds"]))
    lines.append(row("shipped index, router re-fit on this library's calib half", r["recalibrated"]["report"], r["recalibrated"]["thresholds"]))
    lines += ["", "Ablations (each with thresholds fit on the calibration half, measured on the report half):", ""]
    lines += lines[6:8]
    for name, v in r["variants"].items():
        lines.append(row(f"{name}, one threshold", v["one_threshold"]["report"], v["one_threshold"]["thresholds"]))
        lines.append(row(f"{name}, two thresholds", v["two_thresholds"]["report"], v["two_thresholds"]["thresholds"]))
    lines += ["", "Calibration half (what thresholds were fit on):", ""]
    lines += lines[6:8]
    lines.append(row("shipped index + shipped router", r["shipped"]["calib"], r["shipped"]["thresholds"]))
    b = r["shipped"]["report"]["bare"]
    lines += [
        "",
        f"Bare inputs per brick (shipped index + router, report half). {b['n_ambiguous']} of {b['n']} bare inputs are "
        "listed by the bundled data under more than one task (a country is an input of both country tasks; many "
        "nouns are inputs of both english_plural and spell_word): with no instruction they have no single right "
        "brick, so the *any listing brick* column also counts those other bricks as right. *Strict* counts only the "
        "query's own task.",
        "",
        "| brick | n | listed under another task too | top-1 strict | top-1 any listing brick | routed to it | to base | routed instead to |",
        "|---|---|---|---|---|---|---|---|",
    ]
    per_bare = {**r["shipped"]["per_task"]["bare"], **{f"{k} (must be asked for: bare_asked)": v for k, v in r["shipped"]["per_task"].get("bare_asked", {}).items()}}
    for name, t in per_bare.items():
        instead = ", ".join(f"{k} {v}" for k, v in list(t["instead"].items())[:3]) or "—"
        lines.append(
            f"| {name} | {t['n']} | {t['n_ambiguous']} | {_f(t['top1'])} | {_f(t['top1_any'])} | {_f(t['routed_correct'])} | "
            f"{_f(t['to_base'])} | {instead} |"
        )
    # lines[6:8] (the table header) is reused above, so the leave-one-source-out part goes in front last
    return "\n".join(head + lines[4:])


if __name__ == "__main__":  # pragma: no cover
    ap = argparse.ArgumentParser(prog="python -m brickwork.evals.routing")
    ap.add_argument("--library", default=None)
    ap.add_argument("--out", default="out/eval-routing")
    add_arguments(ap)
    raise SystemExit(main(ap.parse_args()))
