"""The integration half of tests/unit/tools/test_plot.py: its tests that fit, compile, read
more than a slice of real data or spend seconds of CPU (the unit tier has a minute)."""

import math

from unit.tools.test_plot import write_run

from bdh_pl import charts
from bdh_pl.bench import report
from bdh_pl.charts.benchmark import CURVE_CHARTS, benchmark_figures


def test_benchmark_figures_one_line_or_bar_per_model(tmp_path):
    records = []
    for i, name in enumerate(["bdh", "gpt2-scratch", "llama-tiny"]):
        run = write_run(tmp_path / name / "version_0")
        records.append(
            {"model": name, "status": "ok", "fit_run": str(run), "tokens_per_step": 32,
             "params": 10 ** (6 + i), "test_bpb": 2.0 - i / 10, "train_tokens_per_sec": 1e3,
             "eval_tokens_per_sec": 4e3, "train_peak_memory_mb": 500.0,
             "test_peak_memory_mb": 600.0, "memory_kind": "cpu_rss"}
        )  # fmt: skip
    records.append({"model": "broken", "status": "failed", "test_bpb": math.nan})
    data = report.chart_records("exp", records)
    figures = benchmark_figures(data)
    names = ["val_loss_bpb", "val_bpb_compute", "train_loss", "train_val_loss", "test_bpb",
             "throughput", "peak_memory", "bpb_vs_params"]  # fmt: skip
    assert set(figures) == set(names) and set(CURVE_CHARTS) <= set(names)
    val_loss, val_bpb = figures["val_loss_bpb"].axes
    models = ["bdh", "gpt2-scratch", "llama-tiny"]
    assert [line.get_label() for line in val_loss.get_lines()][:3] == models
    assert len([line for line in val_bpb.get_lines() if len(line.get_xdata())]) == 3
    assert len(figures["train_loss"].axes[0].get_lines()) == 3
    assert len(figures["test_bpb"].axes[0].patches) == 3  # the failed model has no bar
    assert [len(ax.patches) for ax in figures["throughput"].axes] == [3, 3]
    assert len(figures["bpb_vs_params"].axes[0].collections) == 3
    paths = report.write_charts(tmp_path, "exp", records)
    assert sorted(p.name for p in paths) == sorted(f"{c}.png" for c in names)


def test_tensorboard_events_are_the_fallback(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path)) as writer:
        for step in range(3):
            writer.add_scalar("train/loss", 3.0 - step, step)
        writer.add_scalar("val/loss", 2.5, 2)
    curves = charts.read_metrics(tmp_path)
    assert curves["train/loss"] == [(0, 3.0), (1, 2.0), (2, 1.0)]
    assert curves["val/loss"] == [(2, 2.5)]
