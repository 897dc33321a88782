"""The compute frontier's charts (from frontier.json's dict, bench/frontier.py):

- isoflop.png: validation bpb against parameters, one curve per budget, a panel per family;
  the frontier point of each budget starred.
- frontier_flops.png: each family's frontier (best validation bpb per budget, the range over
  seeds as a bar) against training FLOPs, its fit L(C) = E + A C^-alpha over the budgets run,
  the fit's 5-95% bootstrap band, and the fit extrapolated (dashed) up to 100x the largest
  budget.
- frontier_seconds.png: every run's validation bpb against the wall-clock seconds of its fit,
  the frontier points joined; the machine's load in the title.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

from bdh_pl.bench.frontier import CROSSING_RANGE, band, bootstrap_fits, predict
from bdh_pl.charts import new_figure, save_figure

FRONTIER_CHARTS = ("isoflop", "frontier_flops", "frontier_seconds")
COLORS = {"bdh": "C0", "gpt2": "C1", "llama": "C2"}
VAL_AXIS = "validation bits per byte (first 64K bytes)"


def _figure(width: float):
    fig = new_figure(width)
    fig.set_layout_engine("constrained")  # legends outside the axes, nothing clipped
    return fig


def _color(family: str, i: int) -> str:
    return COLORS.get(family, f"C{i + 3}")


def _log_x(ax, unit: str, subs: tuple[float, ...] = (1.0,)) -> None:
    """A log x axis with engineering labels (1k, 10M, 1T) at `subs` x each power of ten."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    ax.xaxis.set_major_formatter(EngFormatter(unit=unit, places=0, sep=""))
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on a short log axis


def isoflop_figure(result: dict):
    families = result["families"]
    fig = _figure(3.6 * max(1, len(families)) + 1.6)
    axes = fig.subplots(1, len(families), sharey=True, squeeze=False)[0]
    budgets = sorted({r["budget_flops"] for f in families.values() for r in f["runs"]})
    cmap = {b: f"C{j}" for j, b in enumerate(budgets)}
    for ax, (family, entry) in zip(axes, families.items(), strict=True):
        first = [r for r in entry["runs"] if r["seed"] == entry["runs"][0]["seed"]]
        for budget in budgets:
            cell = sorted(
                (r for r in first if r["budget_flops"] == budget and r["selected"] is not False),
                key=lambda r: r["params"],
            )
            if not cell:
                continue
            ax.plot([r["params"] for r in cell], [r["val_bpb"] for r in cell], "o-",
                    color=cmap[budget], ms=4, label=f"{budget:.2g} FLOPs")  # fmt: skip
        for p in entry["frontier"]:
            ax.plot(p["params"], min(p["val_bpb_seeds"][:1]), "*", color=cmap[p["budget_flops"]],
                    ms=13, mec="black", mew=0.6, zorder=3)  # fmt: skip
        _log_x(ax, "", subs=(1.0, 2.0, 5.0))  # the ladders span less than a decade
        ax.set_title(family)
        ax.set_xlabel("parameters")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(VAL_AXIS)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", title="budget", fontsize=8)
    fig.suptitle("IsoFLOP curves: one curve per training budget, ★ its lowest (first seed)")
    return fig


def frontier_figure(result: dict):
    fig = _figure(9.5)
    ax = fig.subplots()
    largest = 0.0
    for i, (family, entry) in enumerate(result["families"].items()):
        points, color = entry["frontier"], _color(family, i)
        if not points:
            continue
        c = np.array([p["budget_flops"] for p in points])
        mean = np.array([p["val_bpb"] for p in points])
        lo = mean - np.array([min(p["val_bpb_seeds"]) for p in points])
        hi = np.array([max(p["val_bpb_seeds"]) for p in points]) - mean
        seeds = min(len(p["val_bpb_seeds"]) for p in points)
        ax.errorbar(c, mean, yerr=[lo, hi], fmt="o", color=color, capsize=3, ms=5,
                    label=f"{family}: best size per budget (mean, range of {seeds} seeds)")  # fmt: skip
        largest = max(largest, c.max())
        fit = entry.get("fit")
        if not fit:
            continue
        inside = np.geomspace(c.min(), c.max(), 100)
        beyond = np.geomspace(c.max(), CROSSING_RANGE * c.max(), 100)
        ax.plot(inside, predict(fit, inside), "-", color=color, lw=1.5,
                label=f"{family} fit: {fit['E']:.2f} + {fit['A']:.3g} C^-{fit['alpha']:.3f}")  # fmt: skip
        ax.plot(beyond, predict(fit, beyond), "--", color=color, lw=1.2)
        boot = bootstrap_fits(points, n=300)
        if boot:
            grid = np.concatenate([inside, beyond])
            low, high = band(boot, grid)
            ax.fill_between(grid, low, high, color=color, alpha=0.15, lw=0)
    if largest:
        ax.axvline(largest, color="grey", lw=0.8, ls=":")
        ax.text(largest * 1.1, 0.98, "extrapolation (dashed) →", transform=ax.get_xaxis_transform(),
                va="top", fontsize=8, color="grey")  # fmt: skip
    _log_x(ax, "")
    ax.set_xlabel("training FLOPs (forward + backward, counted)")
    ax.set_ylabel(VAL_AXIS)
    ax.grid(alpha=0.3, which="both")
    ax.set_title("Compute frontier: shaded = 5-95% bootstrap band of the fit")
    fig.legend(loc="outside right upper", fontsize=8)
    return fig


def seconds_figure(result: dict):
    fig = _figure(9.5)
    ax = fig.subplots()
    loads = []
    for i, (family, entry) in enumerate(result["families"].items()):
        color = _color(family, i)
        runs = [r for r in entry["runs"] if r.get("fit_time_s")]
        loads += [v for r in runs for v in (r.get("load_avg_start"), r.get("load_avg_end")) if v]
        ax.plot([r["fit_time_s"] for r in runs], [r["val_bpb"] for r in runs], ".", color=color,
                alpha=0.35, ms=6, label=f"{family}: every run")  # fmt: skip
        points = sorted(
            (r for r in runs if r.get("frontier_point")), key=lambda r: r["budget_flops"]
        )
        first = [r for r in points if r["seed"] == runs[0]["seed"]]
        ax.plot([r["fit_time_s"] for r in first], [r["val_bpb"] for r in first], "o-",
                color=color, ms=5, label=f"{family}: best size per budget (first seed)")  # fmt: skip
    _log_x(ax, "s")
    ax.set_xlabel("wall-clock seconds of the fit (training + validation, one thread)")
    ax.set_ylabel(VAL_AXIS)
    ax.grid(alpha=0.3, which="both")
    load = f"; 1-min load average {min(loads):.1f}-{max(loads):.1f} on 2 cores" if loads else ""
    ax.set_title(f"Validation bpb against time{load}", fontsize=10)
    fig.legend(loc="outside right upper", fontsize=8)
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
