"""How far a compute frontier has got, from its records and its plan: per family and budget
whether the budget is complete (its frontier point chosen and run on every seed
the plan gives it), in progress, stopped or not started; each sweep complete or in progress;
runs finished, in flight and left; training FLOPs done against the plan's; the shape search
(each shape's best so far, the chosen and the published one). A summary read
mid-way says this first, so that nothing partial reads as a result (frontier_report.py)."""

from __future__ import annotations

import math
from typing import Any

STOPPED = "stopped: "  # how a record of a budget a stop rule skipped begins its `bound`


def _ok(r: dict) -> bool:
    v = r.get("best_val_bpb")
    return r.get("status") == "ok" and isinstance(v, int | float) and math.isfinite(v)


def sweep_groups(records: list[dict]) -> dict[tuple, list[dict]]:
    """The records of each sweep: (family, sweep label, model) -> its runs (first seed)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if r.get("sweep") and r.get("family"):
            groups.setdefault((r["family"], r["sweep"], r["model"]), []).append(r)
    return groups


def sweep_state(runs: list[dict]) -> dict[str, Any]:
    """One sweep: the rates finished, how many in flight, the chosen rate once it is chosen
    (`complete`: nothing in flight, one run chosen, and the choice interior or the widening
    spent: until then its `selected` marks are not a choice)."""
    done = [r for r in runs if _ok(r)]
    flying = [r for r in runs if r.get("status") == "running"]
    chosen = [r for r in done if r.get("selected")]
    rates = sorted({r["learning_rate"] for r in done if r.get("learning_rate") is not None})
    complete = not flying and len(chosen) == 1 and len(rates) >= 2
    edge = None
    if complete:
        rate = chosen[0]["learning_rate"]
        edge = "largest" if rate == rates[-1] else "smallest" if rate == rates[0] else None
        spent = "still at the sweep's edge" in (chosen[0].get("learning_rate_source") or "")
        complete = edge is None or spent
    return {
        "tried": rates,
        "in_flight": len(flying),
        "complete": complete,
        "chosen": chosen[0]["learning_rate"] if complete else None,
        "at_sweep_edge": edge if complete else None,
    }


def budget_state(runs: list[dict], seeds: int, final: bool = False) -> str:
    """`complete`: the frontier point chosen and run on `seeds` seeds (its test only adds test
    bpb), nothing in flight; or, for a budget of one seed, its ladder `final` (ladder_final:
    the matrix marks its points only once every budget's ladder is done); `stopped`:
    a stop rule skipped it; `in progress` or `not started`."""
    if any(stopped_by_rule(r) for r in runs):
        return "stopped"
    flying = any(r.get("status") == "running" for r in runs)
    points = [r for r in runs if r.get("frontier_point") and _ok(r)]
    if not flying and (
        (points and len({r.get("seed") for r in points}) >= seeds) or (final and seeds == 1)
    ):
        return "complete"
    return "in progress" if runs else "not started"


def ladder_final(runs: list[dict], sizes: list[str], seed: Any, shapes: set) -> bool:
    """Whether one budget's sizes are all in (`runs`: its records; `sizes`: the family's
    ladder, smallest first, from the plan): on the first seed, in the chosen shape, at least
    three usable sizes (or the whole ladder) and no next size to add (ladder.next_size: the
    best is interior, or its neighbour was tried or is bound, or the ladder ends)."""
    from bdh_pl.bench.ladder import next_size

    cell: dict[int, dict] = {}
    for r in runs:
        if r.get("seed") != seed or r.get("selected") is False or other_shape(r, shapes):
            continue
        name = r["model"].removesuffix(f"-{r['shape']}") if r.get("shape") else r["model"]
        if name in sizes:
            cell.setdefault(sizes.index(name), r)
    usable = sum(_ok(r) for r in cell.values())
    return usable >= min(3, len(sizes)) and next_size(cell, len(sizes)) is None


def progress(records: list[dict], plan: dict[str, Any] | None) -> dict[str, Any]:
    """The frontier's status: per family and budget its state and runs, the sweeps, the
    counts and FLOPs against the plan (`records` on the FLOPs rule: frontier.with_rule),
    and whether the whole frontier is complete."""
    frontier = [r for r in records if r.get("family")]
    plan = plan if plan and "families" in plan else None
    names = list(dict.fromkeys(r["family"] for r in frontier))
    budgets = list(plan["budgets"]) if plan else []
    budgets += [b for b in dict.fromkeys(r.get("budget") for r in frontier) if b not in budgets]
    families: dict[str, Any] = {}
    for family in [*(plan["families"] if plan else []), *names]:
        if family in families:
            continue
        mine = [r for r in frontier if r["family"] == family]
        planned_f = (plan or {}).get("families", {}).get(family, {})
        seed = next((r.get("seed") for r in mine if not r.get("bound")), None)
        shapes = chosen_shapes([r for r in mine if _ok(r)])
        sizes = planned_f.get("sizes")
        cells = {}
        for b in budgets:
            here = [r for r in mine if r.get("budget") == b]
            plan_b = planned_f.get("budgets", {}).get(b, {})
            final = bool(sizes) and ladder_final(here, sizes, seed, shapes)
            cells[b] = {
                "state": budget_state(here, plan_b.get("seeds", 1), final),
                "finished": sum(_ok(r) for r in here),
                "in_flight": sum(r.get("status") == "running" for r in here),
                "planned": plan_b.get("runs"),
                "flops_done": sum(r.get("train_flops") or 0.0 for r in here if _ok(r)),
                "flops_planned": plan_b.get("flops"),
            }
        families[family] = {
            "budgets": cells,
            "stop_after_behind": planned_f.get("stop_after_behind"),
        }
    sweeps = [
        {"family": f, "sweep": label, "model": model, **sweep_state(runs)}
        for (f, label, model), runs in sweep_groups(frontier).items()
    ]
    finished = sum(_ok(r) for r in frontier)
    flying = sum(r.get("status") == "running" for r in frontier)
    states = [c["state"] for f in families.values() for c in f["budgets"].values()]
    return {
        # without a plan a budget no run reached is not known to be planned: not counted
        "complete": bool(states)
        and flying == 0
        and all(s in ("complete", "stopped") or (s == "not started" and not plan) for s in states),
        "families": families,
        "sweeps": sweeps,
        "runs": {
            "finished": finished,
            "in_flight": flying,
            "bound": sum(r.get("status") == "bound" and not stopped_by_rule(r) for r in frontier),
            "failed": sum(r.get("status") == "failed" for r in frontier),
            "planned": plan["runs"] if plan else None,
            "left": _runs_left(families) if plan else None,
        },
        "flops": {
            "done": sum(r.get("train_flops") or 0.0 for r in frontier if _ok(r)),
            "planned": plan["flops"] if plan else None,
            "left": _flops_left(families) if plan else None,
        },
    }


def _flops_left(families: dict[str, Any]) -> float:
    """The planned training FLOPs not yet spent, budget by budget as `_runs_left` counts runs
    (a budget a stop rule skipped plans nothing more): what the rest of the run costs, at least."""
    return sum(
        max((cell["flops_planned"] or 0.0) - cell["flops_done"], 0.0)
        for entry in families.values()
        for cell in entry["budgets"].values()
        if cell["state"] not in ("complete", "stopped")
    )


def _runs_left(families: dict[str, Any]) -> int:
    """The planned runs not yet finished or in flight, budget by budget (extra runs at one
    budget, widened sweeps or edge sizes, do not stand for the planned runs of another);
    none at a complete budget or one a stop rule skipped."""
    return sum(
        max((cell["planned"] or 0) - cell["finished"] - cell["in_flight"], 0)
        for entry in families.values()
        for cell in entry["budgets"].values()
        if cell["state"] not in ("complete", "stopped")
    )


def stopped_by_rule(r: dict) -> bool:
    """Whether a record marks a budget a stop rule skipped."""
    return str(r.get("bound") or "").startswith(STOPPED)


def complete_budgets(status: dict[str, Any]) -> set[tuple[str, str]]:
    """(family, budget) pairs whose frontier point is final."""
    return {
        (family, b)
        for family, entry in status["families"].items()
        for b, cell in entry["budgets"].items()
        if cell["state"] == "complete"
    }


def budget_key(r: dict) -> str:
    """The budget a run belongs to: its label (`flops 2e+12`, `steps 6`), else its FLOPs."""
    if r.get("budget"):
        return str(r["budget"])
    flops = r.get("budget_flops")
    number = isinstance(flops, int | float) and not isinstance(flops, bool) and math.isfinite(flops)
    return f"flops {flops:g}" if number else "?"


def chosen_learning_rate(runs: list[dict]) -> dict[str, Any] | None:
    """The family's sweeps (each: the rates tried on one size at one budget, first seed, and
    once it is complete the one chosen and whether it is the smallest or largest tried: the
    best may lie beyond; before that its `selected` marks are no choice) and the rate every
    budget's runs used, with where it came from (`learning_rate_source`). `runs`: all the
    family's records, in flight too."""
    sweeps = [
        {"budget": budget_key(group[0]), "model": model, "sweep": label, **sweep_state(group)}
        for (_, label, model), group in sweep_groups(runs).items()
    ]
    pending = {(s["sweep"], s["model"]) for s in sweeps if not s["complete"]}
    groups: dict[tuple, list[dict]] = {}  # records before sweeps were labelled
    for r in runs:
        if (
            r.get("learning_rate") is not None
            and r.get("status", "ok") == "ok"
            and not r.get("sweep")
        ):
            groups.setdefault((budget_key(r), r["model"], r.get("seed")), []).append(r)
    for (budget, model, _), group in groups.items():
        rates = sorted({r["learning_rate"] for r in group})
        chosen = [r["learning_rate"] for r in group if r.get("selected")]
        if len(rates) < 2 or len(chosen) != 1:
            continue
        edge = (
            "largest" if chosen[0] == rates[-1] else "smallest" if chosen[0] == rates[0] else None
        )
        sweeps.append({"budget": budget, "model": model, "sweep": None, "tried": rates,
                       "in_flight": 0, "complete": True, "chosen": chosen[0],
                       "at_sweep_edge": edge})  # fmt: skip
    per_budget: dict[str, Any] = {}
    shapes = {r.get("shape") for r in runs if not r.get("sweep") and r.get("status") == "ok"}
    for r in runs:
        if r.get("status", "ok") != "ok" or not r.get("selected") or r.get("learning_rate") is None:
            continue
        if str(r.get("sweep") or "").startswith("shape@") and r.get("shape") not in shapes:
            continue  # the best rate of a shape the ladder did not choose (or not yet)
        if (r.get("sweep"), r["model"]) in pending:
            continue  # a sweep still running has chosen nothing yet
        per_budget.setdefault(budget_key(r), {"rate": r["learning_rate"],
                                              "source": r.get("learning_rate_source")})  # fmt: skip
    if not per_budget and not sweeps:
        return None
    rates = {v["rate"] for v in per_budget.values()}
    return {
        "chosen": rates.pop() if len(rates) == 1 and not pending else None,
        "sweeps": sweeps,
        "per_budget": per_budget,
        "sweeps_in_progress": len(pending),
    }


def chosen_shapes(runs: list[dict]) -> set:
    """The shape(s) the ladder's runs (not a sweep's) are in: the search's choice, once made."""
    return {r.get("shape") for r in runs if not r.get("sweep") and not r.get("bound")}


def other_shape(run: dict, chosen: set) -> bool:
    """A shape search's run of a shape the ladder did not choose (or has not chosen yet): not
    a size of its budget's IsoFLOP curve."""
    return str(run.get("sweep") or "").startswith("shape@") and run.get("shape") not in chosen


def shape_search(
    runs: list[dict], published: str | None = None, shapes: list[str] | None = None
) -> dict[str, Any] | None:
    """The family's shape search (all its records, in flight too): per shape its best
    validation bpb over the rates finished (first seed), that rate and its steps, whether its
    rate sweep is complete (bench/progress.py), which shape the ladder chose and which is the
    published one (`published`, from the plan); shapes of the plan not started yet are
    listed too. None without a shape search."""
    groups: dict[str, list[dict]] = {name: [] for name in shapes or []}
    for r in runs:
        if str(r.get("sweep") or "").startswith("shape@"):
            groups.setdefault(r.get("shape"), []).append(r)
    if not groups:
        return None
    chosen = chosen_shapes([r for r in runs if r.get("status") == "ok"]) & set(groups)
    rows = []
    for shape, group in groups.items():
        state = sweep_state(group)
        done = [r for r in group if _ok(r)]
        best = min(done, key=lambda r: r["best_val_bpb"]) if done else None
        rows.append(
            {
                "shape": shape,
                "model": group[0]["model"] if group else None,
                "budget": budget_key(group[0]) if group else None,
                "params": (best or (group[0] if group else {})).get("params"),
                "rates_done": state["tried"],
                "in_flight": state["in_flight"],
                "complete": state["complete"],
                "rate": state["chosen"],
                "at_sweep_edge": state["at_sweep_edge"],
                "best_val_bpb": best["best_val_bpb"] if best else None,
                "best_rate": best.get("learning_rate") if best else None,
                "train_steps": best.get("train_steps") if best else None,
                "chosen": shape in chosen,
                "published": shape == published,
            }
        )
    return {"chosen": next(iter(chosen), None), "published": published, "shapes": rows}


def status_lines(status: dict) -> list[str]:
    """The frontier's status: complete, or what is done and what is not (bench/progress.py)."""
    runs, flops = status["runs"], status["flops"]
    if status["complete"]:
        return [
            f"Status: complete ({runs['finished']} runs finished"
            + (f", {runs['bound']} bound" if runs["bound"] else "")
            + (f", {runs['failed']} failed" if runs["failed"] else "")
            + f"; {flops['done']:.3g} training FLOPs).",
            "",
        ]
    plan = status.get("plan") or {}
    planned = (
        f" of at least {runs['planned']} planned (at least {runs['left']} left)"
        if runs["planned"] is not None
        else f" (no plan to count against: {plan.get('error') or 'no benchmark.yaml'})"
    )
    of = (
        f" of {flops['planned']:.3g} planned (at least {flops['left']:.3g} left: budgets a stop"
        " rule skipped plan nothing more)"
        if flops["planned"]
        else ""
    )
    lines = [
        "## Status: partial",
        "",
        f"The benchmark is not complete: {runs['finished']} runs finished{planned}, "
        f"{runs['in_flight']} queued or running at the last write"
        + (f", {runs['bound']} bound" if runs["bound"] else "")
        + (f", {runs['failed']} failed" if runs["failed"] else "")
        + f"; {flops['done']:.3g} training FLOPs done by finished runs (by the rule){of}. Only "
        "complete budgets (their frontier point chosen and repeated on its seeds) "
        "are frontier points below: a budget in progress has no best size yet.",
        "",
    ]
    budgets = list(dict.fromkeys(b for f in status["families"].values() for b in f["budgets"]))
    lines += [
        "| family | " + " | ".join(budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for family, entry in status["families"].items():
        cells = []
        for b in budgets:
            c = entry["budgets"].get(b)
            if c is None:
                cells.append("–")
                continue
            counts = f"{c['finished']}" + (f" of {c['planned']}+" if c["planned"] else "")
            flying = f", {c['in_flight']} queued or running" if c["in_flight"] else ""
            cells.append(
                c["state"] if c["state"] in ("complete", "stopped", "not started")
                else f"in progress: {counts} done{flying}"
            )  # fmt: skip
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Runs per budget: finished of planned (+: edge extensions and widened sweeps add "
        "runs beyond the plan).",
        "",
    ]
    if sweeps := [s for s in status["sweeps"] if not s["complete"]]:
        lines += [
            "Sweeps in progress: "
            + "; ".join(
                f"{s['sweep']} on {s['model']} ({len(s['tried'])} "
                f"rate{'s' * (len(s['tried']) != 1)} done"
                + (f", {s['in_flight']} queued or running" if s["in_flight"] else "")
                + ")"
                for s in sweeps
            )
            + ".",
            "",
        ]
    return lines
