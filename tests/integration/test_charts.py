"""The integration half of tests/unit/test_charts.py: its tests that fit, compile, read
more than a slice of real data or spend seconds of CPU (the unit tier has a minute)."""

from __future__ import annotations

from unit.test_charts import clean, write_fit_run

from bdh_pl import charts
from bdh_pl.bench import report
from bdh_pl.charts.benchmark import COMPARISON_CHARTS, SWEEP_CHART, benchmark_figures

PER_STEP = 512


def record(tmp_path, model: str, setting: str = "lr1x", seed: int = 1, **figures) -> dict:
    run = write_fit_run(
        tmp_path / model / f"{setting}-{seed}",
        start=figures.pop("start", 4.0) + 0.05 * seed,
        rise=figures.pop("rise", 0.0),
    )
    return {
        "model": model, "status": "ok", "setting": setting, "seed": seed,
        "selected": figures.pop("selected", None), "fit_run": str(run),
        "tokens_per_step": PER_STEP, "train_flops_per_token": 6e6, "train_split_tokens": 5000,
        "best_step": figures.pop("best_step", 40), "best_val_loss": 2.0, "params": 1_850_000,
        "test_bpb": 3.0 + 0.01 * seed, "train_tokens_per_sec": 5000.0,
        "eval_tokens_per_sec": 15000.0, "train_peak_memory_mb": 900.0,
        "test_peak_memory_mb": 800.0, "memory_kind": "cpu_rss", **figures,
    }  # fmt: skip


def three_models_two_seeds(tmp_path) -> list[dict]:
    records = []
    for i, model in enumerate(["bdh", "gpt2-scratch", "llama-tiny"]):
        for seed in (1, 2):
            records.append(
                record(tmp_path, model, seed=seed, start=3 + i, params=1_850_000 + 10_000 * i)
            )
    return records


def overfit_sweep(tmp_path) -> list[dict]:
    """One model, three settings, early stopping's best before the end."""
    return [
        record(tmp_path, "bdh", f"do{d}", selected=d == 0.2, rise=0.05 - 0.2 * d, best_step=b)
        for d, b in ((0, 20), (0.1, 25), (0.2, 35))
    ]


def test_benchmark_charts_of_three_models_on_two_seeds_are_clean(tmp_path):
    records = three_models_two_seeds(tmp_path)
    figures = benchmark_figures(report.chart_records("synthetic", records))
    assert set(COMPARISON_CHARTS) <= set(figures) and SWEEP_CHART not in figures
    for name, fig in figures.items():
        assert charts.figure_problems(fig) == [], name
    # seeds told apart by line style, each model one colour and one legend entry
    ax = figures["val_loss_bpb"].axes[0]
    styles = {
        (line.get_color(), line.get_linestyle()) for line in ax.get_lines() if len(line.get_xdata())
    }
    assert len(styles) == 6
    legend = [t.get_text() for t in figures["val_loss_bpb"].legends[0].get_texts()]
    assert {"bdh", "gpt2-scratch", "llama-tiny", "seed 1", "seed 2"} <= set(legend)


def test_sweep_and_train_val_charts_of_an_overfitting_sweep_are_clean(tmp_path):
    records = overfit_sweep(tmp_path)
    figures = benchmark_figures(report.chart_records("overfit", records))
    assert SWEEP_CHART in figures and "test_bpb" not in figures  # one model: no comparison
    for name, fig in figures.items():
        assert charts.figure_problems(fig) == [], name
    train_val = figures["train_val_loss"]
    assert len([ax for ax in train_val.axes if ax.get_visible()]) == 3  # one panel per setting
    assert train_val.axes[0].get_xlabel() == charts.AXES["epochs"]  # 4 passes over the split


def test_run_curves_bars_sizes_and_context_are_clean(tmp_path):
    run = write_fit_run(tmp_path / "run")
    (run / "hparams.yaml").write_text("batch_size: 4\nblock_size: 8\n")
    clean(charts.training_curves_figure(charts.read_metrics(run), charts.run_tokens_per_step(run)))
    rows = [
        {"model": m, "test_bpb": v, "test_bpb_n": 2, "test_bpb_min": v - 0.05,
         "test_bpb_max": v + 0.05, "params": p}
        for m, v, p in [("bdh", 3.44, 1.87e6), ("gpt2", 3.24, 1.85e6), ("llama", 2.9, 1.87e6)]
    ]  # fmt: skip
    clean(charts.bar_figure(rows, [("test_bpb", "test", "bits per byte")], "bars"))
    clean(charts.size_figure(rows, "test_bpb", "side by side", "bits per byte"))
    spread = [r | {"params": p} for r, p in zip(rows, [2e5, 2e6, 2e7], strict=True)]
    clean(charts.size_figure(spread, "test_bpb", "log sizes", "bits per byte"))
    context = [
        {"label": "bdh", "mode": mode, "block_size": 256, "stride": 256,
         "buckets": [{"from": lo, "to": hi, "bytes": n, "bpb": 2 + k / 10, "mean_context": c}
                     for k, (lo, hi, n, c) in enumerate(buckets)]}
        for mode, buckets in [
            ("stream", [(0, 64, 64, 32), (64, 1024, 960, 500), (1024, None, 50_000, 9000)]),
            ("windows", [(0, 64, 9000, 32), (64, 1024, 20_000, 159)]),
        ]
    ]  # fmt: skip
    fig = charts.context_figure(context, 1000, "Only part of the split was scored.")
    clean(fig)
    hollow = [line for line in fig.axes[0].get_lines() if line.get_markerfacecolor() == "white"]
    assert sorted(x for line in hollow for x in line.get_xdata())[:2] == [32, 500]
    assert charts.stream_gain_figure(context) is None  # no stream_gain rows: no chart
    context[0]["stream_gain"] = [
        {"from": 0, "to": 64, "bytes": 64, "gain_bpb": 0.0, "band": [0.0, 0.0]},
        {"from": 64, "to": 1024, "bytes": 960, "gain_bpb": 0.011, "band": [0.010, 0.012]},
        {"from": 1024, "to": None, "bytes": 50_000, "gain_bpb": -0.9, "band": None},
    ]
    gain = charts.stream_gain_figure(context)
    clean(gain)
    (line,) = [line for line in gain.axes[0].get_lines() if line.get_marker() == "o"]
    assert list(line.get_xdata()) == [32, 500, 9000]  # at the stream buckets' mean context
    assert list(line.get_ydata()) == [0.0, 0.011, -0.9]
