"""`brickwork update [--dry-run] [--engine E]`: apply pending feedback: update bricks (gated) or grow new ones.

Progress goes to stderr, one line per stage; the final summary (or ``--json``) to stdout. A brick
whose update fails the gate keeps its version, and the summary says why.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from brickwork.cli import add_engine_arg, add_library_arg
from brickwork.cli._output import print_json, print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("update", help="apply pending feedback: update bricks (gated) or grow new ones")
    add_library_arg(p)
    p.add_argument("--dry-run", action="store_true", help="show what would be attempted; train and write nothing")
    add_engine_arg(p, what="engine the gates score candidates on (training stays on transformers + PEFT)")
    p.add_argument("--brick", action="append", metavar="NAME", help="only update these bricks (repeatable)")
    p.add_argument("--no-grow", action="store_true", help="do not grow new bricks from uncovered feedback")
    p.add_argument("--margin", type=float, default=0.01,
                   help="largest accepted drop of a brick's original test accuracy (default: %(default)s = 1 point)")
    p.add_argument("--min-fix-rate", type=float, default=0.8,
                   help="share of held-out corrections an update must fix (default: %(default)s)")
    p.add_argument("--test-items", type=int, default=200, help="original test items checked per brick (default: %(default)s)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: from the data size)")
    p.add_argument("--anchors", type=int, default=0,
                   help="other bricks' requests trained to keep the brick's current answers on them "
                        "(default: %(default)s; measured in docs/operations.md)")
    p.add_argument("--min-examples", type=int, default=16,
                   help="uncovered examples a cluster needs to become a brick (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from brickwork.bricks.growing import GrowConfig
    from brickwork.bricks.updating import UpdateConfig
    from brickwork.library import Library

    config = UpdateConfig(margin=args.margin, min_fix_rate=args.min_fix_rate, test_items=args.test_items,
                          steps=args.steps, anchors=args.anchors, seed=args.seed)
    grow_config = GrowConfig(min_examples=args.min_examples, steps=args.steps, seed=args.seed)
    report = Library(args.library).update(
        config=config,
        grow_config=grow_config,
        bricks=args.brick,
        grow=not args.no_grow,
        dry_run=args.dry_run,
        engine=args.engine,
        progress=lambda msg: print(msg, file=sys.stderr, flush=True),
        command="brickwork " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "brickwork update",
        train_progress=sys.stderr.isatty(),
    )
    if args.json:
        print_json(report.to_json())
        return 0
    _print_summary(report)
    return 0


def _print_summary(report) -> None:
    plan = report.plan
    if report.dry_run:
        print("dry run: nothing was trained or written")
        if plan.updates:
            rows = [(name, len(cs), len(plan.good.get(name, []))) for name, cs in sorted(plan.updates.items())]
            print_table(rows, ["WOULD UPDATE", "CORRECTIONS", "CONFIRMATIONS"])
        for g in report.grown:
            print(f"would grow {g.name!r} from {g.metrics.get('n_examples')} uncovered examples: {g.description[:80]}")
        if report.waiting:
            print(f"{report.waiting} uncovered example(s) wait for a cluster big enough to grow a brick")
        if not plan.updates and not report.grown:
            print("no pending feedback to apply")
        return
    if report.updates:
        rows = []
        for u in report.updates:
            m = u.metrics
            status = f"v{u.old_version} -> v{u.new_version}" if u.accepted else f"kept v{u.old_version}"
            fix = m.get("fix_rate_heldout", m.get("reliability"))
            rows.append((u.brick, status, m.get("n_fit", "-"), m.get("n_holdout", "-"), _f(fix),
                         f"{_f(m.get('old_test_accuracy'))} -> {_f(m.get('new_test_accuracy'))}"))
        print_table(rows, ["BRICK", "RESULT", "FIT", "HELD OUT", "FIXED", "TEST ACC"])
        for u in report.updates:
            for r in u.reasons:
                print(f"  {u.brick}: {r}")
    for g in report.grown:
        m = g.metrics
        if g.added:
            print(f"grew {g.name} v{g.version}: held-out {_f(m.get('exact_match'))} vs base "
                  f"{_f(m.get('base_exact_match'))}: {g.description[:70]}")
        else:
            print(f"did not grow {g.name}: " + "; ".join(g.reasons))
    if report.waiting:
        print(f"{report.waiting} uncovered example(s) wait for a cluster big enough to grow a brick")
    for eid, reason in plan.skipped:
        print(f"skipped feedback #{eid}: {reason}")
    if not report.updates and not report.grown and not plan.skipped:
        print("no pending feedback to apply")
    print(f"done in {report.seconds:.1f} s")


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"
