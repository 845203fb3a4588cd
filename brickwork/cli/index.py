"""`brickwork index rebuild|check|search`: the retrieval index of a library.

    brickwork index check [--json]                 # drift between index and store (exit 1 if any)
    brickwork index rebuild [--embedder SPEC] [--kind auto|flat|hnsw|ivf]
    brickwork index search QUERY [--k K] [--json]
    brickwork index search --file FILE [--k K] --json   # one query per line -> one JSON per line

Search output (``--json``), one object per query::

    {"query": ..., "results": [{"name", "version", "score"}, ...], "route": [{"name", "weight"}, ...]}

``route`` is the routing decision; an empty list means the base model answers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from brickwork.cli import add_library_arg
from brickwork.cli._output import print_json, print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="the retrieval index: rebuild, check, search")
    isub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)

    c = isub.add_parser("check", help="report drift between the index and the library (exit 1 if any)")
    add_library_arg(c)
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.set_defaults(func=_check)

    r = isub.add_parser("rebuild", help="rebuild the index from the library")
    add_library_arg(r)
    r.add_argument("--embedder", default=None, help="sentence-transformers model name or path, or 'minilm' (default: the index's own)")
    r.add_argument("--kind", choices=("auto", "flat", "hnsw", "ivf"), default=None, help="search structure (default: auto)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=_rebuild)

    s = isub.add_parser("search", help="retrieve and route: which bricks would serve QUERY")
    add_library_arg(s)
    s.add_argument("query", nargs="?", help="the query (or use --file)")
    s.add_argument("--file", metavar="FILE", help="one query per line ('-' for stdin); one result per line")
    s.add_argument("--k", type=int, default=5, help="number of results (default %(default)s)")
    s.add_argument("--json", action="store_true", help="print JSON (one object per query)")
    s.add_argument("--min-score", type=float, default=None, help="override the router's calibrated threshold")
    s.add_argument("--max-bricks", type=int, default=None, help="override the router's maximum bricks per step")
    s.add_argument("--explain", action="store_true", help="show each hit's score parts (cosine, classifier, none and form penalties)")
    s.set_defaults(func=_search)


def _store(args: argparse.Namespace):
    from brickwork.bricks import BrickStore

    return BrickStore(args.library)


def _check(args: argparse.Namespace) -> int:
    from brickwork.retrieval_index import BrickIndex

    report = BrickIndex.open(_store(args), repair=False).check()
    if args.json:
        print_json(report.to_json())
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else 1


def _rebuild(args: argparse.Namespace) -> int:
    from brickwork.retrieval_index import AnnConfig, BrickIndex

    store = _store(args)
    ann = AnnConfig(kind=args.kind) if args.kind else None
    if args.embedder is None and ann is None:
        index = BrickIndex.open(store, repair=False)
        if index.check().problems:  # corrupt: start afresh with the defaults
            index = BrickIndex.build(store)
        else:
            index.rebuild()
    else:
        index = BrickIndex.build(store, embedder=args.embedder, ann=ann)
    report = index.check()
    if args.json:
        print_json(report.to_json())
    else:
        print(f"rebuilt: {report.bricks} bricks, {report.rows} rows, {report.kind}, embedder {report.embedder}")
    return 0 if report.ok else 1


def _read_queries(path: str) -> list[str]:
    from brickwork.errors import ConfigError

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def _search(args: argparse.Namespace) -> int:
    from brickwork.errors import ConfigError
    from brickwork.retrieval_index import BrickIndex, Router, retrieve

    if (args.query is None) == (args.file is None):
        raise ConfigError("give either QUERY or --file FILE")
    if args.k < 1:
        raise ConfigError(f"--k should be at least 1, got {args.k}")
    queries = _read_queries(args.file) if args.file else [args.query]
    index = BrickIndex.open(_store(args))
    for line in index.repairs:
        print(f"note: index repaired: {line}", file=sys.stderr)
    overrides = {k: v for k, v in (("min_score", args.min_score), ("max_bricks", args.max_bricks)) if v is not None}
    router = Router.for_index(index, **overrides)
    for query, (hits, routes) in zip(queries, retrieve(index, router, queries, k=args.k), strict=True):
        why = router.explain(hits)
        parts = index.score_parts(query) if args.explain else {}
        if args.json:
            out = {
                "query": query,
                "results": [h.to_json() | ({"parts": parts[h.name]} if parts else {}) for h in hits],
                "route": [{"name": r.name, "weight": round(r.weight, 6)} for r in routes],
                "why": why,
            }
            print_json(out)
        else:
            decision = ", ".join(f"{r.name} ({r.weight:.2f})" for r in routes) or "base model"
            print(f"{query}\n  route: {decision}\n  why: {why['reason']}")
            if parts:
                cols = ("brick", "version", "score", "cosine", "classifier", "none penalty", "form penalty")
                rows = [(h.name, h.version, f"{h.score:.3f}", *(f"{parts[h.name][k]:.3f}" for k in ("cos", "p", "none", "form"))) for h in hits]
                print_table(rows, cols)
            else:
                print_table([(h.name, h.version, f"{h.score:.3f}") for h in hits], ("brick", "version", "score"))
    return 0
