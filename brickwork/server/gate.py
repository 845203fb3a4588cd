"""Admission and worker threads: at most `max_concurrency` requests run, `max_queue` wait, the
rest get a 503 at once.

Running requests call the engine from their own threads inside `BatchingEngine.enter`/`leave`,
so the engine's leader gathers them into shared batches. A request whose client disconnected
before it started is dropped here; one already waiting in the engine's queue is taken out of it
by `BatchingEngine` (it never reaches the engine); one already in a running engine batch
finishes that batch (the engine seam has no per-row abort) and its result is dropped. Each way
the worker raises `Cancelled`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from brickwork.server.errors import ApiError
from brickwork.serving.batching import Cancelled

__all__ = ["Cancelled", "Gate"]


class Gate:
    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        if max_concurrency < 1 or max_queue < 0:
            raise ValueError(f"max_concurrency >= 1 and max_queue >= 0, got {max_concurrency}, {max_queue}")
        self.max_concurrency, self.max_queue = max_concurrency, max_queue
        self.pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="brickwork-server")
        self.inflight = 0  # touched only on the event loop

    def admit(self) -> None:
        if self.inflight >= self.max_concurrency + self.max_queue:
            raise ApiError(
                503,
                f"the server is at capacity ({self.max_concurrency} running, {self.max_queue} queued); retry later",
                kind="server_error",
                code="overloaded",
            )
        self.inflight += 1

    def release(self) -> None:
        self.inflight -= 1

    def start(self, fn: Callable[[], Any], cancelled: threading.Event) -> asyncio.Future[Any]:
        """Run `fn` on a worker (after `admit`); the admission is released when it ends."""

        def guarded() -> Any:
            if cancelled.is_set():
                raise Cancelled()
            return fn()

        fut = asyncio.get_running_loop().run_in_executor(self.pool, guarded)
        fut.add_done_callback(self._ended)
        return fut

    def _ended(self, fut: asyncio.Future[Any]) -> None:
        self.release()
        # reading the exception marks it retrieved: a worker whose client left raises `Cancelled`
        # with nobody waiting, and asyncio would log that as "exception was never retrieved"
        _ = fut.cancelled() or fut.exception()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
