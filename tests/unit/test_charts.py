"""Every chart kind drawn from small synthetic records is clean under `figure_problems`, and
each check of `figure_problems` fails on a figure made to trip it."""

from __future__ import annotations

import csv
import math

import pytest
from matplotlib.ticker import EngFormatter

from bdh_pl import charts
from bdh_pl.charts import style


def write_fit_run(folder, steps: int = 40, val_every: int = 5, start: float = 4.0, rise: float = 0):
    """A metrics.csv as Lightning's CSVLogger writes it: train loss every step, validation
    (loss, bpb, its time) every `val_every` steps, the training clock in train/time; the
    validation loss turns up by `rise` per validation after the middle of the run."""
    folder.mkdir(parents=True)
    columns = ["epoch", "step", "train/loss", "train/time", "val/loss", "val/bpb", "validate/time"]
    rows = []
    for step in range(steps):
        train = start * math.exp(-step / steps) + 0.01 * (step % 3)
        rows.append({"epoch": 0, "step": step, "train/loss": train, "train/time": 0.5 * (step + 1)})
        if (step + 1) % val_every == 0:
            val = (
                start * math.exp(-step / steps) + 0.2 + rise * max(0, step - steps / 2) / val_every
            )
            rows.append(
                {"epoch": 0, "step": step, "val/loss": val, "val/bpb": val / math.log(2),
                 "validate/time": 0.2}
            )  # fmt: skip
    with open(folder / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return folder


def clean(fig) -> None:
    assert charts.figure_problems(fig) == []


# --- each check fails on a figure made to trip it ----------------------------------------


def panel(title="p", xlabel="training tokens", ylabel="loss (nats per token)"):
    fig = style.new_figure(1)
    ax = fig.subplots()
    ax.plot([1, 2, 3], [3, 2, 1], marker="o", label="a")
    style.finish_axes(ax, title, xlabel, ylabel)
    return fig, ax


def problems_of(fig) -> str:
    return " | ".join(charts.figure_problems(fig))


def test_a_clean_panel_has_no_problems():
    fig, _ = panel()
    clean(fig)


@pytest.mark.parametrize(
    ("xlabel", "ylabel", "expected"),
    [("", "loss (nats)", "the x axis has no label"),
     ("training tokens", "loss", "the y axis label 'loss' names no unit")],
)  # fmt: skip
def test_an_axis_without_label_or_unit(xlabel, ylabel, expected):
    fig, _ = panel(xlabel=xlabel, ylabel=ylabel)
    assert expected in problems_of(fig)


def test_a_categorical_axis_needs_a_label_but_no_unit():
    fig = style.new_figure(1)
    ax = fig.subplots()
    ax.bar([0, 1], [2, 3])
    ax.set_xticks([0, 1], ["bdh", "gpt2-scratch"])
    style.finish_axes(ax, "bars", "model", "bits per byte")
    clean(fig)


def test_overlapping_tick_labels_the_old_log_axis():
    """The old val_bpb_compute: minor ticks of a one-decade log axis labelled ('8 T 9 T 10 T')."""
    fig, ax = panel(xlabel="training compute (FLOPs)")
    ax.lines[0].set_data([1.2e12, 5e12, 1.05e13], [3, 2, 1])
    ax.relim()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.xaxis.set_minor_formatter(EngFormatter())
    assert "x tick labels" in problems_of(fig) and "overlap" in problems_of(fig)
    style.log_axis(ax, "x")  # the house log axis: 1, 2, 5 labelled, minors not
    clean(fig)


def test_a_legend_over_the_data():
    fig, ax = panel()
    ax.plot([1, 3], [2, 2], label="b", marker="o")  # through the middle
    ax.legend(loc="center")
    assert "the legend covers plotted data" in problems_of(fig)
    ax.get_legend().remove()
    style.legend_outside(fig)
    clean(fig)


def test_text_outside_the_figure():
    fig, ax = panel(title="a title far too long for its panel " * 4)
    ax.set_title(ax.get_title().replace("\n", " "))  # undo finish_axes' wrapping: clipped
    assert "falls outside the figure" in problems_of(fig)
    fig, ax = panel()
    fig.text(1.02, 0.5, "note")
    assert "text 'note' falls outside the figure" in problems_of(fig)


def test_a_point_from_too_few_samples_must_be_hollow():
    fig, ax = panel()
    style.declare_samples(ax.lines[0], [5000, 64, 5000], 1000)
    assert "rests on 64 samples (< 1000) and is not marked" in problems_of(fig)
    fig, ax = panel()
    ax.lines[0].remove()
    style.plot_points(ax, [1, 2, 3], [3, 2, 1], [5000, 64, 5000], 1000, "C0", "a")
    clean(fig)


def test_a_value_label_on_an_error_bar():
    """The old test_bpb: the value label at the bar top, under the seeds' error bar."""
    fig = style.new_figure(1)
    ax = fig.subplots()
    rects = ax.bar([0], [3.4], width=0.6)
    ax.errorbar([0], [3.4], yerr=[[0.05], [0.05]], color="black", capsize=4)
    ax.bar_label(rects, fmt="%.3f")
    ax.set_xticks([0], ["bdh"])
    style.finish_axes(ax, "test", "model", "bits per byte")
    assert "sits on a line or error bar" in problems_of(fig)


def test_markers_of_two_series_on_one_spot_and_a_bare_two_point_line():
    fig, ax = panel()
    ax.scatter([2], [2], color="C1", s=150)
    ax.scatter([2.01], [2.0], color="C2", s=150)
    ax.plot([1, 3], [1, 1.5], color="C3", label="two points")
    text = problems_of(fig)
    assert "markers of different series overlap" in text
    assert "'two points' is drawn through 2 points without markers" in text


def test_save_figure_writes_a_png(tmp_path):
    fig, _ = panel()
    path = charts.save_figure(fig, tmp_path / "c.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
