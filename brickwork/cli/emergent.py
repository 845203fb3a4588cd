"""`brickwork emergent analyze|build`: the FFN analysis and emergent bricks (a thin shell)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from brickwork.cli import add_library_arg
from brickwork.cli._output import print_json, print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("emergent", help="FFN neuron analysis and emergent bricks")
    esub = p.add_subparsers(dest="emergent_command", metavar="SUBCOMMAND", required=True)

    a = esub.add_parser("analyze", help="reproduce the paper's FFN analysis on a model (JSON, Markdown, PNG)")
    a.add_argument("--model", default=None, help="base model: default, a local HF directory or a hub id")
    a.add_argument("--out", type=Path, default=Path("emergent-analysis"), help="output directory (default: ./emergent-analysis)")
    a.add_argument("--n-select", type=int, default=64, help="train instances per category for selection (default 64)")
    a.add_argument("--n-eval", type=int, default=24, help="test instances per category for the masking matrix (default 24)")
    a.add_argument("--n-sparsity", type=int, default=12, help="test instances per category for the sparsity curve (default 12)")
    a.add_argument("--clusters", type=int, default=16, help="co-activation clusters (default 16)")
    a.add_argument("--batch-size", type=int, default=16)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--threads", type=int, default=None, help="torch threads (1 is fastest on a busy shared machine)")
    a.add_argument("--no-plots", action="store_true")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.add_argument("--json", action="store_true", help="print the findings as JSON")
    a.set_defaults(func=_analyze)

    b = esub.add_parser("build", help="store emergent bricks (category, cluster, resident, skippable layers) from an analysis")
    add_library_arg(b)
    b.add_argument("--from", dest="source", type=Path, default=Path("emergent-analysis"), help="analysis directory (default: ./emergent-analysis)")
    b.add_argument("--fraction", type=float, default=0.5, help="share of each layer's neurons in a category brick (default 0.5)")
    b.add_argument("--skip", type=int, default=4, help="layers in the `emergent-skippable` layer brick (default 4)")
    b.add_argument("--no-clusters", action="store_true", help="only category, resident and layer bricks")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_build)


def _analyze(args: argparse.Namespace) -> int:
    import time

    from brickwork.bricks.emergent.analysis import AnalysisConfig, analyze, write_analysis
    from brickwork.bricks.emergent.report import findings
    from brickwork.models import load_base_model, resolve_base_model

    cfg = AnalysisConfig(
        n_select=args.n_select,
        n_eval=args.n_eval,
        n_sparsity=args.n_sparsity,
        n_clusters=args.clusters,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    _set_threads(args.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    base = resolve_base_model(args.model)
    model, tok = load_base_model(base)
    result = analyze(model, tok, base=base, config=cfg, progress=not args.quiet)
    result.summary["command"] = "brickwork emergent analyze " + " ".join(sys.argv[3:] if sys.argv[1:3] == ["emergent", "analyze"] else [])
    result.summary["timings_s"]["total"] = round(time.perf_counter() - t0, 1)
    result.summary["timings_s"]["cpu_total"] = round(time.process_time() - c0, 1)  # all threads of this process
    out = write_analysis(result, args.out, plots=not args.no_plots)
    f = findings(result.summary)
    if args.json:
        print_json({"out": str(out), "findings": f, "timings_s": result.summary["timings_s"]})
    else:
        for k, v in f.items():
            print(f"{k}: {v}")
        print(f"wrote {out}/analysis.json, report.md and plots in {result.summary['timings_s']['total']:.0f} s")
    return 0


def _build(args: argparse.Namespace) -> int:
    from brickwork.bricks import BrickStore
    from brickwork.bricks.emergent.build import BuildConfig, build_bricks

    store = BrickStore(args.library)
    bricks = build_bricks(
        args.source,
        store,
        config=BuildConfig(fraction=args.fraction, n_skip=args.skip, clusters=not args.no_clusters),
        command="brickwork emergent build " + " ".join(sys.argv[3:]),
    )
    if args.json:
        print_json([{"name": b.name, "version": b.version, "tags": b.manifest.tags, "metrics": b.manifest.metrics} for b in bricks])
    else:
        print_table(
            [(b.name, b.version, b.manifest.metrics.get("n_neurons", "-"), b.manifest.metrics.get("n_layers", "-"), b.manifest.description[:60]) for b in bricks],
            ["NAME", "VERSION", "NEURONS", "LAYERS", "DESCRIPTION"],
        )
    return 0


def _set_threads(n: int | None) -> None:
    if n is None:
        return
    from brickwork.errors import ConfigError

    if n < 1:
        raise ConfigError(f"`--threads` should be positive, got {n}.")
    import torch

    torch.set_num_threads(n)
