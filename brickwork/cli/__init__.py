"""The `brickwork` command line: a thin shell over the library.

Each command group lives in its own module with a `register(subparsers)` function; this module
only assembles them and maps `BrickworkError` to one readable line and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Command groups, imported lazily by name so `brickwork --help` stays fast.
GROUPS: tuple[str, ...] = ("run", "library", "bricks", "index", "feedback", "update", "emergent", "eval", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="brickwork", description="Configurable foundation models from LLM bricks.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        try:
            mod = importlib.import_module(f"brickwork.cli.{group}")
        except ModuleNotFoundError as exc:
            if exc.name != f"brickwork.cli.{group}":
                raise
            continue  # group not built yet
        mod.register(sub)
    return parser


def _version() -> str:
    from brickwork import __version__

    return __version__


def add_library_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--library", metavar="DIR", default=None, help="brick library (default: $BRICKWORK_HOME or ~/.brickwork)")


# The engines a command can be told to use: `brickwork.serving.EngineName`'s (a test keeps them the
# same; not imported here, so a command starts without loading the serving package); argparse
# names them in the one-line error for any other.
ENGINES: tuple[str, ...] = ("peft", "vllm", "vllm-server")


def add_engine_arg(p: argparse.ArgumentParser, *, what: str = "serving engine") -> None:
    p.add_argument("--engine", choices=ENGINES, default="peft", help=f"{what} (default: %(default)s)")


def main(argv: Sequence[str] | None = None) -> int:
    from brickwork.errors import BrickworkError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrickworkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
