"""The benchmark's charts: validation curves against tokens, FLOPs and wall-clock seconds, test
bpb with its spread over seeds, size and speed scatters, sweep curves."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, NullFormatter

from bdh_pl.bench.stats import aggregate, chosen_runs, swept
from bdh_pl.charts import (
    TOKENS_AXIS,
    Curve,
    _line,
    _number,
    _title,
    bar_figure,
    finish_axes,
    new_figure,
    read_metrics,
    save_figure,
    scatter_figure,
    steps_done,
    tokens_seen,
)

BENCHMARK_CHARTS = (
    "val_loss_bpb", "val_bpb_compute", "train_loss", "test_bpb", "throughput", "peak_memory",
    "bpb_vs_params",
)  # fmt: skip
SWEEP_CHART = "sweep_curves"  # drawn when some model was trained with several settings
FLOPS_AXIS = "training FLOPs (forward + backward)"
SECONDS_AXIS = "wall-clock seconds of the fit (training + validation)"


def benchmark_chart_names(records: list[dict]) -> list[str]:

    return [*BENCHMARK_CHARTS, *([SWEEP_CHART] if swept(records) else [])]


def _plotted_runs(records: list[dict], chosen_only: bool = True) -> list[dict]:
    """The fit runs to draw, each {label, color, curves, per_step, flops, best_step, record}:
    the chosen setting's runs of every model (all seeds, one colour and one legend entry per
    model), or every run."""

    groups = chosen_runs(records)
    if not chosen_only:
        groups = {m: [r for r in records if r["model"] == m] for m in groups}
    runs = []
    for i, (model, group) in enumerate(groups.items()):
        labelled = False
        for r in group:
            if r.get("status") != "ok" or not r.get("fit_run") or not r.get("tokens_per_step"):
                continue
            runs.append(
                {
                    "label": None if labelled and chosen_only else model,
                    "color": f"C{i}",
                    "curves": read_metrics(r["fit_run"]),
                    "per_step": r["tokens_per_step"],
                    "flops": r.get("train_flops_per_token"),
                    "best_step": r.get("best_step"),
                    "record": r,
                }
            )
            labelled = True
    return runs


def fit_seconds(curves: dict[str, Curve], steps: list[int]) -> list[float] | None:
    """Wall-clock seconds into the fit after `steps` optimizer steps (each just after a
    validation): training time (Lightning's train/time, validation excluded) interpolated at
    the step, plus the validation passes so far (validate/time, one value per pass)."""
    import numpy as np

    train_time = curves.get("train/time")
    if not train_time:
        return None
    seconds = np.interp(steps, [s + 1 for s, _ in train_time], [v for _, v in train_time])
    passes = [v for _, v in curves.get("validate/time", [])]
    if len(passes) == len(steps):
        seconds = seconds + np.cumsum(passes)
    return [float(x) for x in seconds]


def _mark_best(ax, xs: list[float], curve: Curve, best_step, color: str, legend: bool) -> None:
    """A star on the validation point whose checkpoint was tested (`legend`: and one neutral
    star in the legend)."""
    steps = steps_done(curve)
    if best_step in steps:
        i = steps.index(best_step)
        star = {"marker": "*", "s": 140, "edgecolors": "black", "linewidths": 0.6, "zorder": 5}
        ax.scatter([xs[i]], [curve[i][1]], color=color, **star)
        if legend:
            ax.scatter([], [], color="white", label="tested checkpoint", **star)


def _log_x(ax) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(EngFormatter())
    low, high = ax.get_xlim()
    # Within about a decade there is one major tick at most: label the minor ones too.
    ax.xaxis.set_minor_formatter(EngFormatter() if high / low < 30 else NullFormatter())


def curves_figure(runs: list[dict], panels: list[tuple[str, str, str, str]], title: str):
    """One panel per (metric, x axis, panel title, y label), x: `tokens`, `flops` (log) or
    `seconds` (log); one line per run, the tested checkpoint starred."""
    fig = new_figure(6 * len(panels))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, x, panel_title, ylabel) in zip(axes, panels, strict=True):
        starred = False
        for run in runs:
            curve = run["curves"].get(key)
            if not curve:
                continue
            tokens = tokens_seen(curve, run["per_step"])
            if x == "tokens":
                xs = tokens
            elif x == "flops":
                xs = [t * run["flops"] for t in tokens] if run["flops"] else None
            else:
                xs = fit_seconds(run["curves"], steps_done(curve))
            if xs is None:
                continue
            _line(ax, xs, curve, key, run["label"], run["color"])
            if key.startswith("val"):
                _mark_best(ax, xs, curve, run["best_step"], run["color"], not starred)
                starred = starred or run["best_step"] in steps_done(curve)
        xlabel = {"tokens": TOKENS_AXIS, "flops": FLOPS_AXIS, "seconds": SECONDS_AXIS}[x]
        finish_axes(ax, panel_title, xlabel, ylabel, tokens=True)
        if x != "tokens" and ax.has_data():
            _log_x(ax)
    _title(fig, title)
    return fig


def train_loss_figure(runs: list[dict], title: str) -> Figure:
    """Training loss against tokens, log y, clipped above at the highest loss after each
    run's first tenth: one model's first steps do not flatten the rest."""
    fig = curves_figure(
        runs, [("train/loss", "tokens", "training loss", "loss (nats / token)")], title
    )
    ax = fig.axes[0]
    tails = [
        [v for _, v in c[len(c) // 10 :]] for run in runs if (c := run["curves"].get("train/loss"))
    ]
    if tails := [t for t in tails if t]:
        ax.set_yscale("log")
        ax.set_ylim(0.97 * min(min(t) for t in tails), 1.05 * max(max(t) for t in tails))
        ax.yaxis.set_major_formatter(EngFormatter(places=1, sep=""))
        ax.yaxis.set_minor_formatter(EngFormatter(places=1, sep=""))
        ax.set_title(f"{ax.get_title()} (log; first tenth of each run clipped)")
    return fig


def sweep_figure(records: list[dict], title: str) -> Figure:
    """One panel per model trained with several settings: validation bpb of every run of its
    first seed against tokens, the chosen one thick, each run's best checkpoint starred."""
    runs = _plotted_runs(records, chosen_only=False)
    by_model: dict[str, list[dict]] = {}
    for run in runs:
        by_model.setdefault(run["record"]["model"], []).append(run)
    first_seed = {m: rs[0]["record"].get("seed") for m, rs in by_model.items()}
    panels = {
        m: [r for r in rs if r["record"].get("seed") == first_seed[m]] for m, rs in by_model.items()
    }
    panels = {m: rs for m, rs in panels.items() if len(rs) > 1}
    fig = new_figure(6 * max(1, len(panels)))
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, (model, rs) in zip(axes, panels.items(), strict=False):
        for j, run in enumerate(rs):
            curve = run["curves"].get("val/bpb")
            if not curve:
                continue
            record = run["record"]
            xs = tokens_seen(curve, run["per_step"])
            chosen = record.get("selected") is True
            ax.plot(
                xs, [v for _, v in curve], color=f"C{j}", marker="o", markersize=3,
                linewidth=2.6 if chosen else 1.2,
                label=f"{record.get('setting')}{' (chosen)' if chosen else ''}",
            )  # fmt: skip
            _mark_best(ax, xs, curve, record.get("best_step"), f"C{j}", False)
        finish_axes(
            ax, f"{model}: validation per setting", TOKENS_AXIS, "bits per byte", tokens=True
        )
    _title(fig, title)
    return fig


def benchmark_figures(records: list[dict], experiment: str) -> dict[str, Figure]:
    """The charts of a benchmark's records (metrics.json): curves of each model's chosen
    runs (all seeds), bars and points of its figures averaged over seeds (min-max as error
    bars); failed models are left out. Records older than sweeps and seeds work as is."""

    rows = [r for r in aggregate(records) if r.get("status") == "ok"]
    if not rows:
        return {}
    runs = _plotted_runs(records)
    figures = {}
    if runs:
        figures["val_loss_bpb"] = curves_figure(
            runs,
            [
                ("val/loss", "tokens", "Validation loss (per native token)", "loss (nats / token)"),
                ("val/bpb", "tokens", "Validation bits per byte", "bits per byte"),
            ],
            f"{experiment}: validation during training",
        )
        figures["val_bpb_compute"] = curves_figure(
            runs,
            [
                ("val/bpb", "tokens", "by tokens", "validation bits per byte"),
                ("val/bpb", "flops", "by training compute", "validation bits per byte"),
                ("val/bpb", "seconds", "by wall-clock time", "validation bits per byte"),
            ],
            f"{experiment}: validation bpb against tokens, FLOPs and seconds",
        )
        figures["train_loss"] = train_loss_figure(runs, experiment)
    figures["test_bpb"] = bar_figure(
        rows,
        [("test_bpb", "test bits per byte (lower is better)", "bits per byte")],
        experiment,
    )
    _range_bars(figures["test_bpb"].axes[0], rows)
    figures["throughput"] = bar_figure(
        rows,
        [
            ("train_tokens_per_sec", "Training throughput", "tokens / s"),
            ("eval_tokens_per_sec", "Evaluation throughput (test)", "tokens / s"),
        ],
        f"{experiment}: throughput",
    )
    unit = "MiB, CUDA max allocated" if rows[0].get("memory_kind") == "cuda" else "MiB, process RSS"
    figures["peak_memory"] = bar_figure(
        rows,
        [
            ("train_peak_memory_mb", "Peak memory, training", unit),
            ("test_peak_memory_mb", "Peak memory, test", unit),
        ],
        f"{experiment}: peak memory",
    )
    figures["bpb_vs_params"] = scatter_figure(
        rows, "params", "test_bpb", f"{experiment}: test bpb against size", "parameters",
        "bits per byte",
    )  # fmt: skip
    if SWEEP_CHART in benchmark_chart_names(records):
        figures[SWEEP_CHART] = sweep_figure(records, f"{experiment}: sweep (first seed)")
    return figures


def _range_bars(ax, rows: list[dict]) -> None:
    """The seeds' min-max on each bar, where a model ran on several seeds."""
    for i, r in enumerate(rows):
        low, high, mean = r.get("test_bpb_min"), r.get("test_bpb_max"), _number(r.get("test_bpb"))
        if (r.get("test_bpb_n") or 0) > 1 and mean is not None:
            ax.errorbar([i], [mean], yerr=[[mean - low], [high - mean]], color="black", capsize=4)


def write_benchmark_charts(records: list[dict], experiment: str, out: str | Path) -> list[Path]:
    figures = benchmark_figures(records, experiment)
    return [save_figure(fig, Path(out) / f"{name}.png") for name, fig in figures.items()]
