"""Brickwork's exceptions: one tree, so callers can catch as broadly or narrowly as they need.

    BrickworkError                 every error Brickwork raises on purpose
    ├── ConfigError                a bad option or argument (unknown engine, bad weight, ...)
    ├── ModelError                 a base model cannot be found, loaded or is unsuitable
    ├── BrickError                 a problem with one brick
    │   ├── InvalidBrickName       name breaks `[a-z0-9][a-z0-9_-]{0,63}` (or tries a path trick)
    │   ├── ManifestError          `brick.json` malformed, missing keys, wrong types
    │   ├── AdapterError           adapter config/weights unreadable, pickled, wrong shapes or rank
    │   ├── BaseModelMismatch      the brick was made for another base model
    │   └── BrickNotFound          no brick (or version) of that name in the library
    ├── LibraryError               the library on disk (lock, layout, unsafe archive)
    ├── IndexError_                the retrieval index (wrong embedder, corrupt files)
    ├── BackendError               an engine or server failed (dead vLLM server, time-out)
    ├── PlanError                  the planner produced nothing usable
    └── TrainingError              training could not run or produced nothing usable

Foreign errors (PEFT, torch, FAISS, vLLM, httpx) are wrapped at the boundary with
``raise ... from exc``; the CLI prints ``error: <message>`` and exits non-zero.
"""

from __future__ import annotations


class BrickworkError(Exception):
    """Base of every error Brickwork raises on purpose."""

    exit_code = 1


class ConfigError(BrickworkError):
    exit_code = 2


class ModelError(BrickworkError):
    pass


class BrickError(BrickworkError):
    pass


class InvalidBrickName(BrickError):
    exit_code = 2


class ManifestError(BrickError):
    pass


class AdapterError(BrickError):
    pass


class BaseModelMismatch(BrickError):
    pass


class BrickNotFound(BrickError):
    exit_code = 3


class LibraryError(BrickworkError):
    pass


class IndexError_(BrickworkError):  # noqa: N801 - avoids shadowing the builtin IndexError
    pass


class BackendError(BrickworkError):
    pass


class PlanError(BrickworkError):
    pass


class TrainingError(BrickworkError):
    pass


__all__ = [
    "AdapterError",
    "BackendError",
    "BaseModelMismatch",
    "BrickError",
    "BrickNotFound",
    "BrickworkError",
    "ConfigError",
    "IndexError_",
    "InvalidBrickName",
    "LibraryError",
    "ManifestError",
    "ModelError",
    "PlanError",
    "TrainingError",
]
