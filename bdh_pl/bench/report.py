"""The results of a benchmark: metrics.json, metrics.csv, summary.md (rewritten after every
model) and the charts (tools/plot.py)."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from pathlib import Path

from matplotlib.ticker import EngFormatter

from bdh_pl.bench.record import KEYS
from bdh_pl.fileio import atomic_write_text, write_json
from bdh_pl.tools import plot as plotting


def write_results(out: Path, experiment: str, records: list[dict], command: str) -> None:
    write_json(
        out / "metrics.json",
        {
            "experiment": experiment,
            "command": command,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": str(out / "benchmark.yaml"),
            "records": records,
        },
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=KEYS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(out / "metrics.csv", buffer.getvalue())
    atomic_write_text(out / "summary.md", summary_markdown(experiment, records, command))


def write_charts(out: Path, experiment: str, records: list[dict]) -> list[Path]:
    return plotting.write_benchmark_charts(records, experiment, out / "charts")


SUMMARY_COLUMNS = [
    ("model", "model", str),
    ("params", "params", "count"),
    ("non-emb. params", "non_embedding_params", "count"),
    ("tokenizer", "tokenizer", str),
    ("train tokens", "train_tokens", "count"),
    ("test loss", "test_loss", "{:.3f}"),
    ("test ppl", "test_ppl", "{:.2f}"),
    ("test bpb", "test_bpb", "{:.3f}"),
    ("word ppl", "test_word_ppl", "{:,.0f}"),
    ("train tok/s", "train_tokens_per_sec", "{:,.0f}"),
    ("eval tok/s", "eval_tokens_per_sec", "{:,.0f}"),
    ("FLOPs/token fwd", "flops_per_token", "count"),
    ("peak MB", "peak_memory_mb", "{:,.0f}"),
]


def _cell(value, fmt) -> str:
    if value is None:
        return "–"
    if fmt == "count":
        return EngFormatter(places=1, sep="")(value)
    return fmt(value) if callable(fmt) else fmt.format(value)


def summary_markdown(experiment: str, records: list[dict], command: str) -> str:
    ok = [r for r in records if r["status"] == "ok"]
    first = ok[0] if ok else records[0]
    lines = [
        f"# Benchmark `{experiment}`",
        "",
        f"`{command}`",
        "",
        f"Dataset {first['dataset'] or '?'}; device {first['device'] or '?'}, precision "
        f"{first['precision'] or '?'}; torch {first['torch_version']}, lightning "
        f"{first['lightning_version']}; git {(first['git_commit'] or '?')[:12]}"
        f"{' (uncommitted changes)' if first['git_dirty'] else ''}.",
        "",
        "| " + " | ".join(h for h, _, _ in SUMMARY_COLUMNS) + " |",
        "|" + "|".join("---" if k in ("model", "tokenizer") else "---:" for _, k, _ in SUMMARY_COLUMNS)
        + "|",
    ]  # fmt: skip
    for r in records:
        lines.append("| " + " | ".join(_cell(r.get(k), f) for _, k, f in SUMMARY_COLUMNS) + " |")
    lines += [
        "",
        "bpb (bits per UTF-8 byte of the test text) and word perplexity compare across "
        "tokenizers; test loss and ppl are per the model's own token (byte or BPE) and do not. "
        "Train tok/s: training tokens over training time, validation excluded (Lightning's "
        "ThroughputMonitor); eval tok/s: the whole test pass. FLOPs/token: forward, counted by "
        "torch's FlopCounterMode on one full block (a training step is about 3x). Peak "
        f"memory: {first['memory_kind'] or '?'} (`cuda`: max allocated; `cpu_rss`: process "
        "peak RSS), the larger of the train and test phases.",
    ]
    if failed := [r for r in records if r["status"] != "ok"]:
        lines += ["", "Failed:", ""]
        lines += [f"- `{r['model']}` in {r['failed_stage']}: {r['error']}" for r in failed]
    charts = ", ".join(f"[{c}](charts/{c}.png)" for c in plotting.BENCHMARK_CHARTS)
    lines += ["", f"Charts: {charts}.", ""]
    return "\n".join(lines)
