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

import dataclasses
import os
import shlex
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bdh_pl.bench import plan as plan_
from bdh_pl.bench import record as records_
from bdh_pl.bench import report, spec, stats
from bdh_pl.bench.budget import Budget, Setting, Shape, Size, Sweep, budget_text, budget_windows
from bdh_pl.bench.ladder import (
    StopRule,
    budget_groups,
    edge_reason,
    flops_text,
    next_size,
    rate_between,
    run_label,
)
from bdh_pl.bench.plan import plan_lines, previous_records
from bdh_pl.bench.progress import STOPPED
from bdh_pl.bench.record import Record
from bdh_pl.bench.run_queue import Run, RunQueue, say, wait
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
        self._finals: dict[tuple[str, int], float | None] = {}  # (family, budget): best bpb
        self._finals_changed = threading.Condition()
        n = len(self.bench.models)
        tagged = [
            (entry, f"[{i}/{n}] {entry.name}") for i, entry in enumerate(self.bench.models, 1)
        ]
        if self.bench.frontier:  # a family that waits on another's budgets runs after it
            tagged.sort(key=lambda t: t[0].stop_after_behind is not None)
            family_plan = plan

            def plan(entry: ModelEntry, tag: str) -> None:
                try:
                    family_plan(entry, tag)
                finally:  # a family that ends, even failing, keeps no other waiting
                    self.publish(entry.name, [], range(len(self.bench.budgets)))

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
        records = self.write(final=True)
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
        """A compute frontier's plan for one family (docs/benchmark.md): its shapes compared
        and the learning rate swept on one size at the smallest budget (and again at each of
        `lr_sweeps`, before the budgets up to it), each sweep widened until its best is
        interior; every (budget, size) of the ladder's windows at the rate for its budget;
        at each budget, while the best size is the smallest or largest tried, the next size
        of the ladder; the best size (lowest validation loss) tested and repeated on the
        other seeds."""
        bench, sizes = self.bench, entry.sizes
        budgets, seed = bench.budgets, (bench.seeds or [None])[0]
        values = [getattr(b, b.kind) for b in budgets]
        windows = [
            [sizes.index(s) for s in w]
            for w in budget_windows(sizes, entry.sizes_per_budget, entry.windows, len(budgets))
        ]
        at = [n.name for n in sizes].index(entry.sweep_size)
        if entry.shapes:
            shape, chosen = self.search_shapes(entry, at, seed, tag)
        else:
            shape, chosen = None, self.sweep(entry, None, at, 0, seed, tag, entry.sweep, "lr")
        if chosen is None:
            return
        cells: list[dict[int, Run]] = [{} for _ in budgets]
        cells[0][at] = chosen
        scales = {values[0]: chosen.setting.lr_scale}
        later = {values.index(s.budget): s for s in bench.lr_sweeps or []}
        base = chosen.setting

        def sweep_at(j: int) -> bool:
            """The sweep at budget j on its window's middle size (False: every run failed)."""
            if values[j] not in scales:
                middle = windows[j][len(windows[j]) // 2]
                previous = scales[max(c for c in scales if c < values[j])]
                grid = later[j].grid(entry.sweep, previous)
                run = self.sweep(entry, shape, middle, j, seed, tag, grid, "lr")
                if run is None:
                    return False
                cells[j][middle], scales[values[j]] = run, run.setting.lr_scale
            return True

        def start(i: int, k: int) -> Run:
            scale, source = rate_between(scales, values[i])
            setting = dataclasses.replace(base, lr_scale=scale)
            run = self.start(_sized(entry, sizes[k], budgets[i], shape), setting, seed,
                             entry.name, _budget_group(budgets[i]))  # fmt: skip
            run.record.update({"learning_rate_source": source, "shape": _name(shape)})
            return run

        rule, done = entry.stop_after_behind, 0
        for group in budget_groups(len(budgets), list(later), one_by_one=rule is not None):
            if rule is not None and self.behind(entry, rule, group[0], tag):
                break
            unswept = [i for i in group if values[i] not in scales]
            top = next((j for j in sorted(later) if unswept and j >= max(unswept)), None)
            if top is not None and not sweep_at(top):
                return
            self.ladder(entry, cells, windows, start, group, tag)
            done = group[-1] + 1
        self.points(entry, cells[:done], tag)

    def ladder(
        self, entry: ModelEntry, cells: list[dict[int, Run]], windows: list[list[int]],
        start: Callable[[int, int], Run], budgets: Iterable[int], tag: str,
    ) -> None:  # fmt: skip
        """The windows of `budgets`, then each budget's next size while its best is at an
        edge; each budget's best published (for stop rules) once it is final."""
        budgets, n = list(budgets), len(entry.sizes)
        todo = [(i, k) for i in budgets for k in windows[i]]
        while todo:
            new = [cells[i].setdefault(k, start(i, k)) for i, k in todo if k not in cells[i]]
            wait([self.submit(run, tag) for run in new])
            todo = [(i, k) for i in budgets if (k := next_size(_results(cells[i]), n)) is not None]
            self.publish(entry.name, cells, [i for i in budgets if i not in {j for j, _ in todo}])

    def publish(self, family: str, cells: list[dict[int, Run]], budgets: Iterable[int]) -> None:
        """Each budget's best validation bpb (first seed; None: no usable run, or none in
        `cells`), once final."""
        with self._finals_changed:
            for i in budgets:
                if (family, i) not in self._finals:
                    cell = cells[i] if i < len(cells) else {}
                    bpb = [r["best_val_bpb"] for r in _results(cell).values()
                           if r.get("status") == "ok" and r.get("best_val_bpb") is not None]  # fmt: skip
                    self._finals[family, i] = min(bpb) if bpb else None
            self._finals_changed.notify_all()

    def behind(self, entry: ModelEntry, rule: StopRule, i: int, tag: str) -> bool:
        """Whether the family stops before budget i: behind `rule.family` (higher best bpb)
        at the `rule.budgets` budgets before it; its budgets from i recorded as stopped."""
        if i < rule.budgets:
            return False
        before = range(i - rule.budgets, i)
        with self._finals_changed:
            self._finals_changed.wait_for(
                lambda: all((f, j) in self._finals for f in (entry.name, rule.family)
                            for j in before)
            )  # fmt: skip
            pairs = [(self._finals[entry.name, j], self._finals[rule.family, j]) for j in before]
        if not all(own is not None and other is not None and own > other for own, other in pairs):
            return False
        labels = [budget_text(self.bench.budgets[j]) for j in before]
        why = (
            f"{STOPPED}{entry.name} was behind {rule.family} at {rule.budgets} "
            f"budget{'s' * (rule.budgets != 1)} in a row ("
            + ", ".join(f"{b}: {own:.3f} against {other:.3f} bpb"
                        for b, (own, other) in zip(labels, pairs, strict=True))
            + f"): stop_after_behind {{family: {rule.family}, budgets: {rule.budgets}}}"
        )  # fmt: skip
        for budget in self.bench.budgets[i:]:
            record = Record(model=entry.name, family=entry.name, status="bound", bound=why,
                            budget=budget_text(budget), budget_flops=budget.flops,
                            **records_.environment(self._cwd))  # fmt: skip
            with self._lock:
                self.records.append(record)
        say(f"{tag}: {why}")
        self.write()
        return True

    def points(self, entry: ModelEntry, cells: list[dict[int, Run]], tag: str) -> None:
        """At each budget the best size is the frontier point: tested, and repeated (fit +
        test) on the other seeds at the `repeat_largest` largest budgets."""
        seeds, n = list(self.bench.seeds or [None]), len(self.bench.budgets)
        repeated = range(n - (self.bench.repeat_largest or n), n)
        names = [s.name for s in entry.sizes]
        futures = []
        for i, runs in enumerate(cells):
            ordered = [runs[k] for k in sorted(runs)]
            best = stats.select_best([r.record.as_dict() for r in ordered])
            group = _budget_group(self.bench.budgets[i])
            if best is None:
                say(f"{tag} {group}: no run ended with a validation loss")
                continue
            point = ordered[best]
            edge = edge_reason(_results(runs), names)
            say(
                f"{tag} {group}: frontier point {point.entry.name}" + (f" ({edge})" if edge else "")
            )
            for run in ordered:
                run.record.frontier_point = run is point
            point.record.ladder_edge = edge
            futures.append(self.submit(point, tag, fit=False, test=True))
            for other in seeds[1:] if i in repeated else []:
                repeat = self.start(point.entry, point.setting, other, entry.name, group)
                repeat.record.update(
                    {k: getattr(point.record, k) for k in ("learning_rate_source", "shape")}
                    | {"frontier_point": True, "ladder_edge": edge}
                )
                futures.append(self.submit(repeat, tag, test=True))
        wait(futures)

    def sweep(
        self, entry: ModelEntry, shape: Shape | None, k: int, i: int, seed: int | None,
        tag: str, sweep: Sweep | None, what: str,
    ) -> Run | None:  # fmt: skip
        """The settings of `sweep` on size k at budget i, widened (the next x2 beyond the
        best, `lr_widen` times at most) until the best rate is interior; the best run."""
        budget, settings = self.bench.budgets[i], sweep.settings() if sweep else [Setting()]
        at = flops_text(getattr(budget, budget.kind))
        label, group = f"{what}@{at}", _budget_group(budget)
        sized = _sized(entry, entry.sizes[k], budget, shape)
        runs: list[Run] = []
        for _ in range(self.bench.lr_widen + 1):
            new = [self.start(sized, s, seed, entry.name, group) for s in settings]
            for run in new:
                run.record.update(
                    {"sweep": label, "shape": _name(shape), "learning_rate_source": f"sweep@{at}"}
                )
            wait([self.submit(run, tag) for run in new])
            runs += new
            chosen = self.choose(runs, f"{tag} {label}", f"lowest validation loss of {sized.name}")
            scales = sorted({r.setting.lr_scale for r in runs})
            if chosen is None or len(scales) < 2:
                return chosen
            wider = {scales[-1]: 2 * scales[-1], scales[0]: scales[0] / 2}.get(
                chosen.setting.lr_scale
            )
            if wider is None:
                return chosen
            settings = [dataclasses.replace(chosen.setting, lr_scale=wider)]
        edge = f"sweep@{at}, still at the sweep's edge after {self.bench.lr_widen} widenings"
        chosen.record.learning_rate_source = edge
        say(f"{tag} {label}: {edge}")
        return chosen

    def search_shapes(
        self, entry: ModelEntry, k: int, seed: int | None, tag: str
    ) -> tuple[Shape | None, Run | None]:
        """Each shape on size k at the smallest budget at its own best rate (its sweep,
        widened); the shape whose best run has the lowest validation loss, and that run."""
        sweep = entry.shape_sweep or entry.sweep
        with ThreadPoolExecutor(len(entry.shapes), thread_name_prefix="shape") as shapes:
            bests = list(
                shapes.map(lambda s: self.sweep(entry, s, k, 0, seed, tag, sweep, "shape"),
                           entry.shapes)
            )  # fmt: skip
        ran = [(s, r) for s, r in zip(entry.shapes, bests, strict=True) if r is not None]
        if not ran:
            return None, None
        best = stats.select_best([r.record.as_dict() for _, r in ran])
        if best is None:
            return None, None
        shape, run = ran[best]
        say(f"{tag}: shape {shape.name} (lowest validation loss at the smallest budget)")
        return shape, run

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


def _sized(entry: ModelEntry, size: Size, budget: Budget, shape: Shape | None) -> ModelEntry:
    """One size of a family (in one shape) at one budget, as a model of its own: the family's
    model_args, the shape's, the size's."""
    args = {**entry.model_args, **(shape.model_args if shape else {}), **size.model_args}
    return ModelEntry(entry.configs, run_label(size, shape), args, budget, None)


def _name(shape: Shape | None) -> str | None:
    return shape.name if shape else None


def _results(cells: dict[int, Run]) -> dict[int, dict]:
    return {k: run.record.as_dict() for k, run in cells.items()}


def _budget_group(budget: Budget) -> str:
    """A budget as a folder name: `flops1e+13` -> `flops1e13`."""
    return budget_text(budget).replace(" ", "").replace("+", "")


def run_benchmark(
    bench: BenchmarkSpec, command: str, resume: bool = True, rekey: bool = False
) -> list[dict]:
    """Run `bench`, keeping the finished runs of an earlier invocation into its folder. Runs are
    known by their run key (the text of their config layers); `rekey` also takes an earlier
    record by its run's folder, for a change of the configs' text that keeps what each run is
    (a layout change): the record and its checkpoints are kept, under today's key."""
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
        plan_.remember(out, plan_.planned(bench))
        previous = previous_records(out) if resume else []
        if kept := sum(records_.reusable(r) for r in previous):
            say(f"resuming: {kept} records of an earlier run in {out}/")
        return Matrix(bench, command, previous, rekey=rekey).run()
    finally:
        os.close(lock)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    plan, rekey, measured = "--plan" in argv, "--rekey" in argv, None
    argv = [a for a in argv if a not in ("--plan", "--rekey")]
    if "--plan_from" in argv:
        i = argv.index("--plan_from")
        if i + 1 >= len(argv):
            raise UserError("--plan_from needs a results folder, e.g. results/wikitext2-frontier")
        measured = Path(argv[i + 1])
        argv = argv[:i] + argv[i + 2 :]
        plan = True
    bench = spec.parse(argv)  # --help and --print_config exit here
    if plan:
        for line in plan_lines(bench, measured):
            print(line)
        return
    command = shlex.join(["python", "-m", "bdh_pl", "benchmark", *argv])
    records = run_benchmark(bench, command, rekey=rekey)
    if all(r["status"] != "ok" for r in records):
        sys.exit(1)
