"""`brickwork library build`: install the starter bricks (prebuilt) or train them again."""

from __future__ import annotations

import argparse
import os
import sys
import time

from brickwork.cli import add_library_arg
from brickwork.cli._output import print_json, print_table

# A CPU shared with other work: OpenMP threads that spin while waiting make torch many times
# slower (measured: 17.8 vs 2.9 s/step). Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _fmt(x: object, spec: str = ".3f") -> str:
    return format(x, spec) if isinstance(x, int | float) else "-"


def cmd_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from brickwork.bricks import BrickStore
    from brickwork.bricks.library_build import install_prebuilt, retrain
    from brickwork.errors import ConfigError

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    if not args.retrain and (args.steps or args.out_starter):
        raise ConfigError("--steps and --out-starter only apply with --retrain")
    if args.anchors < 0:
        raise ConfigError(f"--anchors should be 0 or more, got {args.anchors}")
    store = BrickStore(args.library)
    t0 = time.perf_counter()
    progress = not args.json and sys.stderr.isatty()
    if args.retrain:
        say = None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
        rows = retrain(
            store,
            tasks,
            steps=args.steps,
            seed=args.seed,
            eval_cap=args.eval_cap or None,
            anchors=args.anchors,
            partners=args.partner_anchors,
            export_to=Path(args.out_starter) if args.out_starter else None,
            progress=progress,
            say=say,
        )
    else:
        rows = install_prebuilt(store, tasks, progress=progress)
    try:  # keep the retrieval index in line with the store, where retrieval is installed
        from brickwork.cli.bricks import sync_index

        sync_index(store)
    except ImportError:
        pass
    if args.json:
        print_json({"library": str(store.root), "bricks": [r.to_json() for r in rows], "seconds": round(time.perf_counter() - t0, 2)})
        return 0
    table = [
        (r.task, r.status, r.version, _fmt(r.exact_match), _fmt(r.base_exact_match), r.n_eval or "-",
         _fmt(r.seconds, ".0f"), _fmt(r.seconds_per_step, ".2f"))
        for r in rows
    ]
    print_table(table, ["BRICK", "STATUS", "VERSION", "HELD-OUT EM", "BASE EM", "N", "TRAIN S", "S/STEP"])
    print(f"{len(rows)} starter bricks in {store.root} ({time.perf_counter() - t0:.1f} s)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from brickwork.bricks.library_build import EVAL_CAP, STARTER_ANCHORS, STARTER_SEED

    p = sub.add_parser("library", help="build the starter library")
    lsub = p.add_subparsers(dest="library_command", metavar="ACTION", required=True)
    b = lsub.add_parser(
        "build",
        help="install the 17 starter bricks (prebuilt; --retrain trains them from the bundled data)",
        description="Install the prebuilt starter bricks (one per bundled task) into the library, validated. "
        "With --retrain, train them from the bundled train splits instead (minutes per brick) and score "
        "them and the base model on a seeded sample of the test split.",
    )
    add_library_arg(b)
    b.add_argument("--retrain", action="store_true", help="train the bricks instead of installing the prebuilt ones")
    b.add_argument("--tasks", metavar="A,B", help="only these tasks (comma-separated task ids)")
    b.add_argument("--steps", type=int, default=None, help="training steps per brick (--retrain; default: the recipe's)")
    b.add_argument("--seed", type=int, default=STARTER_SEED, help="training and sampling seed (default: %(default)s)")
    b.add_argument("--eval-cap", type=int, default=EVAL_CAP, metavar="N",
                   help="test items scored per brick, 0 for all (default: %(default)s)")
    b.add_argument("--anchors", type=int, default=STARTER_ANCHORS, metavar="N",
                   help="other tasks' requests trained to keep the base model's answers (--retrain; locality; "
                        "default: %(default)s, 0 for none)")
    b.add_argument("--partner-anchors", action="store_true",
                   help="also train each anchor with its own task's brick active, keeping that brick's answers "
                        "(--retrain; cleaner merges and composed steps)")
    b.add_argument("--out-starter", metavar="DIR", help=argparse.SUPPRESS)  # maintainers: refresh data/starter
    b.add_argument("--json", action="store_true", help="print JSON")
    b.set_defaults(func=cmd_build)
