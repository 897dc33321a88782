"""The results of a benchmark: metrics.json, metrics.csv, summary.md (rewritten after every
run), a compute frontier's frontier.json and frontier.csv (bench/frontier.py), and charts/*.png
(drawn by bdh_pl.charts; `python -m bdh_pl plot --results` redraws)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import datetime, timezone
from pathlib import Path

from matplotlib.ticker import EngFormatter

from bdh_pl.bench import frontier, stats
from bdh_pl.bench.record import KEYS
from bdh_pl.charts.benchmark import BenchmarkRecords, chart_names, write_benchmark_charts
from bdh_pl.charts.frontier import FRONTIER_CHARTS, write_frontier_charts
from bdh_pl.errors import UserError
from bdh_pl.fileio import atomic_write_text, write_json


def write_results(
    out: Path, experiment: str, records: list[dict], command: str, named: Path | None = None
) -> None:
    """metrics.json, metrics.csv and the summaries into `out`; `named`: the output folder as
    the benchmark config names it (relative to where the benchmark ran), for the records."""
    write_json(
        out / "metrics.json",
        {
            "experiment": experiment,
            "command": command,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": str((named or out) / "benchmark.yaml"),
            "records": records,
        },
    )
    atomic_write_text(out / "metrics.csv", _csv(records, KEYS))
    write_summaries(out, experiment, records, command)


def write_summaries(out: Path, experiment: str, records: list[dict], command: str) -> None:
    """summary.md, and a compute frontier's frontier.json and frontier.csv, from the records
    (`plot --results` rewrites them with the current code)."""
    if frontier.families(records):
        result = frontier_result(records)
        write_json(out / "frontier.json", result)
        rows = frontier.frontier_rows(result)
        atomic_write_text(out / "frontier.csv", _csv(rows, frontier.CSV_COLUMNS))
        summary = frontier_summary(experiment, records, command, result)
    else:
        summary = summary_markdown(experiment, records, command)
    atomic_write_text(out / "summary.md", summary)


_last_frontier: tuple[str, dict] | None = None  # the summaries and the charts share one fit


def frontier_result(records: list[dict]) -> dict:
    """frontier.frontier of the records (computed once for the summaries and the charts of
    the same records), with the training split's size for records older than `epochs`."""
    global _last_frontier
    key = hashlib.sha256(json.dumps(records, sort_keys=True, default=str).encode()).hexdigest()
    if _last_frontier is None or _last_frontier[0] != key:
        split = train_split_tokens(records)
        _last_frontier = (key, frontier.frontier(records, train_split_tokens=split))
    return _last_frontier[1]


def train_split_tokens(records: list[dict]) -> int | None:
    """The training split's tokens of frontier records written before `epochs` was a field:
    counted from the data of the first run's config (its `data` class from bdh_pl.data and
    init_args); None when every record has its epochs, or the config or data are not at hand
    (the epochs then stay unknown)."""
    old = [r for r in records if r.get("family") and r.get("epochs") is None and r.get("config")]
    if not old:
        return None
    try:
        import yaml

        import bdh_pl.data

        data = yaml.safe_load(Path(old[0]["config"]).read_text(encoding="utf-8"))["data"]
        kind = getattr(bdh_pl.data, data["class_path"].rsplit(".", 1)[-1], None)
        if not (isinstance(kind, type) and issubclass(kind, bdh_pl.data.TextDataModule)):
            return None
        module = kind(**{k: v for k, v in data.get("init_args", {}).items() if k != "cache_dir"})
        return int(len(module.split_tokens("train")))
    except (OSError, KeyError, TypeError, ValueError, AttributeError, UserError):
        return None  # the data out of reach: the epochs stay unknown, and the summary says so


def _csv(rows: list[dict], columns) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def chart_records(experiment: str, records: list[dict]) -> BenchmarkRecords:
    """The records with the benchmark's choices (chosen runs, seed means) the charts show."""
    return BenchmarkRecords(
        experiment, records, stats.aggregate(records), stats.chosen_runs(records),
        stats.swept(records),
    )  # fmt: skip


def write_charts(
    out: Path, experiment: str, records: list[dict], charts_dir: Path | None = None
) -> list[Path]:
    """charts/*.png under `out` (or in `charts_dir`); a compute frontier's own charts (dozens
    of runs: the frontier, not every curve)."""
    if frontier.families(records):
        return write_frontier_charts(frontier_result(records), charts_dir or out / "charts")
    return write_benchmark_charts(chart_records(experiment, records), charts_dir or out / "charts")


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
    lines += _table([frontier.with_rule(r, split) for r in records], FRONTIER_RUN_COLUMNS)
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


SUMMARY_COLUMNS = [
    ("model", "model", str),
    ("setting", "setting", str),
    ("lr", "learning_rate", "{:.3g}"),
    ("seeds", "test_bpb_n", "{:d}"),
    ("params", "params", "count"),
    ("non-emb. params", "non_embedding_params", "count"),
    ("tokenizer", "tokenizer", str),
    ("train tokens", "train_tokens", "count"),
    ("train FLOPs", "train_flops", "count"),
    ("best step", "best_step", "{:,.0f}"),
    ("test loss", "test_loss", "{:.3f}"),
    ("test ppl", "test_ppl", "{:.2f}"),
    ("test bpb", "test_bpb", "{:.3f}"),
    ("bpb std", "test_bpb_std", "{:.3f}"),
    ("bpb min-max", ("test_bpb_min", "test_bpb_max"), "{:.3f}-{:.3f}"),
    ("word ppl", "test_word_ppl", "{:,.0f}"),
    ("train tok/s", "train_tokens_per_sec", "{:,.0f}"),
    ("eval tok/s", "eval_tokens_per_sec", "{:,.0f}"),
    ("FLOPs/token fwd", "flops_per_token", "count"),
    ("peak MB", "peak_memory_mb", "{:,.0f}"),
]
TEXT_COLUMNS = ("model", "setting", "tokenizer", "family", "budget")
SWEEP_COLUMNS = [
    ("model", "model", str),
    ("setting", "setting", str),
    ("lr", "learning_rate", "{:.3g}"),
    ("dropout", "dropout", "{:g}"),
    ("weight decay", "weight_decay", "{:g}"),
    ("seed", "seed", "{}"),
    ("steps", "train_steps", "{:,.0f}"),
    ("best step", "best_step", "{:,.0f}"),
    ("best val loss", "best_val_loss", "{:.4f}"),
    ("best val bpb", "best_val_bpb", "{:.4f}"),
    ("chosen", "selected", "{}"),
]


def _cell(record: dict, key, fmt) -> str:
    values = [record.get(k) for k in key] if isinstance(key, tuple) else [record.get(key)]
    if any(v is None for v in values) or (isinstance(key, tuple) and record["test_bpb_n"] < 2):
        return "–"
    if fmt == "count":
        return EngFormatter(places=1, sep="")(values[0])
    if key in ("selected", "frontier_point"):
        return "**yes**" if values[0] else "no"
    return fmt(*values) if callable(fmt) else fmt.format(*values)


def _table(rows: list[dict], columns: list) -> list[str]:
    lines = [
        "| " + " | ".join(h for h, _, _ in columns) + " |",
        "|" + "|".join("---" if k in TEXT_COLUMNS else "---:" for _, k, _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(_cell(r, k, f) for _, k, f in columns) + " |" for r in rows]
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


def summary_markdown(experiment: str, records: list[dict], command: str) -> str:
    rows = stats.aggregate(records)
    ok = [r for r in records if r["status"] == "ok"]
    tested = [r for r in ok if r.get("test_run")]  # what the data and device lines describe
    first = (tested or ok or records)[0]
    budgets = sorted({r["budget"] for r in records if r.get("budget")})
    lines = [
        f"# Benchmark `{experiment}`",
        "",
        f"`{command}`",
        "",
        f"Dataset {first['dataset'] or '?'}; device {first['device'] or '?'}, precision "
        f"{first['precision'] or '?'}; torch {first['torch_version']}, lightning "
        f"{first['lightning_version']}; {commits_line(records)}."
        + (f" Budget per model: {', '.join(budgets)}." if budgets else ""),
        "",
        *_table(rows, SUMMARY_COLUMNS),
        "",
        "One row per model: its chosen setting (the lowest validation loss of its sweep, on the "
        "first seed; the test split plays no part in the choice), averaged over the seeds it "
        "was repeated on (bpb std: sample standard deviation over seeds; min-max: their "
        "range). bpb (bits per UTF-8 byte of the test text) and word perplexity compare across "
        "tokenizers; test loss and ppl are per the model's own token (byte or BPE) and do not. "
        "Train FLOPs: training tokens x 3 x the forward FLOPs per token (records written "
        "before that rule: x the counted forward + backward). "
        "Train tok/s: training tokens over training time, validation excluded (Lightning's "
        "ThroughputMonitor); eval tok/s: the whole test pass. FLOPs/token: forward, counted by "
        "torch's FlopCounterMode on one full block (a training step is about 3x). Peak "
        f"memory: {first['memory_kind'] or '?'} (`cuda`: max allocated; `cpu_rss`: process "
        "peak RSS), the larger of the train and test phases.",
    ]
    if comparison := stats.compare(rows):
        lines += ["", "Test bpb, model against the next in the ranking:", ""]
        lines += [f"- {line}" for line in comparison]
    loads = [
        v
        for r in records
        for v in (r.get("load_avg_start"), r.get("load_avg_end"))
        if v is not None
    ]
    if loads:
        lines += [
            "",
            f"1-minute load average at the start and end of the fits: {min(loads):.2f} to "
            f"{max(loads):.2f} (other processes share the machine: seconds and tokens/s depend "
            "on it, losses at a given step do not).",
        ]
    if stats.swept(records):
        runs = [r for r in records if r.get("selected") is not None]
        first_seed = {}
        for r in runs:
            first_seed.setdefault(r["model"], r.get("seed"))
        sweep_rows = [r for r in runs if r.get("seed") == first_seed[r["model"]]]
        lines += ["", "Sweep (first seed; every run trained, only the chosen one tested):", ""]
        lines += _table(sweep_rows, SWEEP_COLUMNS)
    if failed := [r for r in records if r["status"] == "failed"]:
        lines += ["", "Failed:", ""]
        lines += [
            f"- `{r['model']}`{' ' + r['setting'] if r.get('setting') else ''}"
            f"{' seed ' + str(r['seed']) if r.get('seed') is not None else ''} in "
            f"{r['failed_stage']}: {r['error']}"
            for r in failed
        ]
    names = chart_names(chart_records(experiment, records))
    charts = ", ".join(f"[{c}](charts/{c}.png)" for c in names)
    lines += ["", f"Charts: {charts}.", ""]
    return "\n".join(lines)
