"""`brickwork bricks merge NEW --from A:W --from B:W --method ...`: a new brick from existing ones."""

from __future__ import annotations

import argparse
import shlex
import sys

from brickwork.cli import add_library_arg
from brickwork.cli._output import print_json, print_table


def cmd_merge(args: argparse.Namespace) -> int:
    from brickwork.bricks.merging import MergeConfig, MergeSource, merge_bricks
    from brickwork.cli.bricks import open_store, sync_index

    sources = [MergeSource.parse(s) for s in args.sources]
    config = MergeConfig(method=args.method, density=args.density, svd_rank=args.svd_rank, seed=args.seed)
    store = open_store(args)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if not args.quiet else None
    result = merge_bricks(
        store,
        args.name,
        sources,
        config=config,
        description=args.description,
        measure=not args.no_eval,
        eval_items=args.eval_items,
        command="brickwork " + shlex.join(sys.argv[1:]) if sys.argv[1:] else None,
        progress=say,
    )
    sync_index(store)
    brick = result.brick
    assert brick is not None  # add=True always returns the stored brick
    if args.json:
        print_json(
            {
                "name": brick.name,
                "version": brick.version,
                "method": result.method,
                "rank": result.rank,
                "merged_rank": result.merged_rank,
                "parents": brick.manifest.provenance["parents"],
                "retention": [r.to_json() for r in result.retention],
                "mean_retention": result.mean_retention(),
                "seconds": round(result.seconds, 2),
            }
        )
        return 0
    pad = f" (padded from {result.merged_rank})" if result.rank != result.merged_rank else ""
    print(f"merged into {brick.name} v{brick.version}: method {result.method}, rank {result.rank}{pad}, "
          f"{result.seconds:.1f} s")
    if result.retention:
        rows = [(r.source, r.task, r.n, f"{r.source_accuracy:.3f}", f"{r.merged_accuracy:.3f}",
                 "-" if r.retention is None else f"{r.retention:.3f}") for r in result.retention]
        print_table(rows, ["SOURCE", "TASK", "N", "SOURCE ACC", "MERGED ACC", "RETENTION"])
        mean = result.mean_retention()
        if mean is not None:
            print(f"mean retention {mean:.3f}")
    elif not args.no_eval:
        print("retention not measured: the sources have no known test items")
    return 0


def add_merge_parser(bsub: argparse._SubParsersAction) -> None:
    """Register `bricks merge` on the `bricks` sub-command parser (called by brickwork.cli.bricks)."""
    from brickwork.bricks.merging import METHODS

    ap = bsub.add_parser(
        "merge",
        help="merge bricks into a new brick (cat|linear|ties|dare_ties|dare_linear|svd)",
        description="Merge bricks with PEFT's add_weighted_adapter. `cat` is exact (rank = sum of ranks, "
        "padded to a vLLM rank); the others are lossy. Retention on each source's test items is measured "
        "and recorded unless --no-eval.",
    )
    add_library_arg(ap)
    ap.add_argument("name", metavar="NEW", help="name of the merged brick (a new version if it exists)")
    ap.add_argument("--from", dest="sources", action="append", required=True, metavar="NAME[@V][:WEIGHT]",
                    help="a source brick and its weight (default 1.0); repeat for each source")
    ap.add_argument("--method", choices=list(METHODS), default="cat", help="merge method (default: %(default)s)")
    ap.add_argument("--density", type=float, default=0.5, help="kept fraction for ties/dare_* (default: %(default)s)")
    ap.add_argument("--svd-rank", type=int, default=None, help="rank for svd (default: the largest source rank)")
    ap.add_argument("--seed", type=int, default=0, help="seed for DARE's random drop (default: %(default)s)")
    ap.add_argument("--description", default=None, help="description (default: the sources' combined)")
    ap.add_argument("--eval-items", type=int, default=100, help="test items per source for retention (default: %(default)s)")
    ap.add_argument("--no-eval", action="store_true", help="skip the retention measurement")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.set_defaults(func=cmd_merge)
