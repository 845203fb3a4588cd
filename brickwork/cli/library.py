"""`brickwork library init|build`: create a library for a base model; install or train the starter bricks."""

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


def cmd_init(args: argparse.Namespace) -> int:
    from brickwork.bricks import BrickStore
    from brickwork.bricks.library_build import starter_fits
    from brickwork.models import resolve_base_model

    base = resolve_base_model(args.base_model)
    store = BrickStore(args.library, base=base)
    created = store.init()
    fits, why = starter_fits(store)
    note = "" if fits else (
        f"it starts empty: {why}. Add bricks with `brickwork bricks train` or `brickwork bricks import`; "
        "instructions are planned by the rules planner (or --planner openai)"
    )
    if args.json:
        print_json({"library": str(store.root), "created": created, "base_model": base.to_library_json(),
                    "prompt_format": base.prompts.name, "stop": base.prompts.stop, "starter_bricks": fits,
                    "note": note or None})
        return 0
    verb = "created" if created else "already set up"
    print(f"library {store.root} {verb} for base model {base.id} ({base.fingerprint}, {base.path})")
    print(f"prompts: {base.prompts.name} (end of turn {base.prompts.stop!r})")
    if note:
        print(f"note: {note}", file=sys.stderr)
    else:
        print("next: `brickwork library build` installs the starter bricks")
    return 0


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
    if (args.auto or args.budget is not None) and not (args.retrain and args.auto):
        raise ConfigError("--auto only applies with --retrain, --budget only with --auto")
    store = BrickStore(args.library)
    t0 = time.perf_counter()
    progress = not args.json and sys.stderr.isatty()
    if not args.retrain:
        from brickwork.bricks.library_build import starter_fits

        fits, why = starter_fits(store)
        if not fits:
            msg = f"no starter bricks installed: {why}; `--retrain` trains them for this base from the bundled data"
            if args.json:
                print_json({"library": str(store.root), "bricks": [], "seconds": 0.0, "note": msg})
            else:
                print(f"note: {msg}", file=sys.stderr)
            return 0
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
            auto=args.auto,
            **({"budget_min": args.budget} if args.budget is not None else {}),
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
    from brickwork.models import DEFAULT_BASE_MODEL

    p = sub.add_parser("library", help="create a library for a base model; build the starter library")
    lsub = p.add_subparsers(dest="library_command", metavar="ACTION", required=True)
    i = lsub.add_parser(
        "init",
        help="create a library for a base model (a local Hugging Face directory)",
        description="Create a library for a base model: a local Hugging Face model directory (config.json, "
        "a tokenizer with a chat template, safetensors weights; pickled weights are never loaded) or "
        f"{DEFAULT_BASE_MODEL!r}. The library records it (library.json); every later command on the library "
        "uses it, and every prompt goes through its own chat template.",
    )
    add_library_arg(i)
    i.add_argument("--base-model", required=True, metavar="PATH_OR_ID",
                   help=f"a local model directory, a hub id already in the local cache, or {DEFAULT_BASE_MODEL!r}")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=cmd_init)
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
    b.add_argument("--auto", action="store_true",
                   help="--retrain: search each brick's recipe on validation examples of its train split "
                        "(bricks.recipe_search); --steps is the last round's steps (default: 240)")
    b.add_argument("--budget", type=float, default=None, metavar="MIN", help="minutes per brick for --auto (default: 30)")
    b.add_argument("--out-starter", metavar="DIR", help=argparse.SUPPRESS)  # maintainers: refresh data/starter
    b.add_argument("--json", action="store_true", help="print JSON")
    b.set_defaults(func=cmd_build)
