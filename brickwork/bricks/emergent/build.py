"""`brickwork emergent build`: turn an analysis into emergent bricks in the library.

Bricks made (each ``brick.json`` + ``neurons.safetensors``, kind ``emergent``):

- ``emergent-<category>`` — per layer, the `fraction` of neurons most important to the category
  (mean |activation| x ||down_proj column|| on its train instances), resident neurons included;
  scores are stored so a runtime can pick another budget.
- ``emergent-cluster-NN`` — co-activation clusters (MoEfication-style), described by the tasks
  that activate them most.
- ``emergent-resident`` — the always-on neurons: keep them with any other emergent brick.
- ``emergent-skippable`` — a layer brick: the `n_skip` layers with the lowest block influence.

Descriptions and examples come from the task data (definitions and train queries), so the
retrieval index can route to these bricks like to any other.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brickwork.bricks.emergent.analysis import ANALYSIS_JSON, load_analysis
from brickwork.bricks.emergent.masks import NeuronMask, save_mask
from brickwork.bricks.emergent.select import keep_from_scores
from brickwork.bricks.manifest import Manifest
from brickwork.errors import BaseModelMismatch, ConfigError
from brickwork.tasks import load_tasks, sample

FFN_TARGETS = ["gate_proj", "up_proj", "down_proj"]
MIN_CLUSTER = 16
EXAMPLES_PER_TASK = 6


@dataclass(frozen=True, kw_only=True)
class BuildConfig:
    fraction: float = 0.5
    n_skip: int = 4
    clusters: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"`fraction` should be in (0, 1], got {self.fraction!r}.")
        if self.n_skip < 0:
            raise ConfigError(f"`n_skip` should be >= 0, got {self.n_skip!r}.")


def _examples(task_ids: list[str], seed: int) -> list[str]:
    """Like the starter bricks': each task's definition, then a seeded sample of train inputs."""
    tasks = load_tasks()
    out: list[str] = []
    for t in task_ids:
        out.append(tasks[t].definition)
        out += [e.input for e in sample(tasks[t].split("train"), EXAMPLES_PER_TASK, seed=seed)]
    return out


def brick_specs(analysis_dir: Path, config: BuildConfig) -> list[tuple[Manifest, NeuronMask]]:
    """The (manifest, mask) of every brick the analysis yields, without touching a library."""
    import torch

    res = load_analysis(analysis_dir)
    s, arr = res.summary, res.arrays
    tasks = load_tasks()
    base_json = s["model"]
    n_layers, width = s["architecture"]["n_layers"], s["architecture"]["intermediate_size"]
    sizes = (width,) * n_layers
    resident = arr["resident"].bool()
    digest = hashlib.sha256((Path(analysis_dir) / ANALYSIS_JSON).read_bytes()).hexdigest()[:16]
    prov = {"analysis": f"sha256:{digest}", "seed": s["config"]["seed"], "data": "train split of the bundled tasks", "parents": []}
    model_id = base_json["id"]
    specs: list[tuple[Manifest, NeuronMask]] = []

    def manifest(name: str, description: str, examples: list[str], tags: list[str], targets: list[str], metrics: dict[str, Any]) -> Manifest:
        return Manifest(
            name=name,
            version=1,
            kind="emergent",
            description=description,
            examples=examples,
            tags=["emergent", *tags],
            base_model=base_json,
            rank=None,
            target_modules=targets,
            provenance=dict(prov),
            metrics=metrics,
        )

    cats = s["categories"]
    for k, cat in enumerate(cats):
        scores = arr["category_importance"][k]
        keep = keep_from_scores(scores, config.fraction, resident=resident)
        mask = NeuronMask(sizes=sizes, neurons={layer: v for layer, v in keep.items()}, scores={layer: scores[layer].numpy() for layer in range(n_layers)})
        task_ids = s["category_tasks"][cat]
        desc = f"Emergent FFN neurons of {model_id} for {cat} tasks: " + " ".join(tasks[t].definition for t in task_ids)
        metrics = {
            "n_neurons": sum(len(v) for v in keep.values()),
            "fraction": config.fraction,
            "own_masking_ppl_increase": s["masking_ppl_increase"][k][k],
        }
        specs.append((manifest(f"emergent-{cat}", desc, _examples(task_ids, config.seed), ["neurons", f"category:{cat}", *task_ids], FFN_TARGETS, metrics), mask))

    if config.clusters:
        clusters = arr["clusters"]
        for c in s["clusters"]:
            if c["size"] < MIN_CLUSTER:
                continue
            member = clusters == c["id"]
            neurons = {layer: torch.nonzero(member[layer]).flatten().numpy() for layer in range(n_layers) if member[layer].any()}
            top = [t["task"] for t in c["top_tasks"]]
            desc = (
                f"Emergent FFN neuron cluster {c['id']} of {model_id} (co-activation, {c['size']} neurons), most active on: "
                + " ".join(tasks[t].definition for t in top)
            )
            mask = NeuronMask(sizes=sizes, neurons=neurons)
            metrics = {"n_neurons": c["size"], "top_tasks": c["top_tasks"]}
            specs.append((manifest(f"emergent-cluster-{c['id']:02d}", desc, _examples(top, config.seed), ["neurons", "cluster", *top], FFN_TARGETS, metrics), mask))

    if resident.any():
        neurons = {layer: torch.nonzero(resident[layer]).flatten().numpy() for layer in range(n_layers) if resident[layer].any()}
        mask = NeuronMask(sizes=sizes, neurons=neurons, scores={layer: arr["resident_freq"][layer].numpy() for layer in neurons})
        desc = f"Resident (always-on) FFN neurons of {model_id}: active on every category; keep them with any other emergent brick."
        specs.append((manifest("emergent-resident", desc, [], ["neurons", "resident"], FFN_TARGETS, {"n_neurons": int(resident.sum())}), mask))

    if config.n_skip:
        order = s["layer_importance"]["skip_order"][: config.n_skip]
        mask = NeuronMask(sizes=sizes, layers=tuple(sorted(order)), layer_scores=arr["block_influence"].numpy())
        desc = (
            f"Skippable decoder layers of {model_id} ({', '.join(map(str, sorted(order)))}): the layers whose output differs least "
            "from their input (block influence); skipping them trades a little quality for speed."
        )
        specs.append((manifest("emergent-skippable", desc, [], ["layers", "skippable"], ["layers"], {"n_layers": len(order)}), mask))
    return specs


def build_bricks(analysis_dir: Path, store: Any, *, config: BuildConfig | None = None, command: str | None = None) -> list[Any]:
    """Add every brick of `brick_specs` to `store` (a `BrickStore`) as a new, validated version."""
    config = config or BuildConfig()
    specs = brick_specs(Path(analysis_dir), config)
    base = store.base
    fp = specs[0][0].base_model.get("fingerprint") if specs else None
    if fp != base.fingerprint:
        raise BaseModelMismatch(
            f"the analysis in {analysis_dir} is of base model {specs[0][0].base_model.get('id') if specs else '?'} ({fp}), "
            f"but the library uses {base.id!r} ({base.fingerprint})"
        )
    bricks = []
    for man, mask in specs:
        if command:
            man = man.replace(provenance={**man.provenance, "command": command})
        with tempfile.TemporaryDirectory(prefix="emergent-") as tmp:
            d = Path(tmp) / man.name
            save_mask(d, mask)
            (d / "brick.json").write_text(json.dumps(man.to_json(), indent=2))
            bricks.append(store.add(d, man))
    return bricks
