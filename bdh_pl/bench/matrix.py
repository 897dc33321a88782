"""The benchmark matrix: every model trained on the same data for the same budget, then
tested on its best checkpoint, in one command.

python -m bdh_pl benchmark --config configs/benchmark/smoke.yaml [--print_config]

writes results/{experiment}/: metrics.json and metrics.csv (one record per model), summary.md
(a Markdown table), charts/*.png, benchmark.yaml (the benchmark config, resolved), configs/
(the full Lightning config each model ran with) and runs/{model}/ (its Lightning logs). Each
model is two subprocesses, `python -m bdh_pl fit` then `python -m bdh_pl test`, given one
resolved config file (bench/runner.py).
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from typing import Any

import yaml

from bdh_pl.bench import record as records_
from bdh_pl.bench import report, resolve, spec
from bdh_pl.bench.record import Record
from bdh_pl.bench.runner import StageFailed, read_checkpoint_state, run_stage
from bdh_pl.bench.spec import BenchmarkSpec, ModelEntry
from bdh_pl.cli import check_writable
from bdh_pl.errors import UserError
from bdh_pl.fileio import atomic_write_text


def run_model(bench: BenchmarkSpec, entry: ModelEntry, environment: dict[str, Any]) -> Record:
    """Fit, test and measure one model; never raises for a model-specific failure."""
    out = bench.out_dir
    record = Record(model=entry.name, **environment)
    start = time.perf_counter()
    stage = "config"
    try:
        config = resolve.lightning_config(bench, entry)
        per_step = resolve.tokens_per_step(config)
        root = out / "runs" / entry.name
        shutil.rmtree(root, ignore_errors=True)  # a re-run replaces this model's logs
        config["trainer"]["default_root_dir"] = str(root)
        if entry.budget.trains:
            config["trainer"]["max_steps"] = entry.budget.max_steps(per_step)
        config_path = out / "configs" / f"{entry.name}.yaml"
        atomic_write_text(config_path, yaml.safe_dump(config, sort_keys=False))
        record.update({"config": str(config_path), "tokens_per_step": per_step})

        stage = "build"
        figures, warning = resolve.static_figures(config)
        record.update(figures)
        if warning:
            say(f"warning: {warning}")

        ckpt_args: list[str] = []
        if entry.budget.trains:
            stage = "fit"
            steps = config["trainer"]["max_steps"]
            say(f"{entry.name}: fit, {steps} steps x {per_step:,} tokens ({config_path})")
            fit_dir = run_stage("fit", config_path, root, env=bench.env)
            global_step, ckpt = read_checkpoint_state(fit_dir)
            record.update(records_.fit_figures(fit_dir, global_step, per_step))
            ckpt_args = ["--ckpt_path", str(ckpt)]
        else:
            record.update({"train_steps": 0, "train_tokens": 0})
        stage = "test"
        say(f"{entry.name}: test {ckpt_args[-1] if ckpt_args else '(zero-shot)'}")
        test_dir = run_stage("test", config_path, root, ckpt_args, bench.env)
        record.update(records_.test_figures(test_dir))
    except Exception as err:  # one model's failure must not end the matrix
        message = str(err) if isinstance(err, UserError | StageFailed) else repr(err)
        record.update({"status": "failed", "failed_stage": stage, "error": message})
    record.wall_time_s = round(time.perf_counter() - start, 1)
    record.finish()
    return record


def say(line: str) -> None:
    print(f"[benchmark] {line}", flush=True)


def run_benchmark(bench: BenchmarkSpec, command: str) -> list[dict]:
    out = bench.out_dir
    try:
        check_writable(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "benchmark.yaml", spec.as_yaml(bench))
    except (OSError, UserError):
        raise UserError(
            f"cannot write results under {str(out)!r}: set output_dir (or --output_dir) to a "
            "writable folder"
        ) from None
    records: list[dict] = []
    n = len(bench.models)
    for i, entry in enumerate(bench.models, 1):
        say(f"[{i}/{n}] {entry.name}: start")
        before = records_.environment()
        record = run_model(bench, entry, before)
        after = records_.environment()
        if before["git_commit"] is not None:  # the commit is what ran only if clean throughout
            record.git_dirty = bool(
                before["git_dirty"]
                or after["git_dirty"]
                or before["git_commit"] != after["git_commit"]
            )
        records.append(record.as_dict())
        report.write_results(out, bench.experiment, records, command)
        if record.status == "ok":
            say(
                f"[{i}/{n}] {entry.name}: done in {record.wall_time_s:.0f} s, "
                f"test bpb {record.test_bpb:.4f}, loss {record.test_loss:.4f}"
            )
        else:
            say(f"[{i}/{n}] {entry.name}: FAILED in {record.failed_stage}: {record.error}")
    for path in report.write_charts(out, bench.experiment, records):
        say(f"chart {path}")
    say(f"results in {out}/ (metrics.json, metrics.csv, summary.md, charts/)")
    return records


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    bench = spec.parse(argv)  # --help and --print_config exit here
    records = run_benchmark(bench, shlex.join(["python", "-m", "bdh_pl", "benchmark", *argv]))
    if all(r["status"] != "ok" for r in records):
        sys.exit(1)
