"""Brick archives: `bricks export` writes one, `bricks import` reads one safely.

An archive is a gzip'd tar of one brick version directory (``NAME/`` holding brick.json and the
adapter files). Extraction refuses absolute paths, ``..`` components, links, devices and
oversized members before anything is written, so a hostile archive cannot escape the staging
directory.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath

from brickwork import _atomic
from brickwork.bricks.store import Brick
from brickwork.errors import LibraryError

MAX_MEMBER_BYTES = 2 << 30
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def is_archive(path: Path) -> bool:
    return Path(path).is_file() and str(path).endswith(ARCHIVE_SUFFIXES)


def export_brick(brick: Brick, out: Path) -> Path:
    """Write `brick` as a .tar.gz archive at `out` (a file path, or a directory to put it in)."""
    out = Path(out)
    if out.is_dir():
        out = out / f"{brick.name}-v{brick.version}.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted(brick.path.iterdir()):
            if f.is_file():
                tar.add(f, arcname=f"{brick.name}/{f.name}", recursive=False)
    _atomic.write_bytes(out, buf.getvalue())
    return out


def _check_member(m: tarfile.TarInfo) -> str | None:
    p = PurePosixPath(m.name)
    if p.is_absolute() or m.name.startswith(("/", "\\")):
        return f"absolute path {m.name!r}"
    if ".." in p.parts:
        return f"path {m.name!r} leaves the archive (..)"
    if m.issym() or m.islnk():
        return f"link {m.name!r} -> {m.linkname!r}"
    if not (m.isfile() or m.isdir()):
        return f"special file {m.name!r}"
    if m.size > MAX_MEMBER_BYTES:
        return f"member {m.name!r} is too large ({m.size} bytes)"
    return None


def extract_archive(archive: Path, dest: Path) -> Path:
    """Safely extract `archive` into the empty directory `dest`; return the brick directory in it."""
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members = tar.getmembers()
            problems = [p for m in members if (p := _check_member(m))]
            if problems:
                raise LibraryError(f"{archive}: unsafe archive, nothing was extracted:\n  - " + "\n  - ".join(problems))
            for m in members:
                target = dest / m.name
                if not target.resolve().is_relative_to(dest.resolve()):
                    raise LibraryError(f"{archive}: member {m.name!r} escapes the destination")
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                if src is None:
                    raise LibraryError(f"{archive}: cannot read member {m.name!r}")
                with open(target, "wb") as fh:
                    fh.write(src.read())
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, LibraryError):
            raise
        raise LibraryError(f"{archive}: not a readable brick archive ({exc})") from exc
    # An export holds one top-level folder; accept files at the top level too.
    tops = [p for p in dest.iterdir()]
    if len(tops) == 1 and tops[0].is_dir():
        return tops[0]
    return dest


__all__ = ["export_brick", "extract_archive", "is_archive"]
