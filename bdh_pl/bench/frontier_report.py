"""A compute frontier's summary.md: the rule, the frontier table, what is measured, the fits,
the fitted crossing and the compute multiplier, every point left out with its reason, every run
(from frontier.json's dict, bench/frontier.py)."""

from __future__ import annotations

from bdh_pl.bench import frontier
from bdh_pl.bench.progress import STOPPED, status_lines
from bdh_pl.bench.tables import commits_line, table
from bdh_pl.charts.frontier import FRONTIER_CHARTS

FRONTIER_RUN_COLUMNS = [
    ("family", "family", str),
    ("size", "model", str),
    ("budget", "budget", str),
    ("status", "run_status", str),
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
    ("chosen lr", "chosen_lr", str),
]
RUN_STATUS = {"ok": "done", "running": "queued/running", "bound": "bound", "failed": "failed"}


def _header(records: list[dict], result: dict) -> str:
    """Dataset, device and precision as the tested runs recorded them, else as the
    benchmark's config gives them (the device is recorded by the first test run)."""
    ok = [r for r in records if r["status"] == "ok"]
    first = ([r for r in ok if r.get("test_run")] or ok or records)[0]
    plan = result["status"].get("plan") or {}
    dataset = first.get("dataset") or ", ".join(plan.get("dataset") or []) or "?"
    device = first.get("device") or "not recorded yet (the first test run records it)"
    precision = first.get("precision") or plan.get("precision") or "?"
    return (
        f"Dataset {dataset}; device {device}, precision {precision}; torch "
        f"{first['torch_version']}, lightning {first['lightning_version']}; "
        f"{commits_line(records)}."
    )


def frontier_summary(experiment: str, records: list[dict], command: str, result: dict) -> str:
    status = result["status"]
    fits = [r["fit_time_s"] for r in records if r.get("fit_time_s")]
    loads = [v for r in records for v in (r.get("load_avg_start"), r.get("load_avg_end")) if v]
    lines = [f"# Compute frontier `{experiment}`", "", f"`{command}`", "", _header(records, result)]
    if fits:
        load = f", 1-minute load average {min(loads):.1f}-{max(loads):.1f}" if loads else ""
        lines.append(
            f"Fit time {sum(fits) / 3600:.2f} h summed over finished runs (longest "
            f"{max(fits):.0f} s){load}."
        )
    lines += ["", *status_lines(status), frontier_markdown(result), "## Runs", ""]
    split = result.get("train_split_tokens")
    rows = [_run_row(frontier.with_rule(r, split), result) for r in records]
    lines += table(rows, FRONTIER_RUN_COLUMNS)
    lines += [
        "",
        "status: done, queued/running (or stopped with the benchmark: it resumes from its "
        "own checkpoint, else starts again), bound (not run: the reason is in frontier.json), "
        "failed. frontier: the run is its family's best size at its budget (tested, and "
        "repeated on the other seeds; set once the family's ladder is done); chosen lr: "
        "the learning-rate sweep's winner (no: a sweep run that lost; pending: its sweep "
        "is still running; –: not a sweep run). val bpb: the lowest validation bpb of the "
        "run (its last validation for a run that still improved).",
    ]
    if failed := [r for r in records if r["status"] == "failed"]:
        lines += ["", "Failed:", ""]
        lines += [
            f"- `{r['model']}` {r.get('budget')} seed {r.get('seed')} in {r['failed_stage']}: "
            f"{r['error']}"
            for r in failed
        ]
    return "\n".join(lines) + "\n"


def _run_row(r: dict, result: dict) -> dict:
    sweeps = (result["families"].get(r.get("family"), {}).get("learning_rate") or {}).get(
        "sweeps", []
    )
    state = next((s for s in sweeps if (s["sweep"], s["model"]) == (r.get("sweep"), r["model"])),
                 None)  # fmt: skip
    labelled = "sweep" in r  # records before sweep labels: `selected` alone says it
    if r.get("status") != "ok" or (labelled and not r["sweep"] and r.get("selected") is not False):
        chosen = "–"
    elif state is not None and not state["complete"]:
        chosen = "pending"
    else:
        chosen = "**yes**" if r.get("selected") else "no"
    return {
        **r,
        "run_status": RUN_STATUS.get(r.get("status"), r.get("status")),
        "chosen_lr": chosen,
    }


def partial_markdown(experiment: str, records: list[dict], command: str, result: dict) -> str:
    """PARTIAL.md: what a reader of a frontier's results folder must know first while the
    frontier is incomplete (written by the benchmark after every run; removed when done)."""
    return "\n".join(
        [
            f"# Partial: the frontier `{experiment}` in progress",
            "",
            f"`{command}`",
            "",
            _header(records, result),
            "",
            *status_lines(result["status"])[2:],
            "Resume: the same command, from a checkout that has this folder; finished runs are "
            "not run again, runs in flight continue from their own last.ckpt where their run "
            "folder is kept (else they start again). summary.md and frontier.json are rewritten "
            "after every run; until the status is complete they describe the budgets done so "
            "far only.",
            "",
        ]
    )


def _flops(value: float | None) -> str:
    return f"{value:.3g}" if value is not None else "?"


def frontier_markdown(result: dict) -> str:
    """The frontier section of summary.md: the rule, best bpb per family and budget, what is
    measured, the fits, the fitted crossing and the compute multiplier, every excluded point
    named with its reason."""
    families = result["families"]
    measured = result["measured"]
    states = {f: e["budgets"] for f, e in result.get("status", {}).get("families", {}).items()}
    budgets = [row["budget"] for row in measured["at_budgets"]]
    budgets += [b for e in states.values() for b in e if b not in budgets]
    budgets = list(dict.fromkeys(budgets))
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
    for family in dict.fromkeys([*families, *states]):
        entry = families.get(family, {"frontier": []})
        by_budget = {p["budget"]: p for p in entry["frontier"]}
        cells = []
        for b in budgets:
            if (p := by_budget.get(b)) is None:
                state = states.get(family, {}).get(b, {}).get("state")
                cells.append(f"*{state}*" if state and state != "complete" else "–")
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
        f"{family} at {', '.join(todo)}"
        for family in families
        if (todo := [b for b in budgets if states.get(family, {}).get(b, {}).get("state")
                     in (None, "not started")
                     and b not in {p["budget"] for p in families[family]["frontier"]}])
    ]  # fmt: skip
    running = not (result.get("status") or {}).get("complete", True)
    if missing:  # while the frontier runs, a budget not started is not one left out
        lines += ["", f"{'Not started yet' if running else 'Not run'}: {'; '.join(missing)}."]
    for family, entry in families.items():
        if entry.get("stopped"):
            stops = [
                b for b in budgets if states.get(family, {}).get(b, {}).get("state") == "stopped"
            ]
            lines += ["", f"{family} stopped before {stops[0] if stops else '?'}: "
                      f"{entry['stopped'].removeprefix(STOPPED)}."]  # fmt: skip
    lines += ["", "### Measured", ""]
    if not measured["at_budgets"]:
        lines += ["No budget is complete yet: nothing measured.", ""]
    for row in measured["at_budgets"]:
        if "gap" not in row:
            alone = len(row["points"]) == 1  # no other family has a point there (yet)
            what = (
                f"only {row['leader']} has a point{' so far' if running else ''}"
                if alone
                else f"{row['leader']} lowest"
            )
            lines.append(f"- {row['budget']}: {what}")
            continue
        ref, other = measured["reference"], row["against"]
        side = "behind" if row["gap"] < 0 else "ahead of"
        spread = (
            "one seed: no seed spread to compare with"
            if not row.get("seeds_compared", True)
            else f"{'more' if row['beyond_seed_spread'] else 'less'} than the seed spread"
        )
        ratio = (
            f"; {ref} trained {row['flops_ratio']:.2f}x {other}'s FLOPs"
            if row.get("flops_ratio")
            else ""
        )
        lines.append(
            f"- {row['budget']}: {row['leader']} lowest; {ref} {side} {other} by "
            f"{abs(row['gap']):.3f} bpb, {spread}{ratio}"
        )
    if measured["at_budgets"]:
        lines += ["", f"So: {measured['statement']}.", ""]
    lines += _rate_lines(families)
    lines += _shape_lines(families)
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
    status = result.get("status") or {"complete": True, "families": {}}
    drawn = any(
        c["state"] == "complete" for e in status["families"].values() for c in e["budgets"].values()
    )
    charts = ", ".join(f"[{c}](charts/{c}.png)" for c in FRONTIER_CHARTS)
    if not drawn and not status["complete"]:
        charts = "none until a budget is complete"
    elif not status["complete"]:
        charts += " (complete budgets only)"
    lines += [
        "Left out of the fits: " + ("; ".join(excluded) if excluded else "none") + ".",
        "",
        f"Charts: {charts}; numbers: frontier.json, frontier.csv.",
        "",
    ]
    return "\n".join(lines)


def _rate_lines(families: dict) -> list[str]:
    rates = []
    for family, entry in families.items():
        if not (lr := entry.get("learning_rate")):
            continue
        sweeps = []
        for s in lr["sweeps"]:
            where = f"on {s['model']} at {s['budget']}"
            if not s["complete"]:
                tried = ", ".join(f"{t:g}" for t in s["tried"]) or "none yet"
                flying = f", {s['in_flight']} queued or running" if s["in_flight"] else ""
                sweeps.append(f"in progress {where} (done: {tried}{flying})")
                continue
            edge = s["at_sweep_edge"]
            sweeps.append(
                f"{s['chosen']:g} of {', '.join(f'{t:g}' for t in s['tried'])} {where}"
                + (f" (the {edge} tried: the best may lie beyond)" if edge else "")
            )
        if lr["chosen"] is not None:
            used = f"{lr['chosen']:g} at every budget"
        elif lr["per_budget"]:
            used = ", ".join(f"{v['rate']:.3g} at {b}" for b, v in lr["per_budget"].items())
            used += " so far" if lr.get("sweeps_in_progress") else ""
        else:
            used = "not chosen yet (sweep in progress)"
        rates.append(
            f"{family}: {used}; sweep{'s' * (len(sweeps) != 1)} {'; '.join(sweeps) or 'none'}"
        )
    if not rates:
        return []
    return ["Learning rate per family (first seed): " + ". ".join(rates) + ".", ""]


def _shape_lines(families: dict) -> list[str]:
    """Each family's shape search: every shape's best validation bpb at its best rate so far
    (first seed, equal FLOPs at the smallest budget), the chosen shape and the published one
    beside it; a shape whose sweep still runs has chosen nothing."""
    lines = []
    for family, entry in families.items():
        if not (search := entry.get("shape_search")):
            continue
        cells = []
        for row in search["shapes"]:
            marks = [m for m, on in (("chosen", row["chosen"]), ("published", row["published"]))
                     if on]  # fmt: skip
            what = f"{row['shape']}{' (' + ', '.join(marks) + ')' if marks else ''}"
            if row["best_val_bpb"] is None:
                cells.append(f"{what}: no finished run")
                continue
            state = (
                f"rate chosen {row['rate']:g}" if row["complete"] else "its rate sweep in progress"
            )
            cells.append(
                f"{what}: {row['best_val_bpb']:.4f} at lr {row['best_rate']:g} after "
                f"{row['train_steps']:,} steps ({state})"
            )
        chosen = search["chosen"] or "none yet (the search is in progress)"
        lines += [
            f"Shape search of {family} (each shape at the smallest budget, the same FLOPs, "
            f"its best rate so far): chosen {chosen}; " + "; ".join(cells) + ".",
            "",
        ]
    return lines


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
