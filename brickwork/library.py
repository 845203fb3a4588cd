"""A brick library as one object: its store, retrieval index, router and feedback, and the
workflows that span them.

`brickwork.bricks` holds pure operations (train, merge, grow, update one brick) with their
collaborators passed in; this module wires those collaborators from one library and runs the
workflows that touch several parts at once: applying feedback (`Library.update`: gated updates,
growing, marking events, keeping the index in step) and bringing the index in line after a change
(`Library.sync_index`). The SDK (`brickwork.orchestrator.sdk.Brickwork`) and the CLI are built on it.

Example::

    lib = Library("~/.brickwork")
    report = lib.update(dry_run=True)        # what `brickwork update --dry-run` reports
    lib.index.search("what is the capital of Peru?")[0].name
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brickwork.bricks.growing import Embedder, GrowConfig
    from brickwork.bricks.lineage import BaseRunner
    from brickwork.bricks.store import BrickStore
    from brickwork.bricks.updating import UpdateConfig, UpdateOutcome, UpdatePlan
    from brickwork.feedback import FeedbackStore
    from brickwork.serving.adapters import ResolvingEngine

Progress = Callable[[str], None]


class Library:
    """One library: `store` (bricks on disk), `feedback`, `index` and `router` (opened lazily).

    `store` replaces the library's store (the SDK passes a store that also resolves the planner
    brick; tests pass fakes); otherwise `root` and `base` open a `BrickStore`.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, base: str | None = None, store: Any = None) -> None:
        if store is None:
            from brickwork.bricks.store import BrickStore

            store = BrickStore(root, base=base)
        self.store: BrickStore = store
        self._feedback: FeedbackStore | None = None
        self._index: Any = None
        self._router: Any = None
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        return self.store.root

    @property
    def feedback(self) -> FeedbackStore:
        if self._feedback is None:
            from brickwork.feedback import FeedbackStore

            self._feedback = FeedbackStore(self.store.root)
        return self._feedback

    @property
    def index(self) -> Any:
        """The retrieval index (`brickwork.retrieval_index.BrickIndex`), repaired if it drifted."""
        with self._lock:
            if self._index is None:
                from brickwork.retrieval_index import BrickIndex

                self._index = BrickIndex.open(self.store)
            return self._index

    @property
    def router(self) -> Any:
        """The routing policy on `index` (the library's own calibration, if any)."""
        index = self.index
        with self._lock:
            if self._router is None:
                from brickwork.retrieval_index import Router

                self._router = Router.for_index(index)
            return self._router

    def embedder(self, spec: Any = None) -> Embedder:
        """The embedder for `spec` (an embedder object, a spec string, or None: the default)."""
        from brickwork.retrieval_index.embedder import load_embedder

        return load_embedder(spec)

    def sync_index(self, say: Progress | None = None) -> None:
        """Bring the retrieval index in line with the store (skipped, and said, if it cannot load)."""
        try:
            from brickwork.retrieval_index import BrickIndex
        except ImportError as exc:
            if say:
                say(f"retrieval index not updated ({exc}); run `brickwork index rebuild`")
            return
        with self._lock:
            if self._index is None:
                self._index = BrickIndex.open(self.store)
            self._index.sync()

    def update(
        self,
        *,
        config: UpdateConfig | None = None,
        grow_config: GrowConfig | None = None,
        bricks: Sequence[str] | None = None,
        grow: bool = True,
        dry_run: bool = False,
        runner: BaseRunner | None = None,
        engine: str | ResolvingEngine = "peft",
        embedder: Any = None,
        progress: Progress | None = None,
        command: str | None = None,
        train_progress: bool = False,
        keep_candidates: Path | None = None,
    ) -> UpdateReport:
        """Apply pending feedback: update bricks with corrections (gated), grow bricks from uncovered
        examples, mark the events used, and keep the retrieval index in step. `dry_run` trains nothing
        and writes nothing; it reports what would be attempted. `keep_candidates`: a folder that gets
        each update's candidate adapter (``<folder>/<brick>``), accepted or not, for evals.
        Gates score on `runner` (a `BaseRunner`), else on one made over `engine` (an engine name,
        the embedded ``peft`` by default, or an engine made by `create_engine`) and closed after."""
        from brickwork.bricks.growing import GrowConfig, grow_from_examples
        from brickwork.bricks.lineage import BaseRunner
        from brickwork.bricks.updating import plan_from_feedback

        store, feedback = self.store, self.feedback
        say = progress or (lambda _msg: None)
        t0 = time.perf_counter()
        grow_config = grow_config or GrowConfig()
        events = feedback.pending()
        plan = plan_from_feedback(store, events, bricks=bricks)
        report = UpdateReport(plan=plan, dry_run=dry_run)
        say(f"{len(events)} pending feedback events: corrections for {len(plan.updates)} brick(s), "
            f"{len(plan.grow)} uncovered, {len(plan.skipped)} unusable")
        growing = grow and bool(plan.grow)
        if dry_run:
            if growing:
                grown, waiting = grow_from_examples(store, plan.grow, config=grow_config,
                                                    embedder=self.embedder(embedder or grow_config.embedder),
                                                    dry_run=True, progress=say)
                report.grown, report.waiting = grown, sum(len(w) for w in waiting)
            report.seconds = time.perf_counter() - t0
            return report
        for eid, reason in plan.skipped:
            feedback.mark([eid], "skipped", by=f"update: {reason}")
        own_runner = bool(plan.updates or growing) and runner is None
        if own_runner:
            runner = BaseRunner(store, engine=engine)
        try:
            changed = self._apply(plan, report, runner, config=config, grow_config=grow_config, growing=growing,
                                  embedder=embedder, say=say, command=command, train_progress=train_progress,
                                  keep_candidates=keep_candidates)
        finally:
            if own_runner and runner is not None:
                runner.close()
        if changed:
            self.sync_index(say)
        report.seconds = time.perf_counter() - t0
        self._log(report)
        return report

    def _apply(self, plan: UpdatePlan, report: UpdateReport, runner: BaseRunner | None, *, config: UpdateConfig | None,
               grow_config: GrowConfig, growing: bool, embedder: Any, say: Progress, command: str | None,
               train_progress: bool, keep_candidates: Path | None) -> bool:
        """Run the plan's updates and growing on `runner`; True when the library changed."""
        from brickwork.bricks.growing import grow_from_examples
        from brickwork.bricks.updating import update_brick

        store, feedback = self.store, self.feedback
        changed = False
        for k, (name, corrections) in enumerate(sorted(plan.updates.items()), 1):
            say(f"[{k}/{len(plan.updates)}] updating {name} with {len(corrections)} correction(s)")
            good = [it for _, it in plan.good.get(name, [])]
            outcome = update_brick(store, name, corrections, good=good, config=config, runner=runner, progress=say,
                                   command=command, train_progress=train_progress,
                                   keep_candidate=keep_candidates / name if keep_candidates is not None else None)
            report.updates.append(outcome)
            if outcome.accepted:
                changed = True
                feedback.mark(outcome.event_ids, "applied", by=f"update {name}@{outcome.new_version}")
                feedback.mark([i for i, _ in plan.good.get(name, [])], "applied",
                              by=f"update {name}@{outcome.new_version} (checked)")
            else:
                feedback.mark(outcome.event_ids, "rejected", by=f"update {name}: " + "; ".join(outcome.reasons))
        if growing:
            grown, waiting = grow_from_examples(store, plan.grow, config=grow_config, runner=runner,
                                                embedder=self.embedder(embedder or grow_config.embedder),
                                                progress=say, command=command)
            report.grown, report.waiting = grown, sum(len(w) for w in waiting)
            for g in grown:
                if g.added:
                    changed = True
                    feedback.mark(g.event_ids, "applied", by=f"grow {g.name}@{g.version}")
                else:
                    feedback.mark(g.event_ids, "rejected", by=f"grow {g.name}: " + "; ".join(g.reasons))
        return changed

    def _log(self, report: UpdateReport) -> None:
        """Keep every update's decisions, with reasons, under ``<library>/updates/``."""
        from brickwork import _atomic
        from brickwork.bricks.manifest import now_iso

        stamp = now_iso().replace(":", "").replace("+0000", "Z")
        _atomic.write_text(self.root / "updates" / f"{stamp}-{time.time_ns() % 10**6:06d}.json",
                           json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")


@dataclass(kw_only=True)
class UpdateReport:
    """What `Library.update` did (the JSON of ``brickwork update --json``)."""

    plan: UpdatePlan
    updates: list[UpdateOutcome] = field(default_factory=list)
    grown: list[Any] = field(default_factory=list)  # GrowOutcome
    waiting: int = 0
    dry_run: bool = False
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "plan": self.plan.to_json(),
            "updates": [u.to_json() for u in self.updates],
            "grown": [g.to_json() for g in self.grown],
            "waiting_uncovered": self.waiting,
            "seconds": round(self.seconds, 1),
        }
