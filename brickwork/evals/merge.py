"""merge: how much of each source brick survives a merge, per method (retention table).

For each pair of starter bricks and each method (cat, linear, ties, dare_ties, dare_linear, svd),
the pair is merged with weights 1:1 and the merged brick is scored on each source's test items (a
seeded sample, the prompts the starter bricks are scored with) next to the source brick itself and
the base model. Retention = merged accuracy / source accuracy. Everything runs in a scratch library
under ``--out`` (the bricks come from ``--library`` when it has them, else from the prebuilt
starter set); the user's library is never changed.

    brickwork eval merge [--pairs english_plural+sentence_negation ...] [--items 50] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: the pairs the README's merge table reports (sources trained with anchors)
DEFAULT_PAIRS = (
    "english_plural+sentence_negation",
    "sentiment_binary+sms_spam",
    "country_region+language_id",
    "number_to_words+date_reformat",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from brickwork.bricks.merging import METHODS

    p.add_argument("--pairs", action="append", metavar="A+B", help=f"brick pairs (default: {' '.join(DEFAULT_PAIRS)})")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods (default: all)")
    p.add_argument("--items", type=int, default=50, help="test items per source brick (seeded sample; default: %(default)s)")
    p.add_argument("--weights", default="1,1", help="the two sources' weights (default: %(default)s)")
    p.add_argument("--density", type=float, default=0.5, help="density for ties/dare_* (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    from brickwork.errors import ConfigError

    pairs = [tuple(p.split("+")) for p in (args.pairs or DEFAULT_PAIRS)]
    if any(len(p) != 2 for p in pairs):
        raise ConfigError("--pairs takes A+B (two brick names)")
    try:
        weights = tuple(float(w) for w in args.weights.split(","))
    except ValueError:
        raise ConfigError(f"--weights takes two numbers, e.g. 1,1; got {args.weights!r}") from None
    if len(weights) != 2:
        raise ConfigError(f"--weights takes two numbers, e.g. 1,1; got {args.weights!r}")
    out = Path(args.out)
    report = run(pairs, methods=args.methods.split(","), items=args.items, weights=weights, density=args.density,
                 seed=args.seed, library=args.library, out=out)
    write_report(out, "merge", report, markdown(report))
    return 0


def run(pairs: Sequence[tuple[str, str]], *, methods: Sequence[str], items: int, weights: tuple[float, float],
        density: float, seed: int, library: str | None, out: Path) -> dict[str, Any]:
    from brickwork.bricks.lineage import BaseRunner, test_items_by_task
    from brickwork.bricks.merging import MergeConfig, MergeSource, merge_bricks, method_spec

    for m in methods:
        method_spec(m)
    t0 = time.perf_counter()
    names = sorted({n for p in pairs for n in p})
    lib = scratch_library(library, names, out / "library")
    runner = BaseRunner(lib)
    say(f"[merge] {len(pairs)} pairs x {len(methods)} methods, {items} test items per source")
    sources: dict[str, dict[str, Any]] = {}
    for n in names:
        brick = lib.get(n)
        its = [it for v in test_items_by_task(brick.manifest, brick.path, n=items, seed=seed).values() for it in v]
        src, base = runner.score(brick.path, its), runner.score(None, its)
        sources[n] = {"items": its, "accuracy": src.accuracy, "base_accuracy": base.accuracy, "version": brick.version}
        say(f"[merge] source {n}: {src.accuracy:.3f} (base model {base.accuracy:.3f}) on {len(its)} items")
    rows = []
    for a, b in pairs:
        for method in methods:
            t = time.perf_counter()
            res = merge_bricks(lib, "merged", [MergeSource(name=a, weight=weights[0]), MergeSource(name=b, weight=weights[1])],
                               config=MergeConfig(method=method, density=density, seed=seed), measure=False, add=False,
                               runner=runner)
            try:
                row: dict[str, Any] = {"pair": f"{a}+{b}", "method": method, "rank": res.rank, "merged_rank": res.merged_rank}
                for side, n in (("a", a), ("b", b)):
                    acc = runner.score(res.adapter_dir, sources[n]["items"]).accuracy
                    src = sources[n]["accuracy"]
                    row[side] = {"brick": n, "n": len(sources[n]["items"]), "source": round(src, 4),
                                 "merged": round(acc, 4), "base": round(sources[n]["base_accuracy"], 4),
                                 "retention": round(acc / src, 4) if src else None}
                rets = [row[s]["retention"] for s in ("a", "b") if row[s]["retention"] is not None]
                row["mean_retention"] = round(sum(rets) / len(rets), 4) if rets else None
                row["seconds"] = round(time.perf_counter() - t, 1)
                rows.append(row)
                say(f"[merge] {a}+{b} {method}: retention {row['a']['retention']} / {row['b']['retention']} "
                    f"(rank {res.rank}, {row['seconds']} s)")
            finally:
                if res.adapter_dir is not None:
                    shutil.rmtree(res.adapter_dir.parent, ignore_errors=True)
    by_method = aggregate(rows, methods)
    return {
        "suite": "merge",
        "config": {"pairs": [f"{a}+{b}" for a, b in pairs], "methods": list(methods), "items": items,
                   "weights": list(weights), "density": density, "seed": seed},
        "sources": {n: {k: v for k, v in s.items() if k != "items"} | {"n": len(s["items"])} for n, s in sources.items()},
        "rows": rows,
        "by_method": by_method,
        # judged on the capped mean: a merged brick beating its source on a small sample is noise, not credit
        "target": {"cat_mean_retention_at_least": 0.95,
                   "met": (by_method.get("cat", {}).get("mean_retention_capped") or 0) >= 0.95},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def aggregate(rows: list[dict[str, Any]], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per method: mean retention over every source, the same with each source capped at 1, the worst source."""
    out = {}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        rets = [r[s]["retention"] for r in mine for s in ("a", "b") if r[s]["retention"] is not None]
        out[method] = {"mean_retention": round(sum(rets) / len(rets), 4) if rets else None,
                       "mean_retention_capped": round(sum(min(1.0, x) for x in rets) / len(rets), 4) if rets else None,
                       "worst_source_retention": round(min(rets), 4) if rets else None}
    return out


def markdown(r: dict[str, Any]) -> str:
    pairs = r["config"]["pairs"]
    lines = [
        "# merge: retention per method",
        "",
        f"Weights {r['config']['weights']}, {r['config']['items']} seeded test items per source brick "
        f"(density {r['config']['density']} for ties/dare). Retention = merged accuracy / source accuracy "
        "on the source's own test items; each cell is `source A / source B`.",
        "",
        "| method | " + " | ".join(pairs) + " | mean | mean, each source capped at 1 | worst source |",
        "|---|" + "---|" * (len(pairs) + 3),
    ]
    for method, agg in r["by_method"].items():
        cells = []
        for p in pairs:
            row = next((x for x in r["rows"] if x["pair"] == p and x["method"] == method), None)
            cells.append("-" if row is None else f"{_f(row['a']['retention'])} / {_f(row['b']['retention'])}")
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {_f(agg['mean_retention'])} | {_f(agg.get('mean_retention_capped'))} "
                     f"| {_f(agg['worst_source_retention'])} |")
    lines += ["", "Accuracies (source brick, base model, then merged per method):", "",
              "| brick | n | source | base | " + " | ".join(r["by_method"]) + " |",
              "|---|---|---|---|" + "---|" * len(r["by_method"])]
    for name, s in r["sources"].items():
        merged = []
        for method in r["by_method"]:
            vals = [x[side]["merged"] for x in r["rows"] if x["method"] == method for side in ("a", "b") if x[side]["brick"] == name]
            merged.append(_f(vals[0]) if vals else "-")
        lines.append(f"| {name} | {s['n']} | {_f(s['accuracy'])} | {_f(s['base_accuracy'])} | " + " | ".join(merged) + " |")
    lines += ["", f"`cat` mean retention (capped) >= 0.95: {'met' if r['target']['met'] else 'NOT met'}. Total {r['seconds']} s.", ""]
    return "\n".join(lines)


# -- shared by the merge, update and grow suites ---------------------------------------------
def say(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


def scratch_library(library: str | None, names: Sequence[str], root: Path, *, exclude: Sequence[str] = ()) -> Any:
    """A fresh library at `root` with the active version of each brick in `names` (minus `exclude`):
    copied from `library` when it has them, else installed from the prebuilt starter set."""
    from brickwork.bricks.store import BrickStore, default_library

    if root.exists():
        shutil.rmtree(root)
    lib = BrickStore(root)
    src_root = Path(library).expanduser() if library else default_library()
    src = BrickStore(src_root) if (src_root / "library.json").is_file() else None
    missing = []
    for n in names:
        if n in exclude:
            continue
        if src is not None and n in src:
            b = src.get(n)
            lib.add(b.path, b.manifest)
        else:
            missing.append(n)
    if missing:
        from brickwork.bricks.library_build import install_prebuilt

        install_prebuilt(lib, missing, progress=False)
    return lib


def write_report(out: Path, suite: str, report: dict[str, Any], md: str) -> None:
    from brickwork import _atomic

    out.mkdir(parents=True, exist_ok=True)
    _atomic.write_text(out / f"{suite}.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    _atomic.write_text(out / f"{suite}.md", md)
    print(md)
    say(f"[{suite}] wrote {out / (suite + '.json')} and {out / (suite + '.md')}")
