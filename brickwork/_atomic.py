"""Crash-safe file operations: write to a temp path, fsync, rename."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_json(path: Path, error: type[Exception], *, missing: str) -> Any:
    """The JSON document at `path`: `error(missing)` if there is none, `error` naming the file if
    it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise error(missing) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from exc


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def publish_dir(staged: Path, final: Path) -> None:
    """Move a fully written directory into place in one rename (`final` must not exist)."""
    fsync_tree(staged)
    os.chmod(staged, 0o755)  # mkdtemp makes 0700 directories
    final.parent.mkdir(parents=True, exist_ok=True)
    os.rename(staged, final)
    fsync_dir(final.parent)


def remove_tree(path: Path, trash: Path) -> None:
    """Remove a directory so that a crash never leaves half of it: rename first, then delete."""
    trash.mkdir(parents=True, exist_ok=True)
    doomed = Path(tempfile.mkdtemp(prefix=f"{path.name}.", dir=trash))
    os.rename(path, doomed / path.name)
    fsync_dir(path.parent)
    shutil.rmtree(doomed, ignore_errors=True)


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    """An advisory `flock` held for the block; several processes serialise on it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
