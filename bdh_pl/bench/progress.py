"""How far a compute frontier has got, from its records and its plan: per family and budget
whether the budget is complete (its frontier point chosen, tested, and repeated on every seed
the plan gives it), in progress, stopped or not started; each sweep complete or in progress;
runs finished, in flight and left; training FLOPs done against the plan's. A summary read
mid-way says this first, so that nothing partial reads as a result (frontier_report.py).

The plan (`planned`) counts what a frontier will run before edge extensions and widened
sweeps add to it: shapes and sweeps at the smallest budget, the second sweep, the windows,
the repeats on the other seeds. Runs of an edge extension or a widened sweep are runs
beyond it (the remaining count is then "at least")."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bdh_pl.bench.budget import budget_text, budget_windows

STOPPED = "stopped: "  # how a record of a budget a stop rule skipped begins its `bound`


def planned(bench) -> dict[str, Any] | None:
    """Per family and budget the runs the plan makes, their training FLOPs (each run spends
    its budget) and the seeds its frontier point runs on; None for a benchmark that is not a
    compute frontier with FLOPs budgets."""
    if not bench.frontier or bench.budgets[0].flops is None:
        return None
    values = [b.flops for b in bench.budgets]
    labels = [budget_text(b) for b in bench.budgets]
    seeds = len(bench.seeds or [None])
    repeated = set(values[len(values) - (bench.repeat_largest or len(values)) :])
    families: dict[str, Any] = {}
    for entry in bench.models:

        def n(sweep) -> int:
            return len(sweep.settings()) if sweep else 1

        windows = budget_windows(entry.sizes, entry.sizes_per_budget, entry.windows, len(values))
        runs = dict.fromkeys(values, 0)
        runs[values[0]] += (
            len(entry.shapes) * n(entry.shape_sweep or entry.sweep)
            if entry.shapes
            else n(entry.sweep)
        )
        if bench.lr_sweep_budget:
            runs[bench.lr_sweep_budget] += n(entry.sweep)
        for c, window in zip(values, windows, strict=True):
            # a sweep's chosen run is its window's middle size: not run twice
            runs[c] += len(window) - (c in (values[0], bench.lr_sweep_budget))
            runs[c] += seeds - 1 if c in repeated else 0
        families[entry.name] = {
            "budgets": {
                label: {
                    "runs": runs[c],
                    "flops": c * runs[c],
                    "seeds": seeds if c in repeated else 1,
                }
                for label, c in zip(labels, values, strict=True)
            },
            "runs": sum(runs.values()),
            "flops": sum(c * k for c, k in runs.items()),
            "stop_after_behind": _stop_rule(entry),
        }
    return {
        "budgets": labels,
        "families": families,
        "runs": sum(f["runs"] for f in families.values()),
        "flops": sum(f["flops"] for f in families.values()),
        "jobs": bench.jobs,
        "dataset": list(bench.dataset) if not isinstance(bench.dataset, str) else [bench.dataset],
        "precision": (bench.shared.get("trainer") or {}).get("precision"),
    }


def _stop_rule(entry) -> dict | None:
    rule = getattr(entry, "stop_after_behind", None)
    return {"family": rule.family, "budgets": rule.budgets} if rule else None


_read: tuple[tuple, dict | None] | None = None  # the last benchmark.yaml read, and its plan
_known: dict[str, dict | None] = {}  # plans of benchmarks running in this process, by folder


def remember(out: Path, plan: dict[str, Any] | None) -> None:
    """The plan of a benchmark this process runs into `out`: read_plan returns it without
    parsing benchmark.yaml (jsonargparse moves the process into a config's folder while it
    parses, which the runs' threads must not see)."""
    _known[str(Path(out).resolve())] = plan


def read_plan(out: Path) -> dict[str, Any] | None:
    """The plan of the benchmark whose resolved config (benchmark.yaml) is in `out`, or None
    (no such file, or one this code cannot read: the status then counts what the records
    say, with no remaining runs or planned FLOPs)."""
    global _read
    if (known := str(Path(out).resolve())) in _known:
        return _known[known]
    path = Path(out) / "benchmark.yaml"
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if _read is None or _read[0] != key:
        from bdh_pl.bench import spec  # jsonargparse: only when there is a file to read

        try:
            _read = (key, planned(spec.load_spec(path)))
        except Exception as err:  # noqa: BLE001 — an older format, paths elsewhere: said so
            _read = (key, {"error": f"{path} not read ({str(err).splitlines()[0][:160]})",
                           **_plain(path)})  # fmt: skip
    return _read[1]


def _plain(path: Path) -> dict[str, Any]:
    """The dataset and precision of a benchmark.yaml read as plain YAML (for the summary's
    header where the spec itself cannot be read)."""
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        dataset = config.get("dataset")
        return {
            "dataset": [dataset] if isinstance(dataset, str) else list(dataset or []),
            "precision": (config.get("trainer") or {}).get("precision"),
        }
    except (OSError, ValueError, AttributeError, TypeError, yaml.YAMLError):
        return {}


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


def budget_state(runs: list[dict], seeds: int) -> str:
    """`complete`: the frontier point tested on `seeds` seeds, nothing in flight; `stopped`:
    a stop rule skipped it; `in progress` or `not started`."""
    if any(str(r.get("bound") or "").startswith(STOPPED) for r in runs):
        return "stopped"
    flying = any(r.get("status") == "running" for r in runs)
    points = [
        r for r in runs if r.get("frontier_point") and _ok(r) and r.get("test_bpb") is not None
    ]
    if points and not flying and len({r.get("seed") for r in points}) >= seeds:
        return "complete"
    return "in progress" if runs else "not started"


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
        cells = {}
        for b in budgets:
            here = [r for r in mine if r.get("budget") == b]
            plan_b = planned_f.get("budgets", {}).get(b, {})
            cells[b] = {
                "state": budget_state(here, plan_b.get("seeds", 1)),
                "finished": sum(_ok(r) for r in here),
                "in_flight": sum(r.get("status") == "running" for r in here),
                "planned": plan_b.get("runs"),
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
            "bound": sum(r.get("status") == "bound" and not _stopped(r) for r in frontier),
            "failed": sum(r.get("status") == "failed" for r in frontier),
            "planned": plan["runs"] if plan else None,
            "left": max(plan["runs"] - finished - flying - _stopped_runs(families), 0)
            if plan
            else None,
        },
        "flops": {
            "done": sum(r.get("train_flops") or 0.0 for r in frontier if _ok(r)),
            "planned": plan["flops"] if plan else None,
        },
    }


def _stopped_runs(families: dict[str, Any]) -> int:
    """The planned runs of the budgets a stop rule skipped (they will not run)."""
    return sum(
        cell["planned"] or 0
        for entry in families.values()
        for cell in entry["budgets"].values()
        if cell["state"] == "stopped"
    )


def _stopped(r: dict) -> bool:
    return str(r.get("bound") or "").startswith(STOPPED)


def complete_budgets(status: dict[str, Any]) -> set[tuple[str, str]]:
    """(family, budget) pairs whose frontier point is final."""
    return {
        (family, b)
        for family, entry in status["families"].items()
        for b, cell in entry["budgets"].items()
        if cell["state"] == "complete"
    }
