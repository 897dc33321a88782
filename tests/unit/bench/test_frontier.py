"""The frontier's numbers from synthetic records whose answers are known in closed form."""

import math

import numpy as np
import pytest

from bdh_pl.bench import frontier, report, scaling

BUDGETS = [1e12, 2.15e12, 4.64e12, 1e13, 2.15e13]
N = 40  # bootstrap fits in these tests: enough for a band, cheap


@pytest.fixture(autouse=True)
def _few_resamples(monkeypatch):
    monkeypatch.setattr(scaling, "BOOTSTRAP", N)


def curve(E, A, alpha):
    return lambda c: E + A * c**-alpha


def records(family, loss_of_budget, sizes=(1e5, 2e5, 4e5), noise=0.0, seeds=(1, 2), rng=None,
            spread=0.0):  # fmt: skip
    """A family's runs: at each budget three sizes on the first seed, the middle one best
    (its loss the curve's), the best repeated on the other seeds (`spread` apart)."""
    rng = rng or np.random.default_rng(0)
    out = []
    for budget in BUDGETS:
        best = loss_of_budget(budget)
        for j, params in enumerate(sizes):
            loss = best + (0.0 if j == 1 else 0.05)
            out.append(
                _record(family, budget, params, loss + noise * rng.normal(), seeds[0], j == 1)
            )
        for k, seed in enumerate(seeds[1:], 1):
            loss = best + spread * k + noise * rng.normal()
            out.append(_record(family, budget, sizes[1], loss, seed, True))
    return out


def _record(family, budget, params, bpb, seed, point):
    return {
        "family": family, "model": f"{family}-{params:g}", "status": "ok", "seed": seed,
        "budget": f"flops {budget:g}", "budget_flops": budget, "params": params,
        "best_val_bpb": bpb, "selected": True, "frontier_point": point,
        "test_bpb": bpb + 0.01 if point else None, "setting": "lr1x",
        "train_tokens": budget / 1e6, "train_steps": 100, "wall_time_s": budget / 1e10,
        "train_flops": budget, "train_flops_measured": 0.9 * budget, "epochs": budget / 1e13,
    }  # fmt: skip


def test_an_old_record_gets_the_rule_and_its_epochs():
    old = {"train_flops": 2.5e12, "flops_per_token": 1e6, "train_tokens": 1e6}  # measured 2.5x
    new = frontier.with_rule(old, train_split_tokens=4_000_000)
    assert new["train_flops"] == 3 * 1e6 * 1e6 and new["train_flops_measured"] == 2.5e12
    assert new["epochs"] == 0.25
    ruled = {"train_flops": 3e12, "train_flops_measured": 2.5e12, "epochs": 0.5}
    assert frontier.with_rule(ruled, 10) == ruled  # a record on the rule is kept as it is
    assert frontier.with_rule({"train_tokens": 5})["epochs"] is None  # no split: unknown


def test_the_frontier_is_the_isoflop_minimum_on_the_rules_flops():
    truth = {"E": 0.9, "A": 3.0e3, "alpha": 0.3}
    runs = records("bdh", curve(**truth), noise=0.01, rng=np.random.default_rng(1))
    points = frontier.frontier_points(frontier.families(runs)["bdh"])
    assert [p["model"] for p in points] == ["bdh-200000"] * len(BUDGETS)
    assert [p["excluded"] for p in points] == [None] * len(BUDGETS)
    assert [p["flops"] for p in points] == BUDGETS
    result = frontier.frontier(runs)["families"]["bdh"]
    for k in truth:
        assert result["fit"]["band"][k][0] <= truth[k] <= result["fit"]["band"][k][1], k
    assert result["fit"]["bootstrap_n"] == N


def test_edge_and_bound_points_are_left_out_of_the_fit_and_listed():
    runs = records("gpt2", curve(1.0, 1e3, 0.3))
    for r in runs:  # the smallest size wins at the two largest budgets
        if r["params"] == 1e5 and r["budget_flops"] >= 1e13:
            r["best_val_bpb"] -= 0.2
    runs.append({**_record("gpt2", 1e12, 5e4, 0.0, 1, False), "status": "bound",
                 "best_val_bpb": None, "bound": "needs 6.1 epochs (cap 4)"})  # fmt: skip
    result = frontier.frontier(runs)["families"]["gpt2"]
    points = {p["budget_flops"]: p for p in result["frontier"]}
    assert [points[b]["edge"] for b in BUDGETS] == [None, None, None, "smallest", "smallest"]
    assert "smallest tried" in points[1e13]["excluded"]
    assert result["fit"]["budgets_used"] == ["flops 1e+12", "flops 2.15e+12", "flops 4.64e+12"]
    reasons = [(e["budget"], e["reason"]) for e in result["excluded"]]
    assert ("flops 1e+12", "bound: needs 6.1 epochs (cap 4)") in reasons
    assert sum("smallest tried" in r for _, r in reasons) == 2
    assert points[1e12]["sizes_bound"] == [
        {"model": "gpt2-50000", "bound": "needs 6.1 epochs (cap 4)"}
    ]
    with_edges = result["fit_with_edge_points"]
    assert with_edges["budgets_used"] == [f"flops {b:g}" for b in BUDGETS]


def measured(runs):
    """frontier.measured of the runs' frontier points (no fits needed)."""
    fams = frontier.families(runs).items()
    return frontier.measured({f: {"frontier": frontier.frontier_points(r)} for f, r in fams})


def test_the_measured_statement_names_the_leader_against_the_seed_spread():
    ahead = records("llama", curve(1.0, 500.0, 0.3), spread=0.01)
    behind = records("bdh", curve(1.0, 1e3, 0.3), spread=0.01)
    m = measured(ahead + behind)
    assert [r["leader"] for r in m["at_budgets"]] == ["llama"] * len(BUDGETS)
    assert all(r["beyond_seed_spread"] for r in m["at_budgets"])
    c = BUDGETS[0]
    gap = 500 * c**-0.3 - 1e3 * c**-0.3  # llama's loss - bdh's on the first seed
    assert m["at_budgets"][0]["gap"] == pytest.approx(gap + 0.01 / 2 - 0.01 / 2, abs=1e-9)
    assert m["crossing_measured"] is False and m["statement"].startswith("no crossing measured")
    # BDH steeper: behind at the small budgets, ahead at the large ones.
    steep = records("bdh", curve(0.8, 5e4, 0.4), spread=0.005)
    flat = records("llama", curve(1.2, 1e3, 0.3), spread=0.005)
    m = measured(steep + flat)
    leaders = [r["leader"] for r in m["at_budgets"]]
    first_bdh = leaders.index("bdh")
    assert leaders[:first_bdh] == ["llama"] * first_bdh and set(leaders[first_bdh:]) == {"bdh"}
    assert m["crossing_measured"] is True
    assert m["between"] == [f"flops {BUDGETS[first_bdh - 1]:g}", f"flops {BUDGETS[first_bdh]:g}"]
    # Within the seed spread everywhere: no lead claimed.
    wide = records("bdh", curve(1.0, 1e3, 0.3), spread=0.5)
    close = records("llama", curve(1.0, 1e3, 0.3), spread=0.5)
    close = [{**r, "best_val_bpb": r["best_val_bpb"] + 0.01} for r in close]
    m = measured(wide + close)
    assert not any(r["beyond_seed_spread"] for r in m["at_budgets"])
    assert "within the seed spread at every budget" in m["statement"]


def test_multipliers_outside_the_measured_range_are_marked_extrapolated():
    bdh, llama = {"E": 1.0, "A": 1e3, "alpha": 0.3}, {"E": 1.0, "A": 500.0, "alpha": 0.3}
    # Same floor and exponent, half the A: BDH needs 2^(1/0.3) = 10.08x the FLOPs.
    result = frontier.frontier(records("bdh", curve(**bdh)) + records("llama", curve(**llama)))
    rows = result["compute_multiplier"]["at_budgets"]
    for row, budget in zip(rows, BUDGETS, strict=True):
        assert row["against"] == "llama"
        assert row["multiplier"] == pytest.approx(2 ** (1 / 0.3), rel=1e-3)
        needed = budget * 2 ** (1 / 0.3)  # inside BDH's runs only while <= the largest budget
        assert row["extrapolated"] is (needed > BUDGETS[-1])
    assert [r["extrapolated"] for r in rows] == [False, True, True, True, True]
    assert result["crossing"]["budget_flops"] is None  # parallel curves never meet
    assert "do not cross" in result["crossing"]["statement"]


def test_the_fitted_crossing_has_its_band_and_the_compute_optimal_sizes_there():
    bdh, llama = curve(0.8, 5e4, 0.4), curve(1.2, 1e3, 0.3)
    runs = records("bdh", bdh, noise=0.002) + records("llama", llama, noise=0.002)
    crossing = frontier.frontier(runs)["crossing"]
    c = crossing["budget_flops"]
    assert bdh(c) == pytest.approx(llama(c), abs=2e-3)  # where the curves meet
    exact = next(x for x in np.geomspace(1e12, 1e15, 100000) if bdh(x) < llama(x))
    assert c == pytest.approx(exact, rel=0.1)
    assert crossing["band"][0] <= exact <= crossing["band"][1]
    assert crossing["never_share"] == 0.0 and crossing["statement"].endswith("bdh leads")
    optimal = crossing["compute_optimal"]["bdh"]
    assert optimal["params"] == pytest.approx(2e5)  # every budget chose the middle size
    assert optimal["tokens"] == pytest.approx(c / 1e6, rel=1e-6)  # tokens = C / 1e6 here
    assert optimal["epochs"] == pytest.approx(c / 1e13, rel=1e-6)


def test_the_parabola_optimum_is_the_vertex():
    runs = records("bdh", curve(1.0, 1e3, 0.3))
    for r in runs:  # loss = 2 + (log N - log 1.5e5)^2 / 10 at every budget, first seed
        if r["seed"] == 1:
            r["best_val_bpb"] = 2 + (math.log(r["params"]) - math.log(1.5e5)) ** 2 / 10
    points = frontier.frontier_points(frontier.families(runs)["bdh"], optimum="parabola")
    assert points[0]["params"] == pytest.approx(1.5e5, rel=1e-6)
    assert points[0]["val_bpb_seeds"][0] == pytest.approx(2.0)
    assert points[0]["optimum"] == "parabola in log parameters"


def test_the_learning_rate_sweeps_say_when_the_choice_is_at_an_edge():
    def runs(chosen):
        sweep = [{"learning_rate": lr, "selected": lr == chosen, "model": "m", "seed": 1,
                  "budget": "flops 1e+12"} for lr in (1e-3, 2e-3, 4e-3)]  # fmt: skip
        return [*sweep, {"learning_rate": chosen, "selected": True, "model": "n", "seed": 1,
                         "budget": "flops 2e+12", "learning_rate_source": "the sweep"}]  # fmt: skip

    rates = frontier.chosen_learning_rate(runs(2e-3))
    assert rates["chosen"] == 2e-3 and rates["sweeps"][0]["at_sweep_edge"] is None
    assert rates["per_budget"]["flops 2e+12"] == {"rate": 2e-3, "source": "the sweep"}
    assert frontier.chosen_learning_rate(runs(4e-3))["sweeps"][0]["at_sweep_edge"] == "largest"
    assert frontier.chosen_learning_rate(runs(1e-3))["sweeps"][0]["at_sweep_edge"] == "smallest"


def test_the_training_split_of_old_records_is_counted_from_their_config(tmp_path):
    text = tmp_path / "data" / "wikitext-2"
    text.mkdir(parents=True)
    for split, size in (("train", 5000), ("valid", 600), ("test", 600)):
        (text / f"wiki.{split}.tokens").write_bytes(b"a" * size)
    config = tmp_path / "run.yaml"
    config.write_text(
        "data:\n  class_path: bdh_pl.data.WikiText2\n  init_args:\n"
        f"    data_dir: {tmp_path / 'data'}\n    tokenizer: byte\n    block_size: 16\n"
    )
    old = {"family": "bdh", "config": str(config), "train_tokens": 1000}
    (tmp_path / "cache").mkdir()
    assert report.train_split_tokens([old]) == 5000
    assert report.train_split_tokens([{**old, "epochs": 0.2}]) is None  # it has its epochs
    assert report.train_split_tokens([{**old, "config": str(tmp_path / "gone.yaml")}]) is None


def test_a_family_without_a_fit_is_left_out_of_the_crossing_not_the_crossing_dropped():
    """GPT-2 at its ladder's edge everywhere (no fit by the rule; or stopped by its rule):
    BDH's crossing with LLaMA still stands, and the statement names the family left out."""
    bdh, llama = curve(0.8, 5e4, 0.4), curve(1.2, 1e3, 0.3)
    gpt2 = records("gpt2", curve(1.3, 1e3, 0.3))
    for r in gpt2:  # the smallest size best at every budget: every point at the edge
        if r["params"] == 1e5:
            r["best_val_bpb"] -= 0.2
    runs = records("bdh", bdh, noise=0.002) + records("llama", llama, noise=0.002) + gpt2
    result = frontier.frontier(runs)
    assert result["families"]["gpt2"]["fit"] is None
    crossing = result["crossing"]
    exact = next(x for x in np.geomspace(1e12, 1e15, 100000) if bdh(x) < llama(x))
    assert crossing["budget_flops"] == pytest.approx(exact, rel=0.1)
    assert crossing["against"] == "llama" and crossing["left_out"] == ["gpt2"]
    assert crossing["statement"].endswith("; gpt2 left out (no fit: too few usable points)")


def test_a_crossing_whose_resamples_mostly_never_cross_is_said_not_a_crash():
    """The central fits cross, but more than 95% of the paired resamples never do: both ends
    of the band lie beyond the search (the summary used to format None as a number, and the
    benchmark writes its summary after every run); without bootstrap fits, no band."""
    from bdh_pl.bench import crossing

    bdh = {"E": 0.8, "A": 5e4, "alpha": 0.4, "measured_range": [1e12, 2e13]}
    llama = {"E": 1.2, "A": 1e3, "alpha": 0.3, "measured_range": [1e12, 2e13]}
    flat = {"E": 2.0, "A": 1e3, "alpha": 0.3}  # above llama everywhere: never crosses
    entries = {"bdh": {"frontier": []}, "llama": {"frontier": []}}
    fits = {"bdh": bdh, "llama": llama}
    out = crossing.fitted_crossing(entries, fits, {"bdh": [flat] * 20, "llama": [llama] * 20},
                                   "rule")  # fmt: skip
    assert out["budget_flops"] is not None and out["band"] == [None, None]
    assert out["never_share"] == 1.0
    assert "5-95%: beyond 2e+15 to beyond 2e+15; 100% of resamples never cross" in out["statement"]
    out = crossing.fitted_crossing(entries, fits, {"bdh": [], "llama": []}, "rule")
    assert "no bootstrap fits: no band" in out["statement"]


def test_families_keep_one_order_whatever_order_the_records_were_written_in():
    runs = records("llama", curve(1.0, 50.0, 0.1)) + records("bdh", curve(1.0, 60.0, 0.1))
    assert list(frontier.families(runs)) == list(frontier.families(runs[::-1])) == ["bdh", "llama"]


def test_a_budget_a_stop_rule_skipped_has_no_point_and_is_not_in_progress():
    """GPT-2's learning-rate sweep ran at a budget before its stop rule skipped that budget:
    the sweep's runs make no frontier point there, with or without the status's complete
    budgets, and the budget is listed as stopped, not in progress."""
    runs = records("gpt2", curve(1.0, 60.0, 0.1), seeds=(1,))
    last = f"flops {BUDGETS[-1]:g}"
    stop = {"family": "gpt2", "model": "gpt2", "status": "bound", "budget": last,
            "budget_flops": BUDGETS[-1], "bound": "stopped: gpt2 was behind llama"}  # fmt: skip
    complete = {("gpt2", f"flops {b:g}") for b in BUDGETS[:-1]}
    for done in (None, complete):
        result = frontier.frontier([*runs, stop], bootstrap_n=0, complete=done)["families"]["gpt2"]
        assert [p["budget"] for p in result["frontier"]] == [f"flops {b:g}" for b in BUDGETS[:-1]]
        assert result["in_progress"] == [] and result["stopped"].startswith("stopped: ")
