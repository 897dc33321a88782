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

from bdh_pl.bench import frontier, progress, stats
from bdh_pl.bench import plan as plan_
from bdh_pl.bench.frontier_report import frontier_summary, partial_markdown
from bdh_pl.bench.record import KEYS
from bdh_pl.bench.tables import commits_line, table
from bdh_pl.charts.benchmark import BenchmarkRecords, chart_names, write_benchmark_charts
from bdh_pl.charts.frontier import write_frontier_charts
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
    partial = out / PARTIAL
    if any(r.get("family") for r in records):
        result = frontier_result(records, out)
        write_json(out / "frontier.json", result)
        rows = frontier.frontier_rows(result)
        atomic_write_text(out / "frontier.csv", _csv(rows, frontier.CSV_COLUMNS))
        summary = frontier_summary(experiment, records, command, result)
        if result["status"]["complete"]:
            partial.unlink(missing_ok=True)
        else:
            atomic_write_text(partial, partial_markdown(experiment, records, command, result))
    else:
        summary = summary_markdown(experiment, records, command)
    atomic_write_text(out / "summary.md", summary)


PARTIAL = "PARTIAL.md"  # a frontier's status while it is incomplete; removed once complete
_last_frontier: tuple[str, dict] | None = None  # the summaries and the charts share one fit


def frontier_result(records: list[dict], out: Path | None = None) -> dict:
    """frontier.frontier of the records (computed once for the summaries and the charts of
    the same records) with its `status` (bench/progress.py, against the plan of `out`'s
    benchmark.yaml): only complete budgets are points; the training split's size for
    records older than `epochs`."""
    global _last_frontier
    plan = plan_.read_plan(out) if out is not None else None
    text = json.dumps([records, plan], sort_keys=True, default=str)
    key = hashlib.sha256(text.encode()).hexdigest()
    if _last_frontier is None or _last_frontier[0] != key:
        split = train_split_tokens(records)
        status = progress.progress([frontier.with_rule(r, split) for r in records], plan)
        complete = progress.complete_budgets(status)
        shapes = (plan or {}).get("families") or {}  # the plan's shapes and published one
        result = frontier.frontier(
            records, train_split_tokens=split, complete=complete, shapes=shapes
        )
        result["status"] = {**status, "plan": plan}
        _last_frontier = (key, result)
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
        result = frontier_result(records, out)
        complete = progress.complete_budgets(result["status"])
        if not complete:
            return []  # nothing final to draw: the summary says so
        families = {  # complete budgets only: a budget in progress has no curve yet
            f: {**e, "runs": [r for r in e["runs"] if (f, r["budget"]) in complete]}
            for f, e in result["families"].items()
        }
        return write_frontier_charts({**result, "families": families}, charts_dir or out / "charts")
    return write_benchmark_charts(chart_records(experiment, records), charts_dir or out / "charts")


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
        *table(rows, SUMMARY_COLUMNS),
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
        lines += table(sweep_rows, SWEEP_COLUMNS)
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
