"""The frontier's numbers from synthetic records whose answers are known in closed form."""

import math

import numpy as np
import pytest

from bdh_pl.bench import frontier

BUDGETS = [1e12, 2.15e12, 4.64e12, 1e13, 2.15e13]


def curve(E, A, alpha):
    return lambda c: E + A * c**-alpha


def records(family, loss_of_budget, sizes=(1e5, 2e5, 4e5), noise=0.0, seeds=(1, 2), rng=None):
    """A family's runs: at each budget three sizes on the first seed, the middle one best
    (its loss the curve's), the best repeated on the second seed."""
    rng = rng or np.random.default_rng(0)
    out = []
    for budget in BUDGETS:
        best = loss_of_budget(budget)
        for j, params in enumerate(sizes):
            loss = best + (0.0 if j == 1 else 0.05)
            out.append(
                _record(family, budget, params, loss + noise * rng.normal(), seeds[0], j == 1)
            )
        for seed in seeds[1:]:
            out.append(_record(family, budget, sizes[1], best + noise * rng.normal(), seed, True))
    return out


def _record(family, budget, params, bpb, seed, point):
    return {
        "family": family, "model": f"{family}-{params:g}", "status": "ok", "seed": seed,
        "budget_flops": budget, "params": params, "best_val_bpb": bpb, "selected": True,
        "frontier_point": point, "test_bpb": bpb + 0.01 if point else None, "setting": "lr1x",
        "train_tokens": budget / 1e6, "train_steps": 100, "wall_time_s": budget / 1e10,
    }  # fmt: skip


def test_the_fit_recovers_known_parameters_and_its_band_covers_them():
    truth = {"E": 0.9, "A": 3.0e3, "alpha": 0.3}
    rng = np.random.default_rng(1)
    runs = records("bdh", curve(**truth), noise=0.01, rng=rng)
    points = frontier.frontier_points(runs)
    assert [p["model"] for p in points] == ["bdh-200000"] * len(BUDGETS)  # the IsoFLOP minimum
    assert [p["at_ladder_edge"] for p in points] == [False] * len(BUDGETS)
    exact = frontier.fit_power_law(BUDGETS, [curve(**truth)(c) for c in BUDGETS])
    for k in truth:
        assert exact[k] == pytest.approx(truth[k], rel=2e-3), k
    result = frontier.frontier(runs)["families"]["bdh"]
    band = result["fit"]["band"]
    for k in truth:
        assert band[k][0] <= truth[k] <= band[k][1], (k, band[k])
    grid = np.asarray(BUDGETS)
    lo, hi = frontier.band(frontier.bootstrap_fits(points, n=300), grid)
    assert np.all(lo <= curve(**truth)(grid) + 0.02) and np.all(curve(**truth)(grid) <= hi + 0.02)


def test_an_edge_minimum_is_named():
    runs = records("gpt2", curve(1.0, 1e3, 0.3))
    for r in runs:  # the smallest size becomes the best everywhere
        if r["params"] == 1e5:
            r["best_val_bpb"] -= 0.2
    points = frontier.frontier_points(runs)
    assert {p["edge"] for p in points} == {"smallest"} and all(p["at_ladder_edge"] for p in points)


def test_the_compute_multiplier_of_two_known_curves():
    bdh, gpt2 = {"E": 1.0, "A": 1e3, "alpha": 0.3}, {"E": 1.0, "A": 500.0, "alpha": 0.3}
    # The same exponent and floor, half the A: BDH needs 2^(1/0.3) = 10.08x the FLOPs.
    runs = records("bdh", curve(**bdh)) + records("gpt2", curve(**gpt2))
    result = frontier.frontier(runs)
    rows = result["compute_multiplier"]["at_budgets"]
    assert [r["best_other"] for r in rows] == ["gpt2"] * len(BUDGETS)
    for r in rows:
        assert r["multiplier"] == pytest.approx(2 ** (1 / 0.3), rel=1e-2)
    assert result["compute_multiplier"]["crossing"]["budget_flops"] is None  # parallel curves
    assert "do not cross" in result["compute_multiplier"]["crossing"]["statement"]


def test_curves_that_cross_within_100x_say_where():
    # BDH steeper: behind at the small budgets, ahead beyond the crossing.
    bdh, llama = curve(0.8, 5e4, 0.4), curve(1.2, 1e3, 0.3)
    fits = {
        "bdh": frontier.fit_power_law(BUDGETS, [bdh(c) for c in BUDGETS]),
        "llama": frontier.fit_power_law(BUDGETS, [llama(c) for c in BUDGETS]),
    }
    where = frontier.crossing(fits["bdh"], {"llama": fits["llama"]}, BUDGETS, "bdh")
    c = where["budget_flops"]
    assert where["statement"].endswith("beyond it bdh leads")
    assert BUDGETS[0] < c < 100 * BUDGETS[-1]
    assert bdh(c) == pytest.approx(llama(c), abs=1e-3)
    assert where["val_bpb"] == pytest.approx(bdh(c), abs=1e-3)  # where the chart marks it
    assert bdh(c / 2) > llama(c / 2) and bdh(c * 2) < llama(c * 2)


def test_a_loss_below_the_floor_is_never_reached():
    fit = {"E": 1.0, "A": 10.0, "alpha": 0.5}
    assert frontier.flops_for_loss(fit, 0.99) == math.inf
    assert frontier.flops_for_loss(fit, 1.1) == pytest.approx((10 / 0.1) ** 2)
    assert frontier.fit_power_law([1e12, 2e12], [2.0, 1.9]) is None  # two budgets: no fit


def test_the_frontier_charts_pass_the_checker(tmp_path):
    from bdh_pl.charts import figure_problems
    from bdh_pl.charts import frontier as charts

    runs = records("bdh", curve(0.9, 3e3, 0.3)) + records("gpt2", curve(1.0, 1e3, 0.28))
    for r in runs:
        r.update(fit_time_s=r["budget_flops"] / 3e10, load_avg_start=2.0, load_avg_end=3.5)
    runs[-1]["best_val_bpb"] += 0.3  # gpt2's last point: one seed far off (a wide error bar)
    result = frontier.frontier(runs)
    for draw in (charts.isoflop_figure, charts.frontier_figure, charts.seconds_figure):
        assert figure_problems(draw(result)) == [], draw.__name__
    paths = charts.write_frontier_charts(result, tmp_path)
    assert [p.name for p in paths] == [f"{c}.png" for c in charts.FRONTIER_CHARTS]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_the_seed_scale_is_the_seed_bdh_counted_at_the_frontier_block():
    from bdh_pl.training.flops import flops_per_token
    from bdh_pl.training.lit_models import BDHLM

    seed = BDHLM(vocab_size=256, block_size=128)  # configs/model/bdh.yaml's defaults
    per_token = flops_per_token(seed.network, 128)["forward_backward"]
    assert frontier.SEED_SCALE["budget_flops"] == pytest.approx(per_token * 2e6, rel=1e-4)


def test_the_extrapolation_reads_each_fit_with_its_band():
    runs = records("bdh", curve(0.9, 3e3, 0.3), noise=0.01) + records(
        "gpt2", curve(1.0, 1e3, 0.28), noise=0.01
    )
    result = frontier.frontier(runs)
    out = result["extrapolation"]
    assert out["budget_flops"] == frontier.SEED_SCALE["budget_flops"]
    for family, p in out["predictions"].items():
        fit = result["families"][family]["fit"]
        assert p["val_bpb"] == pytest.approx(frontier.predict(fit, out["budget_flops"]))
        assert p["band"][0] <= p["val_bpb"] <= p["band"][1]


def test_plot_results_rewrites_a_frontiers_summary_numbers_and_charts(tmp_path, capsys):
    import json

    from bdh_pl.tools import plot

    runs = records("bdh", curve(0.9, 3e3, 0.3)) + records("llama", curve(1.0, 1e3, 0.28))
    for r in runs:
        r.update(torch_version="2", lightning_version="2", git_commit="abc", git_dirty=False)
    payload = {"experiment": "f", "command": "python -m bdh_pl benchmark --config f.yaml"}
    (tmp_path / "metrics.json").write_text(json.dumps({**payload, "records": runs}))
    plot.main(["--results", str(tmp_path)])
    result = json.loads((tmp_path / "frontier.json").read_text())
    assert set(result["families"]) == {"bdh", "llama"}
    assert result["compute_multiplier"]["at_budgets"][0]["best_other"] == "llama"
    summary = (tmp_path / "summary.md").read_text()
    assert "## Compute frontier" in summary and "python -m bdh_pl benchmark" in summary
    assert (tmp_path / "frontier.csv").read_text().count("\n") == 1 + 2 * len(BUDGETS)
    for name in ("isoflop", "frontier_flops", "frontier_seconds"):
        assert (tmp_path / "charts" / f"{name}.png").is_file()


def test_the_chosen_learning_rate_says_when_it_is_the_sweeps_edge():
    def runs(chosen):
        sweep = [{"learning_rate": lr, "selected": lr == chosen} for lr in (1e-3, 2e-3, 4e-3)]
        return sweep + [{"learning_rate": chosen, "selected": True}]  # the other sizes

    assert frontier.chosen_learning_rate(runs(2e-3)) == {
        "chosen": 2e-3, "tried": [1e-3, 2e-3, 4e-3], "at_sweep_edge": None
    }  # fmt: skip
    assert frontier.chosen_learning_rate(runs(4e-3))["at_sweep_edge"] == "largest"
    assert frontier.chosen_learning_rate(runs(1e-3))["at_sweep_edge"] == "smallest"
    assert frontier.chosen_learning_rate([{"learning_rate": 1e-3, "selected": None}]) is None
