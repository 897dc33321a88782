"""What a compute frontier says about two families, from their frontier points and fits
(bench/frontier.py assembles them): first what is measured (at each budget who leads, by how
much, beyond the seed spread or not; whether the lead changes hands), then where the fits
cross (with the band of the paired bootstrap fits and the share that never cross) and the
compute multiplier (marked extrapolated outside the reference family's measured range).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bdh_pl.bench import scaling

CROSSING_RANGE = 100.0  # look for a crossing up to this many times the largest budget
REFERENCE = "bdh"  # the family measured against the others


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def usable(points: list[dict], keep_edges: bool = False) -> list[dict]:
    """The points a fit may use: not excluded (`keep_edges`: ladder-edge points kept too)."""
    return [
        p
        for p in points
        if p["excluded"] is None or (keep_edges and p["edge"] and p["flops"] is not None)
    ]


def trends(points: list[dict]) -> dict[str, Any]:
    """How the chosen size and tokens grow with compute over `points` (value = k C^b)."""
    flops = [p["flops"] for p in points]
    return {
        "params": scaling.log_trend(flops, [p["params"] for p in points]),
        "tokens": scaling.log_trend(flops, [p["train_tokens"] for p in points])
        if all(_number(p.get("train_tokens")) for p in points)
        else None,
    }


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
            row["seeds_compared"] = min(len(ref["val_bpb_seeds"]),
                                        len(others[best]["val_bpb_seeds"])) >= 2  # fmt: skip
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
    signs = [("ahead" if r["gap"] > 0 else "behind") if r["beyond_seed_spread"] else
             "within" if r.get("seeds_compared", True) else "one seed"
             for r in compared]  # fmt: skip
    span = (
        f"{compared[0]['budget']} to {compared[-1]['budget']}"
        if len(compared) > 1
        else compared[0]["budget"]
    )
    ties = [r["budget"] for r, s in zip(compared, signs, strict=True) if s == "within"]
    tie_text = f"; within the seed spread at {', '.join(ties)}" if ties else ""
    single = [
        f"{r['budget']} ({'ahead' if r['gap'] > 0 else 'behind'})"
        for r, s in zip(compared, signs, strict=True)
        if s == "one seed"
    ]
    if single:  # one seed has no spread: a lead there is a reading, not a firm lead
        tie_text += f"; measured on one seed only at {', '.join(single)}"
    firm = [s for s in signs if s in ("ahead", "behind")]
    firm_rows = [
        (r["budget"], s) for r, s in zip(compared, signs, strict=True) if s in ("ahead", "behind")
    ]
    changes = [  # between the last firm lead of one side and the first of the other
        (a, b) for (a, sa), (b, sb) in zip(firm_rows, firm_rows[1:], strict=False) if sa != sb
    ]
    if changes:
        where = changes[0]
        statement = (
            f"the lead changes hands between {where[0]} and {where[1]}: a crossing measured"
            f"{tie_text}"
        )
        return {"crossing_measured": True, "between": list(where), "statement": statement}
    if not firm:
        if not ties:
            return {
                "crossing_measured": None,
                "statement": f"no lead beyond the seed spread can be said at {span}: "
                f"{reference} against the best other family on one seed only "
                f"({', '.join(single)})",
            }
        every = "at every budget from" if len(compared) > 1 else "at"
        return {
            "crossing_measured": False,
            "statement": f"{reference} and the best other family are within the seed spread "
            f"{every} {span}"
            if not single
            else f"no lead beyond the seed spread at {span}{tie_text}",
        }
    side = "behind" if firm[0] == "behind" else "ahead of"
    others = sorted({r["against"] for r, s in zip(compared, signs, strict=True) if s in firm})
    return {
        "crossing_measured": False,
        "statement": f"no crossing measured from {span}: {reference} is {side} "
        f"{' and '.join(others)} by more than the seed spread at "
        f"{len(firm)} of {len(compared)} budgets{tie_text}",
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
    at the crossing, each family's compute-optimal size and tokens by its trend. A family
    without a fit is left out of the others and named (`left_out`)."""
    ref = fits.get(REFERENCE)
    others = {f: v for f, v in fits.items() if f != REFERENCE and v}
    missing = [f for f, v in fits.items() if not v]
    # A family without a fit (too few interior points; a family a stop rule ended) is left
    # out of the lowest other curve and named, not a reason to drop the crossing of the rest.
    left_out = (
        f"; {', '.join(missing)} left out (no fit: too few usable points)"
        if ref and others and missing
        else ""
    )
    if not ref or not others:
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
        "left_out": [f for f in missing if f != REFERENCE],
    }
    if not math.isfinite(where):
        ahead = "ahead" if scaling.predict(ref, lo) < min(scaling.predict(v, lo)
                                                            for v in others.values()) else "behind"  # fmt: skip
        out["statement"] = (
            f"the fits do not cross up to {CROSSING_RANGE:g}x the largest budget run "
            f"({hi:.3g} FLOPs): {REFERENCE} stays {ahead}{left_out}"
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
    # an end of the band may be beyond the search (resamples that never cross), and without
    # bootstrap fits there is no band at all: said so, never formatted as a number
    lower, upper = (f"{v:.3g}" if v is not None else f"beyond {hi:.3g}" for v in band)
    spread = (
        f"5-95%: {lower} to {upper}; {never:.0%} of resamples never cross within "
        f"{CROSSING_RANGE:g}x"
        if never is not None
        else "no bootstrap fits: no band"
    )
    out["statement"] = (
        f"the fits cross at {where:.3g} FLOPs ({where / largest:.3g}x the largest budget run; "
        f"{spread}); beyond it {lead} leads{left_out}"
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
