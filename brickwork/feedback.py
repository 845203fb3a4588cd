"""The feedback store: good / correction events on run steps, durable in the library (SQLite).

One row per event, append-only, at ``<library>/feedback.sqlite``. Each event copies what the
updater needs, so it never has to read run checkpoints: the run and step ids, the instruction,
the step's subgoal and input, the exact user text the engine was given (``prompt``), the output,
the bricks that produced it (name, version, weight, retrieval score), the engine and the base
model's fingerprint. A correction carries the right answer; a good event confirms the output.

The updater (``brickwork update``) reads `FeedbackStore.pending()` and marks what it used with
`mark()` (``applied``, ``rejected`` or ``skipped``, with who did it), so nothing is applied twice.
Several events on one step are all kept; `pending(latest_only=True)` keeps the newest per step.

Example::

    fb = FeedbackStore("~/.brickwork")
    fb.pending(brick="english_plural")   # corrections and confirmations to learn from
    fb.mark([e.id for e in events], "applied", by="update english_plural@3")
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from brickwork.errors import ConfigError, LibraryError

FEEDBACK_DB = "feedback.sqlite"
SCHEMA_VERSION = 1
Kind = Literal["good", "correction"]
Status = Literal["pending", "applied", "rejected", "skipped"]
KINDS: tuple[str, ...] = ("good", "correction")
STATUSES: tuple[str, ...] = ("pending", "applied", "rejected", "skipped")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('good', 'correction')),
    correction TEXT,
    instruction TEXT NOT NULL,
    subgoal TEXT NOT NULL,
    input TEXT,
    prompt TEXT NOT NULL,
    output TEXT NOT NULL,
    bricks TEXT NOT NULL,
    engine TEXT,
    base_model TEXT,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'applied', 'rejected', 'skipped')),
    consumed_by TEXT,
    consumed_at TEXT
);
CREATE INDEX IF NOT EXISTS feedback_status ON feedback (status);
CREATE INDEX IF NOT EXISTS feedback_step ON feedback (run_id, step_id);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, kw_only=True)
class FeedbackEvent:
    """One stored event. `target` is the answer to learn from (the correction, or the good output)."""

    id: int
    created_at: str
    run_id: str
    step_id: str
    kind: Kind
    correction: str | None
    instruction: str
    subgoal: str
    input: str | None
    prompt: str
    output: str
    bricks: tuple[dict[str, Any], ...]
    engine: str | None
    base_model: str | None
    status: Status = "pending"
    consumed_by: str | None = None
    consumed_at: str | None = None

    @property
    def target(self) -> str:
        return self.correction if self.kind == "correction" and self.correction is not None else self.output

    @property
    def brick_names(self) -> list[str]:
        return [b["name"] for b in self.bricks]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "run_id": self.run_id,
            "step_id": self.step_id,
            "kind": self.kind,
            "correction": self.correction,
            "instruction": self.instruction,
            "subgoal": self.subgoal,
            "input": self.input,
            "prompt": self.prompt,
            "output": self.output,
            "bricks": list(self.bricks),
            "engine": self.engine,
            "base_model": self.base_model,
            "status": self.status,
            "consumed_by": self.consumed_by,
            "consumed_at": self.consumed_at,
        }

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> FeedbackEvent:
        d = dict(row)
        d["bricks"] = tuple(json.loads(d["bricks"]))
        return cls(**d)


class FeedbackStore:
    """Append-only feedback events in ``<library>/feedback.sqlite`` (WAL, synchronous=FULL)."""

    def __init__(self, library: str | os.PathLike[str] | None = None) -> None:
        from brickwork.bricks.store import default_library

        self.root = Path(library).expanduser() if library is not None else default_library()
        self.path = self.root / FEEDBACK_DB

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise LibraryError(f"cannot open the feedback store {self.path}: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise LibraryError(f"{self.path} was written by a newer Brickwork (schema {row[0]})")
            yield conn
        except sqlite3.DatabaseError as exc:
            raise LibraryError(f"the feedback store {self.path} is unreadable: {exc}") from exc
        finally:
            conn.close()

    def add(
        self,
        *,
        run_id: str,
        step_id: str,
        kind: Kind,
        instruction: str,
        subgoal: str,
        prompt: str,
        output: str,
        bricks: Sequence[dict[str, Any]],
        input: str | None = None,  # noqa: A002 - the step's input, named as in the trace
        correction: str | None = None,
        engine: str | None = None,
        base_model: str | None = None,
    ) -> FeedbackEvent:
        """Store one event (committed before returning) and return it."""
        if kind not in KINDS:
            raise ConfigError(f"`kind` should be one of {KINDS}, got {kind!r}.")
        if kind == "correction" and (not isinstance(correction, str) or not correction.strip()):
            raise ConfigError("a correction needs the corrected text (non-empty)")
        if kind == "good" and correction is not None:
            raise ConfigError("a good event carries no correction")
        row = {
            "created_at": _now(),
            "run_id": run_id,
            "step_id": step_id,
            "kind": kind,
            "correction": correction.strip() if correction else None,
            "instruction": instruction,
            "subgoal": subgoal,
            "input": input,
            "prompt": prompt,
            "output": output,
            "bricks": json.dumps(list(bricks), ensure_ascii=False),
            "engine": engine,
            "base_model": base_model,
        }
        with self._connect() as conn:
            cur = conn.execute(
                f"INSERT INTO feedback ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
            )
            got = conn.execute("SELECT * FROM feedback WHERE id = ?", (cur.lastrowid,)).fetchone()
        return FeedbackEvent._from_row(got)

    def get(self, event_id: int) -> FeedbackEvent:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM feedback WHERE id = ?", (event_id,)).fetchone()
        if row is None:
            raise ConfigError(f"no feedback event {event_id} in {self.path}")
        return FeedbackEvent._from_row(row)

    def list(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        brick: str | None = None,
        run_id: str | None = None,
    ) -> list[FeedbackEvent]:
        """Events, oldest first, filtered by status, kind, a brick that produced them, or run."""
        if status is not None and status not in STATUSES:
            raise ConfigError(f"`status` should be one of {STATUSES}, got {status!r}.")
        if kind is not None and kind not in KINDS:
            raise ConfigError(f"`kind` should be one of {KINDS}, got {kind!r}.")
        where, args = [], []
        for col, val in (("status", status), ("kind", kind), ("run_id", run_id)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = "SELECT * FROM feedback" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        if not self.path.is_file():
            return []
        with self._connect() as conn:
            events = [FeedbackEvent._from_row(r) for r in conn.execute(sql, args)]
        if brick is not None:
            events = [e for e in events if brick in e.brick_names]
        return events

    def pending(self, *, brick: str | None = None, latest_only: bool = True) -> list[FeedbackEvent]:
        """Events not yet used by the updater (newest per run step when `latest_only`)."""
        events = self.list(status="pending", brick=brick)
        if latest_only:
            newest: dict[tuple[str, str], FeedbackEvent] = {}
            for e in events:
                newest[(e.run_id, e.step_id)] = e
            events = sorted(newest.values(), key=lambda e: e.id)
        return events

    def mark(self, ids: Sequence[int], status: Status, *, by: str) -> int:
        """Set the status of events (one transaction); returns how many rows changed."""
        if status not in STATUSES:
            raise ConfigError(f"`status` should be one of {STATUSES}, got {status!r}.")
        ids = list(ids)
        if not ids:
            return 0
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.execute(
                f"UPDATE feedback SET status = ?, consumed_by = ?, consumed_at = ? WHERE id IN ({', '.join('?' * len(ids))})",
                (status, by, _now(), *ids),
            )
            conn.execute("COMMIT")
        return cur.rowcount
