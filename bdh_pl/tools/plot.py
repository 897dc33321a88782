"""Charts: the loss curves of one training run (`plot` subcommand) and the benchmark figures.

python -m bdh_pl plot --run lightning_logs/version_3 --out results/my-run/charts
python -m bdh_pl plot --results results/smoke        # redraw a benchmark's charts/

A run is read from the CSV logger's metrics.csv, or its TensorBoard event files when there is no
CSV. Tokens seen come from the run's hparams.yaml/config.yaml: Lightning logs a row at step s
after s + 1 optimizer steps, each of batch_size * block_size * accumulate_grad_batches tokens
per device. Every function that draws returns its Figure, so tests can count the lines.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator, NullFormatter

from bdh_pl.errors import ArgumentParser, UserError
from bdh_pl.fileio import atomic_write_bytes, check_writable

Curve = list[tuple[int, float]]  # (logged step, value)
TOKENS_AXIS = "tokens seen (training)"


# --- reading a run ---------------------------------------------------------------------------


def find_log_dir(run: str | Path) -> Path:
    """The folder holding a run's logs: the given one, or its newest version_N."""
    path = Path(run)
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        raise UserError(f"no run at {run}: give a log folder such as lightning_logs/version_0")
    if not _has_logs(path):
        versions = sorted(
            (p for p in path.glob("version_*") if _has_logs(p)),
            key=lambda p: int(p.name.split("_")[-1]) if p.name[8:].isdigit() else -1,
        )
        if not versions:
            raise UserError(f"{run} has no metrics.csv or TensorBoard event file")
        path = versions[-1]
    return path


def _has_logs(path: Path) -> bool:
    return (path / "metrics.csv").is_file() or any(path.glob("events.out.tfevents.*"))


def read_metrics(run: str | Path) -> dict[str, Curve]:
    """Every logged metric of a run as {name: [(step, value), ...]}, sorted by step."""
    log_dir = find_log_dir(run)
    csv_path = log_dir / "metrics.csv"
    curves = _read_csv(csv_path) if csv_path.is_file() else _read_events(log_dir)
    return {name: sorted(points) for name, points in curves.items()}


def _read_csv(path: Path) -> dict[str, Curve]:
    curves: dict[str, Curve] = {}
    line = 1
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for row in reader:
                line = reader.line_num
                step = row.get("step")
                if not step:
                    continue
                for name, value in row.items():
                    if name not in ("step", "epoch") and value not in (None, ""):
                        curves.setdefault(name, []).append((int(float(step)), float(value)))
    except (UnicodeDecodeError, ValueError, TypeError, csv.Error) as err:
        raise UserError(
            f"{path} is not a metrics CSV written by a run (line {line}: {err}); give a run's "
            "folder, or delete the damaged file to plot from its TensorBoard events"
        ) from None
    return curves


def _read_events(log_dir: Path) -> dict[str, Curve]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, Curve] = {}
    for events in sorted(log_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})  # 0: keep all
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            curves.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return curves


def tokens_per_step(run: str | Path) -> int | None:
    """Training tokens per optimizer step, from the run's hparams.yaml and config.yaml;
    None when the run does not say (then curves are drawn against steps only)."""
    log_dir = find_log_dir(run)
    hparams = _load_yaml(log_dir / "hparams.yaml")
    config = _load_yaml(log_dir / "config.yaml")
    data = (config.get("data") or {}).get("init_args") or {}
    batch = hparams.get("batch_size") or data.get("batch_size")
    block = hparams.get("block_size") or data.get("block_size")
    if not batch or not block:
        return None
    trainer = config.get("trainer") or {}
    devices = trainer.get("devices")
    world = (
        len(devices) if isinstance(devices, list) else devices if isinstance(devices, int) else 1
    )
    world *= trainer.get("num_nodes") or 1
    return int(batch) * int(block) * int(trainer.get("accumulate_grad_batches") or 1) * world


def _load_yaml(path: Path) -> dict:
    if not path.is_file():
        return {}
    with open(path) as f:
        return yaml.safe_load(f) or {}


def steps_done(curve: Curve) -> list[int]:
    return [step + 1 for step, _ in curve]  # Lightning logs step s after s + 1 steps


def tokens_seen(curve: Curve, per_step: int) -> list[int]:
    return [n * per_step for n in steps_done(curve)]


# --- figures -------------------------------------------------------------------------------


def _figure(width: float) -> Figure:
    # The object API with the Agg canvas: no pyplot state, no window, figures freed by GC.
    fig = Figure(figsize=(width, 4.2))
    FigureCanvasAgg(fig)
    return fig


def _finish(ax, title: str, xlabel: str, ylabel: str, tokens: bool = False) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if tokens:
        ax.xaxis.set_major_formatter(EngFormatter())
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


def training_curves_figure(
    curves: dict[str, Curve], per_step: int | None, title: str = "Training run"
) -> Figure:
    """Train and validation loss against steps done, and against tokens seen when known."""
    series = [(k, label) for k, label in (("train/loss", "train"), ("val/loss", "validation"))]
    series = [(k, label) for k, label in series if curves.get(k)]
    if not series:
        raise UserError("the run logged no train/loss or val/loss")
    n_axes = 2 if per_step else 1
    fig = _figure(6 * n_axes)
    axes = fig.subplots(1, n_axes, squeeze=False)[0]
    for key, label in series:
        _line(axes[0], steps_done(curves[key]), curves[key], key, label)
        if per_step:
            _line(axes[1], tokens_seen(curves[key], per_step), curves[key], key, label)
    _finish(axes[0], "Loss by step", "optimizer steps", "loss (nats / token)")
    if per_step:
        _finish(axes[1], "Loss by tokens", TOKENS_AXIS, "loss (nats / token)", tokens=True)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _title(fig: Figure, title: str) -> None:
    if len(fig.axes) == 1:  # one panel: one title
        fig.axes[0].set_title(f"{title}: {fig.axes[0].get_title()}")
    else:
        fig.suptitle(title)
    fig.tight_layout()


def _line(ax, xs: list[float], curve: Curve, key: str, label: str, color: str | None = None):
    # Validation points are few and far apart: mark them; training curves are dense.
    marker = "o" if key.startswith("val") else None
    ax.plot(xs, [v for _, v in curve], label=label, color=color, marker=marker, markersize=3)


def bar_figure(records: list[dict], panels: list[tuple[str, str, str]], title: str) -> Figure:
    """One panel per (record key, panel title, y label), one bar per model, in the model's
    colour of every other chart. Missing values leave a gap."""
    models = [r["model"] for r in records]
    fig = _figure(max(6.0, 0.9 * len(models) + 2.5) * len(panels))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, panel_title, ylabel) in zip(axes, panels, strict=True):
        for i, r in enumerate(records):
            value = _number(r.get(key))
            if value is not None:
                rects = ax.bar([i], [value], color=f"C{i}", width=0.6)
                ax.bar_label(rects, fmt=_short, fontsize=8)
        ax.set_xticks(range(len(models)), models, rotation=20 if len(models) > 3 else 0)
        ax.set_xlim(-0.6, len(models) - 0.4)  # one model: a bar, not a wall
        ax.margins(y=0.12)  # room for the value labels
        _finish(ax, panel_title, "model", ylabel)
    _title(fig, title)
    return fig


def scatter_figure(records: list[dict], x: str, y: str, title: str, xlabel: str, ylabel: str):
    """One point per model, in its colour; log x when the values span a decade or more."""
    fig = _figure(6)
    ax = fig.subplots()
    xs = []
    for i, r in enumerate(records):
        xv, yv = _number(r.get(x)), _number(r.get(y))
        if xv is not None and yv is not None:
            ax.scatter([xv], [yv], color=f"C{i}", label=r["model"], s=40)
            xs.append(xv)
            low, high = r.get(f"{y}_min"), r.get(f"{y}_max")
            if (r.get(f"{y}_n") or 0) > 1 and low is not None and high is not None:
                ax.errorbar([xv], [yv], yerr=[[yv - low], [high - yv]], color=f"C{i}", capsize=4)
    if xs and min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # decade labels only
        ax.margins(x=0.15, y=0.15)
    else:
        # Within a decade the axis starts at 0: sizes 1% apart look 1% apart, not axis-wide.
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.set_xlim(0, 1.15 * max(xs) if xs else 1)
        ax.margins(y=0.15)
    ax.xaxis.set_major_formatter(EngFormatter())
    _finish(ax, title, xlabel, ylabel)
    fig.tight_layout()
    return fig


def _number(value) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _short(value: float) -> str:
    if abs(value) >= 1e5:
        return EngFormatter(places=1)(value)
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def save_figure(fig: Figure, path: str | Path) -> Path:
    """PNG written atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


# --- the benchmark's charts ------------------------------------------------------------------

BENCHMARK_CHARTS = (
    "val_loss_bpb", "val_bpb_compute", "train_loss", "test_bpb", "throughput", "peak_memory",
    "bpb_vs_params",
)  # fmt: skip
SWEEP_CHART = "sweep_curves"  # drawn when some model was trained with several settings
FLOPS_AXIS = "training FLOPs (forward + backward)"
SECONDS_AXIS = "wall-clock seconds of the fit (training + validation)"


def benchmark_chart_names(records: list[dict]) -> list[str]:
    from bdh_pl.bench.report import swept

    return [*BENCHMARK_CHARTS, *([SWEEP_CHART] if swept(records) else [])]


def _plotted_runs(records: list[dict], chosen_only: bool = True) -> list[dict]:
    """The fit runs to draw, each {label, color, curves, per_step, flops, best_step, record}:
    the chosen setting's runs of every model (all seeds, one colour and one legend entry per
    model), or every run."""
    from bdh_pl.bench.stats import chosen_runs

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
    fig = _figure(6 * len(panels))
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
        _finish(ax, panel_title, xlabel, ylabel, tokens=True)
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
    fig = _figure(6 * max(1, len(panels)))
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
        _finish(ax, f"{model}: validation per setting", TOKENS_AXIS, "bits per byte", tokens=True)
    _title(fig, title)
    return fig


def benchmark_figures(records: list[dict], experiment: str) -> dict[str, Figure]:
    """The charts of a benchmark's records (metrics.json): curves of each model's chosen
    runs (all seeds), bars and points of its figures averaged over seeds (min-max as error
    bars); failed models are left out. Records older than sweeps and seeds work as is."""
    from bdh_pl.bench.stats import aggregate

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


# --- the `plot` subcommand -------------------------------------------------------------------


def plot_run(run: str | Path, out: str | Path) -> Path:
    log_dir = find_log_dir(run)
    fig = training_curves_figure(read_metrics(log_dir), tokens_per_step(log_dir), str(log_dir))
    return save_figure(fig, Path(out) / "training_curves.png")


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(
        prog="python -m bdh_pl plot",
        description="Loss curves of one run (--run), or redraw a benchmark's charts (--results).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="log folder (e.g. lightning_logs/version_3)")
    source.add_argument("--results", help="benchmark folder with metrics.json (results/smoke)")
    parser.add_argument("--out", help="output folder (default: {run or results}/charts)")
    args = parser.parse_args(argv)
    if args.run:
        out = Path(args.out or find_log_dir(args.run) / "charts")
        check_writable(out, "give --out a writable folder")
        print(plot_run(args.run, out))
        return
    path = Path(args.results) / "metrics.json"
    if not path.is_file():
        raise UserError(f"{path} not found: give the folder a benchmark wrote")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        records, experiment = results["records"], results["experiment"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"{path} is not a benchmark's metrics.json ({type(err).__name__}: {err}); "
            "rerun the benchmark to rewrite it"
        ) from None
    out = Path(args.out or Path(args.results) / "charts")
    check_writable(out, "give --out a writable folder")
    for chart in write_benchmark_charts(records, experiment, out):
        print(chart)
