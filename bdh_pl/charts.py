"""Charts of training runs: reading a run's curves (metrics.csv, else TensorBoard events) and
the figure helpers that `plot` and the benchmark report share.

Tokens seen come from the run's hparams.yaml/config.yaml: Lightning logs a row at step s after
s + 1 optimizer steps, each of batch_size * block_size * accumulate_grad_batches tokens per
device. Every function that draws returns its Figure, so tests can count the lines.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator, NullFormatter

from bdh_pl.errors import UserError
from bdh_pl.fileio import atomic_write_bytes

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


def new_figure(width: float) -> Figure:
    # The object API with the Agg canvas: no pyplot state, no window, figures freed by GC.
    fig = Figure(figsize=(width, 4.2))
    FigureCanvasAgg(fig)
    return fig


def finish_axes(ax, title: str, xlabel: str, ylabel: str, tokens: bool = False) -> None:
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
    fig = new_figure(6 * n_axes)
    axes = fig.subplots(1, n_axes, squeeze=False)[0]
    for key, label in series:
        _line(axes[0], steps_done(curves[key]), curves[key], key, label)
        if per_step:
            _line(axes[1], tokens_seen(curves[key], per_step), curves[key], key, label)
    finish_axes(axes[0], "Loss by step", "optimizer steps", "loss (nats / token)")
    if per_step:
        finish_axes(axes[1], "Loss by tokens", TOKENS_AXIS, "loss (nats / token)", tokens=True)
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
    fig = new_figure(max(6.0, 0.9 * len(models) + 2.5) * len(panels))
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
        finish_axes(ax, panel_title, "model", ylabel)
    _title(fig, title)
    return fig


def scatter_figure(records: list[dict], x: str, y: str, title: str, xlabel: str, ylabel: str):
    """One point per model, in its colour; log x when the values span a decade or more."""
    fig = new_figure(6)
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
    finish_axes(ax, title, xlabel, ylabel)
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
