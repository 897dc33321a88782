"""Fixtures of the analysis tests: exact draws from a discrete power law."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special


def _sample_power_law(alpha: float, k_min: int, n: int, seed: int = 0) -> np.ndarray:
    """Exact draws from p(k) = k^-alpha / zeta(alpha, k_min) by inverting its CDF."""
    rng = np.random.default_rng(seed)
    k = np.arange(k_min, 10**6)
    cdf = np.cumsum(k**-alpha) / special.zeta(alpha, k_min)
    return k[np.minimum(np.searchsorted(cdf, rng.random(n)), len(k) - 1)]


@pytest.fixture
def sample_power_law():
    """sample_power_law(alpha, k_min, n, seed=0) -> integer array"""
    return _sample_power_law
