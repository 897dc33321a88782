"""Power-law fits: planted exponents come back, and exponential data is not called a power law."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from bdh_pl.analysis.powerlaw import fit_alpha, fit_power_law, preferred, vuong


@pytest.mark.parametrize("alpha", [2.0, 2.5, 3.0])
def test_a_planted_exponent_comes_back_and_beats_the_exponential(alpha, sample_power_law):
    fit = fit_power_law(sample_power_law(alpha, 1, 3000, seed=int(alpha * 10)))
    assert fit.alpha == pytest.approx(alpha, abs=0.1)
    assert fit.compare["exponential"].power_law_wins


def test_the_exponent_solves_the_likelihood_equation(sample_power_law):
    """At the MLE, d/dalpha log zeta(alpha, k_min) = -mean(log k): checked by finite differences."""
    tail = sample_power_law(2.7, 3, 2000, seed=5).astype(float)
    alpha = fit_alpha(tail, 3)
    h = 1e-5
    dlogzeta = (math.log(special.zeta(alpha + h, 3)) - math.log(special.zeta(alpha - h, 3))) / (
        2 * h
    )
    assert dlogzeta == pytest.approx(-np.log(tail).mean(), rel=1e-3)


def test_k_min_is_found_above_a_different_head(sample_power_law):
    """Uniform small values below a power-law tail: the fit starts where the tail starts."""
    rng = np.random.default_rng(1)
    data = np.concatenate([rng.integers(1, 10, 3000), sample_power_law(2.5, 10, 2000, seed=2)])
    fit = fit_power_law(data)
    assert 8 <= fit.k_min <= 14
    assert fit.alpha == pytest.approx(2.5, abs=0.2)


def test_geometric_and_poisson_data_are_not_power_laws():
    rng = np.random.default_rng(0)
    for data in (rng.geometric(0.1, 3000), rng.poisson(15, 3000)):
        fit = fit_power_law(data)
        assert not fit.compare["exponential"].power_law_wins


def test_vuong_is_signed_and_insignificant_without_a_difference():
    a = np.log(np.full(100, 0.5))
    assert vuong(a, a).p_value == 1.0
    rng = np.random.default_rng(0)
    better = vuong(a + 1 + 0.1 * rng.standard_normal(100), a)
    assert better.loglik_ratio > 0 and better.p_value < 1e-6


def test_too_few_values_is_a_value_error():
    with pytest.raises(ValueError, match="two distinct"):
        fit_power_law([0, 0, 3, 3])


def test_the_preferred_law_of_power_law_and_lognormal_samples(sample_power_law):
    """On the whole sample (k_min 1): power-law data beats the exponential and is not beaten by
    the lognormal (a lognormal can mimic a power law); lognormal data prefers the lognormal."""
    fit = fit_power_law(sample_power_law(2.5, 1, 2000, seed=0), k_min=1)
    assert fit.compare["exponential"].power_law_wins
    assert preferred(fit) in ("power law", "undecided: power law or lognormal")
    rng = np.random.default_rng(0)
    lognormal = np.maximum(np.round(rng.lognormal(2.0, 0.7, 2000)), 1).astype(int)
    fit = fit_power_law(lognormal, k_min=1)
    assert preferred(fit) == "lognormal"
    assert fit.compare["lognormal"].loglik_ratio < 0 and fit.compare["lognormal"].p_value < 0.1
    assert fit.as_dict()["lognormal_vs_exponential"]["loglik_ratio"] > 0


def test_preferred_needs_a_law_that_beats_both_others():
    fit = fit_power_law(np.random.default_rng(0).geometric(0.1, 3000))
    assert not preferred(fit).startswith("power law")
