"""A compute frontier's charts, from frontier.json's dict (bench/frontier.py writes it):

- isoflop.png: validation bpb against parameters, one curve per training budget, a panel per
  family, with the parabola in log N through each budget's sizes; the minimum of each budget
  a star, filled when it lies inside the sizes tried (a frontier point the fit uses), hollow
  when it is the smallest or largest (left out of the fit).
- frontier_flops.png: each family's frontier (the best size per budget, mean over its seeds,
  the seeds' range as error bars; points left out of the fit as crosses) against training
  FLOPs by the rule, its fit solid over the measured range and dashed, its band lighter,
  beyond; the fitted crossing as its 5-95% band with the central value, never a bare mark.
- chosen_size.png: the chosen size and its training tokens per budget per family, with the
  tokens of 1 and 4 epochs of the training split: where the data caps the choice.

No time frontier: a run's wall time on the shared 2-core machine depends on the load and on
pauses (the same 2e12 GPT-2 run took 233 s at one rate, 6,238 s at the next), so a chart of the
best loss within t seconds would rank the machine's hours, not the models (docs/results.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bdh_pl.charts.style import (
    STAR,
    caption,
    finish_axes,
    legend_outside,
    log_axis,
    model_color,
    new_figure,
    number,
    plot_points,
    save_figure,
    suptitle,
)

FRONTIER_CHARTS = ("isoflop", "frontier_flops", "chosen_size")
VAL_AXIS = "validation loss (bits per byte)"
FLOPS_AXIS = "training FLOPs (3 x forward FLOPs per token x tokens)"
PARAMS_AXIS = "parameters (count)"
TOKENS_AXIS = "training tokens (count)"
HOLLOW_STAR = {**STAR, "facecolors": "white"}
EXCLUDED = {"marker": "x", "s": 45, "linewidths": 1.6, "zorder": 5}


def _budgets(result: dict) -> list[str]:
    """Every budget label, in the order the measured comparison lists them (by FLOPs)."""
    ordered = [row["budget"] for row in result.get("measured", {}).get("at_budgets", [])]
    rest = [r["budget"] for f in result["families"].values() for r in f["runs"]]
    return list(dict.fromkeys([*ordered, *rest]))


def _label(budget: str) -> str:
    return budget.removeprefix("flops ").replace("e+", "e") + (
        " FLOPs" if budget.startswith("flops ") else ""
    )


def _partial_note(result: dict) -> str:
    """A sentence for every chart of a frontier still running (bench/progress.py's status):
    which budgets are drawn, so that a partial chart never reads as the whole frontier."""
    status = result.get("status") or {}
    if status.get("complete", True) or not status.get("families"):
        return ""
    counts = ", ".join(
        f"{family} {sum(c['state'] == 'complete' for c in e['budgets'].values())} of "
        f"{len(e['budgets'])}"
        for family, e in status["families"].items()
    )
    order = ("in progress", "not started", "stopped")  # bench/progress.py's states
    seen = {c["state"] for e in status["families"].values() for c in e["budgets"].values()}
    others = [state for state in order if state in seen] or ["in progress"]
    others = [*others[:-2], " or ".join(others[-2:])]
    return (
        f" PARTIAL: the frontier is still running; only complete budgets are drawn ({counts} "
        f"budgets complete), the others are {', '.join(others)} (PARTIAL.md)."
    )


def isoflop_figure(result: dict) -> Figure:
    families = result["families"]
    fig = new_figure(len(families))
    axes = fig.subplots(1, len(families), sharey=True, squeeze=False)[0]
    budgets = _budgets(result)
    colour = {b: f"C{j % 10}" for j, b in enumerate(budgets)}
    for ax, (family, entry) in zip(axes, families.items(), strict=True):
        runs = [r for r in entry["runs"] if not r.get("bound") and number(r.get("val_bpb"))
                and not r.get("other_shape")]  # fmt: skip
        first_seed = runs[0]["seed"] if runs else None
        for budget in budgets:
            cell = sorted(
                (r for r in runs if r["budget"] == budget and r["seed"] == first_seed
                 and r["selected"] is not False),
                key=lambda r: r["params"],
            )  # fmt: skip
            if not cell:
                continue
            n, loss = [r["params"] for r in cell], [r["val_bpb"] for r in cell]
            ax.plot(n, loss, "o-", color=colour[budget], ms=4, lw=1.2, label=_label(budget))
            if len(cell) >= 3:
                _parabola(ax, n, loss, colour[budget])
        for p in entry["frontier"]:
            c = colour[p["budget"]]
            mark = {**HOLLOW_STAR, "edgecolors": c, "linewidths": 1.2} if p["edge"] else STAR
            # first seed, as the curves: the best run's loss, or the parabola's minimum
            ax.scatter(p["params"], p["val_bpb_seeds"][0], color=c, **mark)
        log_axis(ax, "x")
        finish_axes(ax, family, PARAMS_AXIS, VAL_AXIS)
    axes[0].scatter([], [], color="grey", label="inside the sizes tried: a point for the fit",
                    **STAR)  # fmt: skip
    axes[0].scatter([], [], label="smallest or largest tried: left out",
                    **{**HOLLOW_STAR, "edgecolors": "grey", "linewidths": 1.2})  # fmt: skip
    axes[0].plot([], [], ":", color="grey", label="parabola in log N")
    suptitle(fig, "IsoFLOP curves: validation loss against model size at each training budget"
             + (" (partial)" if _partial_note(result) else ""))  # fmt: skip
    legend_outside(fig, ncols=min(len(budgets) + 3, 4))
    caption(fig, "One curve per budget (first seed, the family's chosen learning rate). Stars: "
            "each budget's lowest loss; a hollow star is the smallest or largest size tried, "
            "so the optimum may lie outside the ladder and the point stays out of the fit."
            + _partial_note(result))  # fmt: skip
    return fig


def _parabola(ax, params: list[float], loss: list[float], color: str) -> None:
    """loss = a (log N)^2 + b log N + c through a budget's sizes, drawn over them."""
    log_n = np.log(params)
    coeffs = np.polyfit(log_n, loss, 2)
    grid = np.linspace(log_n[0], log_n[-1], 40)
    ax.plot(np.exp(grid), np.polyval(coeffs, grid), ":", color=color, lw=1.0)


def frontier_figure(result: dict) -> Figure:
    fig = new_figure(1, width=9.0, height=6.2)
    ax = fig.subplots()
    notes, unfitted = [], []
    for i, (family, entry) in enumerate(result["families"].items()):
        color = model_color(i)
        used = [p for p in entry["frontier"] if p["excluded"] is None and p["flops"]]
        left = [p for p in entry["frontier"] if p["excluded"] is not None and p["flops"]]
        for points in (used, left):
            if points:
                _error_bars(ax, points, color)
        if used:
            plot_points(ax, [p["flops"] for p in used], [p["val_bpb"] for p in used],
                        [len(p["val_bpb_seeds"]) for p in used], 2, color,
                        f"{family}: best per budget", linestyle="none")  # fmt: skip
        if left:
            ax.scatter([p["flops"] for p in left], [p["val_bpb"] for p in left], color=color,
                       label=f"{family}: left out of the fit", **EXCLUDED)  # fmt: skip
        if entry.get("curve"):
            _fit_lines(ax, entry["curve"], entry["fit"], color, f"{family} fit")
        elif entry.get("curve_with_edge_points"):
            _fit_lines(ax, entry["curve_with_edge_points"], entry["fit_with_edge_points"], color,
                       f"{family} fit, left-out points kept", rule=False)  # fmt: skip
            notes.append(family)
        elif entry["frontier"]:
            n = len(used)
            unfitted.append(f"{family} ({n} usable point{'s' * (n != 1)}, 3 needed)")
    crossing = result.get("crossing") or {}
    which = "fits cross"
    if not crossing.get("budget_flops"):
        crossing = (result.get("with_edge_points") or {}).get("crossing") or {}
        which = "fits (left-out points kept) cross"
    if where := crossing.get("budget_flops"):
        _crossing_band(ax, crossing, which)
    log_axis(ax, "x")
    title = "Compute frontier: the best loss each family reaches at each budget"
    finish_axes(ax, title + (" (partial)" if _partial_note(result) else ""), FLOPS_AXIS,
                VAL_AXIS)  # fmt: skip
    legend_outside(fig, ncols=2)
    text = (
        "Points: mean over seeds, error bars their range (hollow: one seed); crosses: points "
        "left out of the fit (the best size is the smallest or largest tried, or the run is "
        "bound). Each fit L(C) = E + A C^-alpha is solid over the FLOPs its points span and "
        "dashed beyond (an extrapolation), its 5-95% bootstrap band shaded, lighter beyond."
    )
    if notes:
        text += (
            f" Dash-dot: {', '.join(notes)} fitted with the left-out points (too few inside "
            "the ladder for a fit by the rule): a sensitivity reading, not the rule."
        )
    if unfitted:
        text += f" No curve: {'; '.join(unfitted)}."
    if where:
        reach = crossing["search_range"][1] / crossing["largest_measured"]
        text += (
            " Grey span: 5-95% of the crossing over the paired bootstrap fits (resamples that "
            f"never cross within {reach:.3g}x the largest budget count as beyond it)."
        )
    caption(fig, text + _partial_note(result))
    return fig


def _error_bars(ax, points: list[dict], color: str) -> None:
    mean = [p["val_bpb"] for p in points]
    low = [m - min(p["val_bpb_seeds"]) for m, p in zip(mean, points, strict=True)]
    high = [max(p["val_bpb_seeds"]) - m for m, p in zip(mean, points, strict=True)]
    ax.errorbar([p["flops"] for p in points], mean, yerr=[low, high], fmt="none", ecolor=color,
                capsize=3)  # fmt: skip


def exact_fit(fit: dict) -> bool:
    """A fit through as many points as its 3 parameters: it has no residual to estimate a
    band from, and its extrapolation is the curve the points happen to define."""
    return len(fit.get("budgets_used") or []) <= 3


def _fit_lines(ax, curve: dict, fit: dict, color: str, label: str, rule: bool = True) -> None:
    """Solid over the measured range, dashed beyond; the band shaded, lighter beyond. An
    exact fit: over its points only, no band."""
    flops, loss = np.asarray(curve["flops"]), np.asarray(curve["val_bpb"])
    inside = flops <= curve["measured_range"][1] * (1 + 1e-9)
    cut = int(inside.sum())
    text = f"{label}: {fit['E']:.2f} + {fit['A']:.3g} C^-{fit['alpha']:.3f}"
    exact = exact_fit(fit)
    text += " (exact through 3 points: no band, not extended)" if exact else ""
    ax.plot(flops[:cut], loss[:cut], "-" if rule else "-.", color=color, lw=1.6, label=text)
    if exact:
        return
    ax.plot(flops[cut - 1 :], loss[cut - 1 :], "--" if rule else "-.", color=color, lw=1.1,
            alpha=0.6)  # fmt: skip
    if rule and curve.get("low") is not None:
        low, high = np.asarray(curve["low"]), np.asarray(curve["high"])
        ax.fill_between(flops[:cut], low[:cut], high[:cut], color=color, alpha=0.2, lw=0)
        ax.fill_between(flops[cut - 1 :], low[cut - 1 :], high[cut - 1 :], color=color,
                        alpha=0.07, lw=0)  # fmt: skip


def _crossing_band(ax, crossing: dict, which: str) -> None:
    """The central crossing as a dashed line, its 5-95% band as a grey span; an end of the
    band beyond the search (resamples that never cross within it) drawn to the search's end
    and said so in the legend, never as a closed interval."""
    where = crossing["budget_flops"]
    low, high = crossing.get("band") or (None, None)
    end = crossing["search_range"][1]
    never = crossing.get("never_share")
    lower = f"{low:.3g}" if low is not None else f">{end:.3g}"
    upper = f"{high:.3g}" if high is not None else f">{end:.3g}"
    share = f"; {never:.0%} never cross" if never else ""
    if low is not None:
        ax.axvspan(low, high if high is not None else end, color="grey", alpha=0.15, lw=0,
                   label=f"crossing, 5-95%: {lower} to {upper}{share}")  # fmt: skip
    if high is None and low is not None:
        ax.annotate(f"band open: its 95th percentile is beyond the search's end ({end:.3g})",
                    xy=(end, 0.97), ha="right", va="top",
                    xycoords=("data", "axes fraction"), fontsize=7, color="dimgrey")  # fmt: skip
    ax.axvline(where, color="black", lw=1.0, ls=(0, (4, 2)), label=f"{which} at {where:.3g} FLOPs"
               + ("" if low is not None else f" (5-95%: >{end:.3g}{share})"))  # fmt: skip


def chosen_size_figure(result: dict) -> Figure:
    """Grouped bars per budget: each family's chosen size and its training tokens (log
    scales), hatched where the point is left out of the fit; the tokens of 1 and 4 epochs."""
    fig = new_figure(2)
    ax_n, ax_d = fig.subplots(1, 2)
    budgets = _budgets(result)
    families = result["families"]
    width = 0.8 / max(1, len(families))
    split = result.get("train_split_tokens")
    for i, (family, entry) in enumerate(families.items()):
        by_budget = {p["budget"]: p for p in entry["frontier"]}
        if not split:  # records that carry their epochs: the split from any of them
            split = next((p["train_tokens"] / p["epochs"] for p in by_budget.values()
                          if p.get("epochs") and p.get("train_tokens")), None)  # fmt: skip
        for ax, key in ((ax_n, "params"), (ax_d, "train_tokens")):
            for j, budget in enumerate(budgets):
                p = by_budget.get(budget)
                if p is None or not number(p.get(key)):
                    continue
                out = p["excluded"] is not None
                ax.bar(j + (i - (len(families) - 1) / 2) * width, p[key], width,
                       color="white" if out else model_color(i), edgecolor=model_color(i),
                       hatch="///" if out else None, lw=1.0,
                       label=f"{family}{': left out of the fit' if out else ''}")  # fmt: skip
    if split:
        for epochs, style in ((1, "-"), (4, "--")):
            ax_d.axhline(epochs * split, color="black", lw=0.9, ls=style,
                         label=f"{epochs} epoch{'s' * (epochs > 1)} of the training split")  # fmt: skip
    for ax, title, label in (
        (ax_n, "chosen size per budget", PARAMS_AXIS),
        (ax_d, "its training tokens", TOKENS_AXIS),
    ):
        ax.set_yscale("log")
        ax.set_xticks(range(len(budgets)), [_label(b).removesuffix(" FLOPs") for b in budgets])
        finish_axes(ax, title, "budget (training FLOPs as planned, or steps)", label)
    suptitle(fig, "What each family's frontier chose: size and data per budget"
             + (" (partial)" if _partial_note(result) else ""))  # fmt: skip
    legend_outside(fig, ncols=4)
    caption(fig, "Hatched: the point is left out of the fit (the best size is the smallest or "
            "largest tried). Tokens near an epoch line: the data, not the compute, caps the "
            "choice (a smaller model would read the training text again)."
            + _partial_note(result))  # fmt: skip
    return fig


FIGURES = {
    "isoflop": isoflop_figure,
    "frontier_flops": frontier_figure,
    "chosen_size": chosen_size_figure,
}


def write_frontier_charts(result: dict, out: Path) -> list[Path]:
    if not result["families"]:
        return []
    return [
        save_figure(FIGURES[name](result), Path(out) / f"{name}.png") for name in FRONTIER_CHARTS
    ]
