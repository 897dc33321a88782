"""Markdown tables of records for the summaries: a cell as the docs quote it, a table of
columns (header, key, format), and the line naming every commit the runs ran on."""

from __future__ import annotations

from matplotlib.ticker import EngFormatter

TEXT_COLUMNS = ("model", "setting", "tokenizer", "family", "budget")


def cell(record: dict, key, fmt) -> str:
    values = [record.get(k) for k in key] if isinstance(key, tuple) else [record.get(key)]
    if any(v is None for v in values) or (isinstance(key, tuple) and record["test_bpb_n"] < 2):
        return "–"
    if fmt == "count":
        return EngFormatter(places=1, sep="")(values[0])
    if key in ("selected", "frontier_point"):
        return "**yes**" if values[0] else "no"
    return fmt(*values) if callable(fmt) else fmt.format(*values)


def table(rows: list[dict], columns: list) -> list[str]:
    lines = [
        "| " + " | ".join(h for h, _, _ in columns) + " |",
        "|" + "|".join("---" if k in TEXT_COLUMNS else "---:" for _, k, _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(r, k, f) for _, k, f in columns) + " |" for r in rows]
    return lines


def commits_line(records: list[dict]) -> str:
    """Every commit the runs ran on, with how many runs and whether the tree had uncommitted
    changes: "git dc4bafb5ceb7 (3 runs), 6bf249903e06 with uncommitted changes (1 run)"."""
    counts: dict[tuple[str, bool], int] = {}
    for r in records:
        key = ((r.get("git_commit") or "?")[:12], bool(r.get("git_dirty")))
        counts[key] = counts.get(key, 0) + 1
    parts = [
        f"{commit}{' with uncommitted changes' if dirty else ''} ({n} run{'s' * (n != 1)})"
        for (commit, dirty), n in counts.items()
    ]
    return "git " + ", ".join(parts)
