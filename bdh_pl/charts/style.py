"""The house style every chart follows, as functions: a new figure, one panel's labels, log
axes whose labels cannot collide, legends and captions outside the data, value labels on bars,
points estimated from too few samples drawn hollow, and the atomic PNG save.

Rules (checked by `figure_problems` on the rendered figure):
- every axis says what it shows and in which unit: "validation loss (bits per byte)";
- a model keeps its colour (`model_color`) in every chart; seeds of one model differ by line
  style (`seed_style`), settings of a sweep by colour;
- validation points are marked; a line through fewer than 3 points shows its markers;
- the tested checkpoint is a star; error bars, stars, hollow points and dotted lines are
  explained in the legend or the caption;
- a point estimated from fewer than `min_samples` samples is hollow (`plot_points`);
- legends go outside the data when they might cover it (`legend_outside`).
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

from bdh_pl.fileio import atomic_write_bytes

PANEL_WIDTH, PANEL_HEIGHT = 5.2, 3.9  # inches; saved at DPI
DPI = 120
SEED_STYLES = ("-", "--", ":", "-.")
STAR = {"marker": "*", "s": 150, "edgecolors": "black", "linewidths": 0.6, "zorder": 5}
BEST = {"marker": "D", "s": 28, "edgecolors": "black", "linewidths": 0.6, "zorder": 5}


def new_figure(
    panels: int = 1, rows: int = 1, width: float | None = None, height: float | None = None
) -> Figure:
    """A figure of `panels` panels in `rows` rows, laid out by matplotlib's constrained layout
    (titles, labels and outside legends kept inside the figure). The object API on the Agg
    canvas: no pyplot state, no window, freed by the garbage collector."""
    columns = math.ceil(panels / rows)
    fig = Figure(
        figsize=(width or PANEL_WIDTH * columns, height or PANEL_HEIGHT * rows),
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    return fig


def model_color(index: int) -> str:
    """The colour of the model at `index` in the experiment's model order, in every chart."""
    return f"C{index % 10}"


def seed_style(index: int) -> str:
    """The line style of a model's `index`-th seed: solid, dashed, dotted, dash-dot."""
    return SEED_STYLES[index % len(SEED_STYLES)]


def finish_axes(ax, title: str, xlabel: str, ylabel: str) -> None:
    """Title (wrapped to the panel), axis labels, a light grid."""
    width_chars = int(ax.get_figure().get_figwidth() / max(1, _columns(ax)) * 11)
    ax.set_title(textwrap.fill(title, max(30, width_chars)), fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def _columns(ax) -> int:
    spec = ax.get_subplotspec()
    return spec.get_gridspec().ncols if spec is not None else 1


def suptitle(fig: Figure, title: str) -> None:
    """The figure's title; a one-panel figure's title is its panel's, prefixed: one line."""
    axes = [ax for ax in fig.axes if ax.get_visible()]
    if len(axes) == 1:
        finish_axes(axes[0], f"{title}: {axes[0].get_title()}", axes[0].get_xlabel(),
                    axes[0].get_ylabel())  # fmt: skip
        return
    fig.suptitle(textwrap.fill(title, int(fig.get_figwidth() * 12)), fontsize=11)


def eng_axis(axis, unit: str = "") -> None:
    """Engineering labels (1.2 M, 10 T) on a linear axis."""
    axis.set_major_formatter(EngFormatter(unit=unit, sep=" " if unit else ""))


def log_axis(ax, which: str = "x") -> None:
    """A log axis labelled at 1, 2 and 5 of each decade (when the range spans less than two
    decades; else at the decades only), minor ticks unlabelled: labels cannot collide."""
    getattr(ax, f"set_{which}scale")("log")
    axis = getattr(ax, f"{which}axis")
    low, high = sorted(getattr(ax, f"get_{which}lim")())
    subs = (1.0, 2.0, 5.0) if high / max(low, 1e-300) < 100 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(EngFormatter(places=0, sep=""))
    axis.set_minor_formatter(NullFormatter())


def plot_points(
    ax,
    xs: Sequence[float],
    ys: Sequence[float],
    samples: Sequence[int],
    min_samples: int,
    color: str,
    label: str | None = None,
    linestyle: str = "-",
    marker: str = "o",
):
    """A line through (x, y) points, each estimated from `samples[i]` samples: filled markers
    where there are at least `min_samples`, hollow ones (and a thin line into them) where there
    are fewer. The line records its sample counts for `figure_problems`."""
    (line,) = ax.plot(
        xs, ys, color=color, linestyle=linestyle, marker=marker, markersize=5, label=label,
        markevery=[i for i, n in enumerate(samples) if n >= min_samples] or [],
    )  # fmt: skip
    thin = [i for i, n in enumerate(samples) if n < min_samples]
    if thin:
        ax.plot(
            [xs[i] for i in thin], [ys[i] for i in thin], linestyle="none", marker=marker,
            markersize=6, markerfacecolor="white", markeredgecolor=color, zorder=4,
        )  # fmt: skip
    declare_samples(line, samples, min_samples)
    return line


def declare_samples(artist, samples: Sequence[int], min_samples: int) -> None:
    """Record on a drawn line how many samples each of its points rests on:
    `figure_problems` checks that every point with fewer than `min_samples` is drawn hollow."""
    artist.bdh_samples = (list(samples), min_samples)


def legend_outside(fig: Figure, ax=None, ncols: int | None = None):
    """One legend below the panels (`ax` given: that panel's entries only; else every
    panel's, each label once): it never covers data."""
    handles, labels = {}, {}
    for a in [ax] if ax is not None else fig.axes:
        for h, label in zip(*a.get_legend_handles_labels(), strict=True):
            if label not in labels and not label.startswith("_"):
                handles[label], labels[label] = h, label
    if not handles:
        return None
    n = len(handles)
    return fig.legend(
        list(handles.values()), list(labels.values()), loc="outside lower center",
        ncols=ncols or min(n, 4), fontsize=8, frameon=False,
    )  # fmt: skip


def caption(fig: Figure, text: str) -> None:
    """A note under the figure (what the marks mean, what was left out), wrapped to its width
    and kept inside it by the layout: the title of the legend under the panels, if there is
    one (call `legend_outside` first), else a line of its own."""
    wrapped = textwrap.fill(text, int(fig.get_figwidth() * 15))
    if fig.legends:
        fig.legends[0].set_title(wrapped, prop={"size": 8})
    else:
        fig.supxlabel(wrapped, fontsize=8)


def value_labels(ax, rects, values: Sequence[float], tops: Sequence[float] | None = None) -> None:
    """Each bar's value above the bar, or above `tops[i]` (the top of its error bar), so the
    label never sits on the error bar."""
    for rect, value, top in zip(rects, values, tops or [None] * len(values), strict=True):
        y = top if top is not None else rect.get_height()
        ax.annotate(
            short_number(value), (rect.get_x() + rect.get_width() / 2, y), xytext=(0, 3),
            textcoords="offset points", ha="center", va="bottom", fontsize=8,
        )  # fmt: skip


def short_number(value: float) -> str:
    """3.439, 12.5, 5,034, 1.2M: three decimals for small values (bits per byte)."""
    if abs(value) >= 1e5:
        return EngFormatter(places=1, sep="")(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"


def number(value) -> float | None:
    """A finite float, or None (missing, null, NaN, a string)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def save_figure(fig: Figure, path: str | Path) -> Path:
    """PNG written atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
