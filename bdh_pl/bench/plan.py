"""A compute frontier's plan before it runs: per family and budget the runs it makes and
their training FLOPs (`planned`; shapes and sweeps at the smallest budget, the later sweeps,
the windows, the repeats on the other seeds: edge extensions and widened sweeps add to it),
the `--plan` lines with the hours an earlier frontier's speed gives, and the plan of a results
folder (`read_plan`: its benchmark.yaml) for the status of a frontier in progress."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bdh_pl.bench.budget import budget_text, budget_windows
from bdh_pl.errors import UserError

if TYPE_CHECKING:
    from bdh_pl.bench.spec import BenchmarkSpec


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
        swept = {values[0]}
        for later in bench.lr_sweeps or []:
            runs[later.budget] += n(later.grid(entry.sweep, 1.0))
            swept.add(later.budget)
        for c, window in zip(values, windows, strict=True):
            # a sweep's chosen run is its window's middle size: not run twice
            runs[c] += len(window) - (c in swept)
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
            "sizes": [s.name for s in entry.sizes],  # the ladder, smallest first
            "shapes": [s.name for s in entry.shapes or []],
            # the shape the model's authors published: reported beside the chosen one
            "published_shape": next((s.name for s in entry.shapes or [] if s.published), None),
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


def previous_records(out: Path) -> list[dict]:
    """The records of an earlier invocation into the same folder (none if unreadable)."""
    try:
        return json.loads((out / "metrics.json").read_text())["records"]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def plan_lines(bench: BenchmarkSpec, measured: Path | None = None) -> list[str]:
    """What a frontier will run before it runs: per family the runs of its plan (shapes,
    sweeps, the windows, the repeats; edge extensions and widened sweeps add to these), their
    FLOPs (each run spends its budget), and, given the records of an earlier frontier, the
    hours: FLOPs over the training FLOP/s (3x forward rule, whole fit) its family's runs
    at its largest budget reached, `jobs` runs at once."""
    plan = planned(bench)
    if plan is None:
        raise UserError("--plan sizes a frontier with FLOPs budgets (`budgets: [{flops: ...}]`)")
    rates = _measured_rates(measured) if measured else {}
    lines, hours = [], 0.0
    for name, family in plan["families"].items():
        line = f"{name}: {family['runs']} runs, {family['flops']:.3g} FLOPs"
        if name in rates:
            family_hours = family["flops"] / rates[name] / 3600
            hours += family_hours
            line += f", {family_hours:.1f} h on one core at {rates[name]:.3g} FLOP/s"
        if rule := family["stop_after_behind"]:
            line += (
                f" (at most: it stops once behind {rule['family']} at {rule['budgets']} "
                "budgets in a row)"
            )
        lines.append(line)
    lines.append(
        f"total: at least {plan['runs']} runs, {plan['flops']:.3g} training FLOPs (3x forward); "
        "each best size at a window's edge adds a run at its budget, each sweep widened one"
    )
    if hours:
        lines.append(
            f"expected: {hours / bench.jobs:.1f} h of wall time, {bench.jobs} runs at once"
        )
    return lines


def _measured_rates(results: Path) -> dict[str, float]:
    """Per family, the median training FLOP/s (3x forward FLOPs x tokens / fit seconds) of
    its runs at its largest budget in an earlier frontier's records."""
    records = [r for r in previous_records(results) if r.get("status") == "ok"]
    if not records:
        raise UserError(f"--plan_from {results}: no finished runs in its metrics.json")
    rates: dict[str, float] = {}
    for family in {r.get("family") for r in records} - {None}:
        runs = [r for r in records if r.get("family") == family and r.get("fit_time_s")]
        largest = max(r["budget_flops"] for r in runs)
        rates[family] = statistics.median(
            3 * r["flops_per_token"] * r["train_tokens"] / r["fit_time_s"]
            for r in runs
            if r["budget_flops"] == largest
        )
    return rates
