"""Coalesce `generate` calls from concurrent runs into one engine batch, and time the engine.

`run_batch` runs many graphs at once (one thread each); every node that generates (the planner
brick, ``execute``) calls `BatchingEngine.generate`. The first caller to find the engine idle
becomes the leader: it waits until every active run is waiting (or `window_s` passes), sends all
pending requests to the wrapped engine as one batch, and hands each caller its completions. So a
file of instructions goes through the engine in a few large mixed batches, not one by one, and
the wrapped engine is only ever called from one thread at a time.

A caller may pass a `cancelled` event (the server sets it when the client disconnects). A job
cancelled while it waits leaves the queue at once and never reaches the engine: the leader skips
it when it forms a batch, and its caller gets `Cancelled`. A job cancelled while its batch runs
cannot leave that batch (the engine seam has no per-row abort); its result is dropped and its
caller gets `Cancelled` too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


# how often a waiting caller with a `cancelled` event looks at it (the event cannot wake a wait)
CANCEL_POLL_S = 0.05


class Cancelled(Exception):
    """The caller cancelled its request (the client went away) before it got its result."""


@dataclass
class _Job:
    requests: list[Any]
    kind: str = "generate"  # or "score": jobs of one kind go to the engine together
    cancelled: threading.Event | None = None
    result: list[Any] | None = None
    error: BaseException | None = None
    done: bool = False

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled is not None and self.cancelled.is_set()


@dataclass
class EngineStats:
    calls: int = 0
    requests: int = 0
    cancelled: int = 0  # requests whose job was cancelled before it reached the engine
    seconds: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)


class BatchingEngine:
    """Wraps an engine; thread-safe; `stats` counts calls, requests and generation seconds."""

    def __init__(self, engine: Any, *, window_s: float = 0.05, max_batch: int = 256) -> None:
        self.engine = engine
        self.name = getattr(engine, "name", "engine")
        self.window_s = window_s
        self.max_batch = max_batch
        self.stats = EngineStats()
        self._cv = threading.Condition()
        self._pending: list[_Job] = []
        self._busy = False
        self._active = 0

    # runs announce themselves so the leader knows how many callers to wait for
    def enter(self) -> None:
        with self._cv:
            self._active += 1

    def leave(self) -> None:
        with self._cv:
            self._active = max(0, self._active - 1)
            self._cv.notify_all()

    def generate(self, requests: Sequence[Any], *, cancelled: threading.Event | None = None) -> list[Any]:
        """The wrapped engine's completions; raises `Cancelled` once `cancelled` is set."""
        return self._submit(_Job(list(requests), cancelled=cancelled))

    def score(self, requests: Sequence[Any], *, cancelled: threading.Event | None = None) -> list[Any]:
        """Prompt scoring, batched across concurrent callers like `generate`."""
        return self._submit(_Job(list(requests), kind="score", cancelled=cancelled))

    def _submit(self, job: _Job) -> list[Any]:
        if not job.requests:
            return []
        poll = CANCEL_POLL_S if job.cancelled is not None else None
        with self._cv:
            self._pending.append(job)
            self._cv.notify_all()
            while not job.done:
                if job.is_cancelled:
                    if job in self._pending:
                        self._drop(job)
                    break  # in a running batch: the caller goes now, the batch drops its result
                if self._busy:
                    self._cv.wait(timeout=poll)
                    continue
                self._busy = True
                deadline = time.monotonic() + self.window_s
                while len(self._pending) < max(1, self._active) and (left := deadline - time.monotonic()) > 0:
                    self._cv.wait(timeout=left)
                batch = self._take_batch()
                self._cv.release()
                try:
                    if batch:
                        self._run(batch)
                finally:
                    self._cv.acquire()
                    self._busy = False
                    self._cv.notify_all()
        if job.is_cancelled:  # also when its batch ran: the result is nobody's now
            raise Cancelled()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def queued(self) -> int:
        """Requests waiting for a batch now (not yet handed to the wrapped engine)."""
        with self._cv:
            return sum(len(j.requests) for j in self._pending)

    def _drop(self, job: _Job) -> None:
        """Take a cancelled job out of the queue (under the lock)."""
        self._pending.remove(job)
        self.stats.cancelled += len(job.requests)
        job.error, job.done = Cancelled(), True
        self._cv.notify_all()  # a leader waiting for every active caller need not wait for this one

    def _take_batch(self) -> list[_Job]:
        """The next batch: queued jobs of the first live job's kind, up to `max_batch` requests;
        cancelled jobs are dropped on the way (under the lock)."""
        for j in [j for j in self._pending if j.is_cancelled]:
            self._drop(j)
        if not self._pending:
            return []
        batch, size = [], 0
        kind = self._pending[0].kind
        for j in list(self._pending):
            if j.kind != kind:
                continue
            if batch and size + len(j.requests) > self.max_batch:
                break
            self._pending.remove(j)
            batch.append(j)
            size += len(j.requests)
        return batch

    def _run(self, batch: list[_Job]) -> None:
        flat = [r for j in batch for r in j.requests]
        t0 = time.perf_counter()
        try:
            out = self.engine.score(flat) if batch[0].kind == "score" else self.engine.generate(flat)
        except BaseException as exc:  # every caller of this batch sees the engine's error
            for j in batch:
                j.error, j.done = exc, True
            return
        finally:
            self.stats.seconds += time.perf_counter() - t0
            self.stats.calls += 1
            self.stats.requests += len(flat)
            self.stats.batch_sizes.append(len(flat))
        i = 0
        for j in batch:
            j.result, j.done = list(out[i : i + len(j.requests)]), True
            i += len(j.requests)

    def close(self) -> None:
        self.engine.close()
