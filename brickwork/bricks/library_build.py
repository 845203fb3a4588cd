"""The starter library: one LoRA brick per bundled task, prebuilt or retrained.

``brickwork library build`` installs the prebuilt bricks committed in ``brickwork/data/starter/<task
id>/`` (fp16 adapter + ``brick.json``) through `BrickStore.add`, so they are validated like any
other brick; it takes seconds. ``--retrain`` trains them again from the bundled data with the
recipe below (train split, seeded) and scores them on a seeded sample of the test split, the base
model zero-shot on the very same prompts. Every prebuilt ``brick.json`` records the command and
seed that rebuilt it (``provenance.command``, ``provenance.seed``).

Example::

    rows = install_prebuilt(BrickStore(lib))                 # fast
    rows = retrain(BrickStore(lib), ["english_plural"])      # minutes per brick
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brickwork.bricks.manifest import MANIFEST_NAME, Manifest
from brickwork.bricks.starter import (
    starter_bare_inputs,
    starter_description,
    starter_examples,
    starter_routing_samples,
    starter_tags,
)
from brickwork.bricks.store import BrickStore
from brickwork.errors import ConfigError, LibraryError
from brickwork.tasks import Example, Task, load_tasks, sample

STARTER_DIR = Path(__file__).resolve().parents[1] / "data" / "starter"
STARTER_SEED = 0
EVAL_CAP = 200  # test items scored per task (seeded sample; the same items for brick and base)
TRAIN_CAP = 500  # train examples per task (seeded sample); each gives a bare and an instructed pair
EVAL_STYLE = "definition"
BARE_EVAL_CAP = 100  # the same test items asked bare (no instruction), for the routing case
#: other tasks' train requests mixed in with the base model's own answers (locality: `bricks.anchors`)
STARTER_ANCHORS = 256
AUTO_MAX_STEPS = 240  # --auto without --steps: the recipe search's last round


@dataclass(frozen=True, kw_only=True)
class BuildRow:
    """One line of the build summary."""

    task: str
    status: str  # installed | refreshed | unchanged | trained
    version: int
    exact_match: float | None
    base_exact_match: float | None
    n_eval: int | None
    seconds: float | None
    seconds_per_step: float | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def task_instructions(task: Task) -> list[str]:
    """The instructions a brick is trained under: the definition and a real source instruction."""
    out = [task.definition]
    src = task.source_instruction.strip()
    if src and not src.startswith("(") and len(src) < 200:  # parenthesised ones are provenance notes
        out.append(src)
    return out


#: tasks whose brick needs more than the shared recipe (TrainConfig's defaults): spelling works on
#: characters, which the lower layers see and the top 12 do not (0.07 held-out with the shared recipe)
STARTER_RECIPES: dict[str, dict[str, Any]] = {
    "spell_word": {"top_layers": None, "steps": 300},
    "two_digit_subtraction": {"top_layers": None, "steps": 300},
    "word_sorting": {"top_layers": None, "steps": 300},
}


def starter_config(task_id: str, *, steps: int | None = None, seed: int = STARTER_SEED) -> Any:
    """The TrainConfig that builds the starter brick of `task_id` (`steps` overrides the recipe's)."""
    from brickwork.bricks.training import TrainConfig

    recipe = dict(STARTER_RECIPES.get(task_id, {}))
    if steps:
        recipe["steps"] = steps
    return TrainConfig(seed=seed, **recipe)


def starter_pairs(task: Task, *, seed: int = STARTER_SEED, cap: int = TRAIN_CAP) -> list[tuple[str, str]]:
    from brickwork.bricks.training import styled_pairs

    return styled_pairs(sample(task.split("train"), cap, seed=seed), task_instructions(task), seed=seed)


def starter_validation(task: Task, *, seed: int = STARTER_SEED) -> tuple[list[Example], list[Example]]:
    """(fit, validation) examples for a recipe search, both from the task's **train** split: the
    validation part is train examples the brick does not train on (the unused rest of the split
    where it holds enough, else carved from the training sample). The test split is never read."""
    from brickwork.bricks.recipe_search import MAX_VALIDATION, carve_validation

    train = task.split("train")
    pool = sample(train, TRAIN_CAP, seed=seed)
    used = {(e.input, e.output) for e in pool}
    rest = [e for e in train if (e.input, e.output) not in used]
    if len(rest) >= MAX_VALIDATION // 2:
        return pool, sample(rest, MAX_VALIDATION, seed=seed)
    return carve_validation(pool, seed=seed)


def starter_heldout(task: Task, *, seed: int = STARTER_SEED, cap: int | None = EVAL_CAP, style: str = EVAL_STYLE) -> list[tuple[str, Example]]:
    return [(task.query(e, style), e) for e in sample(task.split("test"), cap, seed=seed)]


def starter_anchor_pairs(task: Task, runner: Any, *, n: int = STARTER_ANCHORS, seed: int = STARTER_SEED,
                         exclude: Sequence[str] = (), partners: dict[str, Path] | None = None) -> list[tuple]:
    """`n` requests of the other bundled tasks (train splits) with the base model's answers (`runner`: a
    `lineage.BaseRunner`); with `partners` ({task: adapter dir}) also with those bricks' answers and
    deltas (`anchors.pool_anchors`)."""
    from brickwork.bricks.anchors import pool_anchors
    from brickwork.bricks.lineage import task_items

    pools = {t: task_items(t, "train") for t in load_tasks() if t != task.task_id}
    return pool_anchors(runner, pools, n=n, seed=seed, exclude=exclude, partners=partners)


def _resolve_tasks(names: Sequence[str] | None) -> list[Task]:
    tasks = load_tasks()
    if not names:
        return list(tasks.values())
    unknown = [n for n in names if n not in tasks]
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown}; the starter tasks are: {', '.join(tasks)}")
    return [tasks[n] for n in names]


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:32]


_STARTER_TEXT = ("description", "examples", "routing_samples", "bare_inputs", "tags")


def _with_starter_text(m: Manifest, task: Task) -> Manifest:
    """Description, examples, routing samples, `bare_inputs` and tags always come from `starter.py`
    (what routing learns from)."""
    return m.replace(description=starter_description(task), examples=starter_examples(task),
                     routing_samples=starter_routing_samples(task), bare_inputs=starter_bare_inputs(task),
                     tags=starter_tags(task))


def starter_fits(store: BrickStore, source: Path = STARTER_DIR) -> tuple[bool, str]:
    """Whether the prebuilt starter bricks were made for `store`'s base model, and why not."""
    shipped = sorted(source.glob(f"*/{MANIFEST_NAME}"))
    if not shipped:
        return False, f"no prebuilt starter bricks in {source}"
    made_for = Manifest.load(shipped[0].parent).base_model
    if made_for.get("fingerprint") == store.base.fingerprint:
        return True, ""
    return False, (f"the starter bricks and the planner brick were trained for {made_for.get('id')!r}, "
                   f"the library's base model is {store.base.id!r}")


def install_prebuilt(
    store: BrickStore,
    tasks: Sequence[str] | None = None,
    *,
    source: Path = STARTER_DIR,
    progress: bool = True,
) -> list[BuildRow]:
    """Add the committed starter bricks to `store` (validated); unchanged ones are skipped."""
    rows = []
    chosen = _resolve_tasks(tasks)
    missing = [t.task_id for t in chosen if not (source / t.task_id / MANIFEST_NAME).is_file()]
    if missing and tasks:
        raise LibraryError(f"no prebuilt starter brick for {missing} in {source}; use --retrain to build them")
    if missing:
        # The default set installs what is shipped and says what is not.
        import warnings

        warnings.warn(
            f"no prebuilt starter brick for {', '.join(missing)}; build them with "
            f"`brickwork library build --retrain --tasks {','.join(missing)}`",
            stacklevel=2,
        )
        chosen = [t for t in chosen if t.task_id not in missing]
    it = chosen
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(chosen, desc="install", unit="brick", leave=False)
    for task in it:
        src = source / task.task_id
        manifest = _with_starter_text(Manifest.load(src), task)
        sha = manifest.provenance.get("adapter_sha256")
        if task.task_id in store:
            current = store.get(task.task_id)
            if sha and current.manifest.provenance.get("adapter_sha256") == sha:
                if all(getattr(current.manifest, k) == getattr(manifest, k) for k in _STARTER_TEXT):
                    rows.append(_row(current.manifest, "unchanged"))
                    continue
                # same weights, newer starter text (e.g. a library installed by an older Brickwork)
                brick = store.add(src, manifest)
                rows.append(_row(brick.manifest, "refreshed"))
                continue
        brick = store.add(src, manifest)
        rows.append(_row(brick.manifest, "installed"))
    return rows


def _row(m: Manifest, status: str) -> BuildRow:
    met, prov = m.metrics, m.provenance
    return BuildRow(
        task=m.name,
        status=status,
        version=m.version,
        exact_match=met.get("exact_match"),
        base_exact_match=met.get("base_exact_match"),
        n_eval=met.get("n_eval"),
        seconds=prov.get("seconds"),
        seconds_per_step=prov.get("seconds_per_step"),
    )


def retrain(
    store: BrickStore,
    tasks: Sequence[str] | None = None,
    *,
    steps: int | None = None,
    seed: int = STARTER_SEED,
    eval_cap: int | None = EVAL_CAP,
    anchors: int = STARTER_ANCHORS,
    partners: bool = False,
    auto: bool = False,
    budget_min: float = 30.0,
    export_to: Path | None = None,
    progress: bool = True,
    say: Callable[[str], None] | None = None,
) -> list[BuildRow]:
    """Train the starter bricks from the bundled data and add them to `store`.

    `auto`: a recipe search (`bricks.recipe_search`, `budget_min` minutes per brick, `steps` the last
    round's steps) on validation examples of the train split (`starter_validation`) picks each
    brick's recipe; its winner is the brick. `export_to` also writes each brick (adapter +
    brick.json) to ``export_to/<task id>/``, which is how ``brickwork/data/starter`` is produced.
    """
    from brickwork.bricks.anchors import partner_versions
    from brickwork.bricks.training import train_brick

    rows = []
    chosen = _resolve_tasks(tasks)
    runner = None  # one loaded base model answers every brick's anchors
    for k, task in enumerate(chosen, 1):
        if say:
            say(f"[{k}/{len(chosen)}] {task.task_id}")
        config = starter_config(task.task_id, steps=steps, seed=seed)
        cmd = f"brickwork library build --retrain --tasks {task.task_id}"
        if steps:
            cmd += f" --steps {steps}"
        if seed != STARTER_SEED:
            cmd += f" --seed {seed}"
        if eval_cap != EVAL_CAP:
            cmd += f" --eval-cap {eval_cap}"
        if anchors != STARTER_ANCHORS:
            cmd += f" --anchors {anchors}"
        heldout = starter_heldout(task, seed=seed, cap=eval_cap)
        own = starter_pairs(task, seed=seed)
        if auto:
            from brickwork.bricks.training import styled_pairs

            fit, val = starter_validation(task, seed=seed)
            own = styled_pairs(fit, task_instructions(task), seed=seed)
        if partners:
            cmd += " --partner-anchors"
        anchor: list[tuple] = []
        if anchors:
            from brickwork.bricks.lineage import BaseRunner

            runner = runner or BaseRunner(store.base)
            owners = {t: store.get(t).path for t in store.names() if t != task.task_id} if partners else None
            anchor = starter_anchor_pairs(task, runner, n=anchors, seed=seed, exclude=[t for t, _ in own],
                                          partners=owners)
        trained, searched, work = None, {}, None
        if auto:
            from brickwork.bricks.recipe_search import DEFAULT_GRID, chosen_config, search, training_trial

            cmd += f" --auto --budget {budget_min:g}"
            work = Path(tempfile.mkdtemp(prefix=f"brickwork-search-{task.task_id}-"))
            val_items = [(task.query(e, EVAL_STYLE), e) for e in val]
            trial = training_trial(store.base, own + anchor, val_items, config, work)
            try:
                result = search(DEFAULT_GRID, trial, max_steps=steps or AUTO_MAX_STEPS, budget_s=budget_min * 60,
                                n_validation=len(val_items), progress=progress)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
            config, trained = chosen_config(result, config), result.best.artifact[1]
            searched = {"recipe_search": result.to_json()}
            if say:
                ch = result.best
                say(f"  recipe: {ch.candidate.label()}, {ch.steps} steps (validation {ch.score:.3f}, "
                    f"{len(result.trials)} trials, {result.seconds / 60:.1f} min)")
        brick = train_brick(
            store,
            task.task_id,
            train_pairs=own + anchor,
            heldout=heldout,
            extra_heldout={"bare": [(e.input, e) for _, e in heldout[:BARE_EVAL_CAP]]},
            description=starter_description(task),
            examples=starter_examples(task),
            routing_samples=starter_routing_samples(task),
            bare_inputs=starter_bare_inputs(task),
            tags=starter_tags(task),
            config=config,
            trained=trained,
            provenance={"task_id": task.task_id, "command": cmd, "eval_style": EVAL_STYLE, "eval_seed": seed,
                        "n_anchors": len(anchor), "n_partner_anchors": sum(len(a) == 3 for a in anchor),
                        **({"partners": partner_versions(anchor)} if partners else {}), **searched},
            eval_split="test",
            progress=progress,
        )
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        if export_to is not None:
            export_brick_dir(brick.path, Path(export_to) / task.task_id)
        row = _row(brick.manifest, "trained")
        if say:
            say(f"  {task.task_id}: exact match {row.exact_match} (base {row.base_exact_match}, n={row.n_eval}), "
                f"bare {brick.manifest.metrics.get('exact_match_bare')}, {row.seconds} s, {row.seconds_per_step} s/step")
        rows.append(row)
    return rows


def export_brick_dir(src: Path, dst: Path) -> None:
    """Write a brick version (adapter + brick.json with ``adapter_sha256``) to `dst`, replacing it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        for fname in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy2(src / fname, staged / fname)
        m = Manifest.load(src)
        prov = {**m.provenance, "adapter_sha256": _sha256(staged / "adapter_model.safetensors")}
        data = m.replace(version=1, provenance=prov).to_json()
        (staged / MANIFEST_NAME).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        if dst.exists():
            shutil.rmtree(dst)
        staged.rename(dst)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def metrics_table(source: Path = STARTER_DIR) -> str:
    """The Markdown table of the committed starter bricks' metrics: the README's starter table
    (``tests/test_library_build.py`` checks that the README shows exactly this)."""
    lines = [
        "| brick | held-out exact match | base zero-shot | bare input | n | anchors | train s | s/step | CPU s/step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ems, bases = [], []
    for task in load_tasks():
        f = source / task / MANIFEST_NAME
        if not f.is_file():
            lines.append(f"| {task} | (not built) | | | | | | | |")
            continue
        m = Manifest.load(f)
        met, prov = m.metrics, m.provenance
        ems.append(met["exact_match"])
        bases.append(met["base_exact_match"])
        cpu = prov.get("cpu_seconds_per_step")
        lines.append(
            f"| {task} | {met['exact_match']:.3f} | {met['base_exact_match']:.3f} | "
            f"{met.get('exact_match_bare', float('nan')):.3f} | {met['n_eval']} | {prov.get('n_anchors', 0)} | "
            f"{prov.get('seconds', 0):.0f} | {prov.get('seconds_per_step', 0):.2f} | {'-' if cpu is None else f'{cpu:.2f}'} |"
        )
    if ems:
        lines.append(f"| **mean** | **{sum(ems) / len(ems):.3f}** | **{sum(bases) / len(bases):.3f}** | | | | | | |")
    return "\n".join(lines) + "\n"
