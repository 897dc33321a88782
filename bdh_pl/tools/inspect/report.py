"""The charts and the README of `inspect`, drawn from its report (inspect.json's dict); the
README's tables are in tables.py."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.ticker import FuncFormatter

from bdh_pl.analysis import powerlaw
from bdh_pl.analysis.graph import LOUVAIN_SEEDS, PAPER_MEAN_DEGREE
from bdh_pl.analysis.verdict import RULE
from bdh_pl.charts import (
    finish_axes,
    legend_outside,
    log_axis,
    model_color,
    new_figure,
    save_figure,
    suptitle,
)
from bdh_pl.tools.inspect.measures import claim_verdict
from bdh_pl.tools.inspect.tables import (
    dense_cell,
    density_graph_tables,
    equal_size_table,
    graph_tables,
    paper_protocol,
    population_note,
    selectivity_curve_table,
)

VARIANT_STYLE = {  # graph variants: colour, line style
    "trained": ("C0", "-"),
    "init": ("C1", "--"),
    "erdos-renyi": ("C7", ":"),
    "low-rank": ("C5", (0, (5, 1, 1, 1))),
    "factors shuffled": ("C2", "-."),
    "shuffled": ("C7", ":"),  # G's entries permuted: the control of reports before the protocol
}


def count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def show(text: str) -> str:
    """Text of a context as one printable line: line breaks as a visible mark."""
    return text.replace("\r", "").replace("\n", "↵").replace("\t", "→")


# --- charts --------------------------------------------------------------------------------

SHARE = "neurons active (> 0)"
LAYER_COLORS = colormaps["viridis"]  # layers of the logged curves: purple, blue, green


def fraction_log_axis(ax, which: str = "y") -> None:
    """A log axis of fractions labelled in percent (0.1%, 1%, 10%, 100%)."""
    log_axis(ax, which)
    getattr(ax, f"{which}axis").set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:g}%"))


def sparsity_figure(report: dict):
    sp = report["sparsity"]
    curves = sp.get("over_training") or {}
    fig = new_figure(2 if curves else 1)
    axes = fig.subplots(1, 2 if curves else 1, squeeze=False)[0]
    ax = axes[0]
    n_layer = len(sp["trained"]["x"]["by_layer"])
    for which, marker, color in (("x", "o", "C0"), ("y", "s", "C3")):
        for variant, style in (("trained", "-"), ("init", "--")):
            layers = sp[variant][which]["by_layer"]
            ax.plot(range(n_layer), layers, style, marker=marker, color=color,
                    label=f"{which}_sparse, {variant}")  # fmt: skip
        heads = np.array(sp["trained"][which]["by_layer_head"])  # L, nh
        ax.plot(np.repeat(np.arange(n_layer), heads.shape[1]), heads.flatten(), linestyle="none",
                marker=".", color="grey", label="one head (trained)")  # fmt: skip
    ax.set_xticks(range(n_layer))
    ax.set_ylim(0, None)
    finish_axes(
        ax, "Active neurons by layer, held-out text", "layer (index)", f"{SHARE} (fraction)"
    )
    if curves:
        ax = axes[1]
        for key, points in curves.items():
            which, layer = key.split("_l")
            ax.plot([p[0] + 1 for p in points], [p[1] for p in points],
                    "-" if which == "x" else "--", marker="o", markersize=3,
                    color=LAYER_COLORS(0.8 * int(layer) / max(n_layer - 1, 1)),
                    label=f"{which}_sparse, layer {layer} (logged)")  # fmt: skip
        ax.set_ylim(0, None)
        finish_axes(ax, "Over training (logged at each validation)", "optimizer steps",
                    f"{SHARE} (fraction)")  # fmt: skip
    suptitle(fig, f"{report['label']}: sparsity of x_sparse and y_sparse")
    legend_outside(fig, ncols=4 if curves else 3)
    return fig


def frequency_figure(report: dict):
    sp = report["sparsity"]
    fig = new_figure(1, width=7)
    ax = fig.subplots()
    freqs = {k: np.array(v) for k, v in sp["frequency"].items()}
    smallest = min((f[f > 0].min() for f in freqs.values() if (f > 0).any()), default=1e-4)
    bins = np.logspace(math.floor(math.log10(smallest)), 0, 41)
    for variant, color in (("trained", "C0"), ("init", "C1")):
        f = freqs[variant]
        dead = sp[variant]["x"]["dead_neurons"]
        ax.hist(f[f > 0], bins=bins, histtype="step", linewidth=1.6, color=color,
                label=f"{variant}: median {np.median(f):.1%}, {dead} never active")  # fmt: skip
    fraction_log_axis(ax, "x")
    finish_axes(ax, f"{report['label']}: how often each x_sparse neuron fires",
                "activation frequency (% of positions, mean over layers)", "neurons (count)")  # fmt: skip
    legend_outside(fig)
    return fig


def _ccdf(counts: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    k = np.array([c[0] for c in counts if c[0] > 0], dtype=float)
    n = np.array([c[1] for c in counts if c[0] > 0], dtype=float)
    return k, np.cumsum(n[::-1])[::-1] / n.sum()  # P(K >= k) among k > 0


def degree_figure(report: dict):
    pooled = report["graph"]["pooled"]
    fig = new_figure(2)
    axes = fig.subplots(1, 2)
    for ax, kind in zip(axes, ("out", "in"), strict=True):
        for name, entry in pooled.items():
            color, style = VARIANT_STYLE.get(name, ("k", "-"))
            k, ccdf = _ccdf(entry["degree_counts"][kind])
            ax.plot(k, ccdf, linestyle=style, color=color, linewidth=1.6, label=name)
        fit = pooled["trained"]["fits"][kind]
        if "alpha" in fit:
            k, _ = _ccdf(pooled["trained"]["degree_counts"][kind])
            share = fit["n_tail"] / fit["n"]
            xs = np.unique(np.round(np.geomspace(fit["k_min"], k.max(), 60)))
            alt = fit["alternatives"]
            lines = (
                ("power law", powerlaw.power_law_ccdf(xs, fit["alpha"], fit["k_min"]),
                 f"α {fit['alpha']:.2f} from k {fit['k_min']}"),
                ("exponential", powerlaw.exponential_ccdf(xs, alt["exponential"]["lambda"], fit["k_min"]),
                 f"R {alt['exponential']['loglik_ratio']:.1f}, p {alt['exponential']['p_value']:.2g}"),
                ("lognormal", powerlaw.lognormal_ccdf(xs, alt["lognormal"]["mu"], alt["lognormal"]["sigma"], fit["k_min"]),
                 f"R {alt['lognormal']['loglik_ratio']:.1f}, p {alt['lognormal']['p_value']:.2g}"),
            )  # fmt: skip
            for (name, ys, note), color in zip(lines, ("k", "C3", "C4"), strict=True):
                ax.plot(xs, share * ys, color=color, linewidth=1, linestyle=(0, (4, 2)),
                        label=f"{kind}: trained's {name} fit ({note})")  # fmt: skip
        log_axis(ax, "x")
        fraction_log_axis(ax, "y")
        finish_axes(ax, f"{kind}-degree, all heads pooled", f"{kind}-degree k (edges)",
                    "P(degree ≥ k) (% of neurons)")  # fmt: skip
    cut = (
        f"{PAPER_MEAN_DEGREE:.2f} edges per neuron (the paper's)"
        if paper_protocol(report["graph"])
        else f"its top {report['graph']['density']:.0%} of entries as edges"
    )
    suptitle(fig, f"{report['label']}: neuron graph G = decoder · encoder per head, {cut}; "
             "R > 0 favours the power law")  # fmt: skip
    legend_outside(fig, ncols=2)
    return fig


def modularity_figure(report: dict):
    """Louvain modularity of each variant against the edges kept (the signal level beta)."""
    sweep = report["graph"]["sweep"]
    ax = (fig := new_figure(1, width=7)).subplots()
    degrees = np.array([p["mean_degree"] for p in sweep])
    names = list(sweep[0]["modularity"])
    for i, name in enumerate(names):
        color, style = VARIANT_STYLE.get(name, ("k", "-"))
        values = np.array([p["modularity"][name] for p in sweep])  # points, heads
        x = degrees * 1.05 ** (i - (len(names) - 1) / 2)  # dodged: equal values stay visible
        ax.plot(x, values.mean(1), linestyle=style, color=color, marker="osD^v"[i % 5],
                markerfacecolor="none", linewidth=1.6, label=name)  # fmt: skip
        ax.vlines(x, values.min(1), values.max(1), color=color, linewidth=1)
    ax.axvline(PAPER_MEAN_DEGREE, color="k", linewidth=0.8, linestyle=":")
    log_axis(ax, "x")
    ax.set_ylim(0, 1)
    finish_axes(ax, f"{report['label']}: modularity as the signal level beta falls "
                "(mean over heads, bars: their range)",
                f"edges per neuron m / n* (dotted: the paper's {PAPER_MEAN_DEGREE:.2f}; "
                "variants drawn side by side)",
                f"modularity (Louvain, best of {LOUVAIN_SEEDS})")  # fmt: skip
    legend_outside(fig, ncols=2)
    return fig


def selectivity_figure(report: dict):
    sel = report["selectivity"]
    axes = (fig := new_figure(2, width=12)).subplots(1, 2)
    ax = axes[0]
    for i, (name, entry) in enumerate(sel["models"].items()):
        best = np.sort(np.array(entry["best_scores"]))[::-1]
        share = np.arange(1, len(best) + 1) / len(best)
        ax.plot(best, share, color=model_color(i), linewidth=1.6,
                label=f"{name}: {entry['neurons']:,} neurons, median nAP "
                f"{entry['median']:.2f}")  # fmt: skip
    ax.set_xlim(min(0, ax.get_xlim()[0]), 1)
    fraction_log_axis(ax, "y")
    finish_axes(ax, "Neurons at least this selective", "best normalised AP over the classes (nAP)",
                "neurons at least as selective (%)")  # fmt: skip
    ax = axes[1]
    classes = [
        c for c in sel["classes"] if any(c in m["per_class"] for m in sel["models"].values())
    ]
    height = 0.8 / max(len(sel["models"]), 1)
    equal = "equal_size" in sel  # the best among as many neurons as the smallest model has
    for i, entry in enumerate(sel["models"].values()):
        best = entry["equal_size_best"] if equal else {
            c: v["best"] for c, v in entry["per_class"].items()
        }  # fmt: skip
        values = [best.get(c, np.nan) for c in classes]
        offset = (i - (len(sel["models"]) - 1) / 2) * height
        ax.barh(np.arange(len(classes)) + offset, values, height, color=model_color(i))
    ax.set_yticks(range(len(classes)), classes)
    ax.invert_yaxis()  # the classes top to bottom in their order
    ax.set_xlim(0, 1.05)
    title = (
        f"The best neuron of each class, among {sel['equal_size']:,} drawn (mean of 20 draws)"
        if equal
        else "The best neuron of each class, over unequal populations\n("
        + ", ".join(f"{n} {m['neurons']:,}" for n, m in sel["models"].items())
        + " neurons): a larger population's best is higher by chance alone"
    )
    finish_axes(ax, title, "normalised AP (nAP)", "class")
    suptitle(fig, f"{report['label']}: selectivity for simple byte classes, against controls")
    legend_outside(fig, ncols=2)
    return fig


def contexts_figure(report: dict):
    """A page of text: the most selective neurons and the contexts they fire on most."""
    ours = report["selectivity"]["models"][report["label"]]
    top, kind = ours["top"], "MLP" if ours["signed"] else "x_sparse"
    lines: list[tuple[str, bool]] = []
    for entry in top:
        lines.append((f"{entry['name']}  ·  {entry['class']}  ·  nAP {entry['nap']:.2f}  ·  "
                      f"active at {entry['active_share']:.1%} of positions", True))  # fmt: skip
        if entry.get("top_tokens"):
            lines.append((f"   {tokens_line(entry['top_tokens'])}", False))
        for c in entry["contexts"]:
            lines.append((f"   {c['activation']:8.3f}  {context_line(c)}", False))
    height = 1.0 + 0.19 * len(lines)  # inches: two title lines, then one line per row
    fig = new_figure(1, width=8.5)
    fig.set_layout_engine("none")  # the lines are placed by hand, in inches from the top
    fig.set_size_inches(8.5, height)
    fig.text(0.02, 1 - 0.2 / height, f"{report['label']}: the most selective {kind} neurons of "
             "each class", fontsize=10, va="top")  # fmt: skip
    fig.text(0.02, 1 - 0.45 / height, "each: its mean activation on the tokens it fires on "
             "most, then its top contexts ([token]; ↵ a line break)", fontsize=8.5, va="top")  # fmt: skip
    for i, (text, bold) in enumerate(lines):
        fig.text(0.02, 1 - (0.8 + 0.19 * i) / height, text, family="monospace", fontsize=8.5,
                 weight="bold" if bold else "normal", va="top")  # fmt: skip
    return fig


def tokens_line(top: list[dict]) -> str:
    """The tokens a neuron fires on most on average: '[f] 2.01 [s] 1.66 ...'."""
    return "mean by token: " + "  ".join(f"[{show(t['token'])}] {t['mean']:.2f}" for t in top)


def context_line(c: dict) -> str:
    return f"{show(c['before'])[-28:]:>28}[{show(c['token'])}]{show(c['after'])[:10]}"


def figures(report: dict) -> dict:
    """name -> Figure, for the measures the report holds."""
    out = {}
    if "sparsity" in report:
        out["sparsity"] = sparsity_figure(report)
        out["frequency"] = frequency_figure(report)
    if "graph" in report:
        out["degrees"] = degree_figure(report)
        if paper_protocol(report["graph"]):  # older reports measured one density: no sweep
            out["modularity"] = modularity_figure(report)
    if "selectivity" in report:
        out["selectivity"] = selectivity_figure(report)
        out["top_neurons"] = contexts_figure(report)
    return out


def write_charts(report: dict, folder: Path) -> list[Path]:
    return [save_figure(fig, folder / f"{name}.png") for name, fig in figures(report).items()]


# --- README --------------------------------------------------------------------------------


def readings_cell(claim: dict) -> str:
    """Which readings count for the claim: 'nAP >= 0.5 yes, nAP >= 0.2 no, ...'."""
    readings = claim.get("readings")
    if not readings:
        return "-"
    return ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in readings.items())


def text_line(report: dict) -> str:
    """The text the measures read; the graph alone reads none (it is of the weights)."""
    text = report["text"]
    if not {"sparsity", "selectivity"} & set(report):
        return "the graph is of the weights alone: no text was read"
    return (
        f"held-out text {text['source']}, {text['tokens']:,} tokens in windows of "
        f"{text['block_size']}"
    )


def readme(report: dict, charts: list[Path]) -> str:
    lines = [
        f"# What {report['label']} learned",
        "",
        f"`{report.get('command', 'python -m bdh_pl inspect')}`",
        "",
        f"Checkpoint `{report['checkpoint']}` ({report['model']}, "
        f"{count(report.get('parameters'))} parameters); {text_line(report)}.",
        "",
        f"Verdicts by the one rule (bdh_pl/analysis/verdict.py): {RULE}. A reading is the "
        "claim's test at one choice (threshold, layer, degree kind, mean degree or head) "
        "against every control.",
        "",
        "| claim | verdict | evidence | test | readings (ahead of every control?) |",
        "|---|---|---|---|---|",
        *(
            f"| {c['claim']} | **{claim_verdict(c)}** | {c['evidence']} | "
            f"{c.get('test', c.get('rule', '-'))} | {readings_cell(c)} |"
            for c in report["claims"]
        ),  # fmt: skip
        "",
    ]
    gr = report.get("graph")
    if gr:
        lines += graph_tables(gr) if paper_protocol(gr) else density_graph_tables(gr)
    sel = report.get("selectivity")
    if sel:
        lines += [
            "Selectivity (normalised average precision of each neuron for its best class):",
            "",
            "| model | parameters | neurons | weight vectors | median | p90 | p99 | max "
            "| on at > half the positions |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            *(
                f"| {k} | {count(v.get('parameters'))} | {v['neurons']:,} "
                f"| {count(v.get('weight_vectors') or v['neurons'])} | {v['median']:.3f} "
                f"| {v['p90']:.3f} | {v['p99']:.3f} | {v['max']:.3f} "
                f"| {dense_cell(v)} |"
                for k, v in sel["models"].items()
            ),  # fmt: skip
            "",
            *population_note(sel),
            *selectivity_curve_table(sel),
            *equal_size_table(sel),
            "Share of neurons with nAP >= 0.5, by layer: "
            + "; ".join(
                f"{k} " + ", ".join(f"{v:.1%}" for v in m["share_above_0.5_by_layer"])
                for k, m in sel["models"].items()
            ),
            "",
            f"The most selective neurons of {report['label']}, the best of each class: its mean "
            "activation on the tokens it fires on most, then its top contexts (activation, "
            "context, [token]; ↵ is a line break):",
            "",
            "```",
        ]
        for entry in sel["models"][report["label"]]["top"]:
            lines.append(f"{entry['name']}  {entry['class']}  nAP {entry['nap']:.2f}")
            if entry.get("top_tokens"):
                lines.append(f"  {tokens_line(entry['top_tokens'])}")
            for c in entry["contexts"]:
                lines.append(f"  {c['activation']:8.3f}  {context_line(c)}")
        lines += ["```", ""]
    if charts:
        lines += ["Charts: " + ", ".join(f"[{p.stem}](charts/{p.name})" for p in charts), ""]
    return "\n".join(lines)
