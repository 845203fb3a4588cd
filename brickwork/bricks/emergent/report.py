"""The analysis report: Markdown with the paper's three findings side by side, and PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from brickwork import _atomic

PAPER = {
    "below_0.2": "~80% of neurons below 0.2 of the normalised indicator",
    "masking": "masking the lowest 70% by activation / 80% by output magnitude: almost no loss increase",
    "diag": "diagonal +112% to +444% (Llama-3-8B), off-diagonal mostly 0-31%",
    "overlap": "0.00-0.04 against 0.05 for random sets",
}


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def _matrix_md(cats: list[str], m: list[list[float]], fmt: Any, corner: str = "zeroed \\ evaluated") -> str:
    head = f"| {corner} | " + " | ".join(cats) + " |\n|---|" + "---|" * len(cats) + "\n"
    rows = [f"| **{c}** | " + " | ".join(fmt(v) for v in row) + " |" for c, row in zip(cats, m, strict=True)]
    return head + "\n".join(rows) + "\n"


def findings(s: dict[str, Any]) -> dict[str, str]:
    """One-line verdicts on the three findings, with numbers (used by the report and the CLI)."""
    sp, ms, ov, fs = s["sparsity"], s["masking_summary"], s["overlap_summary"], s["funcscore"]
    below = sp["fraction_below_0.2"]
    lv = sp["levels"]
    p70 = lv.index(0.7) if 0.7 in lv else 0
    p80 = lv.index(0.8) if 0.8 in lv else -1
    sparse = (
        f"{below['act']:.0%} of neuron activations (|a|) and {below['act_norm']:.0%} of output magnitudes "
        f"(|a|·||W_down col||) fall below 0.2 of the token's maximum; zeroing the lowest {lv[p70]:.0%} by |a| raises "
        f"the loss by {_pct(sp['act']['relative_loss_increase'][p70])}, the lowest {lv[p80]:.0%} by output magnitude by "
        f"{_pct(sp['act_norm']['relative_loss_increase'][p80])}"
    )
    special = (
        f"best-neuron FuncScore per layer averages {fs['best_mean']:.3f} against {fs['best_shuffled_mean']:.3f} with "
        f"shuffled labels (layer mean {fs['mean_mean']:.3f} vs {fs['mean_shuffled_mean']:.3f}, chance = category share)"
    )
    inp = fs.get("input_only")
    if inp:
        special += (
            f"; on the input tokens alone (without the task definition every instance of a task shares) the best neuron "
            f"scores {inp['best_mean']:.3f} vs {inp['best_shuffled_mean']:.3f} shuffled, and {inp['top_set_agreement']:.0%} of "
            "the top-5% sets are the same neurons"
        )
    part = (
        f"zeroing a category's top-5% FuncScore neurons raises its own held-out perplexity by {_pct(ms['diagonal_mean'])} "
        f"on average (median {_pct(ms['diagonal_median'])}, log-mean {_pct(ms['diagonal_geomean'])}) vs "
        f"{_pct(ms['off_diagonal_mean'])} (median {_pct(ms['off_diagonal_median'])}, log-mean {_pct(ms['off_diagonal_geomean'])}) "
        f"on the other categories and {_pct(ms['random_mean'])} (median {_pct(ms['random_median'])}) for a random 5%; "
        f"the diagonal is the row maximum for {sum(ms['diagonal_is_row_max'])}/{len(ms['diagonal_is_row_max'])} categories "
        f"and the column maximum for {sum(ms['diagonal_is_column_max'])}/{len(ms['diagonal_is_column_max'])}; "
        f"top-5% sets overlap {ov['funcscore_off_diagonal_mean']:.3f} on average (max {ov['funcscore_off_diagonal_max']:.3f}) "
        f"against {ov['random']:.3f} for random sets"
    )
    return {"sparse_activation": sparse, "specialisation": special, "partition": part}


def write_report(s: dict[str, Any], out: Path, *, plots: bool = True) -> None:
    out = Path(out)
    cats = s["categories"]
    f = findings(s)
    sp = s["sparsity"]
    lines = [
        f"# Emergent bricks: FFN analysis of `{s['model']['id']}`",
        "",
        f"{s['architecture']['n_layers']} layers x {s['architecture']['intermediate_size']} FFN neurons "
        f"= {s['architecture']['n_neurons']:,} neurons. Selection on the **train** split "
        f"({sum(s['n_instances']['select'].values())} instances), evaluation on the **test** split "
        f"({sum(s['n_instances']['eval'].values())} for masking, {s['n_instances']['sparsity']} for sparsity). "
        "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in s["timings_s"].items()) + ".",
        "",
        "## Findings",
        "",
        f"- **Sparse activation**: {f['sparse_activation']}. (Paper: {PAPER['below_0.2']}; {PAPER['masking']}.)",
        f"- **Functional specialisation**: {f['specialisation']}.",
        f"- **Functional partition**: {f['partition']}. (Paper: {PAPER['diag']}; overlaps {PAPER['overlap']}.)",
        f"- **Resident neurons**: {s['resident']['total']} ({s['resident']['fraction']:.1%}) — {s['resident']['criterion']}.",
        "",
        "## Categories",
        "",
        "| category | tasks | selection | eval | dense ppl (input+answer) | dense ppl (answer) |",
        "|---|---|---|---|---|---|",
    ]
    for c in cats:
        lines.append(
            f"| {c} | {', '.join(s['category_tasks'][c])} | {s['n_instances']['select'][c]} | {s['n_instances']['eval'][c]} "
            f"| {s['ppl_dense'][c]:.2f} | {s['ppl_dense_answer'][c]:.2f} |"
        )
    lines += [
        "",
        "## Masking matrix (relative perplexity increase, input + answer tokens)",
        "",
        _matrix_md(cats, s["masking_ppl_increase"], _pct),
        "Random 5% per layer: " + ", ".join(f"{c} {_pct(v)}" for c, v in s["masking_random"].items()) + ".",
        "",
        "### Answer tokens only",
        "",
        _matrix_md(cats, s["masking_ppl_increase_answer"], _pct),
        "Random 5%: " + ", ".join(f"{c} {_pct(v)}" for c, v in s["masking_random_answer"].items()) + ".",
        "",
        "## Overlap of top-5% sets (|A ∩ B| / |A|)",
        "",
        _matrix_md(cats, s["overlap"], lambda v: f"{v:.3f}", corner="A \\ B"),
        f"Random sets: {s['overlap_random']:.3f}. Sets chosen by mean activation instead of FuncScore overlap "
        f"{s['overlap_summary']['activation_off_diagonal_mean']:.3f} off the diagonal "
        f"(always-on neurons dominate them).",
        "",
        "## Sparsity",
        "",
        "| lowest p% zeroed | loss increase (by |a|) | loss increase (by |a|·norm) |",
        "|---|---|---|",
    ]
    for i, p in enumerate(sp["levels"]):
        lines.append(f"| {p:.0%} | {_pct(sp['act']['relative_loss_increase'][i])} | {_pct(sp['act_norm']['relative_loss_increase'][i])} |")
    lines += [
        "",
        f"Dense loss {sp['loss_dense']:.3f} nats/token.",
        "",
        "## FuncScore by layer",
        "",
        "| layer | best | best (shuffled) | mean | mean (shuffled) |",
        "|---|---|---|---|---|",
    ]
    for row in s["funcscore"]["per_layer"]:
        lines.append(f"| {row['layer']} | {row['best']:.3f} | {row['best_shuffled']:.3f} | {row['mean']:.3f} | {row['mean_shuffled']:.3f} |")
    lines += [
        "",
        "## Co-activation clusters",
        "",
        "| cluster | neurons | resident | most active on |",
        "|---|---|---|---|",
    ]
    for c in s["clusters"]:
        tops = ", ".join(f"{t['task']} ({t['z']:+.2f})" for t in c["top_tasks"])
        lines.append(f"| {c['id']} | {c['size']} | {c.get('resident', 0)} | {tops} |")
    lines += [
        "",
        "## Layer influence (1 - cos(input, output)); lowest first: " + ", ".join(map(str, s["layer_importance"]["skip_order"][:8])),
        "",
    ]
    if plots:
        lines += ["![masking](masking.png) ![overlap](overlap.png)", "", "![sparsity](sparsity.png) ![funcscore](funcscore.png)", ""]
        write_plots(s, out)
    _atomic.write_text(out / "report.md", "\n".join(lines))


def write_plots(s: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cats = s["categories"]

    def heat(name: str, m: list[list[float]], title: str, fmt: str) -> None:
        fig, ax = plt.subplots(figsize=(6.4, 5.2))
        a = np.array(m)
        # log colour scale for the masking matrix: one exploding category would flatten the rest
        im = ax.imshow(np.log10(1 + np.clip(a, -0.99, None)) if "mask" in name else a, cmap="viridis")
        ax.set_xticks(range(len(cats)), cats, rotation=40, ha="right")
        ax.set_yticks(range(len(cats)), cats)
        ax.set_xlabel("evaluated on" if "mask" in name else "category B")
        ax.set_ylabel("top-5% zeroed" if "mask" in name else "category A")
        for i in range(len(cats)):
            for j in range(len(cats)):
                ax.text(j, i, format(a[i, j], fmt), ha="center", va="center", color="w", fontsize=8)
        ax.set_title(title)
        fig.colorbar(im, ax=ax, label="log10(ppl ratio)" if "mask" in name else None)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=80)
        plt.close(fig)

    heat("masking", s["masking_ppl_increase"], "relative perplexity increase", ".0%")
    heat("overlap", s["overlap"], f"top-5% overlap (random {s['overlap_random']:.3f})", ".3f")

    sp = s["sparsity"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    lv = [p * 100 for p in sp["levels"]]
    a1.plot(lv, np.array(sp["act"]["relative_loss_increase"]) * 100, "o-", label="by |a|")
    a1.plot(lv, np.array(sp["act_norm"]["relative_loss_increase"]) * 100, "s-", label="by |a|·||W_down col||")
    a1.set_xlabel("lowest p% of neurons zeroed per token and layer")
    a1.set_ylabel("loss increase (%)")
    a1.legend()
    a1.set_title("loss vs sparsity")
    edges = np.array(sp["histogram"]["bin_edges"])
    a2.plot(edges[1:], np.cumsum(sp["histogram"]["act"]), label="|a|")
    a2.plot(edges[1:], np.cumsum(sp["histogram"]["act_norm"]), label="|a|·norm")
    a2.axvline(0.2, color="gray", ls=":")
    a2.set_xlabel("normalised activation (|a| / max per token)")
    a2.set_ylabel("cumulative fraction of neurons")
    a2.legend()
    a2.set_title("distribution")
    fig.tight_layout()
    fig.savefig(out / "sparsity.png", dpi=80)
    plt.close(fig)

    rows = s["funcscore"]["per_layer"]
    fig, ax = plt.subplots(figsize=(7, 4))
    x = [r["layer"] for r in rows]
    ax.plot(x, [r["best"] for r in rows], "o-", label="best neuron")
    ax.plot(x, [r["best_shuffled"] for r in rows], "o--", label="best (shuffled labels)")
    ax.plot(x, [r["mean"] for r in rows], "s-", label="layer mean")
    ax.plot(x, [r["mean_shuffled"] for r in rows], "s--", label="mean (shuffled)")
    ax.set_xlabel("layer")
    ax.set_ylabel("FuncScore (average precision)")
    ax.legend()
    ax.set_title("functional specialisation by layer")
    fig.tight_layout()
    fig.savefig(out / "funcscore.png", dpi=80)
    plt.close(fig)
