"""The README's tables of `inspect`, from its report: the neuron graph (the paper's protocol,
or the one-density layout of reports written before it) and selectivity (the populations, the
share curve, each class's best at equal size)."""

from __future__ import annotations

import numpy as np

from bdh_pl.analysis import powerlaw
from bdh_pl.analysis.graph import LOUVAIN_SEEDS
from bdh_pl.tools.inspect.selectivity import populations

# --- the neuron graph ----------------------------------------------------------------------


def paper_protocol(graph: dict) -> bool:
    """Whether a graph report follows the paper's protocol (a sweep of the signal level beta);
    reports written before it cut each head's graph at one density and fitted it there."""
    return "sweep" in graph


def graph_tables(gr: dict) -> list[str]:
    """The README's graph section: the fits at the paper's mean degree, then the sweep."""
    paper = gr["paper"]
    lines = [
        f"The neuron graph as the paper measures it: G = decoder · encoder per head "
        f"({gr['neurons']:,} neurons), the entries above a signal level beta as edges. The "
        f"paper's beta {paper['beta']:g} kept {paper['edges']:,} edges of {paper['neurons']:,} "
        f"neurons ({paper['mean_degree']:.2f} per neuron); here beta {paper['beta']:g} keeps "
        f"{', '.join(f'{e:,}' for e in gr['edges_at_paper_beta'])} edges (by head), so models are "
        "compared at equal edge counts: the trained graph's beta for each mean degree, every "
        "control cut to the same count. Degrees of all heads pooled, at the paper's mean degree; "
        f"alpha is fitted within {powerlaw.ALPHA_RANGE[0]:g}-{powerlaw.ALPHA_RANGE[1]:g}:",
        "",
        "| variant | modularity | degree | mean | max | alpha | k_min | tail "
        "| power law vs exponential: R (p) | vs lognormal: R (p) | preferred |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, entry in gr["pooled"].items():
        for kind, fit in entry["fits"].items():
            alt = fit.get("alternatives", {})
            cell = {k: f"{v['loglik_ratio']:.1f} ({v['p_value']:.2g})" for k, v in alt.items()}
            lines.append(
                f"| {name} | {entry['modularity_mean']:.3f} | {kind} | {fit['mean']:.1f} | "
                f"{fit['max']} | {fit.get('alpha', float('nan')):.2f} | "
                f"{fit.get('k_min', '-')} | {fit.get('n_tail', '-')} | "
                f"{cell.get('exponential', '-')} | {cell.get('lognormal', '-')} | "
                f"{fit['preferred']} |"
            )
    names = list(gr["sweep"][0]["modularity"])
    lines += [
        "",
        f"Modularity (Louvain, best of {LOUVAIN_SEEDS} seeds; mean over heads) as beta varies:",
        "",
        "| edges per neuron | edges per head | trained beta (by head) | "
        + " | ".join(names)
        + " |",
        "|---:|---:|---|" + "---:|" * len(names),
    ]
    for p in gr["sweep"]:
        cells = [f"{np.mean(p['modularity'][name]):.3f}" for name in names]
        betas = ", ".join(f"{b:.3g}" for b in p["beta"])
        lines.append(
            f"| {p['mean_degree']:.2f} | {p['edges']:,} | {betas} | " + " | ".join(cells) + " |"
        )
    lines.append("")
    return lines


def density_graph_tables(gr: dict) -> list[str]:
    """The graph section of a report from before the paper's protocol: each head's graph cut at
    one density (its top share of entries), the fits there, then alpha at other densities. It
    has no beta sweep (so no modularity-by-beta table) and no 'preferred' distribution."""
    lines = [
        f"The neuron graph, G = decoder · encoder per head, its top {gr['density']:.0%} of "
        "entries as edges (measured before the paper's protocol: one density, not a sweep of "
        "beta); degrees of all heads pooled (inspect.json has each head). alpha is fitted "
        f"within {powerlaw.ALPHA_RANGE[0]:g}-{powerlaw.ALPHA_RANGE[1]:g}: near "
        f"{powerlaw.ALPHA_RANGE[1]:g} it says the tail falls faster than any power law "
        "considered, not that it is heavy:",
        "",
        "| variant | modularity | degree | mean | max | alpha | k_min | tail "
        "| power law vs exponential: R (p) | vs lognormal: R (p) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in gr["pooled"].items():
        for kind, fit in entry["fits"].items():
            alt = fit.get("alternatives", {})
            cell = {k: f"{v['loglik_ratio']:.1f} ({v['p_value']:.2g})" for k, v in alt.items()}
            lines.append(
                f"| {name} | {entry['modularity_mean']:.3f} | {kind} | {fit['mean']:.1f} | "
                f"{fit['max']} | {fit.get('alpha', float('nan')):.2f} | "
                f"{fit.get('k_min', '-')} | {fit.get('n_tail', '-')} | "
                f"{cell.get('exponential', '-')} | {cell.get('lognormal', '-')} |"
            )
    lines.append("")
    if gr.get("by_density"):
        lines += [
            "The same fits at other densities (alpha of the pooled degrees; * where the power "
            "law beats the exponential):",
            "",
            "| density | variant | " + " | ".join(density_kinds(gr)) + " |",
            "|---:|---|" + "---:|" * len(density_kinds(gr)),
        ]
        for density, variants in gr["by_density"].items():
            for name, kinds in variants.items():
                cells = [
                    "-"
                    if f.get("alpha") is None
                    else f"{f['alpha']:.2f}" + ("*" if f.get("beats_exponential") else "")
                    for f in kinds.values()
                ]
                lines.append(f"| {float(density):.1%} | {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def density_kinds(gr: dict) -> list[str]:
    """The degree kinds of the other-density fits (out, in, total), as the report stores them."""
    first = next(iter(gr["by_density"].values()))
    return list(next(iter(first.values())))


# --- selectivity ---------------------------------------------------------------------------


def dense_cell(entry: dict) -> str:
    dense = entry.get("dense")
    return "-" if dense is None else f"{dense['neurons']:,} ({dense['share']:.1%})"


def population_note(sel: dict) -> list[str]:
    """Where the models' neuron populations differ, what that does to each comparison."""
    models = sel["models"]
    if len({(m["neurons"], m.get("weight_vectors")) for m in models.values()}) == 1:
        return []
    bests = (
        f"so each class's best is also compared among {sel['equal_size']:,} neurons below"
        if "equal_size" in sel
        else "and this report has no comparison at equal size (measured before it was added): "
        "read its best-of-class and max columns as a larger population's advantage"
    )
    return [
        f"Unequal populations (neurons, and the weight vectors BDH's are read from): "
        f"{populations(models)}. The shares and medians are "
        "fractions of each population, each with the standard error of its own size (clustered "
        "by weight vector); the p99, the max and a class's best over all of a model's neurons "
        f"rise with its size by chance alone, {bests}.",
        "",
    ]


def selectivity_curve_table(sel: dict) -> list[str]:
    """Share of neurons with nAP >= t for each threshold t, per model (± its standard error,
    clustered by weight vector)."""
    models = {k: v for k, v in sel["models"].items() if "share_at_least" in v}
    if not models:
        return []
    thresholds = next(iter(models.values()))["thresholds"]
    rows = [
        "Share of neurons at least as selective as each threshold (± standard error, clustered "
        "by weight vector: BDH's layers share theirs):",
        "",
        "| model | " + " | ".join(f"nAP ≥ {t:g}" for t in thresholds) + " |",
        "|---|" + "---:|" * len(thresholds),
    ]
    for name, m in models.items():
        cells = [
            f"{100 * p:.1f}% ± {100 * se:.1f}"
            for p, se in zip(m["share_at_least"], m["share_se"], strict=True)
        ]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*rows, ""]


def equal_size_table(sel: dict) -> list[str]:
    """Each class's best neuron among as many neurons as the smallest model has."""
    models = {k: v for k, v in sel["models"].items() if "equal_size_best" in v}
    if not models:
        return []
    classes = [c for c in sel["classes"] if any(c in m["equal_size_best"] for m in models.values())]
    rows = [
        f"Each class's best nAP among {sel['equal_size']:,} neurons drawn at random (the smallest "
        "model's count; the mean of 20 draws; neurons on at more than half the positions never "
        "count):",
        "",
        "| model | " + " | ".join(classes) + " |",
        "|---|" + "---:|" * len(classes),
    ]
    for name, m in models.items():
        best = m["equal_size_best"]
        rows.append(
            f"| {name} | "
            + " | ".join(f"{best[c]:.3f}" if c in best else "-" for c in classes)
            + " |"
        )
    return [*rows, ""]
