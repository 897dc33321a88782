"""A compute frontier's summary.md: the rule, the frontier table, what is measured, the fits,
the fitted crossing and the compute multiplier, every point left out with its reason, every run
(from frontier.json's dict, bench/frontier.py)."""

from __future__ import annotations

from bdh_pl.bench import frontier
from bdh_pl.bench.tables import commits_line, table
from bdh_pl.charts.frontier import FRONTIER_CHARTS

FRONTIER_RUN_COLUMNS = [
    ("family", "family", str),
    ("size", "model", str),
    ("budget", "budget", str),
    ("params", "params", "count"),
    ("lr", "learning_rate", "{:.3g}"),
    ("seed", "seed", "{}"),
    ("steps", "train_steps", "{:,.0f}"),
    ("warmup", "warmup_steps", "{:,.0f}"),
    ("tokens", "train_tokens", "count"),
    ("epochs", "epochs", "{:.2f}"),
    ("FLOPs", "train_flops", "count"),
    ("val bpb", "best_val_bpb", "{:.4f}"),
    ("test bpb", "test_bpb", "{:.4f}"),
    ("fit s", "fit_time_s", "{:,.0f}"),
    ("frontier", "frontier_point", "{}"),
    ("chosen lr", "selected", "{}"),
]


def frontier_summary(experiment: str, records: list[dict], command: str, result: dict) -> str:
    ok = [r for r in records if r["status"] == "ok"]
    first = ([r for r in ok if r.get("test_run")] or ok or records)[0]  # tested: data, device
    fits = [r["fit_time_s"] for r in records if r.get("fit_time_s")]
    loads = [v for r in records for v in (r.get("load_avg_start"), r.get("load_avg_end")) if v]
    lines = [
        f"# Compute frontier `{experiment}`",
        "",
        f"`{command}`",
        "",
        f"Dataset {first.get('dataset') or '?'}, {len(records)} runs ({len(ok)} finished); device "
        f"{first.get('device') or '?'}, precision {first.get('precision') or '?'}; torch "
        f"{first['torch_version']}, lightning {first['lightning_version']}; "
        f"{commits_line(records)}.",
    ]
    if fits:
        load = f", 1-minute load average {min(loads):.1f}-{max(loads):.1f}" if loads else ""
        lines.append(
            f"Fit time {sum(fits) / 3600:.2f} h summed over runs (longest {max(fits):.0f} s){load}."
        )
    lines += ["", frontier_markdown(result), "## Runs", ""]
    split = result.get("train_split_tokens")
    lines += table([frontier.with_rule(r, split) for r in records], FRONTIER_RUN_COLUMNS)
    lines += [
        "",
        "frontier: the run is its family's best size at its budget (tested, and repeated on "
        "the other seeds); chosen lr: the learning-rate sweep's winner (no: a sweep run that "
        "lost). val bpb: the lowest validation bpb of the run (its last validation for a run "
        "that still improved).",
    ]
    if failed := [r for r in records if r["status"] == "failed"]:
        lines += ["", "Failed:", ""]
        lines += [
            f"- `{r['model']}` {r.get('budget')} seed {r.get('seed')} in {r['failed_stage']}: "
            f"{r['error']}"
            for r in failed
        ]
    return "\n".join(lines) + "\n"


def _flops(value: float | None) -> str:
    return f"{value:.3g}" if value is not None else "?"


def frontier_markdown(result: dict) -> str:
    """The frontier section of summary.md: the rule, best bpb per family and budget, what is
    measured, the fits, the fitted crossing and the compute multiplier, every excluded point
    named with its reason."""
    families = result["families"]
    measured = result["measured"]
    budgets = [row["budget"] for row in measured["at_budgets"]]
    lines = [
        "## Compute frontier",
        "",
        f"FLOPs rule: {result['flops_rule']}. Optimum per budget: {result['optimum']} "
        "(`best`: the size with the lowest validation bpb on the first seed).",
        "",
        "Best validation bpb per family at each budget (mean over the seeds of the best size, "
        "their range in brackets), the size, its training FLOPs by the rule and its epochs of "
        "the training split; test bpb on the whole test split; *edge*: the best size is the "
        "smallest or largest tried (left out of the fit).",
        "",
        "| family | " + " | ".join(budgets) + " |",
        "|---|" + "---:|" * len(budgets),
    ]
    for family, entry in families.items():
        by_budget = {p["budget"]: p for p in entry["frontier"]}
        cells = []
        for b in budgets:
            if (p := by_budget.get(b)) is None:
                cells.append("–")
                continue
            seeds = p["val_bpb_seeds"]
            spread = f" [{min(seeds):.3f}-{max(seeds):.3f}]" if len(seeds) > 1 else ""
            epochs = f", {p['epochs']:.2f} epochs" if p.get("epochs") is not None else ""
            test = f", test {p['test_bpb']:.3f}" if p.get("test_bpb") is not None else ""
            edge = f", *{p['edge']} size: edge*" if p["edge"] else ""
            cells.append(
                f"{p['val_bpb']:.3f}{spread} ({p['model']}, {_flops(p['flops'])} FLOPs"
                f"{epochs}{edge}{test})"
            )
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    missing = [
        f"{family} at {', '.join(b for b in budgets if b not in {p['budget'] for p in e['frontier']})}"
        for family, e in families.items()
        if len(e["frontier"]) < len(budgets)
    ]
    if missing:
        lines += ["", f"Not run: {'; '.join(missing)}."]
    lines += ["", "### Measured", ""]
    for row in measured["at_budgets"]:
        if "gap" not in row:
            lines.append(f"- {row['budget']}: {row['leader']} lowest")
            continue
        ref, other = measured["reference"], row["against"]
        side = "behind" if row["gap"] < 0 else "ahead of"
        spread = "more" if row["beyond_seed_spread"] else "less"
        ratio = (
            f"; {ref} trained {row['flops_ratio']:.2f}x {other}'s FLOPs"
            if row.get("flops_ratio")
            else ""
        )
        lines.append(
            f"- {row['budget']}: {row['leader']} lowest; {ref} {side} {other} by "
            f"{abs(row['gap']):.3f} bpb, {spread} than the seed spread{ratio}"
        )
    lines += ["", f"So: {measured['statement']}.", ""]
    lines += _rate_lines(families)
    lines += ["### Fits", "", f"{result['fit_method']}.", ""]
    for family, entry in families.items():
        fit = entry["fit"]
        if not fit:
            lines.append(f"- {family}: no fit: {entry['fit_note']}")
            continue
        ranges = ", ".join(f"{k} {v[0]:.3g}-{v[1]:.3g}" for k, v in (fit["band"] or {}).items())
        lines.append(
            f"- {family}: E {fit['E']:.3f}, A {fit['A']:.4g}, alpha {fit['alpha']:.3f} (rmse "
            f"{fit['rmse']:.4f} bpb over {len(fit['budgets_used'])} points, "
            f"{_flops(fit['measured_range'][0])}-{_flops(fit['measured_range'][1])} FLOPs; "
            f"5-95%: {ranges})"
        )
    lines += ["", f"Fitted crossing: {_crossing_text(result['crossing'])}.", ""]
    lines += _multiplier_lines(result.get("compute_multiplier"))
    edges = result.get("with_edge_points") or {}
    if edges.get("crossing", {}).get("budget_flops") or any(
        e.get("fit_with_edge_points") for e in families.values()
    ):
        lines += ["### With the ladder-edge points", "", f"{edges['what'].capitalize()}.", ""]
        for family, entry in families.items():
            if fit := entry.get("fit_with_edge_points"):
                lines.append(
                    f"- {family}: E {fit['E']:.3f}, A {fit['A']:.4g}, alpha {fit['alpha']:.3f} "
                    f"(rmse {fit['rmse']:.4f} bpb over {len(fit['budgets_used'])} points)"
                )
        lines += ["", f"Fitted crossing: {_crossing_text(edges['crossing'])}.", ""]
        if edges.get("compute_multiplier") != result.get("compute_multiplier"):
            lines += _multiplier_lines(edges.get("compute_multiplier"))
    excluded = [
        f"{family} {e['budget']} ({e['model']}): {e['reason']}"
        for family, entry in families.items()
        for e in entry["excluded"]
    ]
    lines += [
        "Left out of the fits: " + ("; ".join(excluded) if excluded else "none") + ".",
        "",
        f"Charts: {', '.join(f'[{c}](charts/{c}.png)' for c in FRONTIER_CHARTS)}; numbers: "
        "frontier.json, frontier.csv.",
        "",
    ]
    return "\n".join(lines)


def _rate_lines(families: dict) -> list[str]:
    rates = []
    for family, entry in families.items():
        if not (lr := entry.get("learning_rate")):
            continue
        sweeps = [
            f"{s['chosen']:g} of {', '.join(f'{t:g}' for t in s['tried'])} on {s['model']} at "
            f"{s['budget']}" + (f" (the {s['at_sweep_edge']} tried: the best may lie beyond)"
                                 if s["at_sweep_edge"] else "")
            for s in lr["sweeps"]
        ]  # fmt: skip
        used = (
            f"{lr['chosen']:g} at every budget"
            if lr["chosen"] is not None
            else ", ".join(f"{v['rate']:.3g} at {b}" for b, v in lr["per_budget"].items())
        )
        rates.append(
            f"{family}: {used}; sweep{'s' * (len(sweeps) != 1)} {'; '.join(sweeps) or 'none'}"
        )
    if not rates:
        return []
    return ["Learning rate per family (first seed): " + ". ".join(rates) + ".", ""]


def _crossing_text(crossing: dict) -> str:
    text = crossing["statement"]
    for family, optimal in (crossing.get("compute_optimal") or {}).items():
        if optimal:
            tokens = f" on {optimal['tokens']:.3g} tokens" if optimal.get("tokens") else ""
            epochs = f" ({optimal['epochs']:.2f} epochs)" if optimal.get("epochs") else ""
            text += (
                f"; there {family}'s trend of chosen sizes gives {optimal['params']:.3g} "
                f"parameters{tokens}{epochs}"
            )
    return text


def _multiplier_lines(multiplier: dict | None) -> list[str]:
    if not multiplier:
        return []
    ref = multiplier["reference"]
    low, high = multiplier["measured_range"]
    lines = [
        f"Compute multiplier: how many times the best other family's FLOPs {ref}'s fit needs "
        f"to reach that family's measured loss at each budget (5-95% band; *extrapolated*: "
        f"the FLOPs needed lie outside {ref}'s measured {_flops(low)}-{_flops(high)}):",
        "",
    ]
    for row in multiplier["at_budgets"]:
        band = row["multiplier_band"]
        lower = f"{band[0]:.2f}" if band[0] is not None else "never"
        upper = f"{band[1]:.2f}" if band[1] is not None else "never in some resamples"
        edge = "; its point is at its ladder's edge" if row["target_at_ladder_edge"] else ""
        lines.append(
            f"- {row['budget']}: {row['multiplier']:.2f}x (5-95%: {lower}-{upper}) "
            f"against {row['against']}{edge}"
            + (", *extrapolated*" if row["extrapolated"] else ", within the measured range")
        )
    return [*lines, ""]
