"""Growing new bricks from feedback that no brick covers.

Feedback on steps the base model answered (routing chose no brick) is *uncovered*: the library
has nothing for it. Those examples (corrections: the corrected text; confirmations: the output)
are embedded and clustered; each cluster with at least `min_examples` becomes a candidate brick:

1. described from its own data: the instruction its users wrote (the most common first line of
   the subgoals), the answer set when the answers are labels, and its most central subgoals as
   example instructions (what the retrieval index embeds); named from the instruction's words;
2. trained (`training.train_lora`) on the cluster minus a held-out part, each example both as
   written and as its bare input (a brick is also reached by a bare input);
3. scored against the base model on the held-out part, with the same prompts;
4. added to the library (and so to the index, once synced) only if it beats the base model by at
   least `min_gain`; otherwise the reason is reported and nothing is written.

`brickwork bricks train` stays the direct way to grow a brick from a data file.

Example::

    outcomes, waiting = grow_from_examples(store, [GrowExample(text="...", answer="...")] * 64,
                                           embedder=Library(store=store).embedder())
    outcomes[0].added, outcomes[0].brick, outcomes[0].metrics
"""

from __future__ import annotations

import random
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from brickwork._checks import StepBudget, fraction, non_negative_int, positive_int
from brickwork.bricks.anchors import library_anchors
from brickwork.bricks.lineage import DATA_DIR, HELDOUT_FILE, TRAIN_FILE, BaseRunner, Item, write_items
from brickwork.bricks.manifest import Manifest, check_name
from brickwork.bricks.store import BrickStore
from brickwork.errors import ConfigError


class Embedder(Protocol):
    """Texts -> unit vectors (`brickwork.retrieval_index.embedder` provides them; passed in, never loaded here)."""

    def embed(self, texts: Sequence[str]) -> Any: ...

Progress = Callable[[str], None]
N_EXAMPLES = 24
N_ROUTING_SAMPLES = 144  # requests and bare inputs beyond the examples, for the router's classifier
_STOP = frozenset(
    "a an the of to as and or in on for with by from is are be this that each its it given following "
    "your you please what which into than then there their them these those one two".split()
)


@dataclass(kw_only=True)
class GrowConfig(StepBudget):
    """When a cluster becomes a brick, how it is trained, and what it must beat."""

    min_examples: int = 16
    similarity: float = 0.55
    holdout_fraction: float = 0.25
    min_holdout: int = 4
    min_gain: float = 0.05
    epochs: float = 4.0
    min_steps: int = 60
    max_steps: int = 200
    steps: int | None = None
    batch_size: int = 16
    lr: float = 2e-3
    rank: int = 8
    top_layers: int | None = 12  # the starter bricks' recipe (training.TrainConfig)
    anchors: int = 64  # other bricks' requests with the base model's answers (bricks.anchors: locality)
    embedder: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("min_examples", "min_holdout", "rank"):
            positive_int(name, getattr(self, name))
        self.check_steps()
        non_negative_int("anchors", self.anchors)
        for name in ("similarity", "holdout_fraction", "min_gain"):
            fraction(name, getattr(self, name))
        if self.min_examples < self.min_holdout + 1:
            raise ConfigError(f"`min_examples` ({self.min_examples}) should exceed `min_holdout` ({self.min_holdout}).")


@dataclass(frozen=True, kw_only=True)
class GrowExample:
    """One uncovered example: the user text and the answer it should get."""

    text: str
    answer: str
    event_id: int | None = None

    @property
    def instruction(self) -> str | None:
        head, sep, _ = self.text.strip().partition("\n")
        return head.strip() if sep else None

    @property
    def bare(self) -> str:
        head, sep, rest = self.text.strip().partition("\n")
        return rest.strip() if sep else head


@dataclass(frozen=True, kw_only=True)
class GrowOutcome:
    name: str
    added: bool
    version: int | None
    reasons: list[str]
    description: str
    examples: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)
    event_ids: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "added": self.added,
            "version": self.version,
            "reasons": self.reasons,
            "description": self.description,
            "examples": self.examples[:5],
            "metrics": self.metrics,
            "event_ids": self.event_ids,
        }


# -- clustering ------------------------------------------------------------------------------
def cluster(vectors: Any, threshold: float) -> list[list[int]]:
    """Group unit vectors by cosine to cluster centroids; deterministic, largest cluster first.

    Three passes: leader clustering (each vector joins the nearest centroid with cosine >=
    `threshold`, else starts a cluster); merging of clusters whose centroids are within
    `threshold` (leader clustering alone splits a family whose first members happen to be far
    apart); one reassignment of every vector to its nearest centroid.
    """
    import numpy as np

    v = np.asarray(vectors, dtype=np.float32)
    if len(v) == 0:
        return []

    def unit(x: Any) -> Any:
        return x / max(float(np.linalg.norm(x)), 1e-12)

    groups: list[list[int]] = []
    sums: list[Any] = []
    for i, x in enumerate(v):
        if sums:
            sims = np.stack([unit(s) for s in sums]) @ x
            j = int(np.argmax(sims))
            if sims[j] >= threshold:
                groups[j].append(i)
                sums[j] = sums[j] + x
                continue
        groups.append([i])
        sums.append(x.copy())
    while len(groups) > 1:
        cents = np.stack([unit(s) for s in sums])
        sims = cents @ cents.T
        np.fill_diagonal(sims, -np.inf)
        a, b = divmod(int(np.argmax(sims)), len(groups))
        if sims[a, b] < threshold:
            break
        a, b = min(a, b), max(a, b)
        groups[a] += groups.pop(b)
        sums[a] = sums[a] + sums.pop(b)
    cents = np.stack([unit(s) for s in sums])
    owner = np.argmax(v @ cents.T, axis=1)
    out = [sorted(int(i) for i in np.flatnonzero(owner == k)) for k in range(len(groups))]
    return sorted((g for g in out if g), key=lambda g: (-len(g), g[0]))


def cluster_examples(examples: Sequence[GrowExample], config: GrowConfig, *, embedder: Embedder) -> list[list[GrowExample]]:
    """Uncovered examples grouped by what they ask (`embedder`'s embedding of the user text)."""
    if not examples:
        return []
    vecs = embedder.embed([e.text for e in examples])
    return [[examples[i] for i in g] for g in cluster(vecs, config.similarity)]


# -- describing ------------------------------------------------------------------------------
def describe(examples: Sequence[GrowExample]) -> tuple[str, str, list[str]]:
    """(name, description, example instructions) derived from the examples themselves."""
    instr = Counter(e.instruction for e in examples if e.instruction)
    answers = Counter(e.answer.strip() for e in examples)
    parts = []
    top = instr.most_common(2)
    if top:
        parts.append(top[0][0])
        if len(top) > 1 and top[1][1] >= 0.25 * len(examples):
            parts.append(top[1][0])
    else:
        ins = [e.bare for e in examples[:3]]
        outs = [e.answer for e in examples[:3]]
        parts.append("Maps inputs such as " + ", ".join(repr(x[:40]) for x in ins)
                     + " to answers such as " + ", ".join(repr(x[:40]) for x in outs) + ".")
    labels = sorted(answers)
    if 1 < len(labels) <= 12 and len(examples) >= 2 * len(labels):
        parts.append("Answers with one of: " + ", ".join(labels) + ".")
    description = " ".join(p if p.endswith((".", "?", "!", ":")) else p + "." for p in parts)
    # Example rows for the index: the instruction, then requests as written alternating with their
    # bare inputs (a brick is reached by both, like the starter bricks' inputs).
    seen: list[str] = []
    if top:
        seen.append(top[0][0])
    for e in examples:
        for t in (e.text, e.bare) if e.instruction else (e.text,):
            if t not in seen and len(seen) < N_EXAMPLES:
                seen.append(t)
        if len(seen) >= N_EXAMPLES:
            break
    return _slug(top[0][0] if top else " ".join(e.bare for e in examples[:3])), description, seen


def routing_samples(examples: Sequence[GrowExample], listed: Sequence[str], *, cap: int = N_ROUTING_SAMPLES) -> list[str]:
    """The requests as written and their bare inputs that `listed` (the examples) leaves out, up to
    `cap`: the router's classifier learns from them (`Manifest.routing_samples`)."""
    seen, out = set(listed), []
    for e in examples:
        for t in (e.text, e.bare) if e.instruction else (e.text,):
            if t not in seen and len(out) < cap:
                seen.add(t)
                out.append(t)
    return out


def _slug(text: str) -> str:
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP and len(w) > 1]
    slug = "_".join(words[:3]) or "grown"
    return check_name(slug[:56].strip("_-") or "grown")


def free_name(store: BrickStore, wanted: str) -> str:
    names = set(store.names())
    if wanted not in names:
        return wanted
    k = 2
    while f"{wanted}_{k}" in names:
        k += 1
    return f"{wanted}_{k}"


# -- growing ---------------------------------------------------------------------------------
def _split(examples: list[GrowExample], config: GrowConfig) -> tuple[list[GrowExample], list[GrowExample]]:
    items = list(examples)
    random.Random(config.seed).shuffle(items)
    k = max(config.min_holdout, round(len(items) * config.holdout_fraction))
    return items[k:], items[:k]


def _pairs(train: Sequence[GrowExample]) -> list[tuple[str, str]]:
    out = []
    for e in train:
        out.append((e.text, e.answer))
        if e.instruction:
            out.append((e.bare, e.answer))
    return out


def grow_brick(
    store: BrickStore,
    examples: Sequence[GrowExample],
    *,
    name: str | None = None,
    config: GrowConfig | None = None,
    runner: BaseRunner | None = None,
    progress: Progress | None = None,
    command: str | None = None,
    train_progress: bool = False,
    tags: Sequence[str] = (),
) -> GrowOutcome:
    """Train a brick on `examples`; add it only if it beats the base model on a held-out part."""
    from brickwork.bricks.training import TrainConfig, data_hash, train_lora

    config = config or GrowConfig()
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    uniq: dict[str, GrowExample] = {}
    for e in examples:
        uniq[e.text.strip()] = e  # the latest answer for a text wins
    exs = list(uniq.values())
    slug, description, example_texts = describe(exs)
    name = check_name(name) if name else free_name(store, slug)
    event_ids = [e.event_id for e in examples if e.event_id is not None]

    def outcome(added: bool, reasons: list[str], metrics: dict[str, Any], version: int | None = None) -> GrowOutcome:
        return GrowOutcome(name=name, added=added, version=version, reasons=reasons, description=description,
                           examples=example_texts, metrics=metrics, event_ids=event_ids)

    if len(exs) < config.min_examples:
        return outcome(False, [f"only {len(exs)} distinct examples; a new brick needs {config.min_examples}"], {})
    train, held = _split(exs, config)
    pairs = _pairs(train)
    steps = config.steps_for(len(pairs))  # from the new task's data; anchors ride along
    base = store.base
    runner = runner or BaseRunner(base)
    anchors = library_anchors(store, runner, n=config.anchors, seed=config.seed, exclude=[t for t, _ in pairs])
    work = store.scratch_dir(f"grow-{name}.")
    try:
        say(f"{name}: '{description[:70]}' - {len(train)} examples to train ({len(pairs)} pairs), "
            f"{len(held)} held out, {len(anchors)} anchors; {steps} steps")
        tcfg = TrainConfig(rank=config.rank, alpha=2.0 * config.rank, top_layers=config.top_layers, steps=steps,
                           batch_size=config.batch_size, lr=config.lr, warmup_steps=min(10, steps // 5),
                           seed=config.seed)
        out = work / "brick"
        res = train_lora(pairs + anchors, base=base, config=tcfg, out_dir=out, progress=train_progress)
        held_items = [Item(text=e.text, answer=e.answer) for e in held]
        brick_score = runner.score(out, held_items)
        base_score = runner.score(None, held_items)
        gain = brick_score.accuracy - base_score.accuracy
        metrics = {
            "exact_match": round(brick_score.accuracy, 4),
            "base_exact_match": round(base_score.accuracy, 4),
            "n_eval": len(held_items),
            "eval_split": "feedback-heldout",
            "n_train": len(train),
            "steps": steps,
            "seconds_train": res.seconds,
        }
        say(f"{name}: held-out {brick_score.accuracy:.3f} vs base {base_score.accuracy:.3f} "
            f"({len(held_items)} items)")
        if gain < config.min_gain or brick_score.accuracy <= base_score.accuracy:
            metrics["seconds"] = round(time.perf_counter() - t0, 1)
            return outcome(False, [f"does not beat the base model on its held-out part: {brick_score.accuracy:.3f} vs "
                                   f"{base_score.accuracy:.3f} (needs +{config.min_gain:.2f})"], metrics)
        write_items(out / DATA_DIR / TRAIN_FILE, [Item(text=e.text, answer=e.answer) for e in train])
        write_items(out / DATA_DIR / HELDOUT_FILE, held_items)
        manifest = Manifest(
            name=name,
            version=1,
            kind="lora",
            description=description,
            examples=example_texts,
            routing_samples=routing_samples(train, example_texts),
            tags=sorted({"grown", *tags}),
            base_model=base.to_json(),
            rank=config.rank,
            target_modules=list(tcfg.target_modules),
            provenance={
                "operation": "grow",
                "parents": [],
                "data_hash": data_hash(pairs),
                "seed": config.seed,
                "config": tcfg.to_json(),
                "n_examples": len(exs),
                "n_anchors": len(anchors),
                "event_ids": event_ids,
                "command": command,
                "seconds": res.seconds,
            },
            metrics=metrics,
        )
        brick = store.add(out, manifest)
        metrics["seconds"] = round(time.perf_counter() - t0, 1)
        say(f"{name}: added as v{brick.version}")
        return outcome(True, [], metrics, version=brick.version)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def grow_from_examples(
    store: BrickStore,
    examples: Sequence[GrowExample],
    *,
    config: GrowConfig | None = None,
    embedder: Embedder,
    runner: BaseRunner | None = None,
    progress: Progress | None = None,
    command: str | None = None,
    dry_run: bool = False,
) -> tuple[list[GrowOutcome], list[list[GrowExample]]]:
    """Cluster `examples` (with `embedder`, see `Library.embedder`) and grow a brick from every
    cluster big enough.

    Returns (outcomes, clusters left waiting for more examples). With `dry_run` nothing is
    trained: each big-enough cluster is reported (name, description) with ``added=False``.
    """
    config = config or GrowConfig()
    say = progress or (lambda _msg: None)
    groups = cluster_examples(examples, config, embedder=embedder)
    ready = [g for g in groups if len({e.text.strip() for e in g}) >= config.min_examples]
    waiting = [g for g in groups if g not in ready]
    say(f"grow: {len(examples)} uncovered examples in {len(groups)} clusters; {len(ready)} big enough "
        f"(>= {config.min_examples})")
    outcomes = []
    taken: set[str] = set()
    for g in ready:
        slug, description, exs = describe(g)
        if dry_run:
            name = free_name(store, slug)
            outcomes.append(GrowOutcome(name=name, added=False, version=None, reasons=["dry run"], description=description,
                                        examples=exs, metrics={"n_examples": len(g)},
                                        event_ids=[e.event_id for e in g if e.event_id is not None]))
            continue
        name = free_name(store, slug)
        while name in taken:
            name = f"{name}_x"
        taken.add(name)
        outcomes.append(grow_brick(store, g, name=name, config=config, runner=runner, progress=progress, command=command))
    return outcomes, waiting
