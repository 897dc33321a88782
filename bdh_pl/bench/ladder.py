"""A compute frontier's ladders, checked: each family's sizes and windows (at least 3 sizes a
budget), its shapes, and the run labels they make (unique across the benchmark, so no two runs
share a key or a folder)."""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from typing import Protocol

from jsonargparse.typing import PositiveInt, final

from bdh_pl.bench.budget import NAME, Shape, Size, budget_windows
from bdh_pl.errors import UserError


@final
@dataclass
class StopRule:
    """When a family stops climbing the budgets: once its best size has been worse (higher
    validation bpb, first seed) than `family`'s best at `budgets` budgets in a row, its larger
    budgets are not run (each recorded `bound: stopped: ...`). The family then runs its budgets
    one after another, each after `family`'s same budget is done.

    Args:
        family: the family it is measured against (its name in `models`).
        budgets: how many budgets in a row it must be behind.
    """

    family: str
    budgets: PositiveInt = 3

    def __post_init__(self) -> None:
        self.budgets = int(self.budgets)  # a plain int (jsonargparse's subclass is no YAML)


class Family(Protocol):
    """What these checks read of a model entry (spec.ModelEntry)."""

    name: str | None
    sizes: list[Size] | None
    sizes_per_budget: int | None
    windows: list[list[str]] | None
    sweep_size: str | None
    shapes: list[Shape] | None
    stop_after_behind: StopRule | None


def shapes_of(entry: Family) -> list[Shape | None]:
    """A family's shapes, or [None] (the family's own model_args)."""
    return list(entry.shapes) if entry.shapes else [None]


def run_label(size: Size, shape: Shape | None) -> str:
    """The label of a size's runs: its name, with its shape's after it when shapes are
    compared (`bdh-d32-l6m128`), so every shape's runs have their own folder and key."""
    return size.name if shape is None else f"{size.name}-{shape.name}"


def check_names(entries: list[Family]) -> None:
    """Every run is keyed by its size's name (its folder, its record's `model`): names unique
    across the benchmark, so no two runs can share a key. A family may share its name with its
    own one size only (a ladder of one, the default)."""
    families = [e.name for e in entries]
    sizes = [run_label(s, shape) for e in entries for s in e.sizes or [] for shape in shapes_of(e)]
    own = {e.name for e in entries if e.sizes and [s.name for s in e.sizes] == [e.name]}
    names = families + [n for n in sizes if n not in own]
    if repeated := sorted({n for n in names if names.count(n) > 1}):
        raise UserError(
            f"model and size names must be unique across the benchmark, {repeated} repeats "
            "(a size named like its family counts too): rename it with `name:`"
        )
    check_stop_rules(entries)


def check_stop_rules(entries: list[Family]) -> None:
    """A stop rule names another family of the benchmark, one that has no rule of its own
    (two families waiting on each other would wait for ever)."""
    names = [e.name for e in entries]
    ruled = {e.name for e in entries if e.stop_after_behind}
    for e in entries:
        if not (rule := e.stop_after_behind):
            continue
        if e.sizes is None:  # checked entries of a frontier have their ladder
            raise UserError(f"{e.name}: stop_after_behind belongs to a compute frontier")
        if rule.family == e.name or rule.family not in names:
            others = [n for n in names if n != e.name]
            raise UserError(
                f"{e.name}.stop_after_behind.family {rule.family!r}: name another family of "
                f"the benchmark, one of {others}"
            )
        if rule.family in ruled:
            raise UserError(
                f"{e.name}.stop_after_behind.family {rule.family!r} has a stop rule of its "
                "own: the family measured against must run every budget"
            )


def check_ladder(
    entry: Family, name: str, where: str, n_budgets: int
) -> tuple[list[Size], int, str]:
    """The family's ladder (default: one size, the family), its window length and the size
    its sweep runs on; one `error:` line for a ladder that cannot run (bad names, windows
    naming unknown sizes or with fewer than 3 sizes, a sweep size outside the first window)."""
    sizes = entry.sizes or [Size(name)]
    for size in sizes:
        if not NAME.match(size.name):
            raise UserError(f"{where}: size name {size.name!r} must be letters, digits, . _ -")
    per_budget = int(entry.sizes_per_budget or len(sizes))
    if per_budget > len(sizes):
        raise UserError(
            f"{where}.sizes_per_budget {per_budget} exceeds the ladder's {len(sizes)} sizes"
        )
    names = [s.name for s in sizes]
    if entry.windows is not None:
        if len(entry.windows) != n_budgets or not all(entry.windows):
            raise UserError(
                f"{where}.windows: give one non-empty list of size names per budget "
                f"({n_budgets}), got {entry.windows}"
            )
        if unknown := sorted({n for w in entry.windows for n in w} - set(names)):
            raise UserError(f"{where}.windows: no size named {unknown}; the sizes are {names}")
    windows = budget_windows(sizes, per_budget, entry.windows, n_budgets)
    if len(sizes) >= 3 and (short := [i for i, w in enumerate(windows) if len(w) < 3]):
        raise UserError(
            f"{where}: every budget trains at least 3 sizes (an interior optimum needs a "
            f"neighbour on each side); budgets {short} train fewer: raise sizes_per_budget"
        )
    first = [s.name for s in windows[0]]
    sweep_size = entry.sweep_size or first[len(first) // 2]
    if sweep_size not in first:
        raise UserError(
            f"{where}.sweep_size {sweep_size!r}: the sweep runs at the smallest budget, which "
            f"trains {first}: pick one of those"
        )
    return sizes, per_budget, sweep_size


def flops_text(value: float) -> str:
    """A budget in a label: 2e12, 1.6e13."""
    return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", f"{value:g}")


def rate_between(scales: dict[float, float], budget: float) -> tuple[float, str]:
    """The learning-rate multiplier at `budget` from the sweeps' chosen multipliers
    ({budget: multiplier}): a sweep's own at its budget; otherwise log-linear in log budget
    between the two sweeps around it (beyond the first or last, the line of the nearest
    two); with one sweep, its multiplier. Returns (multiplier, where it came from: the
    record's `learning_rate_source`)."""
    if budget in scales:
        return scales[budget], f"sweep@{flops_text(budget)}"
    points = sorted(scales.items())
    if len(points) == 1:
        return points[0][1], f"sweep@{flops_text(points[0][0])}"
    above = min(max(bisect.bisect(points, (budget, math.inf)), 1), len(points) - 1)
    (c1, m1), (c2, m2) = points[above - 1], points[above]
    t = (math.log(budget) - math.log(c1)) / (math.log(c2) - math.log(c1))
    scale = float(f"{math.exp(math.log(m1) + t * (math.log(m2) - math.log(m1))):.4g}")
    inside = c1 < budget < c2
    how, where = ("interpolated", "between") if inside else ("extrapolated", "beyond")
    return scale, (
        f"{how} log-linear in log budget {where} sweeps at {flops_text(c1)} and {flops_text(c2)}"
    )


def budget_groups(n: int, sweeps: list[int], one_by_one: bool = False) -> list[list[int]]:
    """A family's budgets (indices 0..n-1) in the order its ladders run: a group up to each
    later sweep's budget (`sweeps`), run once that sweep is done, then the budgets beyond
    the last; `one_by_one` (a family with a stop rule): each budget alone, so that a sweep
    past the budget where it stops never runs."""
    if one_by_one:
        return [[i] for i in range(n)]
    ends = sorted({*sweeps, n - 1})
    return [list(range(a + 1, b + 1)) for a, b in zip([-1, *ends[:-1]], ends, strict=True)]


def next_size(results: dict[int, dict], n_sizes: int) -> int | None:
    """The ladder index to try next at one budget ({index: record} of its runs): the
    neighbour beyond the best when the best is the smallest or largest usable size tried
    (Porian et al.'s interior optimum); None when the best is interior or the neighbour
    was tried (or the ladder ends there)."""
    best = _best_index(results)
    if best is None:
        return None
    usable = [k for k, r in results.items() if _usable(r)]
    for edge, step in ((min(usable), -1), (max(usable), 1)):
        k = best + step
        if best == edge and 0 <= k < n_sizes and k not in results:
            return k
    return None


def edge_reason(results: dict[int, dict], names: list[str]) -> str | None:
    """Why the best size of a budget has no usable neighbour on one side (None: interior):
    the ladder ends, or the neighbour is bound (the epoch cap) or failed."""
    best = _best_index(results)
    if best is None:
        return None
    usable = [k for k, r in results.items() if _usable(r)]
    reasons = []
    for edge, step, side in ((min(usable), -1, "smaller"), (max(usable), 1, "larger")):
        if best != edge:
            continue
        k = best + step
        if not 0 <= k < len(names):
            reasons.append(f"the ladder has no {side} size than {names[best]}")
        elif (r := results.get(k)) is not None and r.get("bound"):
            reasons.append(f"the next {side} size {names[k]} {r['bound']}")
        else:
            reasons.append(f"the next {side} size {names[k]} has no result")
    return "; ".join(reasons) or None


def _usable(record: dict) -> bool:
    loss = record.get("best_val_loss")
    return record.get("status") == "ok" and loss is not None and math.isfinite(loss)


def _best_index(results: dict[int, dict]) -> int | None:
    usable = {k: r["best_val_loss"] for k, r in results.items() if _usable(r)}
    return min(usable, key=lambda k: (usable[k], k)) if usable else None
