"""Is a degree distribution heavy-tailed? Clauset, Shalizi & Newman (2009), for integers.

    fit = fit_power_law(degrees)   # alpha, k_min (by the KS distance), and the alternatives
    fit.compare["exponential"]     # Vuong's likelihood ratio: R > 0 favours the power law

The power law p(k) = k^-alpha / zeta(alpha, k_min) is fitted by maximum likelihood to the tail
k >= k_min, k_min chosen to minimise the Kolmogorov-Smirnov distance between the tail and its
fit. On the same tail two alternatives are fitted by maximum likelihood, a discrete exponential
p(k) ~ e^(-lambda k) and a discretised lognormal, and compared with the power law by the
normalised log-likelihood ratio (Vuong 1989): R = sum of the pointwise log-likelihood
differences, p its two-sided significance. A power law "wins" only with R > 0 and p < 0.1
(Clauset et al.'s threshold); with p >= 0.1 the data cannot tell the two apart. The lognormal
and the exponential are compared the same way, and `preferred` names the one distribution that
beats both others, if any.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, special, stats

ALPHA_RANGE = (1.0001, 10.0)
SIGNIFICANCE = 0.1


@dataclass
class Comparison:
    """The power law against an alternative on the same tail."""

    loglik_ratio: float  # R = sum(log p_powerlaw - log p_alternative); > 0 favours the power law
    normalized: float  # R / (sigma sqrt(n))
    p_value: float  # two-sided: is the sign of R significant?

    @property
    def power_law_wins(self) -> bool:
        return self.loglik_ratio > 0 and self.p_value < SIGNIFICANCE


@dataclass
class PowerLawFit:
    alpha: float
    k_min: int
    n_tail: int  # values >= k_min
    n: int  # all positive values
    ks_distance: float
    params: dict[str, dict[str, float]] = field(default_factory=dict)  # the alternatives' fits
    compare: dict[str, Comparison] = field(default_factory=dict)
    lognormal_vs_exponential: Comparison | None = None  # R > 0 favours the lognormal

    def as_dict(self) -> dict:
        return {
            "alpha": self.alpha,
            "k_min": self.k_min,
            "n_tail": self.n_tail,
            "n": self.n,
            "ks_distance": self.ks_distance,
            "alternatives": {
                name: {
                    **self.params[name],
                    "loglik_ratio": c.loglik_ratio,
                    "normalized_ratio": c.normalized,
                    "p_value": c.p_value,
                    "power_law_wins": c.power_law_wins,
                }
                for name, c in self.compare.items()
            },
            **(
                {}
                if self.lognormal_vs_exponential is None
                else {
                    "lognormal_vs_exponential": {
                        "loglik_ratio": self.lognormal_vs_exponential.loglik_ratio,
                        "p_value": self.lognormal_vs_exponential.p_value,
                    }
                }
            ),
        }


# --- the three distributions on a tail k >= k_min (pointwise log-likelihoods) --------------


def power_law_logpmf(k: np.ndarray, alpha: float, k_min: int) -> np.ndarray:
    return -alpha * np.log(k) - math.log(special.zeta(alpha, k_min))


def fit_alpha(tail: np.ndarray, k_min: int) -> float:
    """Maximum-likelihood exponent of the discrete power law on tail (every value >= k_min)."""
    sum_log = float(np.log(tail).sum())
    n = len(tail)

    def nll(alpha: float) -> float:
        return n * math.log(special.zeta(alpha, k_min)) + alpha * sum_log

    return float(optimize.minimize_scalar(nll, bounds=ALPHA_RANGE, method="bounded").x)


def exponential_fit(tail: np.ndarray, k_min: int) -> tuple[dict[str, float], np.ndarray]:
    """p(k) = (1 - e^-lam) e^(-lam (k - k_min)): a geometric law on k - k_min, in closed form."""
    excess = float(np.mean(tail - k_min))
    lam = math.log1p(1.0 / excess) if excess > 0 else 50.0  # all at k_min: as sharp as it gets
    logpmf = math.log(-math.expm1(-lam)) - lam * (tail - k_min)
    return {"lambda": lam}, logpmf


def _lognormal_logpmf(k: np.ndarray, mu: float, sigma: float, k_min: int) -> np.ndarray:
    """log P(k) of a lognormal binned to integers ([k - 1/2, k + 1/2)) and cut at k_min."""

    def logsf(x):
        return stats.norm.logsf((np.log(x) - mu) / sigma)

    upper, lower = logsf(k - 0.5), logsf(k + 0.5)  # P(X > k - 1/2) >= P(X > k + 1/2)
    with np.errstate(divide="ignore"):
        mass = upper + np.log(-np.expm1(np.minimum(lower - upper, -1e-300)))
    return mass - logsf(np.asarray(k_min - 0.5))


def lognormal_fit(tail: np.ndarray, k_min: int) -> tuple[dict[str, float], np.ndarray]:
    logs = np.log(tail)
    start = np.array([logs.mean(), math.log(max(logs.std(), 0.1))])

    def nll(theta: np.ndarray) -> float:
        value = -_lognormal_logpmf(tail, theta[0], math.exp(theta[1]), k_min).sum()
        return float(value) if np.isfinite(value) else 1e300

    theta = optimize.minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-6}).x
    mu, sigma = float(theta[0]), math.exp(theta[1])
    return {"mu": mu, "sigma": sigma}, _lognormal_logpmf(tail, mu, sigma, k_min)


# --- the fit ---------------------------------------------------------------------------------


def ks_distance(tail: np.ndarray, alpha: float, k_min: int) -> float:
    """Largest gap between the tail's empirical CDF and the fitted power law's, at its values."""
    values, counts = np.unique(tail, return_counts=True)
    empirical = np.cumsum(counts) / len(tail)  # P(K <= k)
    fitted = 1.0 - special.zeta(alpha, values + 1) / special.zeta(alpha, k_min)
    return float(np.max(np.abs(empirical - fitted)))


def vuong(logp_a: np.ndarray, logp_b: np.ndarray) -> Comparison:
    diff = logp_a - logp_b
    ratio, sigma = float(diff.sum()), float(diff.std())
    if sigma == 0.0 or not math.isfinite(sigma):
        return Comparison(ratio, 0.0, 1.0)
    normalized = ratio / (sigma * math.sqrt(len(diff)))
    return Comparison(ratio, normalized, float(special.erfc(abs(normalized) / math.sqrt(2))))


def fit_power_law(values, min_tail: int = 30, k_min: int | None = None) -> PowerLawFit:
    """Fit the positive integers in values (zeros are dropped: a degree-0 node has no tail).

    k_min: fixed, or (None) the candidate with the smallest KS distance among those leaving at
    least min_tail values in the tail."""
    data = np.asarray(values, dtype=np.int64)
    data = np.sort(data[data > 0]).astype(np.float64)
    if len(data) < 2 or len(np.unique(data)) < 2:
        raise ValueError(f"need at least two distinct positive values, got {len(data)} values")
    if k_min is None:
        candidates = [int(v) for v in np.unique(data)[:-1] if (data >= v).sum() >= min_tail]
        candidates = candidates or [int(data[0])]
        best = None
        for candidate in candidates:
            tail = data[data >= candidate]
            alpha = fit_alpha(tail, candidate)
            distance = ks_distance(tail, alpha, candidate)
            if best is None or distance < best[0]:
                best = (distance, candidate, alpha)
        distance, k_min, alpha = best
    else:
        alpha = fit_alpha(data[data >= k_min], k_min)
        distance = ks_distance(data[data >= k_min], alpha, k_min)
    tail = data[data >= k_min]
    fit = PowerLawFit(alpha, int(k_min), len(tail), len(data), distance)
    power = power_law_logpmf(tail, alpha, k_min)
    logpmfs = {}
    for name, fitter in (("exponential", exponential_fit), ("lognormal", lognormal_fit)):
        params, logpmfs[name] = fitter(tail, k_min)
        fit.params[name] = params
        fit.compare[name] = vuong(power, logpmfs[name])
    fit.lognormal_vs_exponential = vuong(logpmfs["lognormal"], logpmfs["exponential"])
    return fit


def preferred(fit: PowerLawFit) -> str:
    """Which of the power law, the lognormal and the exponential the tail prefers: the one that
    beats both others (R of the right sign, p < 0.1); else "undecided: " and those not beaten."""
    beats = {("power law", name): c for name, c in fit.compare.items()}
    if fit.lognormal_vs_exponential is not None:
        beats[("lognormal", "exponential")] = fit.lognormal_vs_exponential
    wins: dict[str, set[str]] = {"power law": set(), "lognormal": set(), "exponential": set()}
    for (a, b), c in beats.items():
        if c.p_value < SIGNIFICANCE and c.loglik_ratio != 0:
            winner, loser = (a, b) if c.loglik_ratio > 0 else (b, a)
            wins[winner].add(loser)
    for name, beaten in wins.items():
        if len(beaten) == 2:
            return name
    standing = [n for n in wins if not any(n in beaten for beaten in wins.values())]
    return "undecided: " + " or ".join(standing)


def power_law_ccdf(k: np.ndarray, alpha: float, k_min: int) -> np.ndarray:
    """P(K >= k) of the fitted power law (k >= k_min), for charts."""
    return special.zeta(alpha, k) / special.zeta(alpha, k_min)


def exponential_ccdf(k: np.ndarray, lam: float, k_min: int) -> np.ndarray:
    return np.exp(-lam * (k - k_min))


def lognormal_ccdf(k: np.ndarray, mu: float, sigma: float, k_min: int) -> np.ndarray:
    def sf(x):
        return stats.norm.sf((np.log(x) - mu) / sigma)

    return sf(k - 0.5) / sf(k_min - 0.5)
