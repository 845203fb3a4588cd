"""Recipe search: pick a brick's rank, LoRA layers and modules, steps and learning rate by measurement.

Successive halving over a short grid of candidate recipes (`DEFAULT_GRID`): every candidate trains
for a few steps and is scored (exact match) on a *validation* split carved from the training data;
the better half goes on with twice the steps, and so on up to `max_steps`. The winner of the last
rung that finished within the time budget is the brick. The test split is never read here: callers
pass training data and the validation items they carved from it (`carve_validation`).

The search logic is independent of training: it calls a `trial(candidate, steps)` function, so unit
tests drive it with a fake; `training_trial` is the real one (train_lora + evaluate_adapter).

Example::

    fit, val = carve_validation(rows, seed=0)
    result = search(DEFAULT_GRID, training_trial(base, pairs_of(fit), items_of(val), TrainConfig(), work),
                    max_steps=240, budget_s=30 * 60)
    result.best.candidate, result.to_json()["trials"]
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from brickwork.errors import ConfigError

if TYPE_CHECKING:
    from brickwork.bricks.training import TrainConfig, TrainResult
    from brickwork.models import BaseModel
    from brickwork.tasks import Example

T = TypeVar("T")

#: validation items carved from the training data: this share, at least `MIN_VALIDATION`, at most `MAX_VALIDATION`
VALIDATION_FRACTION = 0.15
MIN_VALIDATION = 8
MAX_VALIDATION = 100
#: rough CPU seconds per step of the default recipe (batch 16, one thread; docs/training.md), scaled by
#: how many layers carry LoRA; the estimate only decides what fits the budget before anything ran
EST_SECONDS_PER_STEP = 1.6
EST_EVAL_SECONDS = 30.0


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One recipe tried by the search (what it changes from the base `TrainConfig`)."""

    rank: int = 8
    top_layers: int | None = 12
    target_modules: tuple[str, ...] = ("q_proj", "v_proj", "o_proj", "down_proj")
    lr: float = 2e-3

    def config(self, base: TrainConfig, steps: int) -> TrainConfig:
        """`base` with this recipe and `steps` (warm-up at most a tenth of the steps)."""
        return replace(base, rank=self.rank, top_layers=self.top_layers, target_modules=self.target_modules,
                       lr=self.lr, steps=steps, warmup_steps=min(base.warmup_steps, max(1, steps // 10)))

    def label(self) -> str:
        layers = "all" if self.top_layers is None else f"top{self.top_layers}"
        return f"r{self.rank} {layers} {','.join(m.removesuffix('_proj') for m in self.target_modules)} lr{self.lr:g}"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


_ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: the default recipe first (ties go to it), then what the starter bricks' failures suggested: more
#: capacity, the lower layers (characters, digits, word order live there), other learning rates
DEFAULT_GRID: tuple[Candidate, ...] = (
    Candidate(),
    Candidate(lr=4e-3),
    Candidate(lr=1e-3),
    Candidate(rank=16),
    Candidate(top_layers=None),
    Candidate(rank=16, top_layers=None, target_modules=_ALL, lr=1e-3),
)


@dataclass(frozen=True, kw_only=True)
class Trial:
    """What one candidate scored after `steps` steps, and what it cost."""

    candidate: Candidate
    steps: int
    rung: int
    score: float
    seconds: float
    artifact: Any = field(default=None, compare=False)  # e.g. (adapter dir, TrainResult); not recorded

    def to_json(self) -> dict[str, Any]:
        return {"recipe": self.candidate.label(), **self.candidate.to_json(), "steps": self.steps, "rung": self.rung,
                "validation_exact_match": self.score, "seconds": round(self.seconds, 1)}


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    best: Trial
    trials: list[Trial]
    budget_s: float
    seconds: float
    stopped_early: bool  # a rung was cut short because the budget ran out
    n_validation: int

    def to_json(self) -> dict[str, Any]:
        return {
            "method": "successive halving (x2 steps, keep the better half) on validation exact match",
            "chosen": {"recipe": self.best.candidate.label(), **self.best.candidate.to_json(), "steps": self.best.steps,
                       "validation_exact_match": self.best.score},
            "n_validation": self.n_validation,
            "validation_from": "the training data (the test split is never used for selection)",
            "budget_s": round(self.budget_s),
            "seconds": round(self.seconds, 1),
            "stopped_early": self.stopped_early,
            "trials": [t.to_json() for t in self.trials],
        }


def carve_validation(rows: Sequence[T], *, seed: int, fraction: float = VALIDATION_FRACTION,
                     cap: int = MAX_VALIDATION) -> tuple[list[T], list[T]]:
    """(fit, validation): a seeded `fraction` of the *training* rows (at least `MIN_VALIDATION`)."""
    n_val = min(cap, max(MIN_VALIDATION, round(len(rows) * fraction)))
    if len(rows) < 2 * n_val:
        raise ConfigError(f"recipe search needs at least {2 * MIN_VALIDATION} training examples (a validation "
                          f"split is carved from them), got {len(rows)}")
    val = set(random.Random(seed + 1).sample(range(len(rows)), n_val))  # not the held-out split's draw
    return [r for i, r in enumerate(rows) if i not in val], [r for i, r in enumerate(rows) if i in val]


def rungs(max_steps: int, *, min_steps: int, eta: int = 2) -> list[int]:
    """Steps per rung, doubling (x `eta`) up to `max_steps`: e.g. 30, 60, 120, 240."""
    out = [max_steps]
    while out[0] // eta >= min_steps:
        out.insert(0, out[0] // eta)
    return out


def estimate_seconds(candidate: Candidate, steps: int, *, n_layers: int = 30) -> float:
    """A prior for one trial's cost (training + validation) before anything was measured."""
    frac = 1.0 if candidate.top_layers is None else min(1.0, candidate.top_layers / n_layers)
    per_step = EST_SECONDS_PER_STEP * max(frac / 0.4, 0.5)  # the default recipe trains 12 of 30 layers
    if len(candidate.target_modules) > 4:
        per_step *= 1.4
    return per_step * steps + EST_EVAL_SECONDS


def search(
    candidates: Sequence[Candidate],
    trial: Callable[[Candidate, int, int], Trial],
    *,
    max_steps: int,
    budget_s: float,
    min_steps: int = 30,
    eta: int = 2,
    n_validation: int = 0,
    estimate: Callable[[Candidate, int], float] = estimate_seconds,
    clock: Callable[[], float] = time.perf_counter,
    progress: bool = False,
) -> SearchResult:
    """Successive halving over `candidates`; `trial(candidate, steps, rung)` trains and scores one.

    Before each trial its cost is estimated (`estimate`, rescaled by how far the trials so far were
    off it); a trial that would not fit the remaining budget is skipped and the rung ends there. A
    budget that cannot fit the first rung is a ConfigError before anything runs. The best trial of
    the highest rung with a finished trial wins (ties: fewer steps, then the earlier candidate).
    """
    if not candidates:
        raise ConfigError("recipe search needs at least one candidate")
    if len(set(candidates)) != len(candidates):
        raise ConfigError("recipe search candidates should be distinct")
    if budget_s <= 0:
        raise ConfigError(f"`budget` should be positive, got {budget_s!r}")
    steps_per_rung = rungs(max_steps, min_steps=min(min_steps, max_steps), eta=eta)
    first = sum(estimate(c, steps_per_rung[0]) for c in candidates)
    if first > budget_s:
        raise ConfigError(
            f"a budget of {budget_s / 60:.1f} min is too small: the first round ({len(candidates)} recipes x "
            f"{steps_per_rung[0]} steps) needs about {first / 60:.1f} min; give --budget {math.ceil(first / 60)} or more, "
            "or fewer/cheaper candidates")
    t0 = clock()
    trials: list[Trial] = []
    scale = 1.0  # measured / estimated cost so far
    stopped = False
    alive = list(candidates)
    planned = sum(math.ceil(len(candidates) / eta**k) for k in range(len(steps_per_rung)))
    bar = _bar(planned, progress)
    for rung, steps in enumerate(steps_per_rung):
        done: list[Trial] = []
        for cand in alive:
            left = budget_s - (clock() - t0)
            if estimate(cand, steps) * scale > left:
                stopped = True
                break
            start = clock()
            t = trial(cand, steps, rung)
            took = clock() - start
            t = replace(t, seconds=took, rung=rung, steps=steps, candidate=cand)
            done.append(t)
            trials.append(t)
            ratios = [x.seconds / max(estimate(x.candidate, x.steps), 1e-9) for x in trials]
            scale = max(sum(ratios) / len(ratios), 0.05)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{cand.label()} @{steps}: {t.score:.3f}")
        if stopped or rung == len(steps_per_rung) - 1:
            break
        keep = max(1, math.ceil(len(alive) / eta))
        alive = [t.candidate for t in _ranked(done)[:keep]]
    if bar is not None:
        bar.close()
    if not trials:  # only if the estimate was badly off after the check above
        raise ConfigError(f"a budget of {budget_s / 60:.1f} min did not fit a single trial")
    top_rung = max(t.rung for t in trials)
    best = _ranked([t for t in trials if t.rung == top_rung], order=list(candidates))[0]
    return SearchResult(best=best, trials=trials, budget_s=budget_s, seconds=clock() - t0, stopped_early=stopped,
                        n_validation=n_validation)


def _ranked(trials: list[Trial], order: list[Candidate] | None = None) -> list[Trial]:
    pos = {c: k for k, c in enumerate(order or [])}
    return sorted(trials, key=lambda t: (-t.score, t.steps, pos.get(t.candidate, 0)))


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="recipe search", unit="recipe", file=sys.stderr, dynamic_ncols=True, leave=False)


# -- the real trial ------------------------------------------------------------------------


def training_trial(
    base: BaseModel,
    pairs: list[tuple],
    validation: list[tuple[str, Example]],
    config: TrainConfig,
    work_dir: Path,
) -> Callable[[Candidate, int, int], Trial]:
    """A `trial` that trains `pairs` with the candidate's recipe and scores it on `validation`;
    the adapter and its `TrainResult` are the trial's `artifact` (kept under `work_dir`)."""
    from brickwork.bricks.training import evaluate_adapter, train_lora

    counter = iter(range(10**9))

    def run(cand: Candidate, steps: int, rung: int) -> Trial:
        out = Path(work_dir) / f"trial-{next(counter)}"
        res: TrainResult = train_lora(pairs, base=base, config=cand.config(config, steps), out_dir=out, progress=False)
        score = evaluate_adapter(base, out, validation)["exact_match"]
        return Trial(candidate=cand, steps=steps, rung=rung, score=score, seconds=res.seconds, artifact=(out, res))

    return run


def chosen_config(result: SearchResult, base: TrainConfig) -> TrainConfig:
    """The TrainConfig of the winning trial."""
    return result.best.candidate.config(base, result.best.steps)
