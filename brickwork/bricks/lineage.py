"""What a brick was made from, and how well a brick (or the base model) does on a set of items.

Merging, updating and growing all need the same two things: a brick's *data* (its original
training pairs to replay, its test items to gate on) and a *score* of an adapter on items.

A brick's data comes from two places:

- the bundled tasks it serves (`tasks_of`): a starter brick is named after its task, a merged or
  updated brick lists its tasks in ``provenance.tasks``;
- files inside the brick version directory, under ``data/`` (JSON lines of ``{"input",
  "output", "answers"?}``): ``train.jsonl`` and ``heldout.jsonl`` for bricks grown from feedback,
  ``corrections.jsonl`` for every correction an update folded in (later updates replay them),
  ``confirmed.jsonl`` for outputs users marked good (later updates must keep them right).
  PEFT and vLLM ignore these files; the store copies them with the version.

Example::

    items = test_items(brick.manifest, brick.path, n=100)
    with BaseRunner(store) as runner:              # the embedded engine; engine="vllm" works too
        runner.score(brick.path, items).accuracy
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brickwork.bricks.manifest import Manifest
from brickwork.errors import BrickError, ConfigError
from brickwork.models import BaseModel
from brickwork.tasks import Example, is_correct, load_tasks, normalize, sample

if TYPE_CHECKING:
    from brickwork.bricks.store import BrickStore
    from brickwork.serving.adapters import ResolvingEngine
    from brickwork.serving.engine import BrickRef, Engine

DATA_DIR = "data"
TRAIN_FILE = "train.jsonl"
HELDOUT_FILE = "heldout.jsonl"
CORRECTIONS_FILE = "corrections.jsonl"
CONFIRMED_FILE = "confirmed.jsonl"


@dataclass(frozen=True, kw_only=True)
class Item:
    """One user message and the answers accepted for it (`task` says where it came from)."""

    text: str
    answer: str
    answers: tuple[str, ...] = ()
    task: str | None = None

    def correct(self, prediction: str) -> bool:
        return is_correct(prediction, Example(input=self.text, output=self.answer, split="", answers=self.answers))

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"input": self.text, "output": self.answer}
        if self.answers:
            d["answers"] = list(self.answers)
        if self.task:
            d["task"] = self.task
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Item:
        return cls(text=str(d["input"]), answer=str(d["output"]), answers=tuple(d.get("answers") or ()),
                   task=d.get("task"))


def task_items(task_id: str, split: str, *, n: int | None = None, seed: int = 0) -> list[Item]:
    """A seeded sample of a bundled task's split, as the user messages bricks are trained on."""
    task = load_tasks()[task_id]
    return [
        Item(text=task.query(e), answer=e.output, answers=e.answers, task=task_id)
        for e in sample(task.split(split), n, seed=seed)  # type: ignore[arg-type]
    ]


def tasks_of(manifest: Manifest) -> list[str]:
    """The bundled tasks a brick serves: ``provenance.tasks``/``task_id``, else its name if it is a task."""
    prov = manifest.provenance
    known = load_tasks()
    tasks = prov.get("tasks")
    if isinstance(tasks, list) and tasks:
        return [t for t in tasks if t in known]
    for key in ("task_id", "task"):
        if isinstance(prov.get(key), str) and prov[key] in known:
            return [prov[key]]
    return [manifest.name] if manifest.name in known else []


def read_items(path: Path) -> list[Item]:
    if not path.is_file():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(Item.from_json(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise BrickError(f"{path}:{i}: not a data line ({exc})") from exc
    return out


def write_items(path: Path, items: Iterable[Item]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(it.to_json(), ensure_ascii=False) + "\n" for it in items), encoding="utf-8")


def brick_data(brick_path: Path, which: str) -> list[Item]:
    return read_items(Path(brick_path) / DATA_DIR / which)


def _sample(items: list[Item], n: int | None, seed: int) -> list[Item]:
    import random

    if n is None or n >= len(items):
        return list(items)
    idx = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in idx]


def test_items_by_task(manifest: Manifest, brick_path: Path | None, *, n: int | None, seed: int = 0) -> dict[str, list[Item]]:
    """{task id (or ``<name>:heldout``): at most `n` test items} for a brick."""
    out = {t: task_items(t, "test", n=n, seed=seed) for t in tasks_of(manifest)}
    if brick_path is not None:
        held = brick_data(brick_path, HELDOUT_FILE)
        if held:
            out[f"{manifest.name}:heldout"] = _sample(held, n, seed)
        confirmed = brick_data(brick_path, CONFIRMED_FILE)
        if confirmed:
            out[f"{manifest.name}:confirmed"] = confirmed
    return out


def test_items(manifest: Manifest, brick_path: Path | None, *, n: int | None, seed: int = 0) -> list[Item]:
    return [it for items in test_items_by_task(manifest, brick_path, n=n, seed=seed).values() for it in items]


def train_items(manifest: Manifest, brick_path: Path | None) -> list[Item]:
    """Everything a brick was trained on: its tasks' train splits, its data files, its corrections."""
    out = [it for t in tasks_of(manifest) for it in task_items(t, "train")]
    if brick_path is not None:
        out += brick_data(brick_path, TRAIN_FILE) + brick_data(brick_path, CORRECTIONS_FILE)
    return out


# -- scoring ---------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Score:
    n: int
    correct: int
    outputs: list[str] = field(repr=False)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0


def max_new_tokens_for(items: Sequence[Item], tok: Any, *, cap: int = 64) -> int:
    """Room for the longest accepted answer plus a few tokens, so a wrong long answer costs little."""
    longest = max((len(tok(a, add_special_tokens=False)["input_ids"]) for it in items for a in (it.answer, *it.answers)),
                  default=8)
    return max(4, min(cap, longest + 4))


def _resolving(engine: Engine) -> ResolvingEngine:
    """`engine`, checked to serve adapter folders by path (through an `AdapterResolver`)."""
    from brickwork.serving.adapters import ResolvingEngine

    if not isinstance(engine, ResolvingEngine):
        raise ConfigError(f"the {getattr(engine, 'name', type(engine).__name__)} engine has no adapter resolver; "
                          "it cannot serve adapter folders by path")
    return engine


class BaseRunner:
    """Scores adapter folders (or the bare base model, None) on items through one engine.

    A thin adapter over the engine seam: an adapter folder becomes a `BrickRef` through the
    engine's adapter-source chain (`AdapterResolver.path_ref`), each text is rendered with the
    base's `PromptFormat`, decoding is greedy. `engine` is an engine name (created on first use,
    with `engine_options`, and closed by `close`; the embedded ``peft`` engine by default) or an
    engine made by `create_engine` (kept open; it must serve `library`'s base model). Either way
    the engine must be a `ResolvingEngine` (every built-in one is). `library` is a `BrickStore`
    or, for adapter folders only, a `BaseModel`.
    """

    def __init__(self, library: BaseModel | BrickStore, *, engine: str | ResolvingEngine = "peft", batch_size: int = 32,
                 engine_options: dict[str, Any] | None = None) -> None:
        if isinstance(library, BaseModel):
            from brickwork.serving.adapters import NoLibrary

            library = NoLibrary(library)
        self.store = library
        self.base: BaseModel = library.base
        self.batch_size = batch_size
        self._owned = isinstance(engine, str)
        self._name = engine if isinstance(engine, str) else None
        self._engine: ResolvingEngine | None = None if isinstance(engine, str) else _resolving(engine)
        self._options = dict(engine_options or {})
        self._tok: Any = None

    @property
    def engine(self) -> ResolvingEngine:
        if self._engine is None:
            from brickwork.serving.engine import create_engine

            options = {"batch_size": self.batch_size} if self._name == "peft" else {}
            engine = create_engine(str(self._name), self.store, **{**options, **self._options})
            try:
                self._engine = _resolving(engine)
            except ConfigError:
                engine.close()
                raise
        return self._engine

    @property
    def tok(self) -> Any:
        """The base model's tokenizer (the engine's own when it exposes one)."""
        if self._tok is None:
            self._tok = getattr(self.engine, "tokenizer", None)
            if self._tok is None:
                from transformers import AutoTokenizer

                self._tok = AutoTokenizer.from_pretrained(self.base.path)
        return self._tok

    @property
    def model(self) -> Any:
        """The engine's transformers base model with no adapter applied (None on vLLM engines),
        for `merge_adapters(model=)`, so a merge loads no second copy."""
        base_model = getattr(self.engine, "base_model", None)
        return base_model() if callable(base_model) else None

    def ref(self, adapter_dir: Path | str) -> BrickRef:
        """The `BrickRef` the engine serves `adapter_dir` as (through its resolver's `paths`)."""
        return self.engine.resolver.path_ref(adapter_dir)

    def __enter__(self) -> BaseRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the engine if this runner created it."""
        if self._owned and self._engine is not None:
            self._engine.close()
            self._engine = None

    def generate(self, adapter_dir: Path | None, texts: Sequence[str], *, max_new_tokens: int = 32) -> list[str]:
        from brickwork.serving.engine import Request, SamplingParams

        bricks = () if adapter_dir is None else (self.ref(adapter_dir),)
        sampling = SamplingParams(max_tokens=max_new_tokens)
        requests = [Request(prompt=self.base.prompts.render(t), bricks=bricks, sampling=sampling) for t in texts]
        return [c.text for c in self.engine.generate(requests)] if requests else []

    def score(self, adapter_dir: Path | None, items: Sequence[Item]) -> Score:
        if not items:
            return Score(n=0, correct=0, outputs=[])
        outs = self.generate(adapter_dir, [it.text for it in items], max_new_tokens=max_new_tokens_for(items, self.tok))
        return Score(n=len(items), correct=sum(it.correct(o) for it, o in zip(items, outs, strict=True)), outputs=outs)


def strip_adapters(model: Any) -> None:
    """Undo PEFT's in-place injection so a shared base model can carry the next adapter."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    for attr in ("peft_config", "_hf_peft_config_loaded"):
        if attr in model.__dict__:
            delattr(model, attr)


def same_output(a: str, b: str) -> bool:
    return normalize(a) == normalize(b)
