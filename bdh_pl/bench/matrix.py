"""The benchmark matrix: every model trained on the same data for the same budget (tokens,
FLOPs, seconds or steps), each with its best sweep setting by validation loss, on one or more
seeds, then tested on its best checkpoint, in one command.

python -m bdh_pl benchmark --config configs/benchmark/smoke.yaml [--print_config]

writes results/{experiment}/: metrics.json and metrics.csv (one record per run), summary.md
(a Markdown table per model), charts/*.png, benchmark.yaml (the benchmark config, resolved),
configs/{model}/{setting}-seed{seed}.yaml (the full Lightning config of each run) and
runs/{model}/{setting}-seed{seed}/ (its Lightning logs). Each run is two subprocesses,
`python -m bdh_pl fit` then `python -m bdh_pl test`, given one resolved config file
(bench/runner.py).
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bdh_pl.bench import record as records_
from bdh_pl.bench import report, resolve, spec, stats
from bdh_pl.bench.record import Record
from bdh_pl.bench.runner import StageFailed, read_checkpoint_state, run_stage
from bdh_pl.bench.spec import BenchmarkSpec, ModelEntry, Setting
from bdh_pl.errors import UserError
from bdh_pl.fileio import atomic_write_text, check_writable


@dataclass
class Run:
    """One training run of a model: a sweep setting and a seed, its files and its record."""

    entry: ModelEntry
    setting: Setting
    record: Record
    stage: str = "config"
    config_path: Path | None = None
    root: Path | None = None
    ckpt_args: list[str] = field(default_factory=list)
    before: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.record.status == "ok"


class Matrix:
    """Runs the benchmark: for each model, every sweep setting on the first seed (fit only
    when there is a choice), the best by validation loss tested, then repeated on the other
    seeds; results rewritten after every step. A failure ends that run only."""

    def __init__(self, bench: BenchmarkSpec, command: str) -> None:
        self.bench, self.command = bench, command
        self.records: list[Record] = []
        self._seconds_per_step: dict[str, float] = {}

    def run(self) -> list[dict]:
        n = len(self.bench.models)
        for i, entry in enumerate(self.bench.models, 1):
            say(f"[{i}/{n}] {entry.name}: start")
            self.run_model(entry, f"[{i}/{n}] {entry.name}")
        records = self.write()
        for path in report.write_charts(self.bench.out_dir, self.bench.experiment, records):
            say(f"chart {path}")
        say(f"results in {self.bench.out_dir}/ (metrics.json, metrics.csv, summary.md, charts/)")
        return records

    def write(self) -> list[dict]:
        records = [r.as_dict() for r in self.records]
        report.write_results(self.bench.out_dir, self.bench.experiment, records, self.command)
        return records

    def run_model(self, entry: ModelEntry, tag: str) -> None:
        trains = entry.budget.trains
        settings = entry.sweep.settings() if entry.sweep and trains else [Setting()]
        seeds: list[int | None] = list(self.bench.seeds or [None]) if trains else [None]
        choosing = len(settings) > 1
        first = []
        for setting in settings:
            run = self.start(entry, setting, seeds[0])
            run.record.selected = not choosing  # a sweep run is chosen after all have run
            self.fit(run)
            if not choosing:
                self.test(run)
            self.end(run, tag)
            first.append(run)
        if choosing:
            best = stats.select_best([r.record.as_dict() for r in first])
            for j, run in enumerate(first):
                run.record.selected = j == best
            if best is None:
                say(f"{tag}: every sweep run failed")
                self.write()
                return
            winner = first[best]
            say(f"{tag}: chosen {winner.setting.label} (lowest validation loss)")
            self.test(winner)
            self.end(winner, tag)
        chosen = first[best] if choosing else first[0]
        for seed in seeds[1:]:
            run = self.start(entry, chosen.setting, seed)
            self.fit(run)
            self.test(run)
            self.end(run, tag)

    def start(self, entry: ModelEntry, setting: Setting, seed: int | None) -> Run:
        """Resolve, build, size and write one run's config; the record joins the results."""
        bench = self.bench
        before = records_.environment()
        record = Record(model=entry.name, setting=setting.label, selected=True, **before)
        record.budget = _budget_text(entry.budget)
        self.records.append(record)
        run = Run(entry, setting, record, before=before)
        start = time.perf_counter()
        try:
            config = resolve.apply_setting(resolve.lightning_config(bench, entry), setting, seed)
            model = config["model"]["init_args"]
            record.update(
                {k: model.get(k) for k in ("learning_rate", "dropout", "weight_decay")}
                | {"seed": resolve.run_seed(config)}
            )
            per_step = resolve.tokens_per_step(config)
            name = f"{setting.label}-seed{record.seed}"
            run.root = bench.out_dir / "runs" / entry.name / name
            shutil.rmtree(run.root, ignore_errors=True)  # a re-run replaces this run's logs
            config["trainer"]["default_root_dir"] = str(run.root)
            record.tokens_per_step = per_step

            run.stage = "build"
            built, datamodule = resolve.build(config)
            figures, warning = resolve.static_figures(built, datamodule)
            record.update(figures)
            if warning:
                say(f"warning: {warning}")
            if entry.budget.trains:
                run.stage = "budget"
                self.size(run, config, built, datamodule)
            run.config_path = bench.out_dir / "configs" / entry.name / f"{name}.yaml"
            atomic_write_text(run.config_path, yaml.safe_dump(config, sort_keys=False))
            record.config = str(run.config_path)
        except Exception as err:
            self.fail(run, err)
        record.wall_time_s = round(time.perf_counter() - start, 1)
        return run

    def size(self, run: Run, config: dict[str, Any], model, datamodule) -> None:
        """The budget as max_steps (max_time for seconds) and the schedule's length."""
        budget, record = run.entry.budget, run.record
        seconds_per_step = None
        if budget.seconds is not None:
            key = run.entry.name  # speed does not depend on the setting or the seed
            if key not in self._seconds_per_step:
                threads = self.bench.env.get("OMP_NUM_THREADS")
                self._seconds_per_step[key] = resolve.seconds_per_step(
                    model, datamodule, config, int(threads) if threads else None
                )
            seconds_per_step = self._seconds_per_step[key]
        steps = budget.max_steps(
            record.tokens_per_step, record.train_flops_per_token, seconds_per_step
        )
        trainer, model_args = config["trainer"], config["model"]["init_args"]
        if budget.seconds is not None:
            trainer["max_time"] = {"seconds": math.ceil(budget.seconds)}
            trainer["max_steps"] = -1  # the clock ends the run
            say(
                f"{run.entry.name}: {seconds_per_step:.3f} s per step here, "
                f"schedule {steps} steps for {budget.seconds:g} s"
            )
        else:
            trainer["max_steps"] = steps
        if "lr_decay_steps" in model_args:
            model_args["lr_decay_steps"] = steps

    def fit(self, run: Run) -> None:
        if not run.ok:
            return
        record, start = run.record, time.perf_counter()
        if not run.entry.budget.trains:
            record.update({"train_steps": 0, "train_tokens": 0})
            return
        run.stage = "fit"
        try:
            config = yaml.safe_load(run.config_path.read_text())
            steps = config["trainer"]["max_steps"]
            steps_text = f"{steps} steps" if steps > 0 else "until the clock ends it"
            say(
                f"{run.entry.name} {run.setting.label} seed {record.seed}: fit, {steps_text} x "
                f"{record.tokens_per_step:,} tokens ({run.config_path})"
            )
            record.load_avg_start = _load_average()
            fit_dir = run_stage("fit", run.config_path, run.root, env=self.bench.env)
            record.load_avg_end = _load_average()
            global_step, ckpt = read_checkpoint_state(fit_dir)
            record.update(records_.fit_figures(fit_dir, global_step, record.tokens_per_step))
            run.ckpt_args = ["--ckpt_path", str(ckpt)]
        except Exception as err:
            self.fail(run, err)
        record.fit_time_s = round(time.perf_counter() - start, 1)
        record.wall_time_s = round((record.wall_time_s or 0) + record.fit_time_s, 1)

    def test(self, run: Run) -> None:
        if not run.ok:
            return
        record, start = run.record, time.perf_counter()
        run.stage = "test"
        try:
            what = run.ckpt_args[-1] if run.ckpt_args else "(zero-shot)"
            say(f"{run.entry.name} {run.setting.label} seed {record.seed}: test {what}")
            test_dir = run_stage("test", run.config_path, run.root, run.ckpt_args, self.bench.env)
            record.update(records_.test_figures(test_dir))
        except Exception as err:
            self.fail(run, err)
        record.wall_time_s = round((record.wall_time_s or 0) + time.perf_counter() - start, 1)

    def fail(self, run: Run, err: Exception) -> None:
        message = str(err) if isinstance(err, UserError | StageFailed) else repr(err)
        run.record.update({"status": "failed", "failed_stage": run.stage, "error": message})

    def end(self, run: Run, tag: str) -> None:
        """Close a run's record (peak memory, FLOPs, whether the code changed while it ran)
        and rewrite the results."""
        record = run.record
        record.finish()
        after = records_.environment()
        if run.before["git_commit"] is not None:  # the commit is what ran only if clean throughout
            record.git_dirty = bool(
                run.before["git_dirty"]
                or after["git_dirty"]
                or run.before["git_commit"] != after["git_commit"]
            )
        self.write()
        what = f"{run.setting.label} seed {record.seed}"
        if not run.ok:
            say(f"{tag} {what}: FAILED in {record.failed_stage}: {record.error}")
        elif record.test_bpb is not None:
            say(
                f"{tag} {what}: done in {record.wall_time_s:.0f} s, test bpb "
                f"{record.test_bpb:.4f}, loss {record.test_loss:.4f}"
            )
        else:
            say(
                f"{tag} {what}: trained in {record.wall_time_s:.0f} s, best validation loss "
                f"{record.best_val_loss:.4f} at step {record.best_step}"
            )


def _budget_text(budget) -> str:
    value = getattr(budget, budget.kind, None)
    return budget.kind if value is None or value is True else f"{budget.kind} {value:g}"


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not on every platform
        return None


def say(line: str) -> None:
    print(f"[benchmark] {line}", flush=True)


def run_benchmark(bench: BenchmarkSpec, command: str) -> list[dict]:
    out = bench.out_dir
    hint = "set output_dir (or --output_dir) to a writable folder"
    check_writable(out, hint)
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "benchmark.yaml", spec.as_yaml(bench))
    except OSError:
        raise UserError(f"cannot write under {str(out)!r}: {hint}") from None
    return Matrix(bench, command).run()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    bench = spec.parse(argv)  # --help and --print_config exit here
    records = run_benchmark(bench, shlex.join(["python", "-m", "bdh_pl", "benchmark", *argv]))
    if all(r["status"] != "ok" for r in records):
        sys.exit(1)
