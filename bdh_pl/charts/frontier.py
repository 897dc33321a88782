"""A compute frontier's charts, from frontier.json's dict (bench/frontier.py writes it):

- isoflop.png: validation bpb against parameters, one curve per training budget, a panel per
  family; the frontier point of each budget a star.
- frontier_flops.png: each family's frontier (the best size per budget, mean over its seeds,
  the seeds' range as error bars) against training FLOPs, its fit L(C) = E + A C^-alpha over
  the budgets run (solid), extrapolated to 100x the largest budget (dashed), and the fit's
  5-95% bootstrap band (shaded).
- frontier_seconds.png: every run's validation bpb against the wall-clock seconds of its fit,
  the first seed's frontier points joined; the machine's load in the caption.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from bdh_pl.charts.style import (
    STAR,
    caption,
    finish_axes,
    legend_outside,
    log_axis,
    model_color,
    new_figure,
    plot_points,
    save_figure,
    suptitle,
)

FRONTIER_CHARTS = ("isoflop", "frontier_flops", "frontier_seconds")
VAL_AXIS = "validation loss (bits per byte)"
FLOPS_AXIS = "training FLOPs (forward + backward, counted)"
SECONDS_AXIS = "wall-clock seconds of the fit (training + validation)"
PARAMS_AXIS = "parameters (count)"


def _budget_label(budget: float) -> str:
    return f"{budget:.2g} FLOPs"


def isoflop_figure(result: dict) -> Figure:
    families = result["families"]
    fig = new_figure(len(families))
    axes = fig.subplots(1, len(families), sharey=True, squeeze=False)[0]
    budgets = sorted({r["budget_flops"] for f in families.values() for r in f["runs"]})
    colour = {b: f"C{j}" for j, b in enumerate(budgets)}
    for ax, (family, entry) in zip(axes, families.items(), strict=True):
        first_seed = entry["runs"][0]["seed"]
        for budget in budgets:
            cell = sorted(
                (
                    r
                    for r in entry["runs"]
                    if r["budget_flops"] == budget
                    and r["seed"] == first_seed
                    and r["selected"] is not False
                ),
                key=lambda r: r["params"],
            )
            if cell:
                ax.plot([r["params"] for r in cell], [r["val_bpb"] for r in cell], "o-",
                        color=colour[budget], ms=4, label=_budget_label(budget))  # fmt: skip
        for p in entry["frontier"]:
            ax.scatter(p["params"], p["val_bpb_seeds"][0], color=colour[p["budget_flops"]],
                       **STAR)  # fmt: skip
        log_axis(ax, "x")
        finish_axes(ax, family, PARAMS_AXIS, VAL_AXIS)
    suptitle(fig, "IsoFLOP curves: validation loss against model size at each training budget")
    legend_outside(fig, ncols=len(budgets))
    caption(fig, "One curve per budget (first seed, the family's chosen learning rate); ★ the "
            "budget's lowest: its frontier point.")  # fmt: skip
    return fig


def frontier_figure(result: dict) -> Figure:
    fig = new_figure(1, width=8.0, height=5.0)
    ax = fig.subplots()
    largest = 0.0
    for i, (family, entry) in enumerate(result["families"].items()):
        points, color = entry["frontier"], model_color(i)
        if not points:
            continue
        flops = [p["budget_flops"] for p in points]
        mean = [p["val_bpb"] for p in points]
        seeds = [len(p["val_bpb_seeds"]) for p in points]
        low = [m - min(p["val_bpb_seeds"]) for m, p in zip(mean, points, strict=True)]
        high = [max(p["val_bpb_seeds"]) - m for m, p in zip(mean, points, strict=True)]
        ax.errorbar(flops, mean, yerr=[low, high], fmt="none", ecolor=color, capsize=3)
        plot_points(ax, flops, mean, seeds, 2, color, f"{family}: best size per budget",
                    linestyle="none")  # fmt: skip
        largest = max(largest, *flops)
        if curve := entry.get("curve"):
            _fit_lines(ax, curve, entry["fit"], color, family)
    if largest:
        ax.axvline(largest, color="grey", lw=0.8, ls=":", label="largest budget run")
    cross = (result.get("compute_multiplier") or {}).get("crossing") or {}
    if (where := cross.get("budget_flops")) and cross.get("val_bpb") is not None:
        ax.plot([where], [cross["val_bpb"]], "kX", ms=8, label=f"the fits cross: {where:.3g} FLOPs")
    if (extra := result.get("extrapolation")) and extra.get("predictions"):
        ax.axvline(extra["budget_flops"], color="black", lw=0.8, ls="-.", label=extra["label"])
    log_axis(ax, "x")
    finish_axes(ax, "Compute frontier: the best loss each family reaches at each budget",
                FLOPS_AXIS, VAL_AXIS)  # fmt: skip
    legend_outside(fig, ncols=3)
    caption(fig, "Points: mean over seeds, error bars their range (hollow: one seed). Solid: "
            "the fit L(C) = E + A C^-alpha over the budgets run; dashed beyond the dotted line: "
            "its extrapolation; shaded: its 5-95% bootstrap band (points and seeds resampled).")  # fmt: skip
    return fig


def _fit_lines(ax, curve: dict, fit: dict, color: str, family: str) -> None:
    flops, loss = curve["flops"], curve["val_bpb"]
    cut = next((i for i, c in enumerate(flops) if c > curve["largest_budget"]), len(flops))
    label = f"{family} fit: {fit['E']:.2f} + {fit['A']:.3g} C^-{fit['alpha']:.3f}"
    ax.plot(flops[:cut], loss[:cut], "-", color=color, lw=1.5, label=label)
    ax.plot(flops[max(cut - 1, 0) :], loss[max(cut - 1, 0) :], "--", color=color, lw=1.2)
    if curve.get("low") is not None:
        ax.fill_between(flops, curve["low"], curve["high"], color=color, alpha=0.15, lw=0)


def seconds_figure(result: dict) -> Figure:
    fig = new_figure(1, width=8.0, height=5.0)
    ax = fig.subplots()
    loads = []
    for i, (family, entry) in enumerate(result["families"].items()):
        color = model_color(i)
        runs = [r for r in entry["runs"] if r.get("fit_time_s")]
        if not runs:
            continue
        loads += [v for r in runs for v in (r.get("load_avg_start"), r.get("load_avg_end")) if v]
        ax.plot([r["fit_time_s"] for r in runs], [r["val_bpb"] for r in runs], "x",
                color=color, alpha=0.45, ms=5, label=f"{family}: a run")  # fmt: skip
        first = sorted(
            (r for r in runs if r.get("frontier_point") and r["seed"] == runs[0]["seed"]),
            key=lambda r: r["budget_flops"],
        )
        ax.plot([r["fit_time_s"] for r in first], [r["val_bpb"] for r in first], "o-",
                color=color, ms=5, label=f"{family}: best size per budget")  # fmt: skip
    log_axis(ax, "x")
    finish_axes(ax, "Validation loss against the time it took", SECONDS_AXIS, VAL_AXIS)
    legend_outside(fig, ncols=3)
    load = (
        f" The 1-minute load average of the 2-core machine ranged {min(loads):.1f}-"
        f"{max(loads):.1f} while they ran: seconds depend on it, losses do not."
        if loads
        else ""
    )
    caption(fig, "Each run trained on one thread (two runs at once). Joined: the first seed's "
            f"frontier points, in budget order.{load}")  # fmt: skip
    return fig


def write_frontier_charts(result: dict, out: Path) -> list[Path]:
    if not result["families"]:
        return []
    figures = {
        "isoflop": isoflop_figure(result),
        "frontier_flops": frontier_figure(result),
        "frontier_seconds": seconds_figure(result),
    }
    return [save_figure(fig, Path(out) / f"{name}.png") for name, fig in figures.items()]
