"""One model's record: every figure the results carry, typed, None where a model did not get
that far; and the readers that fill it from a fit run's metrics and a test run's JSON."""

from __future__ import annotations

import dataclasses
import itertools
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bdh_pl import charts
from bdh_pl.training.glue.loggers import git


@dataclass
class Record:
    """Fields in table order (metrics.csv columns); see docs/benchmark.md for each."""

    model: str
    family: str | None = None
    status: str = "running"  # until the run ends: "ok", "failed", or "bound" (not run: `bound`)
    failed_stage: str | None = None
    error: str | None = None
    setting: str | None = None
    seed: int | None = None
    selected: bool | None = None
    learning_rate: float | None = None
    dropout: float | None = None
    weight_decay: float | None = None
    budget: str | None = None
    budget_flops: float | None = None
    frontier_point: bool | None = None
    sweep: str | None = None  # the sweep a run belongs to: `lr@2e12`, `shape@2e12`; else None
    shape: str | None = None  # a family's shape (ModelEntry.shapes), when shapes are compared
    learning_rate_source: str | None = None  # `sweep@2e12`, `interpolated log-linear ...`
    ladder_edge: str | None = None  # a frontier point at the ladder's end: why no neighbour
    model_class: str | None = None
    dataset: str | None = None
    tokenizer: str | None = None
    block_size: int | None = None
    params: int | None = None
    non_embedding_params: int | None = None
    train_steps: int | None = None
    train_tokens: int | None = None
    tokens_per_step: int | None = None
    warmup_steps: int | None = None
    train_flops: float | None = None  # tokens x train_flops_per_token: the 3x-forward rule
    train_flops_measured: float | None = None  # tokens x the counted forward + backward
    train_split_tokens: int | None = None  # tokens of the training split
    epochs: float | None = None  # train_tokens (planned until trained) / train_split_tokens
    bound: str | None = None  # why the run is not a usable point (not run), else None
    best_step: int | None = None
    best_val_loss: float | None = None
    best_val_bpb: float | None = None
    test_loss: float | None = None
    test_ppl: float | None = None
    test_bpb: float | None = None
    test_byte_ppl: float | None = None
    test_word_ppl: float | None = None
    test_tokens: float | None = None
    train_tokens_per_sec: float | None = None
    eval_tokens_per_sec: float | None = None
    flops_per_token: float | None = None
    train_flops_per_token: float | None = None
    train_flops_per_token_measured: float | None = None
    mfu: float | None = None
    peak_memory_mb: float | None = None
    train_peak_memory_mb: float | None = None
    test_peak_memory_mb: float | None = None
    memory_kind: str | None = None
    device: str | None = None
    precision: str | None = None
    checkpoint: str | None = None
    config: str | None = None
    config_hash: str | None = None
    fit_run: str | None = None
    test_run: str | None = None
    wall_time_s: float | None = None
    fit_time_s: float | None = None
    load_avg_start: float | None = None
    load_avg_end: float | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    torch_version: str | None = None
    lightning_version: str | None = None

    def update(self, figures: dict[str, Any]) -> None:
        for key, value in figures.items():
            setattr(self, key, value)  # a misspelt key fails below, not silently
        self.__post_init__()

    def __post_init__(self) -> None:
        if extra := set(vars(self)) - set(KEYS):
            raise AttributeError(f"Record has no fields {sorted(extra)}")

    def finish(self) -> None:
        if self.status == "running":
            self.status = "ok"
        peaks = [p for p in (self.train_peak_memory_mb, self.test_peak_memory_mb) if p]
        self.peak_memory_mb = max(peaks) if peaks else None
        if self.train_tokens is not None and self.train_flops_per_token is not None:
            self.train_flops = self.train_tokens * self.train_flops_per_token
        if self.train_tokens is not None and self.train_split_tokens:
            self.epochs = self.train_tokens / self.train_split_tokens
        if self.train_tokens is not None and self.train_flops_per_token_measured is not None:
            self.train_flops_measured = self.train_tokens * self.train_flops_per_token_measured

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


KEYS = [f.name for f in dataclasses.fields(Record)]


def fit_figures(fit_dir: Path, global_step: int | None, per_step: int) -> dict[str, Any]:
    """Steps, tokens, best validation point, training throughput, MFU and peak memory of a fit
    run, from its metrics (the Throughput callback's `train/*`)."""
    curves = charts.read_metrics(fit_dir)
    # The checkpoint's step, or later when the clock (max_time) ended the run after it.
    # (train/loss is logged at the end of a step: row s after s + 1 steps.)
    logged = max((s + 1 for s, _ in curves.get("train/loss", [])), default=0)
    steps = max(global_step or 0, logged)
    figures: dict[str, Any] = {
        "fit_run": str(fit_dir),
        "train_steps": steps,
        "train_tokens": steps * per_step,
    }
    if val := curves.get("val/loss"):
        best_step, best = min(val, key=lambda p: p[1])
        bpb = dict(curves.get("val/bpb", []))
        figures.update(best_step=best_step + 1, best_val_loss=best, best_val_bpb=bpb.get(best_step))
    tokens, seconds = curves.get("train/lengths"), curves.get("train/time")
    if tokens and seconds and seconds[-1][1] > 0:
        figures["train_tokens_per_sec"] = tokens[-1][1] / seconds[-1][1]
    elif rates := [v for _, v in curves.get("train/tokens_per_sec", [])]:
        figures["train_tokens_per_sec"] = statistics.median(rates)  # runs before the callback
    if mfu := curves.get("train/mfu"):
        figures["mfu"] = mfu[-1][1]  # the whole run, validation excluded
    if peaks := [v for _, v in curves.get("train/peak_memory_mb", [])]:
        figures["train_peak_memory_mb"] = max(peaks)
    return figures


def logged_seconds_before_resumes(fit_dir: Path) -> float:
    """Training seconds of a fit's parts before its last resume, as its metrics logged them:
    the ThroughputMonitor's running `train/time` (validation excluded) restarts with each part,
    so each part's last value counts. The only record of that time in a checkpoint saved before
    Lightning's Timer was added to every fit."""
    times = [t for _, t in charts.read_metrics(fit_dir).get("train/time", [])]
    return sum(t for t, after in itertools.pairwise(times) if after < t)


def test_figures(test_dir: Path) -> dict[str, Any]:
    """The test metrics and what produced them, from the test run's test_metrics.json."""
    from bdh_pl.bench.runner import StageFailed

    path = test_dir / "test_metrics.json"
    if not path.is_file():
        raise StageFailed(f"test wrote no {path}")
    result = json.loads(path.read_text())
    metrics = result["metrics"]
    figures = {
        f"test_{k}": metrics.get(f"test/{k}")
        for k in ("loss", "ppl", "bpb", "byte_ppl", "word_ppl", "tokens")
    }
    figures.update(
        test_run=str(test_dir),
        eval_tokens_per_sec=metrics.get("test/tokens_per_sec"),
        test_peak_memory_mb=metrics.get("test/peak_memory_mb"),
    )
    context = ("checkpoint", "dataset", "tokenizer", "block_size", "params", "device")
    context += ("non_embedding_params", "memory_kind", "precision")
    # What the test run says of itself; a key it leaves out keeps the value counted before.
    figures.update({k: result[k] for k in context if result.get(k) is not None})
    return figures


def environment(cwd: Path | None = None) -> dict[str, Any]:
    """Which code ran: git commit and whether tracked files differ from it (of the repository
    at `cwd`, default this process's folder), torch, Lightning. Files under results/ do not
    count: a benchmark rewrites its own committed snapshot as it runs, which changes no code."""
    import lightning
    import torch

    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results", cwd=cwd)
    return {
        "git_commit": git("rev-parse", "HEAD", cwd=cwd),
        "git_dirty": bool(status) if status is not None else None,
        "torch_version": torch.__version__,
        "lightning_version": lightning.__version__,
    }


def reusable(record: dict) -> bool:
    """A finished run, or one whose fit finished before the benchmark was stopped."""
    finished = record.get("status") == "ok"
    fitted = record.get("status") == "running" and record.get("train_steps") is not None
    return bool(record.get("config_hash")) and (finished or fitted)
