"""The chart kinds: curves of runs against steps, tokens, epochs, FLOPs or seconds; bars with
the seeds' range; a value against model size; bits per byte by context. Each returns its
Figure, drawn in the house style (`style.py`) and clean under `figure_problems`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, FuncFormatter

import bdh_pl.charts.style as style
from bdh_pl.charts.curves import Curve, fit_seconds, steps_done, tokens_seen
from bdh_pl.errors import UserError

AXES = {
    "steps": "optimizer steps",
    "tokens": "training tokens",
    "epochs": "epochs (passes over the training split)",
    "flops": "training compute (FLOPs, forward + backward)",
    "seconds": "wall-clock time of the fit (seconds, with validation)",
}


@dataclass
class Series:
    """One run's curves as drawn: its legend entry (None: the entry of an earlier series of
    the same model), colour and line style, and what converts steps to the other x axes."""

    label: str | None
    color: str
    curves: dict[str, Curve]
    per_step: int | None = None
    linestyle: str = "-"
    flops_per_token: float | None = None
    tokens_per_epoch: float | None = None
    tested_step: int | None = None


def x_values(series: Series, curve: Curve, x: str) -> list[float] | None:
    """The x of each logged point on axis `x` (see AXES); None when the run cannot say."""
    steps = steps_done(curve)
    if x == "steps":
        return [float(s) for s in steps]
    if x == "seconds":
        return fit_seconds(series.curves, steps)
    if not series.per_step:
        return None
    tokens = tokens_seen(curve, series.per_step)
    if x == "tokens":
        return [float(t) for t in tokens]
    scale = {"flops": series.flops_per_token, "epochs": 1 / (series.tokens_per_epoch or math.inf)}
    return [t * scale[x] for t in tokens] if scale[x] else None


def draw_curve(
    ax, series: Series, key: str, x: str, linewidth: float = 1.5, count_points: bool = False,
    mark: dict | None = None,
) -> bool:  # fmt: skip
    """One series' curve of `key` on axis `x`; validation points marked, the tested
    checkpoint starred (or marked with `mark`); `count_points`: a legend entry says when
    its line rests on fewer than 3 validations. False when the run logged no such curve or
    cannot give that x."""
    curve = series.curves.get(key)
    xs = x_values(series, curve, x) if curve else None
    if not xs:
        return False
    validation = not key.startswith("train")
    label = series.label
    if label and count_points and validation and len(curve) < 3:
        label = f"{label} ({len(curve)} validation point{'s' * (len(curve) > 1)})"
    ax.plot(
        xs, [v for _, v in curve], color=series.color, linestyle=series.linestyle,
        marker="o" if validation else None, markersize=3, linewidth=linewidth, label=label,
    )  # fmt: skip
    steps = steps_done(curve)
    if validation and series.tested_step in steps:
        i = steps.index(series.tested_step)
        ax.scatter([xs[i]], [curve[i][1]], color=series.color, **(mark or style.STAR))
    return True


def legend_extras(ax, series: list[Series], seeds: list | None = None) -> None:
    """Legend entries for what the marks mean: the star, and one line style per seed."""
    if any(s.tested_step is not None for s in series):
        ax.scatter([], [], color="white", label="tested checkpoint", **style.STAR)
    for i, seed in enumerate(seeds or []):
        ax.add_line(
            Line2D([], [], color="grey", linestyle=style.seed_style(i), label=f"seed {seed}")
        )


def curves_figure(
    series: list[Series], panels: list[tuple[str, str, str, str]], title: str,
    seeds: list | None = None, note: str | None = None,
) -> Figure:  # fmt: skip
    """One panel per (metric, x axis, panel title, y label), one line per series; one legend
    under the panels. `seeds`: the seeds told apart by line style (legend entries)."""
    fig = style.new_figure(len(panels))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, x, panel_title, ylabel) in zip(axes, panels, strict=True):
        drawn = [draw_curve(ax, s, key, x, count_points=True) for s in series]
        style.finish_axes(ax, panel_title, AXES[x], ylabel)
        if not any(drawn):
            ax.text(0.5, 0.5, "not logged", transform=ax.transAxes, ha="center")
        elif x in ("flops", "seconds"):
            style.log_axis(ax, "x")
        else:
            style.eng_axis(ax.xaxis)
    validation = any(not key.startswith("train") for key, *_ in panels)
    legend_extras(axes[0], series if validation else [], seeds)
    style.suptitle(fig, title)
    style.legend_outside(fig)
    if note:
        style.caption(fig, note)
    return fig


def training_curves_figure(
    curves: dict[str, Curve], per_step: int | None, title: str = "Training run"
) -> Figure:
    """Train and validation loss of one run against steps done, and against tokens seen
    when known: the gap between them is where overfitting shows."""
    if not any(curves.get(k) for k in ("train/loss", "val/loss")):
        raise UserError("the run logged no train/loss or val/loss")
    runs = [
        Series("train", "C0", {"train/loss": curves.get("train/loss", [])}, per_step),
        Series("validation", "C1", {"val/loss": curves.get("val/loss", [])}, per_step),
    ]
    axes = ["steps", *(["tokens"] if per_step else [])]
    fig = style.new_figure(len(axes))
    for ax, x in zip(fig.subplots(1, len(axes), squeeze=False)[0], axes, strict=True):
        for run in runs:
            draw_curve(ax, run, next(iter(run.curves)), x)
        style.finish_axes(ax, f"Loss by {x}", AXES[x], "loss (nats per token)")
        style.eng_axis(ax.xaxis)
    style.suptitle(fig, title)
    style.legend_outside(fig)
    return fig


def bar_figure(
    rows: list[dict], panels: list[tuple[str, str, str]], title: str, seeds_key: str = "test_bpb"
) -> Figure:
    """One panel per (row key, panel title, y label), one bar per model in its colour;
    `{seeds_key}_min/_max` as error bars (the seeds' range) where a model ran on several
    seeds, the value above the bar or its error bar. A missing value leaves a gap."""
    names = [_model_tick(r, seeds_key) for r in rows]
    fig = style.new_figure(len(panels), width=max(4.5, 1.1 * len(rows) + 2.4) * len(panels))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    ranged = False
    for ax, (key, panel_title, ylabel) in zip(axes, panels, strict=True):
        for i, r in enumerate(rows):
            value = style.number(r.get(key))
            if value is None:
                continue
            rects = ax.bar([i], [value], color=style.model_color(i), width=0.6)
            top = None
            if key == seeds_key and (r.get(f"{key}_n") or 0) > 1:
                low, high = r[f"{key}_min"], r[f"{key}_max"]
                ax.errorbar([i], [value], yerr=[[value - low], [high - value]], color="black",
                            capsize=4)  # fmt: skip
                top, ranged = high, True
            style.value_labels(ax, rects, [value], [top] if top is not None else None)
        ax.set_xticks(range(len(rows)), names)
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.margins(y=0.15)  # room for the value labels
        style.finish_axes(ax, panel_title, "model", ylabel)
    style.suptitle(fig, title)
    if ranged:
        style.caption(fig, "Bar: mean over seeds; error bar: the lowest and the highest seed.")
    return fig


def _model_tick(row: dict, seeds_key: str) -> str:
    n = row.get(f"{seeds_key}_n")
    return f"{row['model']}\n({n} seeds)" if n and n > 1 else row["model"]


def size_figure(rows: list[dict], y: str, title: str, ylabel: str) -> Figure:
    """`y` against parameters, one point per model, y from 0. Sizes within 10% of each
    other are one size: the models stand side by side, their sizes under their names."""
    points = [
        (r, style.number(r.get("params")), style.number(r.get(y)))
        for r in rows
        if style.number(r.get("params")) and style.number(r.get(y)) is not None
    ]
    fig = style.new_figure(1)
    ax = fig.subplots()
    sizes = [p for _, p, _ in points]
    side_by_side = bool(sizes) and max(sizes) <= 1.1 * min(sizes)
    ranged = False
    for i, (r, params, value) in enumerate(points):
        xv = i if side_by_side else params
        ax.scatter([xv], [value], color=style.model_color(rows.index(r)), s=40, label=r["model"])
        low, high = r.get(f"{y}_min"), r.get(f"{y}_max")
        if (r.get(f"{y}_n") or 0) > 1 and low is not None and high is not None:
            ax.errorbar([xv], [value], yerr=[[value - low], [high - value]],
                        color=style.model_color(rows.index(r)), capsize=4)  # fmt: skip
            ranged = True
    if side_by_side:
        ticks = [f"{r['model']}\n{EngFormatter(places=2, sep='')(p)} params" for r, p, _ in points]
        ax.set_xticks(range(len(points)), ticks)
        ax.set_xlim(-0.6, len(points) - 0.4)
        xlabel = "model (sizes within 10%: side by side)"
    else:
        if sizes and max(sizes) / min(sizes) >= 10:
            ax.margins(x=0.15)
            style.log_axis(ax, "x")
        else:  # from 0: sizes 10% apart look 10% apart
            ax.set_xlim(0, 1.12 * max(sizes, default=1))
            style.eng_axis(ax.xaxis)
        xlabel = "parameters"
    ax.set_ylim(0, 1.15 * max((v for _, _, v in points), default=1))
    style.finish_axes(ax, title, xlabel, ylabel)
    if not side_by_side:
        style.legend_outside(fig)
    if ranged:
        style.caption(fig, "Point: mean over seeds; error bar: the lowest and the highest seed.")
    return fig


def context_figure(runs: list[dict[str, Any]], min_bytes: int, note: str | None = None) -> Figure:
    """Bits per byte against the context each byte had (context_curve.json's runs): one colour
    per model (its label), one line style per way of reading it (stream, windows, sliding);
    each bucket drawn at the mean context of its bytes, hollow when it holds fewer than
    `min_bytes` bytes; a dotted line at each training window length."""
    fig = style.new_figure(1, width=8.5)
    ax = fig.subplots()
    models = list(dict.fromkeys(r["label"] for r in runs))
    modes = {"stream": "-", "windows": "--", "sliding": ":"}
    for run in runs:
        points = [b for b in run["buckets"] if b["bpb"] is not None and b["bytes"]]
        xs = [max(b.get("mean_context") or _midpoint(b), 1.0) for b in points]
        style.plot_points(
            ax, xs, [b["bpb"] for b in points], [b["bytes"] for b in points], min_bytes,
            style.model_color(models.index(run["label"])), linestyle=modes.get(run["mode"], "-"),
        )  # fmt: skip
    for i, model in enumerate(models):
        ax.plot([], [], color=style.model_color(i), label=model)
    for mode, run in {r["mode"]: r for r in runs}.items():
        ax.plot([], [], color="grey", linestyle=modes.get(mode, "-"), label=_read(run))
    blocks = sorted({r["block_size"] for r in runs})
    for block in blocks:
        ax.axvline(block, color="grey", linestyle=":", linewidth=1)
    window = f"training window: {' or '.join(f'{b:,}' for b in blocks)} bytes"
    ax.plot([], [], color="grey", linestyle=":", linewidth=1, label=window)
    ax.plot([], [], linestyle="none", marker="o", markerfacecolor="white", markeredgecolor="grey",
            label=f"hollow: fewer than {min_bytes:,} bytes in the bucket")  # fmt: skip
    style.log_axis(ax, "x")
    style.finish_axes(
        ax, "Bits per byte by context", "context before the byte (bytes, log)", "bits per byte"
    )
    style.legend_outside(fig, ncols=2)
    if note:
        style.caption(fig, note)
    return fig


def stream_gain_figure(runs: list[dict[str, Any]]) -> Figure | None:
    """What reading on from the start of an article saves (context_curve.json's stream_gain):
    per bucket of stream context, windows bpb minus stream bpb on the same bytes, with its 5-95%
    band over resampled articles; colours as context_figure's. None without such rows."""
    rows = [r for r in runs if r.get("stream_gain")]
    if not rows:
        return None
    fig = style.new_figure(1, width=8.5)
    ax = fig.subplots()
    models = list(dict.fromkeys(r["label"] for r in runs))
    for run in rows:
        where = {b["from"]: b.get("mean_context") for b in run["buckets"]}
        points = [g for g in run["stream_gain"] if g["gain_bpb"] is not None and g["bytes"]]
        xs = [max(where.get(g["from"]) or _midpoint(g), 1.0) for g in points]
        ys = [g["gain_bpb"] for g in points]
        band = [g["band"] or [g["gain_bpb"]] * 2 for g in points]
        errors = [
            [y - lo for y, (lo, _) in zip(ys, band, strict=True)],
            [hi - y for y, (_, hi) in zip(ys, band, strict=True)],
        ]
        ax.errorbar(xs, ys, yerr=errors, color=style.model_color(models.index(run["label"])),
                    marker="o", capsize=3, label=run["label"])  # fmt: skip
    ax.axhline(0, color="grey", linewidth=1)
    for block in sorted({r["block_size"] for r in rows}):
        ax.axvline(block, color="grey", linestyle=":", linewidth=1)
    style.log_axis(ax, "x")
    # a lost bit per byte and a saved hundredth on one axis: linear only near 0
    ax.set_yscale("symlog", linthresh=0.02)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    style.finish_axes(
        ax, "What the stream saves over windows, on the same bytes",
        "context before the byte in the stream (bytes, log)",
        "bits per byte saved (symlog)",
    )  # fmt: skip
    style.legend_outside(fig)
    style.caption(
        fig,
        "Windows bpb minus stream bpb of the bytes in each bucket: above 0 the whole article "
        "before a byte predicts it better than the window it falls in. Bars: 5-95% over 1,000 "
        "resamples of articles; in an article's first window both reads are the same (0). "
        "Dotted: the training window. Axis linear within +-0.02.",
    )
    return fig


def _read(run: dict) -> str:
    block = run.get("block_size")
    return {
        "stream": "read as one stream",
        "windows": f"read in windows of {block}",
        "sliding": f"read in sliding windows of {block} (stride {run.get('stride')})",
    }.get(run["mode"], run["mode"])


def _midpoint(bucket: dict) -> float:
    """The geometric middle of a bucket [from, to) (an open last bucket: up to 4x its start)."""
    low = max(bucket["from"], 1)
    return math.sqrt(low * (bucket["to"] or 4 * low))
