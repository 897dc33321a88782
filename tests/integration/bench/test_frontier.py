"""The integration half of tests/unit/bench/test_frontier.py: its tests that fit, compile, read
more than a slice of real data or spend seconds of CPU (the unit tier has a minute)."""

import json

from unit.bench.test_frontier import BUDGETS, curve, records

from bdh_pl.bench import frontier


def _write_metrics(folder, runs):
    for r in runs:
        r.update(torch_version="2", lightning_version="2", git_commit="abc", git_dirty=False)
    payload = {"experiment": "f", "command": "python -m bdh_pl benchmark --config f.yaml"}
    (folder / "metrics.json").write_text(json.dumps({**payload, "records": runs}))


def test_the_frontier_charts_pass_the_checker(tmp_path):
    from bdh_pl.charts import figure_problems
    from bdh_pl.charts import frontier as charts

    runs = records("bdh", curve(0.9, 3e3, 0.3)) + records("gpt2", curve(1.0, 1e3, 0.28))
    for r in runs:
        slower = (1.7 if r["family"] == "bdh" else 1.0) * (1 + r["params"] / 1e6)
        r.update(fit_time_s=slower * r["budget_flops"] / 3e10, load_avg_start=2.0,
                 load_avg_end=3.5)  # fmt: skip
        if r["family"] == "gpt2" and r["params"] == 1e5 and r["budget_flops"] > 3e12:
            r["best_val_bpb"] -= 0.2  # gpt2 at its ladder's edge: too few points for the rule
    runs[-1]["best_val_bpb"] += 0.3  # gpt2's last point: one seed far off (a wide error bar)
    result = frontier.frontier(runs)
    assert result["families"]["gpt2"]["fit"] is None
    for name, draw in charts.FIGURES.items():
        assert figure_problems(draw(result)) == [], name
    paths = charts.write_frontier_charts(result, tmp_path)
    assert [p.name for p in paths] == [f"{c}.png" for c in charts.FRONTIER_CHARTS]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_plot_results_rewrites_a_frontiers_summary_numbers_and_charts(tmp_path):
    from bdh_pl.tools import plot

    llama = [r for r in records("llama", curve(1.0, 1e3, 0.28)) if r["budget_flops"] < 2e13]
    runs = records("bdh", curve(0.9, 3e3, 0.3)) + llama  # llama stopped a budget early
    _write_metrics(tmp_path, runs)
    plot.main(["--results", str(tmp_path)])
    result = json.loads((tmp_path / "frontier.json").read_text())
    assert set(result["families"]) == {"bdh", "llama"}
    assert result["compute_multiplier"]["at_budgets"][0]["against"] == "llama"
    summary = (tmp_path / "summary.md").read_text()
    assert "## Compute frontier" in summary and "python -m bdh_pl benchmark" in summary
    assert "FLOPs rule: training FLOPs = 3 x forward" in summary
    assert "Not run: llama at flops 2.15e+13." in summary
    assert (tmp_path / "frontier.csv").read_text().count("\n") == 2 * len(BUDGETS)
    for name in ("isoflop", "frontier_flops", "chosen_size"):
        assert (tmp_path / "charts" / f"{name}.png").is_file()


def test_step_budgets_with_sizes_draw_and_replot(tmp_path):
    """Issue 32 (5): a benchmark with `budgets: [{steps: 6}, {steps: 12}]` and sizes has no
    FLOPs budget (budget_flops null): its charts and `plot --results` drew nothing but a
    TypeError. Each budget is its label, each point at the FLOPs it trained."""
    from bdh_pl.tools import plot

    runs = []
    for steps in (6, 12):
        for j, width in enumerate((16, 24, 32)):
            for seed in (1, 2) if j == 1 else (1,):
                runs.append({
                    "family": "bdh", "model": f"bdh-{width}", "status": "ok", "seed": seed,
                    "budget": f"steps {steps}", "budget_flops": None, "params": width * 1000,
                    "best_val_bpb": 3.0 - steps / 20 + abs(j - 1) * 0.1 + seed * 0.001,
                    "selected": True, "frontier_point": j == 1, "train_steps": steps,
                    "train_tokens": steps * 64, "flops_per_token": width * 1e4,
                    "train_flops": steps * 64 * width * 3e4, "fit_time_s": steps * 1.0,
                })  # fmt: skip
    result = frontier.frontier(runs)
    points = result["families"]["bdh"]["frontier"]
    assert [p["budget"] for p in points] == ["steps 6", "steps 12"]
    assert [p["flops"] for p in points] == [6 * 64 * 24e4 * 3, 12 * 64 * 24e4 * 3]
    _write_metrics(tmp_path, runs)
    plot.main(["--results", str(tmp_path)])  # the charts and summaries the benchmark writes
    assert "steps 12" in (tmp_path / "summary.md").read_text()
    assert len(list((tmp_path / "charts").glob("*.png"))) == 3
