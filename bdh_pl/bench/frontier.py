"""The compute frontier of a benchmark's records (plain functions of metrics.json records).

Every number is on one FLOPs rule: training FLOPs = 3 x the forward FLOPs per token of the
model's reference computation x training tokens (`FLOPS_RULE`; records written before the rule
carry the kernels' own count, kept as `train_flops_measured`, and get the rule's from their
forward count). For each family (BDH, GPT-2, LLaMA) and budget the optimum over the sizes
trained there is the frontier point (`optimum`: the best run, or the minimum of a parabola in
log N through the sizes), averaged over the seeds it ran on. A point whose best size is the
smallest or largest tried (the optimum may lie outside), or which is `bound` (a run the data
cap or another limit ruled out), is listed and left out of the fit. Then, in this order:

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

FLOPS_RULE = (
    "training FLOPs = 3 x forward FLOPs per token (the model's reference computation, every "
    "family counted the same way) x training tokens"
)
CROSSING_RANGE = 100.0  # look for a crossing up to this many times the largest budget
REFERENCE = "bdh"  # the family measured against the others
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
    """The frontier runs by family (in order of first appearance), on the FLOPs rule: the
    finished ones and the `bound` ones (kept to be listed, never used as points)."""
    out: dict[str, list[dict]] = {}
    for r in records:
        finished = r.get("status") == "ok" and _number(r.get("best_val_bpb"))
        if r.get("family") and (finished or r.get("bound")):
            out.setdefault(r["family"], []).append(with_rule(r, train_split_tokens))
    return out


def budget_key(r: dict) -> str:
    """The budget a run belongs to: its label (`flops 2e+12`, `steps 6`), else its FLOPs."""
    if r.get("budget"):
        return str(r["budget"])
    return f"flops {r['budget_flops']:g}" if _number(r.get("budget_flops")) else "?"


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


def usable(points: list[dict], keep_edges: bool = False) -> list[dict]:
    """The points a fit may use: not excluded (`keep_edges`: ladder-edge points kept too)."""
    return [
        p
        for p in points
        if p["excluded"] is None or (keep_edges and p["edge"] and p["flops"] is not None)
    ]


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


def trends(points: list[dict]) -> dict[str, Any]:
    """How the chosen size and tokens grow with compute over `points` (value = k C^b)."""
    flops = [p["flops"] for p in points]
    return {
        "params": scaling.log_trend(flops, [p["params"] for p in points]),
        "tokens": scaling.log_trend(flops, [p["train_tokens"] for p in points])
        if all(_number(p.get("train_tokens")) for p in points)
        else None,
    }


def frontier(
    records: list[dict],
    optimum: str = "best",
    bootstrap_n: int | None = None,
    train_split_tokens: int | None = None,
) -> dict[str, Any]:
    """frontier.json: per family its runs, frontier points (used or excluded, and why), fit
    and band; what is measured; the fitted crossing; the compute multiplier; and the same
    readings with the ladder-edge points kept (`with_edge_points`)."""
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
        used, with_edges = usable(points), usable(points, keep_edges=True)
        fit, boot = fit_points(used, bootstrap_n)
        if len(with_edges) == len(used):
            edge_fit, edge_boot = fit, boot
        else:
            edge_fit, edge_boot = fit_points(with_edges, bootstrap_n)
        fits["rule"][family], boots["rule"][family] = fit, boot
        fits["edges"][family], boots["edges"][family] = edge_fit, edge_boot
        out["families"][family] = {
            "runs": [_run_row(r) for r in runs],
            "learning_rate": chosen_learning_rate(runs),
            "frontier": points,
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
    return (
        f"{len(used)} usable point{'s' * (len(used) != 1)} of {len(points)} (3 needed): "
        + "; ".join(f"{p['budget']}: {p['excluded']}" for p in points if p["excluded"])
    )


def measured(entries: dict[str, dict], reference: str = REFERENCE) -> dict[str, Any]:
    """At each budget every family's point, the leader, and the reference against the best
    other family: the gap (positive: the reference is behind) and whether it exceeds the seed
    spread (their seeds' ranges do not overlap); then whether the lead changes hands between
    the budgets run, counting only leads beyond the seed spread."""
    budgets = list(dict.fromkeys(p["budget"] for e in entries.values() for p in e["frontier"]))
    budgets.sort(key=lambda b: min(_point(e, b)["flops"] or 0 for e in entries.values()
                                   if _point(e, b)))  # fmt: skip
    rows = []
    for budget in budgets:
        here = {f: p for f, e in entries.items() if (p := _point(e, budget))}
        leader = min(here, key=lambda f: here[f]["val_bpb"])
        row: dict[str, Any] = {
            "budget": budget,
            "leader": leader,
            "points": {
                f: {
                    "val_bpb": p["val_bpb"],
                    "seed_range": [min(p["val_bpb_seeds"]), max(p["val_bpb_seeds"])],
                    "seeds": len(p["val_bpb_seeds"]),
                    "flops": p["flops"],
                    "model": p["model"],
                    "excluded": p["excluded"],
                }
                for f, p in here.items()
            },
        }
        others = {f: p for f, p in here.items() if f != reference}
        if reference in here and others:
            ref = here[reference]
            best = min(others, key=lambda f: others[f]["val_bpb"])
            row["against"] = best
            row["gap"] = others[best]["val_bpb"] - ref["val_bpb"]  # > 0: the reference ahead
            row["beyond_seed_spread"] = _apart(ref, others[best])
            row["flops_ratio"] = (
                ref["flops"] / others[best]["flops"]
                if ref["flops"] and others[best]["flops"]
                else None
            )
        rows.append(row)
    return {"reference": reference, "at_budgets": rows, **_measured_statement(rows, reference)}


def _point(entry: dict, budget: str) -> dict | None:
    return next((p for p in entry["frontier"] if p["budget"] == budget), None)


def _apart(a: dict, b: dict) -> bool:
    """Every seed of one beats every seed of the other (both with at least two seeds)."""
    sa, sb = a["val_bpb_seeds"], b["val_bpb_seeds"]
    if len(sa) < 2 or len(sb) < 2:
        return False
    return max(sa) < min(sb) or max(sb) < min(sa)


def _measured_statement(rows: list[dict], reference: str) -> dict[str, Any]:
    compared = [r for r in rows if "gap" in r]
    if not compared:
        return {"crossing_measured": None, "statement": f"{reference} has no budget to compare"}
    signs = [("ahead" if r["gap"] > 0 else "behind") if r["beyond_seed_spread"] else "within"
             for r in compared]  # fmt: skip
    span = f"{compared[0]['budget']} to {compared[-1]['budget']}"
    firm = [s for s in signs if s != "within"]
    firm_rows = [(r["budget"], s) for r, s in zip(compared, signs, strict=True) if s != "within"]
    changes = [  # between the last firm lead of one side and the first of the other
        (a, b) for (a, sa), (b, sb) in zip(firm_rows, firm_rows[1:], strict=False) if sa != sb
    ]
    ties = [r["budget"] for r, s in zip(compared, signs, strict=True) if s == "within"]
    tie_text = f"; within the seed spread at {', '.join(ties)}" if ties else ""
    if changes:
        where = changes[0]
        statement = (
            f"the lead changes hands between {where[0]} and {where[1]}: a crossing measured"
            f"{tie_text}"
        )
        return {"crossing_measured": True, "between": list(where), "statement": statement}
    if not firm:
        return {
            "crossing_measured": False,
            "statement": f"{reference} and the best other family are within the seed spread "
            f"at every budget from {span}",
        }
    side = "behind" if firm[0] == "behind" else "ahead of"
    others = sorted({r["against"] for r, s in zip(compared, signs, strict=True) if s != "within"})
    return {
        "crossing_measured": False,
        "statement": f"no crossing measured from {span}: {reference} is {side} "
        f"{' and '.join(others)} by more than the seed spread at "
        f"{len(firm)} of {len(compared)} budgets{tie_text}",
    }


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


def crossings(ref: list[dict], others: list[list[dict]], lo: float, hi: float) -> np.ndarray:
    """For each set i of fits (ref[i], others[k][i]), the first FLOPs in [lo, hi] where the
    reference fit meets the lowest of the others (inf: never), by a scan of 400 points and
    60 bisections, all sets at once."""

    def gap(c: np.ndarray) -> np.ndarray:  # S, m
        r = np.stack([scaling.predict(f, c_) for f, c_ in zip(ref, c, strict=True)])
        o = np.min([np.stack([scaling.predict(f, c_) for f, c_ in zip(fam, c, strict=True)])
                    for fam in others], axis=0)  # fmt: skip
        return r - o

    n = len(ref)
    grid = np.geomspace(lo, hi, 400)
    g = gap(np.broadcast_to(grid, (n, len(grid))))
    change = (g[:, :-1] == 0) | (g[:, :-1] * g[:, 1:] < 0)
    found = change.any(axis=1)
    i = np.where(found, change.argmax(axis=1), 0)
    a, b = grid[i], grid[i + 1]
    ga = g[np.arange(n), i]
    for _ in range(60):
        mid = np.sqrt(a * b)
        gm = gap(mid[:, None])[:, 0]
        left = ga * gm <= 0
        b = np.where(left, mid, b)
        a, ga = np.where(left, a, mid), np.where(left, ga, gm)
    return np.where(found, np.sqrt(a * b), np.inf)


def fitted_crossing(
    entries: dict[str, dict], fits: dict[str, dict | None], boots: dict[str, list], which: str
) -> dict[str, Any]:
    """Where the reference family's fit meets the lowest other fit between the smallest point
    and CROSSING_RANGE x the largest, with the 5-95% band over the paired bootstrap fits
    (resamples that never cross count as beyond the range) and the share that never cross;
    at the crossing, each family's compute-optimal size and tokens by its trend."""
    ref = fits.get(REFERENCE)
    others = {f: v for f, v in fits.items() if f != REFERENCE and v}
    missing = [f for f, v in fits.items() if not v]
    if not ref or not others or (which == "rule" and missing):
        return {
            "budget_flops": None,
            "statement": "no fitted crossing: "
            + (
                f"no fit for {', '.join(missing)} (too few usable points)"
                if missing
                else "no other family to cross"
            ),  # fmt: skip
        }
    ranges = [v["measured_range"] for v in (ref, *others.values())]
    lo, largest = min(r[0] for r in ranges), max(r[1] for r in ranges)
    hi = CROSSING_RANGE * largest
    (where,) = crossings([ref], [[v] for v in others.values()], lo, hi)
    n = min(len(boots[REFERENCE]), *(len(boots[f]) for f in others))
    sampled = crossings(boots[REFERENCE][:n], [boots[f][:n] for f in others], lo, hi) if n else []
    never = float(np.mean(~np.isfinite(sampled))) if n else None
    band = _percentiles(sampled)
    out: dict[str, Any] = {
        "budget_flops": float(where) if math.isfinite(where) else None,
        "band": band,
        "never_share": never,
        "bootstrap_n": n,
        "search_range": [lo, hi],
        "largest_measured": largest,
    }
    if not math.isfinite(where):
        ahead = "ahead" if scaling.predict(ref, lo) < min(scaling.predict(v, lo)
                                                            for v in others.values()) else "behind"  # fmt: skip
        out["statement"] = (
            f"the fits do not cross up to {CROSSING_RANGE:g}x the largest budget run "
            f"({hi:.3g} FLOPs): {REFERENCE} stays {ahead}"
        )
        return out
    after = where * 1.01
    best_other = min(others, key=lambda f: float(scaling.predict(others[f], after)))
    lead = (
        REFERENCE
        if scaling.predict(ref, after) < scaling.predict(others[best_other], after)
        else best_other
    )
    out["val_bpb"] = float(scaling.predict(ref, where))
    out["against"] = best_other
    out["times_largest_measured"] = where / largest
    out["compute_optimal"] = {
        f: _compute_optimal(entries[f], where, which) for f in (REFERENCE, best_other)
    }
    upper = f"{band[1]:.3g}" if band[1] else f"beyond {hi:.3g}"
    out["statement"] = (
        f"the fits cross at {where:.3g} FLOPs ({where / largest:.3g}x the largest budget run; "
        f"5-95%: {band[0]:.3g} to {upper}; {never:.0%} of resamples never cross within "
        f"{CROSSING_RANGE:g}x); beyond it {lead} leads"
    )
    return out


def _percentiles(samples) -> list[float | None]:
    """The 5th and 95th percentiles of samples that may be inf (never), each a sample's own
    value (no interpolation into inf); None where it is inf, or without samples."""
    if not len(samples):
        return [None, None]
    q = np.percentile(samples, [5, 95], method="inverted_cdf")
    return [float(v) if math.isfinite(v) else None for v in q]


def _compute_optimal(entry: dict, flops: float, which: str) -> dict[str, Any] | None:
    """The family's chosen size and tokens at `flops` by its trend (the points its fit used)."""
    points = usable(entry["frontier"], keep_edges=which == "edges")
    trend = trends(points) if len(points) >= 2 else None
    if not trend or not trend["params"]:
        return None
    out = {"params": scaling.read_trend(trend["params"], flops)}
    if trend["tokens"]:
        out["tokens"] = scaling.read_trend(trend["tokens"], flops)
        epochs = [p["epochs"] / p["train_tokens"] for p in points if _number(p.get("epochs"))]
        out["epochs"] = out["tokens"] * epochs[0] if epochs else None
    return out


def compute_multiplier(
    entries: dict[str, dict], fits: dict[str, dict | None], boots: dict[str, list]
) -> dict[str, Any] | None:
    """At each budget the best other family's measured point (its loss and FLOPs) and how
    many times those FLOPs the reference family's fit needs to reach that loss, with a 5-95%
    band (bootstrap fits, the target one of its seeds); `extrapolated` when the FLOPs needed
    lie outside the reference's measured range (the band then reads the fit beyond its
    points)."""
    ref_fit = fits.get(REFERENCE)
    if not ref_fit or REFERENCE not in entries:
        return None
    rng = np.random.default_rng(0)
    low, high = ref_fit["measured_range"]
    rows = []
    for row in measured(entries)["at_budgets"]:
        if "against" not in row:
            continue
        target = _point(entries[row["against"]], row["budget"])
        if not target["flops"]:
            continue
        needed = scaling.flops_for_loss(ref_fit, target["val_bpb"])
        samples = np.array(
            [scaling.flops_for_loss(f, float(rng.choice(target["val_bpb_seeds"])))
             for f in boots[REFERENCE]]
        ) / target["flops"]  # fmt: skip
        rows.append(
            {
                "budget": row["budget"],
                "against": row["against"],
                "target_val_bpb": target["val_bpb"],
                "target_flops": target["flops"],
                "target_at_ladder_edge": target["at_ladder_edge"],
                f"{REFERENCE}_flops_needed": needed,
                "multiplier": needed / target["flops"],
                "multiplier_band": _percentiles(samples),
                "never_share": float(np.mean(~np.isfinite(samples))) if len(samples) else None,
                "extrapolated": not low <= needed <= high,
            }
        )
    return {
        "reference": REFERENCE,
        "against": "at each budget, the other family with the lowest measured loss",
        "measured_range": [low, high],
        "at_budgets": rows,
    }


def chosen_learning_rate(runs: list[dict]) -> dict[str, Any] | None:
    """The family's sweeps (each: the rates tried on one size at one budget, first seed, the
    one chosen, whether it is the smallest or largest tried: the best may lie beyond) and the
    rate every budget's runs used, with where it came from (`learning_rate_source`)."""
    sweeps = []
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        if r.get("learning_rate") is not None and not r.get("bound"):
            groups.setdefault((budget_key(r), r["model"], r.get("seed")), []).append(r)
    for (budget, model, _), group in groups.items():
        rates = sorted({r["learning_rate"] for r in group})
        chosen = [r["learning_rate"] for r in group if r.get("selected")]
        if len(rates) < 2 or len(chosen) != 1:
            continue
        edge = (
            "largest" if chosen[0] == rates[-1] else "smallest" if chosen[0] == rates[0] else None
        )
        sweeps.append({"budget": budget, "model": model, "tried": rates, "chosen": chosen[0],
                       "at_sweep_edge": edge})  # fmt: skip
    per_budget: dict[str, Any] = {}
    for r in runs:
        if r.get("selected") and r.get("learning_rate") is not None:
            per_budget.setdefault(budget_key(r), {"rate": r["learning_rate"],
                                                  "source": r.get("learning_rate_source")})  # fmt: skip
    if not per_budget:
        return None
    rates = {v["rate"] for v in per_budget.values()}
    return {
        "chosen": rates.pop() if len(rates) == 1 else None,
        "sweeps": sweeps,
        "per_budget": per_budget,
    }


RUN_KEYS = (
    "model", "params", "budget_flops", "train_steps", "warmup_steps", "train_tokens",
    "train_flops", "train_flops_measured", "epochs", "bound", "seed", "learning_rate",
    "learning_rate_source", "best_val_bpb", "test_bpb", "wall_time_s", "fit_time_s",
    "frontier_point", "selected", "load_avg_start", "load_avg_end",
)  # fmt: skip


def _run_row(r: dict) -> dict:
    row = {k: r.get(k) for k in RUN_KEYS}
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
