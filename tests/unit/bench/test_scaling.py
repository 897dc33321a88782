"""The scaling-law fit against known curves, scipy.optimize and plain least squares."""

import math

import numpy as np
import pytest
from scipy.optimize import curve_fit, minimize

from bdh_pl.bench import scaling

TRUTH = {"E": 0.9, "A": 3.0e3, "alpha": 0.3}
BUDGETS = np.geomspace(2e12, 1.28e14, 7)


def law(c, E, A, alpha):
    return E + A * np.asarray(c, dtype=float) ** -alpha


def test_the_fit_recovers_known_parameters_and_the_band_covers_them():
    exact = scaling.fit_power_law(list(BUDGETS), list(law(BUDGETS, **TRUTH)))
    for k, v in TRUTH.items():
        assert exact[k] == pytest.approx(v, rel=1e-4), k
    rng = np.random.default_rng(1)
    points = [
        {"flops": c, "val_bpb_seeds": list(law(c, **TRUTH) + rng.normal(0, 0.005, 2))}
        for c in BUDGETS
    ]
    boot = scaling.bootstrap_fits(points, n=150)
    assert len(boot) == 150
    band = scaling.parameter_band(boot)
    for k, v in TRUTH.items():
        assert band[k][0] <= v <= band[k][1], (k, band[k])
    # and informative: a band as wide as the search's bounds would cover anything (seven
    # budgets with 0.5% noise pin alpha to about +-0.05 and E to about +-0.05 bpb)
    assert band["alpha"][1] - band["alpha"][0] < 0.15 and band["E"][1] - band["E"][0] < 0.2
    low, high = scaling.band(boot, BUDGETS)
    assert np.all(low <= law(BUDGETS, **TRUTH)) and np.all(law(BUDGETS, **TRUTH) <= high)


def test_one_outlier_pulls_least_squares_but_not_the_huber_fit():
    loss = law(BUDGETS, **TRUTH)
    loss[3] += 0.15  # one run far off (a bad seed, a broken run)
    huber = scaling.fit_power_law(list(BUDGETS), list(loss))
    x = BUDGETS / BUDGETS[0]  # least squares on the loss itself, by scipy, independently
    (e, a, alpha), _ = curve_fit(lambda x, e, a, al: e + a * x**-al, x, loss, p0=(1.0, 1.5, 0.3),
                                 maxfev=20000)  # fmt: skip
    squares = {"E": e, "A": a * BUDGETS[0] ** alpha, "alpha": alpha}
    others = np.delete(BUDGETS, 3)
    huber_error = np.max(np.abs(law(others, **{k: huber[k] for k in TRUTH}) - law(others, **TRUTH)))
    squares_error = np.max(np.abs(law(others, **squares) - law(others, **TRUTH)))
    assert huber["alpha"] == pytest.approx(TRUTH["alpha"], abs=0.01)
    assert huber_error < 0.005 < 0.02 < squares_error  # the outlier bends the squares' curve


def test_the_batched_minimiser_reaches_scipys_minimum():
    rng = np.random.default_rng(3)
    for _ in range(2):
        c = np.geomspace(1e12, 1e14, 5)
        loss = law(c, rng.uniform(0.5, 1.5), rng.uniform(1e2, 1e4), rng.uniform(0.15, 0.45))
        y = np.log(loss * np.exp(rng.normal(0, 0.01, len(c))))
        x = c / c[0]
        mine = scaling.fit_power_law(list(c), list(np.exp(y)))["huber"]

        def objective(theta, c=c, x=x, y=y):  # the Huber loss and its gradient, by hand
            e, a = math.exp(theta[0]), math.exp(theta[1]) * c[0] ** theta[2]
            r = np.log(law(c, e, a, theta[2])) - y
            pred = np.exp(r + y)
            term = pred - e
            psi = np.clip(r, -scaling.HUBER_DELTA, scaling.HUBER_DELTA)
            grad = [
                np.sum(psi * e / pred),
                np.sum(psi * term / pred),
                np.sum(-psi * term * np.log(x) / pred),
            ]
            return float(scaling.huber(r).sum()), np.array(grad)

        bounds = list(zip(scaling.LOW, scaling.HIGH, strict=True))
        best = min(
            minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds).fun
            for start in scaling._grid(x, y)[::40]
        )
        assert mine <= best * (1 + 1e-2) + 1e-12


def test_too_few_budgets_give_no_fit_and_a_floor_is_never_reached():
    assert scaling.fit_power_law([1e12, 2e12], [2.0, 1.9]) is None
    assert scaling.bootstrap_fits([{"flops": 1.0, "val_bpb_seeds": [2.0]}] * 4) == []
    three = [{"flops": c, "val_bpb_seeds": [3.0 - c]} for c in (1.0, 2.0, 4.0)]
    assert scaling.bootstrap_fits(three, n=0) == []  # none asked for: none, not a crash
    fit = {"E": 1.0, "A": 10.0, "alpha": 0.5}
    assert scaling.flops_for_loss(fit, 0.99) == math.inf
    assert scaling.flops_for_loss(fit, 1.1) == pytest.approx((10 / 0.1) ** 2)


def test_the_log_trend_of_a_power():
    trend = scaling.log_trend(
        [1e12, 1e13, 1e14], [2e5 * (c / 1e12) ** 0.5 for c in (1e12, 1e13, 1e14)]
    )
    assert trend["exponent"] == pytest.approx(0.5)
    assert scaling.read_trend(trend, 4e12) == pytest.approx(4e5)
