"""`brickwork bricks train NAME --data FILE.jsonl --description TEXT`: grow a brick from examples.

The data file holds one JSON object per line, ``{"input": ..., "output": ...}`` (optionally
``"answers": [...]``, other accepted outputs). A seeded part is held out and scored at the end;
both parts are stored with the brick under ``data/`` so later updates can replay them.

With ``--auto [--budget MIN]`` a recipe search (`brickwork.bricks.recipe_search`) picks rank,
LoRA layers and modules, steps and learning rate on a validation split carved from the training
part (never the held-out part), within the budget; the winner is the brick, and the search is in
``provenance.recipe_search``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

from brickwork.cli import add_library_arg
from brickwork.cli._output import print_json

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see brickwork/cli/library.py

MIN_EXAMPLES = 4
HELDOUT_FRACTION = 0.1
HELDOUT_CAP = 200
DEFAULT_ANCHORS = 64  # bricks.anchors: locality, clean merges
DEFAULT_BUDGET_MIN = 30.0  # --auto: minutes for the whole search
AUTO_MAX_STEPS = 240  # --auto without --steps: the last round's steps


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Parse and check a training data file; any problem is one ConfigError naming the line."""
    from brickwork.errors import ConfigError

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"data file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read data file {path}: {exc}") from exc
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(d, dict) or not isinstance(d.get("input"), str) or not isinstance(d.get("output"), str):
            raise ConfigError(f'{path}:{n}: expected an object with string "input" and "output", got {line.strip()[:80]!r}')
        if not d["input"].strip() or not d["output"].strip():
            raise ConfigError(f'{path}:{n}: "input" and "output" should be non-empty')
        answers = d.get("answers") or []
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise ConfigError(f'{path}:{n}: "answers" should be a list of strings, got {answers!r}')
        rows.append({"input": d["input"], "output": d["output"], "answers": answers})
    if len(rows) < MIN_EXAMPLES:
        raise ConfigError(f"{path}: {len(rows)} examples; a brick needs at least {MIN_EXAMPLES}")
    return rows


def split_heldout(rows: list[dict[str, Any]], *, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held-out): a seeded ~10% (at least 1, at most 200) is held out."""
    n_held = min(HELDOUT_CAP, max(1, round(len(rows) * HELDOUT_FRACTION)))
    held = set(random.Random(seed).sample(range(len(rows)), n_held))
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def _jsonl(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        d = {"input": r["input"], "output": r["output"]}
        if r["answers"]:
            d["answers"] = r["answers"]
        out.append(json.dumps(d, ensure_ascii=False) + "\n")
    return "".join(out)


def _command(args: argparse.Namespace) -> str:
    """The command that rebuilds this brick (from the parsed arguments, not sys.argv)."""
    import shlex

    parts = ["brickwork", "bricks", "train", args.name, "--data", args.data, "--description", args.description]
    if args.examples:
        parts += ["--examples", *args.examples]
    if args.steps:
        parts += ["--steps", str(args.steps)]
    if args.seed:
        parts += ["--seed", str(args.seed)]
    if args.anchors != DEFAULT_ANCHORS:
        parts += ["--anchors", str(args.anchors)]
    if args.partner_anchors:
        parts += ["--partner-anchors"]
    if args.auto:
        parts += ["--auto", "--budget", f"{args.budget:g}"]
    return shlex.join(parts)


def _examples(rows: list[dict[str, Any]], split: str) -> list[Any]:
    from brickwork.tasks import Example

    return [Example(input=r["input"], output=r["output"], split=split, answers=tuple(r["answers"])) for r in rows]


def _search(args: argparse.Namespace, store: Any, pairs: list[tuple], val_rows: list[dict[str, Any]],
            config: Any, work: Path) -> Any:
    """The recipe search over `pairs` (fit rows + anchors), scored on the validation rows."""
    from brickwork.bricks.recipe_search import DEFAULT_GRID, search, training_trial

    val = [(e.input, e) for e in _examples(val_rows, "validation")]
    trial = training_trial(store.base, pairs, val, config, work)
    return search(DEFAULT_GRID, trial, max_steps=args.steps or AUTO_MAX_STEPS, budget_s=args.budget * 60,
                  n_validation=len(val), progress=not args.json and sys.stderr.isatty())


def cmd_train(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from brickwork.bricks import BrickStore, check_name
    from brickwork.bricks.anchors import partner_versions
    from brickwork.bricks.recipe_search import carve_validation, chosen_config
    from brickwork.bricks.starter import N_ROUTING_INPUTS
    from brickwork.bricks.training import TrainConfig, styled_pairs, train_brick
    from brickwork.errors import ConfigError

    check_name(args.name)
    if args.anchors < 0:
        raise ConfigError(f"--anchors should be 0 or more, got {args.anchors}")
    if not args.description.strip():
        raise ConfigError("--description should not be empty")
    if args.budget is not None and not args.auto:
        raise ConfigError("--budget only applies with --auto")
    args.budget = DEFAULT_BUDGET_MIN if args.budget is None else args.budget
    if args.auto and args.budget <= 0:
        raise ConfigError(f"--budget should be a positive number of minutes, got {args.budget:g}")
    rows = read_jsonl(Path(args.data))
    train_rows, held_rows = split_heldout(rows, seed=args.seed)
    # --auto: the recipe is chosen on a validation part of the *training* rows, never the held-out ones
    fit_rows, val_rows = carve_validation(train_rows, seed=args.seed) if args.auto else (train_rows, [])
    config = TrainConfig(seed=args.seed, **({"steps": args.steps} if args.steps else {}))
    desc = args.description.strip()
    pairs = styled_pairs([(r["input"], r["output"]) for r in fit_rows], [desc], seed=args.seed)
    ex = _examples(held_rows, "heldout")
    examples = args.examples or [r["input"] for r in train_rows[:24]]
    listed = {e.strip() for e in examples}
    # more training inputs teach the router's classifier what this brick's inputs look like
    routing = list(dict.fromkeys(r["input"] for r in train_rows if r["input"].strip() not in listed))[:N_ROUTING_INPUTS]
    store = BrickStore(args.library)
    anchors: list[tuple] = []
    if args.anchors > 0 and any(n != args.name for n in store.names()):
        from brickwork.bricks.anchors import library_anchors
        from brickwork.bricks.lineage import BaseRunner

        with BaseRunner(store) as runner:  # closed before training, which loads its own copy
            anchors = library_anchors(store, runner, n=args.anchors, seed=args.seed, skip=args.name,
                                      exclude=[t for t, _ in pairs], partners=args.partner_anchors)
    files = {"data/train.jsonl": _jsonl(fit_rows), "data/heldout.jsonl": _jsonl(held_rows)}
    work = Path(tempfile.mkdtemp(prefix=f"brickwork-search-{args.name}-"))
    try:
        trained, searched = None, {}
        if args.auto:
            result = _search(args, store, pairs + anchors, val_rows, config, work)
            config, trained = chosen_config(result, config), result.best.artifact[1]
            searched = {"recipe_search": result.to_json()}
            files["data/validation.jsonl"] = _jsonl(val_rows)
        brick = train_brick(
            store,
            args.name,
            train_pairs=pairs + anchors,
            heldout=[(e.input, e) for e in ex],
            extra_heldout={"instructed": [(f"{desc}\n{e.input}", e) for e in ex]},
            description=desc,
            examples=list(examples),
            routing_samples=routing,
            tags=["trained"],
            config=config,
            trained=trained,
            provenance={"command": _command(args), "data_file": str(Path(args.data).name), "n_examples": len(rows),
                        "n_anchors": len(anchors), "n_partner_anchors": sum(len(a) == 3 for a in anchors),
                        **({"partners": partner_versions(anchors)} if args.partner_anchors else {}), **searched},
            data_files=files,
            progress=not args.json and sys.stderr.isatty(),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    try:
        from brickwork.cli.bricks import sync_index

        sync_index(store)
    except ImportError:
        pass
    m = brick.manifest
    chosen = searched["recipe_search"]["chosen"] if searched else None
    if args.json:
        print_json({"name": m.name, "version": m.version, "metrics": m.metrics, "seconds": m.provenance.get("seconds"),
                    "seconds_per_step": m.provenance.get("seconds_per_step"), "path": str(brick.path),
                    **({"recipe": chosen} if chosen else {})})
    else:
        met = m.metrics
        if chosen:
            print(f"recipe search: {chosen['recipe']}, {chosen['steps']} steps (validation exact match "
                  f"{chosen['validation_exact_match']:.3f} on {result.n_validation}; {len(result.trials)} trials, "
                  f"{result.seconds / 60:.1f} min)")
        print(f"trained {m.name} v{m.version}: held-out exact match {met['exact_match']:.3f} "
              f"(base {met['base_exact_match']:.3f}, n={met['n_eval']}), {m.provenance.get('seconds', 0):.0f} s")
    return 0


def add_train_parser(bsub: argparse._SubParsersAction) -> None:
    """Register `bricks train` on the `bricks` sub-command parser (called by brickwork.cli.bricks)."""
    ap = bsub.add_parser(
        "train",
        help="train a new brick (or a new version) from a JSONL file of {input, output}",
        description="Train a LoRA brick on JSON lines of {\"input\", \"output\"}. A seeded ~10%% is held out "
        "and scored (the base model too); the brick is validated and added as the next version of NAME.",
    )
    add_library_arg(ap)
    ap.add_argument("name", metavar="NAME")
    ap.add_argument("--data", required=True, metavar="FILE.jsonl", help='training data: one {"input", "output"} per line')
    ap.add_argument("--description", required=True, help="what the brick does (embedded by the retrieval index)")
    ap.add_argument("--examples", nargs="+", metavar="TEXT", help="example instructions it serves (default: 24 training inputs); up to 72 training inputs "
                    "they do not list become routing samples (the router's classifier learns from them)")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: 120)")
    ap.add_argument("--anchors", type=int, default=DEFAULT_ANCHORS, metavar="N",
                    help="the library's other bricks' requests, trained to keep the base model's answers, so the "
                         "brick leaves other tasks alone and merges cleanly (default: %(default)s, 0 for none)")
    ap.add_argument("--partner-anchors", action="store_true",
                    help="also train each anchor with the brick it belongs to active, keeping that brick's answers, "
                         "so the new brick stays out of its way when the two are merged or composed")
    ap.add_argument("--auto", action="store_true",
                    help="search the recipe (rank, layers, modules, steps, learning rate) on a validation split carved "
                         "from the training part; --steps is then the last round's steps (default: 240)")
    ap.add_argument("--budget", type=float, default=None, metavar="MIN",
                    help=f"minutes for the --auto search (default: {DEFAULT_BUDGET_MIN:g})")
    ap.add_argument("--seed", type=int, default=0, help="seed for the held-out split and training (default: 0)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.set_defaults(func=cmd_train)
