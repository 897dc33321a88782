"""Fixtures of the analysis tests: exact draws from a discrete power law."""

from __future__ import annotations

import numpy as np
import pytest
import torch
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


def _tiny_bdh(n_layer: int = 1, seed: int = 0):
    from bdh_pl.models.bdh import BDH, BDHConfig

    torch.manual_seed(seed)
    config = BDHConfig(
        n_layer=n_layer, n_embd=8, n_head=2, mlp_internal_dim_multiplier=2, dropout=0.0
    )
    return BDH(config).eval()  # N = 2 * 8 / 2 = 8 neurons per head


@pytest.fixture
def tiny_bdh():
    """tiny_bdh(n_layer=1, seed=0) -> BDH (8 wide, 2 heads of 8 neurons), eval mode"""
    return _tiny_bdh
