"""The scaling-law fit of a compute frontier, as the literature does it: L(C) = E + A C^-alpha
fitted by minimising the Huber loss of log L_pred - log L_obs (Hoffmann et al. 2022, approach 3;
Besiroglu et al. 2024), from a grid of starting points, with a bootstrap over points and seeds.

The Huber loss with a small delta (1e-3 on log loss: 0.1%) is quadratic for the residuals of
an interpolating fit and linear beyond: one point far off pulls the fit by a bounded amount,
where least squares would follow it. Parameters are searched as (log E, log A', alpha) with
C in units of the smallest budget (A' = A C_min^-alpha: well-conditioned), by L-BFGS-B with
the exact gradient from the best few points of a grid (Hoffmann et al. start from every grid
point; the objective on the whole grid costs one vectorised pass, so the search starts from the
grid's best cells instead). Numpy and scipy.optimize only.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

HUBER_DELTA = 1e-3
BOOTSTRAP = 1000
STARTS = 3  # L-BFGS-B runs per fit, from the grid's best cells
E_FRACTIONS = np.array([1e-3, 0.2, 0.4, 0.6, 0.8, 0.9, 0.97])  # E as a share of the lowest loss
ALPHAS = np.geomspace(0.02, 2.5, 16)
A_FACTORS = np.geomspace(0.25, 4.0, 7)  # A' around what puts the curve through the first point
LOW = np.array([math.log(1e-6), -50.0, 1e-4])  # log E, log A', alpha
HIGH = np.array([math.log(1e3), 50.0, 5.0])


def huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _residuals(theta: np.ndarray, x: np.ndarray, y: np.ndarray):
    """log(E + A' x^-alpha) - y and its Jacobian in (log E, log A', alpha), for S parameter
    sets at once: theta (S, 3), x and y (S, n) -> r (S, n), J (S, n, 3)."""
    e = np.exp(theta[:, :1])  # S, 1
    term = np.exp(theta[:, 1:2] - theta[:, 2:3] * np.log(x))  # S, n: A' x^-alpha
    pred = e + term
    jac = np.stack([e / pred, term / pred, -term * np.log(x) / pred], axis=-1)
    return np.log(pred) - y, jac


def _objective(theta: np.ndarray, x: np.ndarray, y: np.ndarray, delta: float) -> np.ndarray:
    return huber(_residuals(theta, x, y)[0], delta).sum(axis=1)  # S


def _project(theta: np.ndarray) -> np.ndarray:
    return np.clip(theta, LOW, HIGH)


def minimise(
    theta: np.ndarray, x: np.ndarray, y: np.ndarray, delta: float = HUBER_DELTA, steps: int = 400
) -> tuple[np.ndarray, np.ndarray]:
    """The Huber objective minimised from S starts at once: Levenberg-Marquardt on the
    iteratively reweighted least squares of the Huber loss (weights min(1, delta / |r|)),
    each start with its own damping, steps projected into [LOW, HIGH]. Returns (theta, objective),
    (S, 3) and (S,). tests/unit/bench/test_scaling.py checks it against scipy.optimize."""
    theta = _project(np.array(theta, dtype=float))
    f = _objective(theta, x, y, delta)
    damping = np.full(len(theta), 1e-3)
    active = np.arange(len(theta))  # the starts still moving
    eye = np.eye(3)
    for _ in range(steps):
        t, xa, ya, fa, lam = theta[active], x[active], y[active], f[active], damping[active]
        r, jac = _residuals(t, xa, ya)
        w = np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300))
        grad = np.einsum("sni,sn->si", jac, w * r)
        hess = np.einsum("sni,snj->sij", jac * w[..., None], jac)
        scale = np.einsum("sii->si", hess)[:, :, None] * eye + 1e-12 * eye
        step = np.linalg.solve(hess + lam[:, None, None] * scale, -grad[:, :, None])[..., 0]
        trial = _project(t + step)
        f_trial = _objective(trial, xa, ya, delta)
        better = f_trial < fa
        gain = np.where(better, (fa - f_trial) / np.maximum(fa, 1e-300), 0.0)
        theta[active[better]], f[active[better]] = trial[better], f_trial[better]
        lam = np.where(better, lam / 3, lam * 4)
        damping[active] = lam
        moving = ~((better & (gain < 1e-10)) | (lam >= 1e8) | (f[active] == 0))
        active = active[moving]
        if not len(active):
            break
    return theta, f


def _grid(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The starting grid of (log E, log A', alpha) for one frontier (x, y: (n,))."""
    low, first = float(np.exp(y.min())), float(np.exp(y[np.argmin(x)]))
    e = E_FRACTIONS * low  # n_e
    a = np.maximum(first - e, 1e-6)[:, None] * A_FACTORS[None, :]  # n_e, n_a
    grid = np.stack(
        np.broadcast_arrays(e[:, None, None], a[:, :, None], ALPHAS[None, None, :]), axis=-1
    ).reshape(-1, 3)
    return np.column_stack([np.log(grid[:, 0]), np.log(grid[:, 1]), grid[:, 2]])


def _best_starts(grid: np.ndarray, x: np.ndarray, y: np.ndarray, delta: float) -> np.ndarray:
    """For each of S frontiers (x, y: (S, n)) the STARTS cells of `grid` (G, 3) with the
    lowest objective: (S, STARTS, 3)."""
    out = []
    for i in range(0, len(x), 64):  # 64 frontiers x G cells at a time: bounded memory
        xs, ys = x[i : i + 64, None, :], y[i : i + 64, None, :]  # s, 1, n
        e = np.exp(grid[None, :, :1])  # 1, G, 1
        pred = e + np.exp(grid[None, :, 1:2] - grid[None, :, 2:3] * np.log(xs))  # s, G, n
        loss = huber(np.log(pred) - ys, delta).sum(axis=-1)  # s, G
        out.append(grid[np.argsort(loss, axis=1)[:, :STARTS]])
    return np.concatenate(out)


def _fit_many(
    x: np.ndarray, y: np.ndarray, grid: np.ndarray, delta: float, extra: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(theta (S, 3), objective (S,)) of S frontiers (x, y: (S, n)): each minimised from its
    grid's best cells (and `extra`, one more start for all), the best kept."""
    starts = _best_starts(grid, x, y, delta)  # S, k, 3
    if extra is not None:
        starts = np.concatenate([starts, np.broadcast_to(extra, (len(x), 1, 3))], axis=1)
    k = starts.shape[1]
    theta, f = minimise(starts.reshape(-1, 3), np.repeat(x, k, 0), np.repeat(y, k, 0), delta)
    best = f.reshape(-1, k).argmin(axis=1)
    rows = np.arange(len(x)) * k + best
    return theta[rows], f[rows]


def _as_fit(theta: np.ndarray, f: float, c: np.ndarray, loss: np.ndarray, scale: float):
    log_e, log_a, alpha = (float(v) for v in theta)
    fit = {"E": math.exp(log_e), "A": math.exp(log_a) * scale**alpha, "alpha": alpha}
    residual = predict(fit, c) - loss
    return {**fit, "rmse": float(np.sqrt(np.mean(residual**2))), "huber": float(f)}


def _usable(c: np.ndarray, loss: np.ndarray) -> bool:
    return len(np.unique(c)) >= 3 and bool(np.all(np.isfinite(loss) & (loss > 0)))


def fit_power_law(
    flops: list[float], loss: list[float], delta: float = HUBER_DELTA
) -> dict[str, float] | None:
    """E, A, alpha of L(C) = E + A C^-alpha (Huber on log loss), with `rmse` (bits per byte)
    and `huber` (the objective at the optimum); None with fewer than three distinct budgets."""
    c, loss_ = np.asarray(flops, dtype=float), np.asarray(loss, dtype=float)
    if not _usable(c, loss_):
        return None
    scale = float(c.min())
    x, y = c / scale, np.log(loss_)
    theta, f = _fit_many(x[None], y[None], _grid(x, y), delta)
    return _as_fit(theta[0], f[0], c, loss_, scale)


def bootstrap_fits(
    points: list[dict], n: int = BOOTSTRAP, seed: int = 0, delta: float = HUBER_DELTA
) -> list[dict]:
    """Fits of resampled frontiers: the points (`flops`, `val_bpb_seeds`) drawn with
    replacement (at least three distinct budgets), each drawn point's value one of its seeds
    drawn at random; all fitted at once, each from the full frontier's grid's best cells and
    the full frontier's own fit. Remembered per frontier: a benchmark rewrites its summary
    after every run, and most runs leave a family's points as they were."""
    key = tuple((p["flops"], tuple(p["val_bpb_seeds"])) for p in points)
    return [dict(f) for f in _bootstrap(key, n, seed, delta)]


@functools.lru_cache(maxsize=32)
def _bootstrap(key: tuple, n: int, seed: int, delta: float) -> tuple[dict, ...]:
    points = [{"flops": c, "val_bpb_seeds": list(v)} for c, v in key]
    if len({p["flops"] for p in points}) < 3:
        return ()
    rng = np.random.default_rng(seed)
    draws: list[tuple[list[float], list[float]]] = []
    for _ in range(20 * n):
        if len(draws) == n:
            break
        chosen = rng.integers(0, len(points), len(points))
        if len({points[i]["flops"] for i in chosen}) < 3:
            continue
        draws.append(
            (
                [points[i]["flops"] for i in chosen],
                [float(rng.choice(points[i]["val_bpb_seeds"])) for i in chosen],
            )
        )
    if not draws:  # n = 0: no bootstrap asked for
        return ()
    c, loss = np.array([d[0] for d in draws]), np.array([d[1] for d in draws])  # S, n
    scale = min(p["flops"] for p in points)
    means = np.array([np.mean(p["val_bpb_seeds"]) for p in points])
    full_x = np.array([p["flops"] for p in points]) / scale
    grid = _grid(full_x, np.log(means))
    full, _ = _fit_many(full_x[None], np.log(means)[None], grid, delta)
    theta, f = _fit_many(c / scale, np.log(loss), grid, delta, extra=full[0])
    return tuple(
        _as_fit(t, v, ci, li, scale) for t, v, ci, li in zip(theta, f, c, loss, strict=True)
    )


def predict(fit: dict[str, float], flops: float | np.ndarray) -> float | np.ndarray:
    return fit["E"] + fit["A"] * np.asarray(flops, dtype=float) ** -fit["alpha"]


def flops_for_loss(fit: dict[str, float], loss: float) -> float:
    """The training FLOPs at which the fit reaches `loss` (inf when loss <= E: never)."""
    if loss <= fit["E"]:
        return math.inf
    return (fit["A"] / (loss - fit["E"])) ** (1 / fit["alpha"])


def band(fits: list[dict], flops: np.ndarray, q: tuple[float, float] = (5, 95)) -> np.ndarray:
    """The (2, len(flops)) percentiles of the bootstrap fits' predictions."""
    predictions = np.stack([predict(f, flops) for f in fits])
    return np.percentile(predictions, q, axis=0)


def parameter_band(fits: list[dict]) -> dict[str, list[float]] | None:
    if not fits:
        return None
    return {
        k: [float(np.percentile([f[k] for f in fits], q)) for q in (5, 95)]
        for k in ("E", "A", "alpha")
    }


def log_trend(flops: list[float], values: list[float]) -> dict[str, Any] | None:
    """value = k C^b by least squares in log-log (how the chosen size or tokens grow with
    compute), or None with fewer than two distinct budgets."""
    c, v = np.log(np.asarray(flops, float)), np.log(np.asarray(values, float))
    if len(np.unique(c)) < 2:
        return None
    b, log_k = np.polyfit(c, v, 1)
    return {"k": float(math.exp(log_k)), "exponent": float(b)}


def read_trend(trend: dict[str, Any], flops: float) -> float:
    return trend["k"] * flops ** trend["exponent"]
