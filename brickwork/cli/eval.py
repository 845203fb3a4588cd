"""`brickwork eval SUITE`: each suite is a module `brickwork.evals.<suite>` with
`add_arguments(parser)` and `main(args) -> int`; they write JSON + Markdown under --out."""

from __future__ import annotations

import argparse
import importlib
import importlib.util

from brickwork.cli import add_library_arg

SUITES: tuple[str, ...] = ("routing", "plan", "compose", "merge", "update", "grow", "emergent", "serving", "harness")


def _available() -> list[str]:
    out = []
    for s in SUITES:
        if importlib.util.find_spec(f"brickwork.evals.{s}") is not None:
            out.append(s)
    return out


def register(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser("eval", help="run an evaluation suite (JSON + Markdown report)")
    esub = p.add_subparsers(dest="suite", metavar="SUITE", required=True)
    for suite in _available():
        mod = importlib.import_module(f"brickwork.evals.{suite}")
        sp = esub.add_parser(suite, help=(mod.__doc__ or suite).strip().splitlines()[0])
        add_library_arg(sp)
        sp.add_argument("--out", metavar="DIR", default=f"out/eval-{suite}", help="report folder (default: %(default)s)")
        mod.add_arguments(sp)
        sp.set_defaults(func=mod.main)
