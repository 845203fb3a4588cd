"""`brickwork bricks ...`: list, show, history, rollback, remove, import, export (+ train, merge)."""

from __future__ import annotations

import argparse
import importlib

from brickwork.cli import add_library_arg
from brickwork.cli._output import print_json, print_table


def open_store(args: argparse.Namespace):
    from brickwork.bricks import BrickStore

    return BrickStore(args.library)


def sync_index(store) -> None:
    """Bring the retrieval index in line with the store after a change (if retrieval is installed)."""
    from brickwork.library import Library

    Library(store=store).sync_index()


def _summary(brick) -> dict:
    m = brick.manifest
    return {
        "name": m.name,
        "version": m.version,
        "kind": m.kind,
        "description": m.description,
        "rank": m.rank,
        "base_model": m.base_model,
        "metrics": m.metrics,
        "tags": m.tags,
        "created_at": m.created_at,
    }


def _metric(m) -> str:
    em = m.metrics.get("exact_match")
    return f"{em:.2f}" if isinstance(em, int | float) else "-"


def cmd_list(args) -> int:
    bricks = open_store(args).list()
    if args.json:
        print_json([_summary(b) for b in bricks])
        return 0
    if not bricks:
        print("the library is empty: run `brickwork library build` or `brickwork bricks import`")
        return 0
    rows = [(b.name, b.version, b.manifest.kind, _metric(b.manifest), b.manifest.description[:60]) for b in bricks]
    print_table(rows, ["NAME", "VERSION", "KIND", "HELD-OUT", "DESCRIPTION"])
    return 0


def cmd_show(args) -> int:
    brick = open_store(args).get(args.name, args.version)
    if args.json:
        print_json({**brick.manifest.to_json(), "path": str(brick.path)})
        return 0
    m = brick.manifest
    print(f"{m.name} v{m.version} ({m.kind}, rank {m.rank})\n  {m.description}")
    print(f"  base model: {m.base_model['id']} {m.base_model['fingerprint']}")
    print(f"  metrics: {m.metrics}\n  created: {m.created_at}\n  path: {brick.path}")
    for ex in m.examples[:5]:
        print(f"  e.g. {ex[:80]}")
    return 0


def cmd_history(args) -> int:
    hist = open_store(args).history(args.name)
    if args.json:
        print_json(hist)
        return 0
    rows = [("*" if h["active"] else "", h["version"], h["created_at"], ",".join(map(str, h["parents"])) or "-") for h in hist]
    print_table(rows, ["", "VERSION", "CREATED", "PARENTS"])
    return 0


def cmd_rollback(args) -> int:
    store = open_store(args)
    brick = store.rollback(args.name, to=args.to)
    sync_index(store)
    print(f"{brick.name}: active version is now {brick.version}")
    return 0


def cmd_remove(args) -> int:
    store = open_store(args)
    store.remove(args.name)
    sync_index(store)
    print(f"removed {args.name}")
    return 0


def cmd_import(args) -> int:
    from brickwork.bricks.importing import import_brick

    store = open_store(args)
    brick = import_brick(store, args.source, name=args.name, description=args.description, examples=args.examples,
                         tags=args.tags)
    sync_index(store)
    if args.json:
        print_json(_summary(brick))
    else:
        print(f"imported {brick.name} v{brick.version}")
    return 0


def cmd_export(args) -> int:
    from brickwork.bricks.archive import export_brick

    out = export_brick(open_store(args).get(args.name, args.version), args.out)
    print(f"wrote {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bricks", help="list, inspect, version, import, export, train and merge bricks")
    bsub = p.add_subparsers(dest="bricks_command", metavar="ACTION", required=True)

    def action(name: str, func, help: str, *, json: bool = False) -> argparse.ArgumentParser:
        ap = bsub.add_parser(name, help=help)
        add_library_arg(ap)
        if json:
            ap.add_argument("--json", action="store_true", help="print JSON")
        ap.set_defaults(func=func)
        return ap

    action("list", cmd_list, "list the active version of every brick", json=True)
    ap = action("show", cmd_show, "show one brick's manifest", json=True)
    ap.add_argument("name")
    ap.add_argument("--version", type=int, default=None)
    ap = action("history", cmd_history, "every version of a brick", json=True)
    ap.add_argument("name")
    ap = action("rollback", cmd_rollback, "make an earlier version active")
    ap.add_argument("name")
    ap.add_argument("--to", type=int, required=True, metavar="VERSION")
    ap = action("remove", cmd_remove, "remove a brick and all its versions")
    ap.add_argument("name")
    ap = action("import", cmd_import, "import a brick dir, a PEFT LoRA dir or an exported archive", json=True)
    ap.add_argument("source", metavar="DIR_OR_ARCHIVE")
    ap.add_argument("--name", help="brick name (required for a bare PEFT adapter)")
    ap.add_argument("--description", help="what the brick does (required for a bare PEFT adapter)")
    ap.add_argument("--examples", nargs="+", metavar="TEXT",
                    help="example instructions it serves (the retrieval index embeds them with the description)")
    ap.add_argument("--tags", nargs="+", metavar="TAG", help="tags (default for a bare adapter: imported)")
    ap = action("export", cmd_export, "write a brick version as a .tar.gz archive")
    ap.add_argument("name")
    ap.add_argument("out", metavar="OUT")
    ap.add_argument("--version", type=int, default=None)
    # Training and merging live with their implementations.
    for module, fn in (("brickwork.cli.bricks_train", "add_train_parser"), ("brickwork.cli.bricks_merge", "add_merge_parser")):
        try:
            getattr(importlib.import_module(module), fn)(bsub)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
