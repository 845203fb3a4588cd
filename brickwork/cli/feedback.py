"""`brickwork feedback`: record good/correction feedback on a run step, or list what is stored.

::

    brickwork feedback RUN_ID --step STEP_ID (--good | --correction TEXT)
    brickwork feedback --list [--json] [--status pending|applied|rejected|skipped] [--brick NAME]

Feedback is read by ``brickwork update`` (which marks what it used). No model is loaded here.
"""

from __future__ import annotations

import argparse

from brickwork.cli import add_library_arg
from brickwork.cli._output import print_json, print_table
from brickwork.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("feedback", help="record good/correction feedback on a run step, or --list it")
    p.add_argument("run_id", nargs="?", metavar="RUN_ID", help="the run (printed by `brickwork run`)")
    add_library_arg(p)
    p.add_argument("--step", metavar="STEP_ID", help="the step (s1, s2, ...)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--good", action="store_true", help="the step's output was right")
    what.add_argument("--correction", metavar="TEXT", help="what the step's output should have been")
    p.add_argument("--list", action="store_true", help="list stored feedback")
    p.add_argument("--status", choices=("pending", "applied", "rejected", "skipped"), help="with --list: only this status")
    p.add_argument("--brick", metavar="NAME", help="with --list: only feedback on steps this brick ran")
    p.add_argument("--json", action="store_true", help="JSON output (one object per event with --list)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from brickwork.bricks.store import default_library

    library = args.library or default_library()
    if args.list:
        if args.run_id or args.step or args.good or args.correction is not None:
            raise ConfigError("--list takes no RUN_ID, --step, --good or --correction")
        return _list(library, args)
    if not args.run_id or not args.step:
        raise ConfigError("give RUN_ID and --step STEP_ID (and --good or --correction TEXT), or --list")
    if not args.good and args.correction is None:
        raise ConfigError("give --good or --correction TEXT")
    from brickwork.orchestrator.runs import load_run, record_feedback

    run = load_run(library, args.run_id)
    event = record_feedback(library, run, args.step, good=args.good, correction=args.correction, base_fingerprint=_fingerprint(library))
    if args.json:
        print_json(event.to_json())
    else:
        what = "good" if event.kind == "good" else f"correction {event.correction!r}"
        bricks = ", ".join(f"{b['name']}@{b['version']}" for b in event.bricks) or "base model"
        print(f"recorded feedback #{event.id}: {what} on {event.run_id} {event.step_id} ({bricks}: {event.output!r})")
    return 0


def _fingerprint(library: object) -> str | None:
    import json
    from pathlib import Path

    p = Path(str(library)).expanduser() / "library.json"
    try:
        return json.loads(p.read_text())["base_model"]["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _list(library: object, args: argparse.Namespace) -> int:
    from brickwork.feedback import FeedbackStore

    events = FeedbackStore(library).list(status=args.status, brick=args.brick)  # type: ignore[arg-type]
    if args.json:
        for e in events:
            print_json(e.to_json())
        return 0
    if not events:
        print("no feedback stored")
        return 0
    rows = [
        (
            e.id,
            e.created_at.replace("+00:00", "Z"),
            e.run_id,
            e.step_id,
            e.kind,
            ",".join(f"{b['name']}@{b['version']}" for b in e.bricks) or "base",
            _short(e.output),
            _short(e.correction or ""),
            e.status,
        )
        for e in events
    ]
    print_table(rows, ["id", "created", "run", "step", "kind", "bricks", "output", "correction", "status"])
    return 0


def _short(text: str, n: int = 30) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"
