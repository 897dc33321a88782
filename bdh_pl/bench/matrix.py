"""The benchmark matrix: every model trained on the same data for the same budget (tokens,
FLOPs, seconds or steps), each with its best sweep setting by validation loss, on one or more
seeds, then tested on its best checkpoint, in one command; or a compute frontier (`budgets`
and per model a ladder of sizes: bench/frontier.py).

python -m bdh_pl benchmark --config configs/benchmark/smoke.yaml [--print_config]

writes results/{experiment}/: metrics.json and metrics.csv (one record per run), summary.md
(a Markdown table per model), charts/*.png, benchmark.yaml (the benchmark config, resolved),
configs/{model}/{setting}-seed{seed}.yaml (the full Lightning config of each run) and
runs/{model}/{setting}-seed{seed}/ (its Lightning logs); a frontier adds frontier.json and
frontier.csv, and a budget level to those paths. Each run is two subprocesses,
`python -m bdh_pl fit` then `python -m bdh_pl test`, given one resolved config file
(bench/runner.py); `jobs` of them run at once.

Run again, the same command resumes: a run whose record says it finished (same resolved
config) is not run again, so an interruption loses only the runs in flight.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bdh_pl.bench import report, spec, stats
from bdh_pl.bench.budget import Budget, Setting, Size, budget_text, budget_windows
from bdh_pl.bench.runs import Run, RunQueue, reusable, say, wait
from bdh_pl.bench.spec import BenchmarkSpec, ModelEntry
from bdh_pl.errors import UserError
from bdh_pl.fileio import atomic_write_text, check_writable, lock_folder


class Matrix(RunQueue):
    """Runs the benchmark: for each model, every sweep setting on the first seed (fit only
    when there is a choice), the best by validation loss tested, then repeated on the other
    seeds; or a compute frontier's plan per family (run_family). A failure ends that run
    only. Each model's plan waits only for its own runs."""

    def run(self) -> list[dict]:
        plan = self.run_family if self.bench.frontier else self.run_model
        n = len(self.bench.models)
        tagged = [
            (entry, f"[{i}/{n}] {entry.name}") for i, entry in enumerate(self.bench.models, 1)
        ]
        try:
            if self.bench.jobs == 1:
                for entry, tag in tagged:
                    say(f"{tag}: start")
                    plan(entry, tag)
            else:  # every model's plan at once: their runs share the pool
                with ThreadPoolExecutor(n, thread_name_prefix="model") as models:
                    for future in [models.submit(plan, entry, tag) for entry, tag in tagged]:
                        future.result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        records = self.write()
        for path in report.write_charts(self.bench.out_dir, self.bench.experiment, records):
            say(f"chart {path}")
        say(f"results in {self.bench.out_dir}/ (metrics.json, metrics.csv, summary.md, charts/)")
        return records

    def run_model(self, entry: ModelEntry, tag: str) -> None:
        trains = entry.budget.trains
        settings = entry.sweep.settings() if entry.sweep and trains else [Setting()]
        seeds: list[int | None] = list(self.bench.seeds or [None]) if trains else [None]
        choosing = len(settings) > 1
        first = [self.start(entry, setting, seeds[0]) for setting in settings]
        wait([self.submit(run, tag, test=not choosing) for run in first])
        if choosing:
            chosen = self.choose(first, tag, "lowest validation loss")
            if chosen is None:
                return
            wait([self.submit(chosen, tag, fit=False, test=True)])
        else:
            chosen = first[0]
        repeats = [self.start(entry, chosen.setting, seed) for seed in seeds[1:]]
        wait([self.submit(run, tag, test=True) for run in repeats])

    def run_family(self, entry: ModelEntry, tag: str) -> None:
        """A compute frontier's plan for one family: the learning-rate sweep on one size at
        the smallest budget; every (budget, size) of the ladder's windows with the chosen
        setting; at each budget the best size (lowest validation loss) tested and repeated
        on the other seeds."""
        budgets, sizes = self.bench.budgets, entry.sizes
        seeds: list[int | None] = list(self.bench.seeds or [None])
        windows = budget_windows(sizes, entry.sizes_per_budget, entry.windows, len(budgets))
        sized = {
            (i, s.name): _sized(entry, s, budgets[i]) for i, w in enumerate(windows) for s in w
        }
        group = [_budget_group(b) for b in budgets]

        settings = entry.sweep.settings() if entry.sweep else [Setting()]
        sweep = [
            self.start(sized[0, entry.sweep_size], s, seeds[0], entry.name, group[0])
            for s in settings
        ]
        wait([self.submit(run, tag) for run in sweep])
        chosen = self.choose(sweep, tag, f"lowest validation loss of {entry.sweep_size}")
        if chosen is None:
            return
        cells: dict[int, list[Run]] = {i: [] for i in range(len(budgets))}
        cells[0].append(chosen)
        for i, window in enumerate(windows):
            for size in window:
                if (i, size.name) != (0, entry.sweep_size):
                    cells[i].append(
                        self.start(
                            sized[i, size.name], chosen.setting, seeds[0], entry.name, group[i]
                        )
                    )
        wait(
            [self.submit(run, tag) for runs in cells.values() for run in runs if run is not chosen]
        )

        futures = []
        for i, runs in cells.items():
            best = stats.select_best([r.record.as_dict() for r in runs])
            if best is None:
                say(f"{tag} {group[i]}: every run failed")
                continue
            point = runs[best]
            say(f"{tag} {group[i]}: frontier point {point.entry.name}")
            for run in runs:
                run.record.frontier_point = run is point
            futures.append(self.submit(point, tag, fit=False, test=True))
            for seed in seeds[1:]:
                repeat = self.start(point.entry, chosen.setting, seed, entry.name, group[i])
                repeat.record.frontier_point = True
                futures.append(self.submit(repeat, tag, test=True))
        wait(futures)

    def choose(self, runs: list[Run], tag: str, why: str) -> Run | None:
        """The run with the lowest validation loss; marks the runs chosen or not."""
        best = stats.select_best([r.record.as_dict() for r in runs])
        for j, run in enumerate(runs):
            run.record.selected = j == best
        self.write()
        if best is None:
            say(f"{tag}: every sweep run failed")
            return None
        say(f"{tag}: chosen {runs[best].setting.label} ({why})")
        return runs[best]


def _sized(entry: ModelEntry, size: Size, budget: Budget) -> ModelEntry:
    """One size of a family at one budget, as a model of its own."""
    return ModelEntry(
        entry.configs, size.name, {**entry.model_args, **size.model_args}, budget, None
    )


def _budget_group(budget: Budget) -> str:
    """A budget as a folder name: `flops1e+13` -> `flops1e13`."""
    return budget_text(budget).replace(" ", "").replace("+", "")


def previous_records(out: Path) -> list[dict]:
    """The records of an earlier invocation into the same folder (none if unreadable)."""
    try:
        return json.loads((out / "metrics.json").read_text())["records"]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def run_benchmark(bench: BenchmarkSpec, command: str, resume: bool = True) -> list[dict]:
    out = bench.out_dir
    hint = "set output_dir (or --output_dir) to a writable folder"
    check_writable(out, hint)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError:
        raise UserError(f"cannot write under {str(out)!r}: {hint}") from None
    lock = lock_folder(out)
    if lock is None:
        raise UserError(
            f"another benchmark is writing to {str(out)!r}: wait for it to end, or give this "
            "one another experiment name or output_dir"
        )
    try:
        atomic_write_text(out / "benchmark.yaml", spec.as_yaml(bench))
        previous = previous_records(out) if resume else []
        if kept := sum(reusable(r) for r in previous):
            say(f"resuming: {kept} records of an earlier run in {out}/")
        return Matrix(bench, command, previous).run()
    finally:
        os.close(lock)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    bench = spec.parse(argv)  # --help and --print_config exit here
    records = run_benchmark(bench, shlex.join(["python", "-m", "bdh_pl", "benchmark", *argv]))
    if all(r["status"] != "ok" for r in records):
        sys.exit(1)
