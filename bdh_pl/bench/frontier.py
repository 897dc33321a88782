"""The compute frontier of a benchmark's records (plain functions of metrics.json records).

For each family (BDH, GPT-2, LLaMA): at each training budget the size with the lowest
validation bpb on the first seed (the IsoFLOP minimum) is the frontier point, averaged over the
seeds it was repeated on; the points are fitted with L(C) = E + A * C^-alpha (loss against
training FLOPs), with a bootstrap band over points and seeds. `compute_multiplier` then says, at
each budget, how many times BDH's FLOPs reach the best transformer's loss there (from the fits),
and where the curves cross, if within 100x of the largest budget run.

The fit: for a fixed alpha the model is linear in (E, A), so E and A come from least squares and
alpha from a search over a grid (refined); E is kept >= 0 (bits per byte cannot go below 0).
Numpy only.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import numpy as np

ALPHAS = np.geomspace(0.01, 3.0, 400)  # the search grid of the exponent
BOOTSTRAP = 1000
CROSSING_RANGE = 100.0  # look for a crossing up to this many times the largest budget
REFERENCE = "bdh"  # the family measured against the others
# Where the fits are read out beyond the runs: the seed's BDH (configs/model/bdh.yaml, 25.3M
# parameters, trained on GPUs) at this frontier's block size (128) spends 1.0117e9 training
# FLOPs per token (counted: tests/bench/test_frontier.py); 2M tokens of it is this compute.
SEED_SCALE = {
    "label": "the seed's 25.3M BDH on 2M tokens (block 128)",
    "budget_flops": 1.0117e9 * 2e6,
}


def families(records: list[dict]) -> dict[str, list[dict]]:
    """The finished frontier runs by family, in order of first appearance."""
    out: dict[str, list[dict]] = {}
    for r in records:
        if r.get("family") and r.get("status") == "ok" and _number(r.get("best_val_bpb")):
            out.setdefault(r["family"], []).append(r)
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _budget(r: dict) -> float:
    """A run's budget in FLOPs: its FLOPs budget, else what it trained."""
    return float(r.get("budget_flops") or r.get("train_flops") or 0.0)


def frontier_points(runs: list[dict]) -> list[dict]:
    """One point per budget: the size with the lowest validation bpb on the first seed, its
    figures averaged over every seed it ran on, and whether it is the smallest or the
    largest size trained at that budget (then the true minimum may lie outside the ladder)."""
    first_seed = runs[0].get("seed")
    points = []
    for budget in sorted({_budget(r) for r in runs}):
        cell = [
            r
            for r in runs
            if _budget(r) == budget
            and r.get("selected") is not False
            and r.get("seed") == first_seed
        ]
        if not cell:
            continue
        best = min(cell, key=lambda r: r["best_val_bpb"])
        repeats = [
            r
            for r in runs
            if _budget(r) == budget
            and r["model"] == best["model"]
            and r.get("setting") == best.get("setting")
        ]
        by_params = sorted(cell, key=lambda r: r["params"])
        edge = (
            "smallest"
            if best is by_params[0] and len(cell) > 1
            else "largest"
            if best is by_params[-1] and len(cell) > 1
            else None
        )
        val = [r["best_val_bpb"] for r in repeats]
        test = [r["test_bpb"] for r in repeats if _number(r.get("test_bpb"))]
        points.append(
            {
                "budget_flops": budget,
                "model": best["model"],
                "params": best["params"],
                "train_tokens": best.get("train_tokens"),
                "train_steps": best.get("train_steps"),
                "val_bpb": statistics.fmean(val),
                "val_bpb_seeds": val,
                "test_bpb": statistics.fmean(test) if test else None,
                "test_bpb_seeds": test,
                "seeds": [r.get("seed") for r in repeats],
                "wall_time_s": statistics.fmean(r.get("wall_time_s") or 0.0 for r in repeats),
                "at_ladder_edge": edge is not None,
                "edge": edge,
                "sizes_tried": [r["model"] for r in by_params],
            }
        )
    return points


def fit_power_law(flops: list[float], loss: list[float]) -> dict[str, float] | None:
    """L(C) = E + A * C^-alpha by least squares (E >= 0, A > 0), or None with fewer than three
    budgets or no decreasing fit."""
    c = np.asarray(flops, dtype=float)
    y = np.asarray(loss, dtype=float)
    if len(np.unique(c)) < 3:
        return None
    scale = c.min()  # fit in units of the smallest budget: well-conditioned powers
    x = c / scale
    e, a, sse = _solve(x, y, ALPHAS)
    i = int(np.argmin(np.where(a > 0, sse, np.inf)))
    if not a[i] > 0:
        return None
    fine = np.linspace(ALPHAS[max(i - 1, 0)], ALPHAS[min(i + 1, len(ALPHAS) - 1)], 201)
    e, a, sse = _solve(x, y, fine)
    i = int(np.argmin(np.where(a > 0, sse, np.inf)))
    alpha = float(fine[i])
    return {
        "E": float(e[i]),
        "A": float(a[i]) * scale**alpha,
        "alpha": alpha,
        "rmse": math.sqrt(float(sse[i]) / len(y)),
    }


def _solve(x: np.ndarray, y: np.ndarray, alphas: np.ndarray):
    """(E, a, squared error) of y = E + a x^-alpha for each alpha (arrays over alphas): the
    closed-form least squares of a line in b = x^-alpha, E clipped at 0 (then a = b.y / b.b)."""
    b = x[None, :] ** -alphas[:, None]  # n_alpha, n_points
    b_mean, y_mean = b.mean(axis=1), y.mean()
    b_var = ((b - b_mean[:, None]) ** 2).sum(axis=1)
    a = ((b - b_mean[:, None]) * (y - y_mean)).sum(axis=1) / np.maximum(b_var, 1e-300)
    e = y_mean - a * b_mean
    floor = e < 0
    a = np.where(floor, (b @ y) / (b * b).sum(axis=1), a)
    e = np.where(floor, 0.0, e)
    sse = ((e[:, None] + a[:, None] * b - y) ** 2).sum(axis=1)
    return e, a, sse


def predict(fit: dict[str, float], flops: float | np.ndarray) -> float | np.ndarray:
    return fit["E"] + fit["A"] * np.asarray(flops, dtype=float) ** -fit["alpha"]


def flops_for_loss(fit: dict[str, float], loss: float) -> float:
    """The training FLOPs at which the fit reaches `loss` (inf when loss <= E: never)."""
    if loss <= fit["E"]:
        return math.inf
    return (fit["A"] / (loss - fit["E"])) ** (1 / fit["alpha"])


def bootstrap_fits(points: list[dict], n: int = BOOTSTRAP, seed: int = 0) -> list[dict]:
    """Fits of resampled frontiers: the points drawn with replacement (at least three distinct
    budgets), each point's value one of its seeds drawn at random."""
    rng = np.random.default_rng(seed)
    fits = []
    tries = 0
    while len(fits) < n and tries < 20 * n:
        tries += 1
        chosen = rng.integers(0, len(points), len(points))
        if len(set(chosen.tolist())) < 3:
            continue
        flops = [points[i]["budget_flops"] for i in chosen]
        loss = [float(rng.choice(points[i]["val_bpb_seeds"])) for i in chosen]
        if (fit := fit_power_law(flops, loss)) is not None:
            fits.append(fit)
    return fits


def band(fits: list[dict], flops: np.ndarray, q: tuple[float, float] = (5, 95)) -> np.ndarray:
    """The (2, len(flops)) percentiles of the bootstrap fits' predictions."""
    predictions = np.stack([predict(f, flops) for f in fits])
    return np.percentile(predictions, q, axis=0)


def compute_multiplier(
    fitted: dict[str, dict], budgets: list[float], reference: str = REFERENCE
) -> dict[str, Any] | None:
    """At each budget, the best other family (lowest fitted loss) and how many times the
    reference family's FLOPs reach its loss (from the fits; with a band from the paired
    bootstrap fits); and where the reference curve crosses the best other one, if it does
    within CROSSING_RANGE x the largest budget."""
    if reference not in fitted or not fitted[reference]["fit"]:
        return None
    others = {k: v for k, v in fitted.items() if k != reference and v["fit"]}
    if not others:
        return None
    ref = fitted[reference]
    rows = []
    for budget in budgets:
        name, loss = min(((k, float(predict(v["fit"], budget))) for k, v in others.items()),
                         key=lambda kv: kv[1])  # fmt: skip
        needed = flops_for_loss(ref["fit"], loss)
        pairs = zip(ref["bootstrap"], others[name]["bootstrap"], strict=False)
        samples = [flops_for_loss(r, float(predict(o, budget))) / budget for r, o in pairs]
        finite = [s for s in samples if math.isfinite(s)]
        rows.append(
            {
                "budget_flops": budget,
                "best_other": name,
                "best_other_val_bpb": loss,
                f"{reference}_val_bpb": float(predict(ref["fit"], budget)),
                f"{reference}_flops_needed": needed,
                "multiplier": needed / budget,
                "multiplier_band": (
                    [float(np.percentile(finite, 5)), float(np.percentile(finite, 95))]
                    if len(finite) >= 0.95 * len(samples) and finite
                    else None
                ),
                "never_share": 1 - len(finite) / len(samples) if samples else None,
            }
        )
    return {
        "reference": reference,
        "against": "the other family with the lowest fitted loss at each budget",
        "at_budgets": rows,
        "crossing": crossing(
            ref["fit"], {k: v["fit"] for k, v in others.items()}, budgets, reference
        ),
    }


def crossing(
    ref: dict, others: dict[str, dict], budgets: list[float], name: str = "the reference"
) -> dict[str, Any]:
    """Where the reference fit (family `name`) meets the lowest of the others' fits, between
    the smallest budget and CROSSING_RANGE x the largest; the first sign change, refined by
    bisection."""

    def gap(c: float) -> float:
        return float(predict(ref, c)) - min(float(predict(f, c)) for f in others.values())

    lo, hi = min(budgets), CROSSING_RANGE * max(budgets)
    grid = np.geomspace(lo, hi, 400)
    gaps = [gap(c) for c in grid]
    for a, b, ga, gb in zip(grid, grid[1:], gaps, gaps[1:], strict=False):
        if ga == 0 or ga * gb < 0:
            for _ in range(60):
                mid = math.sqrt(a * b)
                if ga * (g_mid := gap(mid)) <= 0:
                    b = mid
                else:
                    a, ga = mid, g_mid
            where = math.sqrt(a * b)
            after = where * 1.01
            best_other = min(others, key=lambda k: float(predict(others[k], after)))
            ahead = name if gap(after) < 0 else best_other
            return {
                "budget_flops": where,
                "val_bpb": float(predict(ref, where)),
                "statement": f"the fits cross at {where:.3g} FLOPs ({where / max(budgets):.3g}x "
                f"the largest budget run); beyond it {ahead} leads",
            }
    leader = "ahead" if gaps[0] < 0 else "behind"
    return {
        "budget_flops": None,
        "val_bpb": None,
        "statement": f"the fits do not cross up to {CROSSING_RANGE:g}x the largest budget run "
        f"({hi:.3g} FLOPs): {name} stays {leader}",
    }


def frontier(records: list[dict]) -> dict[str, Any]:
    """frontier.json: per family its runs, frontier points, fit and band; the compute
    multiplier of BDH against the best transformer."""
    out: dict[str, Any] = {"families": {}}
    budgets: set[float] = set()
    for family, runs in families(records).items():
        points = frontier_points(runs)
        budgets |= {p["budget_flops"] for p in points}
        fit = fit_power_law([p["budget_flops"] for p in points], [p["val_bpb"] for p in points])
        boot = bootstrap_fits(points) if fit else []
        out["families"][family] = {
            "runs": [_run_row(r) for r in runs],
            "learning_rate": chosen_learning_rate(runs),
            "frontier": points,
            "fit": fit and {**fit, "band": _parameter_band(boot), "bootstrap_n": len(boot)},
            "curve": fit and fit_curve(fit, boot, [p["budget_flops"] for p in points]),
            "bootstrap": boot,
        }
    fitted = out["families"]
    out["compute_multiplier"] = compute_multiplier(fitted, sorted(budgets))
    out["extrapolation"] = extrapolation(fitted, SEED_SCALE)
    for entry in fitted.values():
        entry.pop("bootstrap")  # a thousand fits: used above, not worth the file
    return out


def chosen_learning_rate(runs: list[dict]) -> dict[str, Any] | None:
    """The family's sweep: the rates tried, the one chosen (reused for every run), and
    whether it is the smallest or largest tried (the best may lie beyond the sweep)."""
    tried = sorted({r["learning_rate"] for r in runs if r.get("learning_rate") is not None})
    chosen = {r.get("learning_rate") for r in runs if r.get("selected")} - {None}
    if len(chosen) != 1:
        return None
    (rate,) = chosen
    edge = None
    if len(tried) > 1:
        edge = "largest" if rate == tried[-1] else "smallest" if rate == tried[0] else None
    return {"chosen": rate, "tried": tried, "at_sweep_edge": edge}


def extrapolation(fitted: dict[str, dict], where: dict[str, Any]) -> dict[str, Any]:
    """Each family's fitted loss at `where["budget_flops"]`, with the 5-95% range of its
    bootstrap fits: what the trend predicts for the best size at that compute (a model of
    another size trained with that compute does worse)."""
    c = float(where["budget_flops"])
    predictions = {}
    for family, entry in fitted.items():
        if not entry["fit"]:
            continue
        boot = entry["bootstrap"]
        predictions[family] = {
            "val_bpb": float(predict(entry["fit"], c)),
            "band": band(boot, np.array([c]))[:, 0].tolist() if boot else None,
        }
    return {**where, "predictions": predictions}


def fit_curve(fit: dict, boot: list[dict], budgets: list[float], n: int = 60) -> dict:
    """The fit and its 5-95% band on a grid from the smallest budget to CROSSING_RANGE x the
    largest (beyond `largest_budget`: an extrapolation), for charts and readers."""
    grid = np.geomspace(min(budgets), CROSSING_RANGE * max(budgets), n)
    low, high = band(boot, grid) if boot else (None, None)
    return {
        "largest_budget": max(budgets),
        "flops": grid.tolist(),
        "val_bpb": predict(fit, grid).tolist(),
        "low": None if low is None else low.tolist(),
        "high": None if high is None else high.tolist(),
    }


def _parameter_band(fits: list[dict]) -> dict[str, list[float]] | None:
    if not fits:
        return None
    return {
        k: [float(np.percentile([f[k] for f in fits], q)) for q in (5, 95)]
        for k in ("E", "A", "alpha")
    }


RUN_KEYS = (
    "model", "params", "budget_flops", "train_steps", "warmup_steps", "train_tokens",
    "train_flops", "seed", "learning_rate", "best_val_bpb", "test_bpb", "wall_time_s",
    "fit_time_s", "frontier_point", "selected", "load_avg_start", "load_avg_end",
)  # fmt: skip


def _run_row(r: dict) -> dict:
    row = {k: r.get(k) for k in RUN_KEYS}
    row["label"] = row.pop("model")
    row["val_bpb"] = row.pop("best_val_bpb")
    return row


CSV_COLUMNS = (
    "family", "budget_flops", "model", "params", "train_tokens", "train_steps", "val_bpb",
    "val_bpb_min", "val_bpb_max", "test_bpb", "seeds", "at_ladder_edge", "edge", "fit_val_bpb",
)  # fmt: skip


def frontier_rows(result: dict) -> list[dict]:
    """frontier.csv: one row per family and budget."""
    rows = []
    for family, entry in result["families"].items():
        for p in entry["frontier"]:
            rows.append(
                {
                    "family": family,
                    **{k: p.get(k) for k in CSV_COLUMNS if k in p},
                    "val_bpb_min": min(p["val_bpb_seeds"]),
                    "val_bpb_max": max(p["val_bpb_seeds"]),
                    "seeds": len(p["seeds"]),
                    "fit_val_bpb": float(predict(entry["fit"], p["budget_flops"]))
                    if entry["fit"]
                    else None,
                }
            )
    return rows
