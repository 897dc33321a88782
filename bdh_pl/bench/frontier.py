"""The compute frontier of a benchmark's records (plain functions of metrics.json records).

Every number is on one FLOPs rule: training FLOPs = 3 x the forward FLOPs per token of the
model's reference computation x training tokens (`FLOPS_RULE`; records written before the rule
carry the kernels' own count, kept as `train_flops_measured`, and get the rule's from their
forward count). For each family (BDH, GPT-2, LLaMA) and budget the optimum over the sizes
trained there is the frontier point (`optimum`: the best run, or the minimum of a parabola in
log N through the sizes), averaged over the seeds it ran on. A point whose best size is the
smallest or largest tried (the optimum may lie outside), or which is `bound` (a run the data
cap or another limit ruled out), is listed and left out of the fit. Then (bench/crossing.py),
in this order:

1. `measured`: at each budget who leads, by how much, and whether by more than the seed spread
   (the seeds' ranges do not overlap); whether the leaders change between budgets (a crossing
   measured) or not.
2. The fits L(C) = E + A C^-alpha (bench/scaling.py: Huber on log loss, bootstrap over points
   and seeds), and the fitted `crossing` of the reference family with the lowest other one:
   where, its 5-95% band over the paired bootstrap fits, and the share of resamples that never
   cross within CROSSING_RANGE x the largest budget; at the crossing, the compute-optimal size
   and tokens of each family by its trend of chosen size and tokens against compute.
3. `compute_multiplier`: at each budget, how many times the reference family's FLOPs reach the
   best other family's measured loss there; `extrapolated` where the FLOPs needed lie outside
   the reference family's measured range.
`with_edge_points` repeats 2 and 3 with the ladder-edge points kept: a sensitivity reading.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import numpy as np

from bdh_pl.bench import scaling
from bdh_pl.bench.crossing import (
    CROSSING_RANGE,
    REFERENCE,
    compute_multiplier,
    fitted_crossing,
    measured,
    trends,
    usable,
)
from bdh_pl.bench.progress import (
    budget_key,
    chosen_learning_rate,
    chosen_shapes,
    other_shape,
    shape_search,
    stopped_by_rule,
)

FLOPS_RULE = (
    "training FLOPs = 3 x forward FLOPs per token (the model's reference computation, every "
    "family counted the same way) x training tokens"
)
OPTIMA = ("best", "parabola")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def with_rule(record: dict, train_split_tokens: int | None = None) -> dict:
    """The record on the FLOPs rule, with its epochs. Records written before the rule carry
    the measured count in `train_flops`: kept as `train_flops_measured`, and `train_flops`
    becomes 3 x `flops_per_token` (their forward count, which no execution switch changes:
    BDH's fused path and its reference count the same forward) x `train_tokens`. Epochs: the
    record's, else train tokens over its training split (the record's `train_split_tokens`,
    else `train_split_tokens`)."""
    out = dict(record)
    tokens = record.get("train_tokens")
    if "train_flops_measured" not in record:
        out["train_flops_measured"] = record.get("train_flops")
        forward = record.get("flops_per_token")
        out["train_flops"] = 3 * forward * tokens if _number(forward) and _number(tokens) else None
    if out.get("epochs") is None:
        split = record.get("train_split_tokens") or train_split_tokens
        out["epochs"] = tokens / split if _number(tokens) and split else None
    return out


def families(records: list[dict], train_split_tokens: int | None = None) -> dict[str, list[dict]]:
    """The frontier runs by family (families by name: a family keeps its colour in every chart
    whatever order a restart wrote the records in), on the FLOPs rule: the finished ones and
    the `bound` ones (kept to be listed, never used as points)."""
    out: dict[str, list[dict]] = {}
    for r in records:
        finished = r.get("status") == "ok" and _number(r.get("best_val_bpb"))
        if r.get("family") and (finished or r.get("bound")):
            out.setdefault(r["family"], []).append(with_rule(r, train_split_tokens))
    return dict(sorted(out.items()))


def _mean(values: list) -> float | None:
    values = [v for v in values if _number(v)]
    return statistics.fmean(values) if values else None


def _budgets(runs: list[dict]) -> list[str]:
    """The budgets of the runs, in order of their FLOPs budget (else of what they trained)."""

    def order(key: str) -> float:
        cell = [r for r in runs if budget_key(r) == key]
        nominal = [r["budget_flops"] for r in cell if _number(r.get("budget_flops"))]
        return (nominal or [_mean([r.get("train_flops") for r in cell]) or 0.0])[0]

    return sorted({budget_key(r) for r in runs}, key=order)


def frontier_points(runs: list[dict], optimum: str = "best") -> list[dict]:
    """One point per budget: the optimum over the sizes trained there on the first seed (the
    best run; `parabola`: the minimum of a parabola in log parameters through them, when it
    lies inside the sizes tried), its figures averaged over the seeds of its best run, and
    `excluded`: why the point stays out of the fit (None: it is used)."""
    first_seed = next((r.get("seed") for r in runs if not r.get("bound")), None)
    # A shape search's runs are sizes of this budget only in the shape the ladder chose.
    runs = [r for r in runs if not other_shape(r, chosen_shapes(runs))]
    points = []
    for key in _budgets(runs):
        here = [r for r in runs if budget_key(r) == key]
        bound = [r for r in here if r.get("bound")]
        cell = [
            r
            for r in here
            if not r.get("bound") and r.get("selected") is not False and r.get("seed") == first_seed
        ]
        if not cell:
            continue
        best = min(cell, key=lambda r: r["best_val_bpb"])
        repeats = [
            r
            for r in here
            if not r.get("bound")
            and r["model"] == best["model"]
            and r.get("setting") == best.get("setting")
        ]
        by_params = sorted(cell, key=lambda r: r["params"])
        edge = None
        if len(cell) > 1 and best is by_params[0]:
            edge = "smallest"
        elif len(cell) > 1 and best is by_params[-1]:
            edge = "largest"
        val = [r["best_val_bpb"] for r in repeats]
        test = [r["test_bpb"] for r in repeats if _number(r.get("test_bpb"))]
        point = {
            "budget": key,
            "budget_flops": best.get("budget_flops"),
            "flops": _mean([r.get("train_flops") for r in repeats]),
            "flops_measured": _mean([r.get("train_flops_measured") for r in repeats]),
            "model": best["model"],
            "params": best["params"],
            "train_tokens": best.get("train_tokens"),
            "train_steps": best.get("train_steps"),
            "epochs": best.get("epochs"),
            "val_bpb": statistics.fmean(val),
            "val_bpb_seeds": val,
            "test_bpb": statistics.fmean(test) if test else None,
            "test_bpb_seeds": test,
            "seeds": [r.get("seed") for r in repeats],
            "wall_time_s": _mean([r.get("wall_time_s") for r in repeats]),
            "optimum": "best run",
            "at_ladder_edge": edge is not None,
            "edge": edge,
            "sizes_tried": [r["model"] for r in by_params],
            "sizes_bound": [{"model": r["model"], "bound": r["bound"]} for r in bound],
        }
        interior = edge is None and len(cell) >= 3
        if optimum == "parabola" and interior and (parabola := parabola_optimum(by_params)):
            shift = parabola.pop("low") - best["best_val_bpb"]  # the seeds move with it
            point.update(parabola, val_bpb=point["val_bpb"] + shift, parabola_shift=shift)
            point["val_bpb_seeds"] = [v + shift for v in val]
        point["excluded"] = _excluded(point, len(cell))
        points.append(point)
    return points


def _excluded(point: dict, sizes: int) -> str | None:
    if point["flops"] is None:
        return "its training FLOPs were not counted"
    if sizes < 3 and not point["edge"]:
        return f"{sizes} size{'s' * (sizes != 1)} tried: no optimum located (3 needed)"
    if point["edge"]:
        tried = ", ".join(point["sizes_tried"])
        bound = "; ".join(f"{b['model']}: {b['bound']}" for b in point["sizes_bound"])
        return (
            f"the best size is the {point['edge']} tried ({tried}): the optimum may lie "
            f"outside the ladder" + (f" (bound: {bound})" if bound else "")
        )
    return None


def parabola_optimum(by_params: list[dict]) -> dict[str, Any] | None:
    """The minimum of loss = a (log N)^2 + b log N + c through one budget's sizes (first
    seed; `low`), when it is a minimum inside the sizes tried, else None; the size there and
    its tokens, interpolated in log-log between the runs."""
    log_n = np.log([r["params"] for r in by_params])
    loss = np.array([r["best_val_bpb"] for r in by_params])
    a, b, c = np.polyfit(log_n, loss, 2)
    if a <= 0 or not log_n[0] < -b / (2 * a) < log_n[-1]:
        return None
    at = -b / (2 * a)
    tokens = [r.get("train_tokens") for r in by_params]
    return {
        "optimum": "parabola in log parameters",
        "params": float(math.exp(at)),
        "train_tokens": float(np.exp(np.interp(at, log_n, np.log(tokens))))
        if all(_number(t) for t in tokens)
        else None,
        "low": float(c - b * b / (4 * a)),
    }


def fit_points(points: list[dict], bootstrap_n: int) -> tuple[dict | None, list[dict]]:
    """The fit of `points` (with its parameter band, the budgets it used, the range of FLOPs
    it rests on) and its bootstrap fits; (None, []) with fewer than three points."""
    fit = scaling.fit_power_law([p["flops"] for p in points], [p["val_bpb"] for p in points])
    if fit is None:
        return None, []
    boot = scaling.bootstrap_fits(points, n=bootstrap_n)
    return {
        **fit,
        "band": scaling.parameter_band(boot),
        "bootstrap_n": len(boot),
        "budgets_used": [p["budget"] for p in points],
        "measured_range": [min(p["flops"] for p in points), max(p["flops"] for p in points)],
    }, boot


def frontier(
    records: list[dict],
    optimum: str = "best",
    bootstrap_n: int | None = None,
    train_split_tokens: int | None = None,
    complete: set[tuple[str, str]] | None = None,
    shapes: dict[str, dict] | None = None,
) -> dict[str, Any]:
    """frontier.json: per family its runs, frontier points (used or excluded, and why), fit
    and band; what is measured; the fitted crossing; the compute multiplier; and the same
    readings with the ladder-edge points kept (`with_edge_points`). `complete`: the (family,
    budget) pairs whose runs are all in (bench/progress.py); a budget outside it has no point
    yet (its best so far is no optimum: sizes and seeds are still to come); None: every
    budget with runs is complete. `shapes`: per family the plan's shape names and
    `published_shape` (bench/plan.py), for the shape search's report."""
    if optimum not in OPTIMA:
        raise ValueError(f"optimum must be one of {OPTIMA}, got {optimum!r}")
    bootstrap_n = scaling.BOOTSTRAP if bootstrap_n is None else bootstrap_n
    out: dict[str, Any] = {
        "flops_rule": FLOPS_RULE,
        "optimum": optimum,
        "fit_method": (
            f"L(C) = E + A C^-alpha minimising the Huber loss (delta {scaling.HUBER_DELTA:g}) "
            "of log predicted - log measured loss, Levenberg-Marquardt from a grid of starting "
            f"points; band: 5-95% of {bootstrap_n} bootstrap fits (points drawn with "
            "replacement, each drawn point one of its seeds)"
        ),
        "train_split_tokens": train_split_tokens,
        "reference": REFERENCE,
        "families": {},
    }
    boots: dict[str, dict[str, list[dict]]] = {"rule": {}, "edges": {}}
    fits: dict[str, dict[str, dict | None]] = {"rule": {}, "edges": {}}
    for family, runs in families(records, train_split_tokens).items():
        points = frontier_points(runs, optimum)
        # a budget a stop rule skipped has no point and is not in progress, though a sweep
        # may have run there before the rule stopped the family
        stopped = {budget_key(r) for r in runs if stopped_by_rule(r)}
        points = [p for p in points if p["budget"] not in stopped]
        pending = [p["budget"] for p in points if complete is not None
                   and (family, p["budget"]) not in complete]  # fmt: skip
        points = [p for p in points if p["budget"] not in pending]
        used, with_edges = usable(points), usable(points, keep_edges=True)
        fit, boot = fit_points(used, bootstrap_n)
        if len(with_edges) == len(used):
            edge_fit, edge_boot = fit, boot
        else:
            edge_fit, edge_boot = fit_points(with_edges, bootstrap_n)
        fits["rule"][family], boots["rule"][family] = fit, boot
        fits["edges"][family], boots["edges"][family] = edge_fit, edge_boot
        everything = [with_rule(r) for r in records if r.get("family") == family]
        chosen = chosen_shapes(runs)
        planned = (shapes or {}).get(family) or {}
        out["families"][family] = {
            "runs": [_run_row(r, other_shape(r, chosen)) for r in runs],
            "learning_rate": chosen_learning_rate(everything),
            "shape_search": shape_search(
                everything, planned.get("published_shape"), planned.get("shapes")
            ),
            "frontier": points,
            "in_progress": pending,
            "excluded": [
                {"budget": p["budget"], "model": p["model"], "reason": p["excluded"]}
                for p in points
                if p["excluded"]
            ]
            + [
                {"budget": budget_key(r), "model": r["model"], "reason": f"bound: {r['bound']}"}
                for r in runs
                if r.get("bound")
            ],
            "stopped": next((r["bound"] for r in runs if stopped_by_rule(r)), None),
            "fit": fit,
            "fit_note": None if fit else _no_fit(points, used),
            "curve": fit and fit_curve(fit, boot),
            "trend": trends(used) if len(used) >= 2 else None,
            "fit_with_edge_points": edge_fit if len(with_edges) > len(used) else None,
            "curve_with_edge_points": edge_fit and fit_curve(edge_fit, edge_boot)
            if len(with_edges) > len(used)
            else None,
        }
    entries = out["families"]
    out["measured"] = measured(entries, REFERENCE)
    out["crossing"] = fitted_crossing(entries, fits["rule"], boots["rule"], "rule")
    out["compute_multiplier"] = compute_multiplier(entries, fits["rule"], boots["rule"])
    out["with_edge_points"] = {
        "what": "the same fits with the ladder-edge points kept: each is the best of the sizes "
        "tried, so at most the family's optimum there; a reading of how much the excluded "
        "points matter, not the rule",
        "crossing": fitted_crossing(entries, fits["edges"], boots["edges"], "edges"),
        "compute_multiplier": compute_multiplier(entries, fits["edges"], boots["edges"]),
    }
    return out


def _no_fit(points: list[dict], used: list[dict]) -> str:
    if not points:
        return "no complete budget yet (3 usable points needed)"
    return (
        f"{len(used)} usable point{'s' * (len(used) != 1)} of {len(points)} (3 needed)"
        + "".join(f"; {p['budget']}: {p['excluded']}" for p in points if p["excluded"])
    )


def fit_curve(fit: dict, boot: list[dict], n: int = 60) -> dict:
    """The fit and its 5-95% band on a grid from the smallest point it rests on to
    CROSSING_RANGE x the largest (beyond `measured_range`: an extrapolation)."""
    low_c, high_c = fit["measured_range"]
    grid = np.geomspace(low_c, CROSSING_RANGE * high_c, n)
    low, high = scaling.band(boot, grid) if boot else (None, None)
    return {
        "measured_range": [low_c, high_c],
        "flops": grid.tolist(),
        "val_bpb": scaling.predict(fit, grid).tolist(),
        "low": None if low is None else low.tolist(),
        "high": None if high is None else high.tolist(),
    }


RUN_KEYS = (
    "model", "params", "budget_flops", "train_steps", "warmup_steps", "train_tokens",
    "train_flops", "train_flops_measured", "epochs", "bound", "seed", "learning_rate",
    "learning_rate_source", "best_val_bpb", "test_bpb", "wall_time_s", "fit_time_s",
    "frontier_point", "selected", "load_avg_start", "load_avg_end", "sweep", "shape",
)  # fmt: skip


def _run_row(r: dict, other: bool = False) -> dict:
    """A run in frontier.json; `other_shape`: a shape search's run of a shape the ladder did
    not choose (no size of its budget's IsoFLOP curve: the charts leave it out)."""
    row = {k: r.get(k) for k in RUN_KEYS}
    row["other_shape"] = other
    row["budget"] = budget_key(r)
    row["label"] = row.pop("model")
    row["val_bpb"] = row.pop("best_val_bpb")
    return row


CSV_COLUMNS = (
    "family", "budget", "flops", "flops_measured", "model", "params", "train_tokens", "epochs",
    "train_steps", "val_bpb", "val_bpb_min", "val_bpb_max", "test_bpb", "seeds", "edge",
    "excluded", "fit_val_bpb",
)  # fmt: skip


def frontier_rows(result: dict) -> list[dict]:
    """frontier.csv: one row per family and budget."""
    rows = []
    for family, entry in result["families"].items():
        fit = entry["fit"]
        for p in entry["frontier"]:
            rows.append(
                {
                    "family": family,
                    **{k: p.get(k) for k in CSV_COLUMNS if k in p},
                    "val_bpb_min": min(p["val_bpb_seeds"]),
                    "val_bpb_max": max(p["val_bpb_seeds"]),
                    "seeds": len(p["seeds"]),
                    "fit_val_bpb": float(scaling.predict(fit, p["flops"]))
                    if fit and p["flops"]
                    else None,
                }
            )
    return rows
