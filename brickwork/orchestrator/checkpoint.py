"""Run checkpoints: a SQLite LangGraph checkpointer inside the library, and run ids.

Every run is a LangGraph thread whose id is the run id; its state is saved after every step of
the graph (``durability="sync"``), so a run killed mid-way resumes from the last finished
super-step and never redoes a finished step.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

from brickwork.errors import LibraryError

CHECKPOINTS = Path("runs") / "checkpoints.sqlite"
RUN_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def new_run_id() -> str:
    """Sortable and unique: ``r20250101-120000-3fa9c1``."""
    return time.strftime("r%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not run_id or len(run_id) > 64 or not set(run_id) <= RUN_ID_CHARS:
        from brickwork.errors import ConfigError

        raise ConfigError(f"invalid run id {run_id!r}: use 1-64 characters of a-z, 0-9 and '-'")
    return run_id


def open_checkpointer(library_root: str | os.PathLike[str]) -> Any:
    """A `SqliteSaver` on ``<library>/runs/checkpoints.sqlite`` (created on first use)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = Path(library_root).expanduser() / CHECKPOINTS
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        saver = SqliteSaver(conn)
        saver.setup()
    except (OSError, sqlite3.Error) as exc:
        raise LibraryError(f"cannot open run checkpoints at {path}: {exc}") from exc
    return saver


def thread_config(run_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": run_id}}
