"""Choosing and summarising runs: the best sweep run by validation loss, each model's test
figures over its seeds (mean, standard deviation, range) and whether two models differ by more
than their seeds do. Plain functions of records (dicts as in metrics.json; records written
before sweeps and seeds lack those keys and count as one chosen run each)."""

from __future__ import annotations

import math
import statistics
from typing import Any

# Figures averaged over the seeds of a model's chosen setting; the rest are the first run's.
MEAN_KEYS = (
    "train_steps", "train_tokens", "train_flops", "best_step", "best_val_loss", "best_val_bpb",
    "test_loss", "test_ppl", "test_bpb", "test_byte_ppl", "test_word_ppl",
    "train_tokens_per_sec", "eval_tokens_per_sec", "mfu", "peak_memory_mb",
    "train_peak_memory_mb", "test_peak_memory_mb", "wall_time_s", "fit_time_s",
)  # fmt: skip


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def select_best(records: list[dict]) -> int | None:
    """Index of the run with the lowest best validation loss among those that finished (the
    first of equals); None when none has one. The test split plays no part in the choice."""
    scored = [
        (r["best_val_loss"], i)
        for i, r in enumerate(records)
        if r.get("status") == "ok" and _finite(r.get("best_val_loss"))
    ]
    return min(scored)[1] if scored else None


def chosen_runs(records: list[dict]) -> dict[str, list[dict]]:
    """Each model's runs of its chosen setting (all seeds), models in order of first
    appearance; a model none of whose runs was chosen maps to its runs (all failed)."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["model"], []).append(r)
    return {
        model: [r for r in runs if r.get("selected", True) is not False] or runs
        for model, runs in groups.items()
    }


def _with_train_flops(record: dict) -> dict:
    """Records written before `train_flops` was a field: tokens x FLOPs per token."""
    tokens, per_token = record.get("train_tokens"), record.get("train_flops_per_token")
    if record.get("train_flops") is None and _finite(tokens) and _finite(per_token):
        return record | {"train_flops": tokens * per_token}
    return record


def spread(values: list[float]) -> dict[str, float | int | None]:
    """n, mean, sample standard deviation (n - 1; None for one value), min and max."""
    if not values:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "min": min(values),
        "max": max(values),
    }


def aggregate(records: list[dict]) -> list[dict]:
    """One row per model: the first chosen run's fields, the MEAN_KEYS averaged over the
    chosen runs that were tested, and `test_bpb_{n,std,min,max}` (n: seeds tested). A model
    with no tested run keeps its first run's fields (status and error when it failed)."""
    rows = []
    for runs in chosen_runs(records).values():
        tested = [r for r in runs if r.get("status") == "ok" and _finite(r.get("test_bpb"))]
        tested = [_with_train_flops(r) for r in tested]
        row = dict(tested[0] if tested else runs[0])
        for key in MEAN_KEYS:
            values = [r[key] for r in tested if _finite(r.get(key))]
            if values:
                row[key] = statistics.fmean(values)
        bpb = spread([r["test_bpb"] for r in tested])
        row.update({f"test_bpb_{k}": v for k, v in bpb.items() if k != "mean"})
        row["seeds"] = [r.get("seed") for r in tested]
        rows.append(row)
    return rows


def compare(rows: list[dict]) -> list[str]:
    """Sentences on the ranking by mean test bpb: for each model and the next one, the gap
    and whether it is larger than the seed spread (every seed of the better model beats every
    seed of the worse one: their min-max ranges do not overlap)."""
    ranked = sorted(
        (r for r in rows if _finite(r.get("test_bpb")) and r.get("test_bpb_n")),
        key=lambda r: r["test_bpb"],
    )
    lines = []
    for a, b in zip(ranked, ranked[1:], strict=False):
        gap = b["test_bpb"] - a["test_bpb"]
        head = (
            f"`{a['model']}` ahead of `{b['model']}` by {gap:.3f} bpb "
            f"({a['test_bpb']:.3f} vs {b['test_bpb']:.3f}"
        )
        if a["test_bpb_n"] < 2 or b["test_bpb_n"] < 2:
            lines.append(f"{head}, one seed: the seed spread is not measured).")
            continue
        ranges = (
            f"seed ranges {a['test_bpb_min']:.3f}-{a['test_bpb_max']:.3f} over "
            f"{a['test_bpb_n']} seeds and {b['test_bpb_min']:.3f}-{b['test_bpb_max']:.3f} over "
            f"{b['test_bpb_n']}"
        )
        if a["test_bpb_max"] < b["test_bpb_min"]:
            lines.append(f"{head}): larger than the seed spread ({ranges} do not overlap).")
        else:
            lines.append(f"{head}): within the seed spread ({ranges} overlap).")
    return lines


def swept(records: list[dict]) -> bool:
    """Whether some model was trained with more than one setting."""
    settings: dict[str, set] = {}
    for r in records:
        settings.setdefault(r["model"], set()).add(r.get("setting"))
    return any(len(s) > 1 for s in settings.values())
