"""A benchmark's charts, from its records (metrics.json) and the choices the benchmark made
(bench/stats.py: each model's chosen runs, the rows averaged over seeds), given as plain values:
the chart package imports nothing of the benchmark."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

import bdh_pl.charts.style as style
from bdh_pl.charts.curves import read_metrics, steps_done
from bdh_pl.charts.figures import (
    AXES,
    Series,
    bar_figure,
    curves_figure,
    draw_curve,
    legend_extras,
    size_figure,
)

CURVE_CHARTS = ("val_loss_bpb", "val_bpb_compute", "train_loss", "train_val_loss")
COMPARISON_CHARTS = ("test_bpb", "throughput", "peak_memory", "bpb_vs_params")  # 2+ models
SWEEP_CHART = "sweep_curves"  # drawn when some model was trained with several settings
LOSS = "loss (nats per token)"
BPB = "validation loss (bits per byte)"


@dataclass
class BenchmarkRecords:
    """What a benchmark's charts are drawn from."""

    experiment: str
    records: list[dict]  # every run, as in metrics.json
    rows: list[dict]  # one per model, its chosen runs averaged over seeds (stats.aggregate)
    chosen: dict[str, list[dict]]  # each model's runs of its chosen setting (stats.chosen_runs)
    swept: bool  # some model was trained with several settings (stats.swept)


def chart_names(data: BenchmarkRecords) -> list[str]:
    ok = [r for r in data.rows if r.get("status") == "ok"]
    names = [*CURVE_CHARTS] if _drawable(data.records) else []
    names += [*COMPARISON_CHARTS] if len(ok) > 1 else []
    return [*names, *([SWEEP_CHART] if data.swept and _drawable(data.records) else [])]


def _drawable(records: list[dict]) -> bool:
    return any(_has_curves(r) for r in records)


def _has_curves(r: dict) -> bool:
    return r.get("status") == "ok" and bool(r.get("fit_run")) and bool(r.get("tokens_per_step"))


def series_of(run: dict, label: str | None, color: str, linestyle: str = "-") -> Series:
    """A record's fit run as a Series; its tested checkpoint: `best_step`, or (records older
    than that field) the validation point whose loss is the record's best_val_loss."""
    curves = read_metrics(run["fit_run"])
    tested = run.get("best_step")
    if tested is None and run.get("best_val_loss") is not None:
        tested = next(
            (s + 1 for s, v in curves.get("val/loss", []) if v == run["best_val_loss"]), None
        )
    return Series(
        label, color, curves, run["tokens_per_step"], linestyle,
        run.get("train_flops_per_token"), run.get("train_split_tokens"), tested,
    )  # fmt: skip


def chosen_series(data: BenchmarkRecords) -> tuple[list[Series], list]:
    """Every chosen run: one colour per model, one line style per seed (and the seeds)."""
    seeds = list(dict.fromkeys(r.get("seed") for rs in data.chosen.values() for r in rs))
    series = []
    for i, runs in enumerate(data.chosen.values()):
        labelled = False
        for r in (r for r in runs if _has_curves(r)):
            style_ = style.seed_style(seeds.index(r.get("seed")))
            series.append(
                series_of(r, None if labelled else r["model"], style.model_color(i), style_)
            )
            labelled = True
    return series, seeds if len(seeds) > 1 else []


def star_early_only(series: list[Series]) -> str | None:
    """Stars only where a run was tested before its last validation (stars on every end
    point would pile up there); the caption that says so, when some run lost its star."""
    at_end = 0
    for s in series:
        last = steps_done(s.curves.get("val/loss", [])[-1:])
        if s.tested_step is not None and s.tested_step in last:
            s.tested_step, at_end = None, at_end + 1
    if not at_end:
        return None
    if at_end == len(series):
        return "Every run was tested at its last validation (its checkpoint with the lowest loss)."
    return "Runs without a star were tested at their last validation."


def benchmark_figures(data: BenchmarkRecords) -> dict[str, Figure]:
    """Every chart of `chart_names(data)`; failed models are left out."""
    names, name = chart_names(data), data.experiment
    rows = [r for r in data.rows if r.get("status") == "ok"]
    figures = {}
    if "val_loss_bpb" in names:
        series, seeds = chosen_series(data)
        note = star_early_only(series)
        x = x_axis(series)
        figures["val_loss_bpb"] = curves_figure(
            series,
            [("val/loss", x, "Validation loss per native token", LOSS),
             ("val/bpb", x, "Validation bits per byte", BPB)],
            f"{name}: validation during training", seeds, note,
        )  # fmt: skip
        figures["val_bpb_compute"] = curves_figure(
            series,
            [("val/bpb", "tokens", "at equal tokens", BPB),
             ("val/bpb", "flops", "at equal training compute", BPB),
             ("val/bpb", "seconds", "at equal wall-clock time", BPB)],
            f"{name}: validation bits per byte against tokens, FLOPs and seconds", seeds, note,
        )  # fmt: skip
        figures["train_loss"] = train_loss_figure(series, name, seeds)
        figures["train_val_loss"] = train_val_figure(data, name)
    if "test_bpb" in names:
        figures["test_bpb"] = bar_figure(
            rows, [("test_bpb", "test bits per byte (lower is better)", "bits per byte")], name,
        )  # fmt: skip
        figures["throughput"] = bar_figure(
            rows,
            [("train_tokens_per_sec", "Training throughput", "tokens per second"),
             ("eval_tokens_per_sec", "Evaluation throughput (test)", "tokens per second")],
            f"{name}: throughput",
        )  # fmt: skip
        cuda = rows[0].get("memory_kind") == "cuda"
        unit = "peak memory (MiB, CUDA max allocated)" if cuda else "peak memory (MiB, RSS)"
        figures["peak_memory"] = bar_figure(
            rows, [("train_peak_memory_mb", "Training", unit), ("test_peak_memory_mb", "Test", unit)],
            f"{name}: peak memory",
        )  # fmt: skip
        figures["bpb_vs_params"] = size_figure(
            rows, "test_bpb", f"{name}: test bits per byte against size", "test bits per byte"
        )
    if SWEEP_CHART in names:
        figures[SWEEP_CHART] = sweep_figure(data)
    return figures


def train_loss_figure(series: list[Series], name: str, seeds: list) -> Figure:
    """Training loss against tokens, y clipped at the highest loss after each run's first
    tenth (one model's first steps do not flatten the rest), the clip said in the caption."""
    fig = curves_figure(
        series, [("train/loss", "tokens", "training loss", LOSS)], name,
        seeds, "The first tenth of each run is above the frame (y clipped).",
    )  # fmt: skip
    tails = [[v for _, v in c[len(c) // 10 :]] for s in series if (c := s.curves.get("train/loss"))]
    if tails := [t for t in tails if t]:
        low, high = min(map(min, tails)), max(map(max, tails))
        fig.axes[0].set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    return fig


def train_val_figure(data: BenchmarkRecords, name: str) -> Figure:
    """Training and validation loss together, one panel per model's chosen run (one model:
    per setting of its first seed): validation above a falling training loss is overfitting."""
    panels = []
    for model, runs in data.chosen.items():
        every = [r for r in data.records if r["model"] == model and _has_curves(r)]
        first_seed = every[0].get("seed") if every else None
        sweep = [r for r in every if r.get("seed") == first_seed]
        one_model = len(data.chosen) == 1
        for r in sweep if one_model and len({r.get("setting") for r in sweep}) > 1 else runs[:1]:
            if _has_curves(r):
                panels.append(r)
    columns = min(3, len(panels))
    rows_ = -(-len(panels) // columns)
    fig = style.new_figure(len(panels), rows=rows_)
    axes = fig.subplots(rows_, columns, squeeze=False, sharey=True).ravel()
    runs = [series_of(r, None, "C0") for r in panels]
    x = x_axis(runs)
    for ax, r, s in zip(axes, panels, runs, strict=False):
        train = Series("training", "C0", {"train/loss": s.curves.get("train/loss", [])}, s.per_step,
                       tokens_per_epoch=s.tokens_per_epoch)  # fmt: skip
        val = Series("validation", "C1", {"val/loss": s.curves.get("val/loss", [])}, s.per_step,
                     tokens_per_epoch=s.tokens_per_epoch, tested_step=s.tested_step)  # fmt: skip
        draw_curve(ax, train, "train/loss", x, linewidth=1.0)
        tested = r.get("selected", True) is not False  # the chosen run: its best was tested
        draw_curve(ax, val, "val/loss", x, mark=style.STAR if tested else style.BEST)
        ax.tick_params(labelleft=True)
        setting = f" {r['setting']}" if r.get("setting") and len(panels) > len(data.chosen) else ""
        style.finish_axes(ax, f"{r['model']}{setting}", AXES[x], LOSS)
        style.eng_axis(ax.xaxis)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    legend_extras(axes[0], [val])
    if any(r.get("selected") is False for r in panels):
        axes[0].scatter([], [], color="white", label="best validation (not tested)", **style.BEST)
    style.suptitle(fig, f"{name}: training and validation loss")
    style.legend_outside(fig)
    style.caption(fig, "Training loss: the logged steps' batches, with dropout on; validation: "
                  "the whole validation split.")  # fmt: skip
    return fig


def sweep_figure(data: BenchmarkRecords) -> Figure:
    """One panel per swept model: validation bpb of every setting of its first seed, the
    chosen one thick, each run's tested checkpoint starred; y framed on the part where the
    settings differ (the first validations above it, said in the caption)."""
    by_model: dict[str, list[dict]] = {}
    for r in (r for r in data.records if _has_curves(r)):
        by_model.setdefault(r["model"], []).append(r)
    panels = {}
    for model, runs in by_model.items():
        first = [r for r in runs if r.get("seed") == runs[0].get("seed")]
        if len(first) > 1:
            panels[model] = first
    fig = style.new_figure(max(1, len(panels)), width=7.5 * max(1, len(panels)), height=5.2)
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    clipped = False
    for ax, (model, runs) in zip(axes, panels.items(), strict=False):
        series = []
        x = x_axis([series_of(r, None, "C0") for r in runs])
        for j, r in enumerate(runs):
            chosen = r.get("selected") is True
            label = f"{r.get('setting')}{' (chosen, tested)' if chosen else ''}"
            s = series_of(r, label, f"C{j}")
            last = steps_done(s.curves.get("val/bpb", [])[-1:])
            if not chosen and s.tested_step in last:
                s.tested_step = None  # its best is its last point: nothing to mark
            series.append(s)
            mark = style.STAR if chosen else style.BEST
            draw_curve(ax, s, "val/bpb", x, 2.6 if chosen else 1.2, mark=mark)
        clipped |= _frame_on_differences(ax, series)
        style.finish_axes(ax, f"{model}: validation per setting", AXES[x], BPB)
        style.eng_axis(ax.xaxis)
        ax.scatter([], [], color="white", label="tested checkpoint", **style.STAR)
        if any(s.tested_step is not None and "chosen" not in s.label for s in series):
            ax.scatter([], [], color="white", label="best validation before the end", **style.BEST)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2, fontsize=8,
                  frameon=False)  # fmt: skip
    style.suptitle(fig, f"{data.experiment}: sweep (first seed)")
    if clipped:
        style.caption(fig, "The first validations are above the frame (y framed on the part "
                      "where the settings differ).")  # fmt: skip
    return fig


def x_axis(series: list[Series]) -> str:
    """Epochs when every run knows its training split and one passes over it twice or more
    (where overfitting can show); else tokens."""
    if not series or not all(s.tokens_per_epoch and s.per_step for s in series):
        return "tokens"
    passes = [
        (max(step for c in s.curves.values() for step, _ in c[-1:]) + 1)
        * s.per_step
        / s.tokens_per_epoch
        for s in series
        if any(s.curves.values())
    ]
    return "epochs" if passes and max(passes) >= 2 else "tokens"


def _frame_on_differences(ax, series: list[Series]) -> bool:
    """y from the lowest point to the highest after each curve's first quarter; True when
    that clips some point."""
    curves = [c for s in series if (c := s.curves.get("val/bpb"))]
    if not curves:
        return False
    tails = [v for c in curves for _, v in c[len(c) // 4 :]]
    every = [v for c in curves for _, v in c]
    low, high = min(every), max(tails)
    pad = 0.08 * (high - low or 1)
    ax.set_ylim(low - pad, high + pad)
    return max(every) > high + pad


def write_benchmark_charts(data: BenchmarkRecords, out: str | Path) -> list[Path]:
    figures = benchmark_figures(data)
    return [style.save_figure(fig, Path(out) / f"{name}.png") for name, fig in figures.items()]
