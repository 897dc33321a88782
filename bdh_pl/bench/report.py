"""The results of a benchmark: metrics.json, metrics.csv, summary.md (rewritten after every
run), a compute frontier's frontier.json and frontier.csv (bench/frontier.py), and charts/*.png
(drawn by bdh_pl.charts; `python -m bdh_pl plot --results` redraws)."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from pathlib import Path

from matplotlib.ticker import EngFormatter

from bdh_pl.bench import frontier, stats
from bdh_pl.bench.record import KEYS
from bdh_pl.charts.benchmark import BenchmarkRecords, chart_names, write_benchmark_charts
from bdh_pl.charts.frontier import FRONTIER_CHARTS, write_frontier_charts
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
        result = frontier.frontier(records)
        write_json(out / "frontier.json", result)
        rows = frontier.frontier_rows(result)
        atomic_write_text(out / "frontier.csv", _csv(rows, frontier.CSV_COLUMNS))
        summary = frontier_summary(experiment, records, command, result)
    else:
        summary = summary_markdown(experiment, records, command)
    atomic_write_text(out / "summary.md", summary)


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
        return write_frontier_charts(frontier.frontier(records), charts_dir or out / "charts")
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
    lines += _table(records, FRONTIER_RUN_COLUMNS)
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


def frontier_markdown(result: dict) -> str:
    """The frontier section of summary.md: best bpb per family and budget, the fits, the
    compute multiplier and the crossing, every ladder edge named."""
    families = result["families"]
    budgets = sorted({p["budget_flops"] for f in families.values() for p in f["frontier"]})
    lines = [
        "## Compute frontier",
        "",
        "Best validation bpb per family at each training budget (the size with the lowest "
        "validation bpb on the first seed, mean over its seeds, range in brackets); test bpb on "
        "the whole test split.",
        "",
        "| family | " + " | ".join(f"{b:.3g} FLOPs" for b in budgets) + " |",
        "|---|" + "---:|" * len(budgets),
    ]
    for family, entry in families.items():
        by_budget = {p["budget_flops"]: p for p in entry["frontier"]}
        cells = []
        for b in budgets:
            p = by_budget.get(b)
            if p is None:
                cells.append("–")
                continue
            seeds = p["val_bpb_seeds"]
            spread = f" [{min(seeds):.3f}-{max(seeds):.3f}]" if len(seeds) > 1 else ""
            test = f", test {p['test_bpb']:.3f}" if p.get("test_bpb") is not None else ""
            edge = f", {p['edge']} size" if p["edge"] else ""
            cells.append(f"{p['val_bpb']:.3f}{spread} ({p['model']}{edge}{test})")
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    rates = [
        f"{family} {lr['chosen']:g} (of {', '.join(f'{t:g}' for t in lr['tried'])}"
        + (f"; the {lr['at_sweep_edge']} tried, so the best may lie beyond)" if
           lr["at_sweep_edge"] else ")")
        for family, entry in families.items()
        if (lr := entry.get("learning_rate"))
    ]  # fmt: skip
    if rates:
        lines += ["", "Learning rate per family (swept on one size at the smallest budget, "
                  "first seed; the best reused for every run): " + "; ".join(rates) + "."]  # fmt: skip
    lines += ["", "Fits L(C) = E + A C^-alpha (C: training FLOPs; 5-95% bootstrap range):", ""]
    for family, entry in families.items():
        fit = entry["fit"]
        if not fit:
            lines.append(f"- {family}: no fit (fewer than three budgets, or no decrease)")
            continue
        band = fit["band"] or {}
        ranges = ", ".join(f"{k} {v[0]:.3g}-{v[1]:.3g}" for k, v in band.items())
        lines.append(
            f"- {family}: E {fit['E']:.3f}, A {fit['A']:.4g}, alpha {fit['alpha']:.3f} "
            f"(rmse {fit['rmse']:.4f}; {ranges})"
        )
    if multiplier := result.get("compute_multiplier"):
        ref = multiplier["reference"]
        lines += ["", f"Compute multiplier: how many times {ref}'s FLOPs reach the best other "
                  "family's fitted loss at each budget:", ""]  # fmt: skip
        for row in multiplier["at_budgets"]:
            band = row["multiplier_band"]
            spread = f" (5-95%: {band[0]:.2f}-{band[1]:.2f})" if band else " (band: the fit "
            spread += "" if band else "never reaches it in some resamples)"
            lines.append(
                f"- {row['budget_flops']:.3g} FLOPs: {row['multiplier']:.2f}x against "
                f"{row['best_other']}{spread}"
            )
        lines += ["", f"Crossing: {multiplier['crossing']['statement']}."]
    if (extra := result.get("extrapolation")) and extra["predictions"]:
        guesses = ", ".join(
            f"{family} {p['val_bpb']:.3f}"
            + (f" ({p['band'][0]:.3f}-{p['band'][1]:.3f})" if p["band"] else "")
            for family, p in extra["predictions"].items()
        )
        lines += [
            "",
            f"Extrapolation to {extra['budget_flops']:.3g} FLOPs ({extra['label']}): the fits "
            f"predict {guesses} validation bpb for the best size at that compute (5-95% "
            "bootstrap range); far outside the budgets run, so a trend, not a measurement.",
        ]
    edges = [
        f"{family} at {p['budget_flops']:.3g} ({p['edge']} of {', '.join(p['sizes_tried'])})"
        for family, entry in families.items()
        for p in entry["frontier"]
        if p["edge"]
    ]
    lines += [
        "",
        "Ladder edges (the best size is the smallest or largest tried: the true minimum may lie "
        f"outside): {'; '.join(edges) if edges else 'none'}.",
        "",
        f"Charts: {', '.join(f'[{c}](charts/{c}.png)' for c in FRONTIER_CHARTS)}; numbers: "
        "frontier.json, frontier.csv.",
        "",
    ]
    return "\n".join(lines)


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
        "Train FLOPs: training tokens x forward+backward FLOPs per token. "
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
