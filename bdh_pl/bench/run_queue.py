"""One benchmark run after another, or `jobs` at once: each resolved, sized and written as
a config, fit and tested in subprocesses (bench/runner.py), its record (bench/record.py)
rewritten into the results after every step. A run whose record an earlier, interrupted
invocation left (same config) is kept instead of run again. The plans that choose which runs
to make are bench/matrix.py's."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bdh_pl.bench import record as records_
from bdh_pl.bench import report, resolve
from bdh_pl.bench.budget import Setting, budget_text
from bdh_pl.bench.record import Record
from bdh_pl.bench.runner import StageFailed, read_checkpoint_state, run_stage, trained_seconds
from bdh_pl.bench.spec import BenchmarkSpec, ModelEntry
from bdh_pl.errors import UserError
from bdh_pl.fileio import atomic_write_text
from bdh_pl.step_tokens import tokens_per_step
from bdh_pl.training.run_folders import newest_checkpoint
from bdh_pl.training.schedule import warmup_length

RUN_KEY_FILE = "run_key"  # in a run's folder: which run (config_hash) its checkpoints belong to


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
    group: str | None = None  # a frontier's budget level: runs/{model}/{group}/...

    @property
    def ok(self) -> bool:
        return self.record.status != "failed"

    @property
    def runs(self) -> bool:
        """Whether it trains and tests: neither failed nor bound (not to be run)."""
        return self.ok and self.record.bound is None

    @property
    def fitted(self) -> bool:
        """Whether its fit has finished (now, or in an earlier run of the benchmark)."""
        return self.record.train_steps is not None

    @property
    def tested(self) -> bool:
        return self.record.test_bpb is not None


class RunQueue:
    """The runs of a benchmark and their records: a pool of `jobs` workers, the results
    rewritten after every run, finished runs of an earlier invocation kept."""

    def __init__(
        self, bench: BenchmarkSpec, command: str, previous: Iterable[dict] = (), rekey: bool = False
    ) -> None:
        self.bench, self.command = bench, command
        self.records: list[Record] = []
        self._seconds_per_step: dict[str, float] = {}
        # Finished runs of an earlier, interrupted invocation, by what they ran; with `rekey`
        # (the config files' text changed, not what the runs are) also by their run's folder.
        previous = [r for r in previous if records_.reusable(r)]
        self._previous = {r["config_hash"]: r for r in previous}
        self._rekey = {r.get("config"): r for r in previous} if rekey else {}
        self._taken: set[str] = set()  # keys of earlier records a run of this one has taken
        self._lock = threading.Lock()  # records and result files
        self._build_lock = threading.Lock()  # config parsing and model building
        self._pool = ThreadPoolExecutor(bench.jobs, thread_name_prefix="run")
        self._echo = bench.jobs == 1  # one progress bar on the terminal, or none
        # Parsing a config moves this process into the config's folder for a moment
        # (jsonargparse resolves nested paths so): other threads use this folder explicitly.
        self._cwd = Path.cwd()

    def here(self, path: Path) -> Path:
        """`path` relative to the benchmark's folder, as an absolute path."""
        return path if path.is_absolute() else self._cwd / path

    def write(self, final: bool = False) -> list[dict]:
        """The records and result files; until the `final` write, also the earlier
        invocation's runs this one has not reached yet (so a restart stopped early keeps them)."""
        with self._lock:
            records = [r.as_dict() for r in self.records]
            if not final:
                records += [r for key, r in self._previous.items() if key not in self._taken]
            out = self.here(self.bench.out_dir)
            report.write_results(
                out, self.bench.experiment, records, self.command, self.bench.out_dir
            )
        return records

    # --- plans --------------------------------------------------------------------------

    def submit(self, run: Run, tag: str, fit: bool = True, test: bool = False) -> Future:
        return self._pool.submit(self.execute, run, tag, fit, test)

    def execute(self, run: Run, tag: str, fit: bool, test: bool) -> None:
        if fit:
            self.fit(run)
        if test:
            self.test(run)
        self.end(run, tag)

    # --- one run ------------------------------------------------------------------------

    def start(
        self,
        entry: ModelEntry,
        setting: Setting,
        seed: int | None,
        family: str | None = None,
        group: str | None = None,
    ) -> Run:
        """Resolve, build, size and write one run's config; the record joins the results
        (an earlier invocation's record when it ran the same config)."""
        before = records_.environment(self._cwd)
        record = Record(model=entry.name, setting=setting.label, selected=True, **before)
        record.budget = budget_text(entry.budget)
        record.family = family
        if entry.budget.flops is not None:
            record.budget_flops = entry.budget.flops
        with self._lock:
            self.records.append(record)
        run = Run(entry, setting, record, before=before, group=group)
        start = time.perf_counter()
        try:
            with self._build_lock:  # jsonargparse and LightningCLI are not thread-safe
                self.configure(run, seed)
        except Exception as err:
            self.fail(run, err)
        record.wall_time_s = round(time.perf_counter() - start, 1)
        previous = self._previous.get(record.config_hash) or self._rekey.get(record.config)
        if run.ok and previous:
            with self._lock:
                self._taken.add(previous["config_hash"])
            self.resume(run, previous)
        return run

    def configure(self, run: Run, seed: int | None) -> None:
        bench, entry, record = self.bench, run.entry, run.record
        config = resolve.apply_setting(resolve.lightning_config(bench, entry), run.setting, seed)
        model = config["model"]["init_args"]
        keys = [("training", "learning_rate"), ("config", "dropout"), ("training", "weight_decay")]
        record.update(
            {k: model.get(group, {}).get(k) for group, k in keys}
            | {"seed": resolve.run_seed(config)}
        )
        per_step = tokens_per_step(config)
        name = f"{run.setting.label}-seed{record.seed}"
        where = Path(entry.name, run.group) if run.group else Path(entry.name)
        run.root = bench.out_dir / "runs" / where / name
        config["trainer"]["default_root_dir"] = str(run.root)
        record.tokens_per_step = per_step

        run.stage = "build"
        built, datamodule = resolve.build(config)
        figures, warning = resolve.static_figures(built, datamodule)
        record.update(figures)
        if warning:
            say(f"warning: {warning}")
        record.train_split_tokens = resolve.train_split_tokens(datamodule, bench.frontier)
        if entry.budget.trains:
            run.stage = "budget"
            self.size(run, config, built, datamodule)
        record.config_hash = run_key(bench, entry, run.setting, seed)
        run.config_path = bench.out_dir / "configs" / where / f"{name}.yaml"
        atomic_write_text(self.here(run.config_path), yaml.safe_dump(config, sort_keys=False))
        record.config = str(run.config_path)

    def resume(self, run: Run, previous: dict) -> None:
        """Take an earlier invocation's record of this very run: its fit is not run again
        when its checkpoint is still there, nor its test when it has one."""
        kept = {k: v for k, v in previous.items() if k in records_.KEYS and k != "config_hash"}
        kept.update(model=run.record.model, selected=run.record.selected)
        run.record.update(kept)
        if not run.fitted or not run.entry.budget.trains:
            return
        try:
            _, ckpt = read_checkpoint_state(Path(run.record.fit_run), self._cwd)
        except (StageFailed, OSError, TypeError):
            run.record.update({"train_steps": None, "test_bpb": None})  # fit again
            return
        run.ckpt_args = ["--ckpt_path", str(ckpt)]
        say(f"{run.entry.name} {run.setting.label} seed {run.record.seed}: done before, kept")

    def size(self, run: Run, config: dict[str, Any], model, datamodule) -> None:
        """The budget as max_steps (max_time for seconds), the schedule's length, and the
        validation interval."""
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
        trainer, training = config["trainer"], config["model"]["init_args"].get("training", {})
        if budget.seconds is not None:
            trainer["max_time"] = {"seconds": math.ceil(budget.seconds)}
            trainer["max_steps"] = -1  # the clock ends the run
            say(
                f"{run.entry.name}: {seconds_per_step:.3f} s per step here, "
                f"schedule {steps} steps for {budget.seconds:g} s"
            )
        else:
            trainer["max_steps"] = steps
        if "lr_decay_steps" in training:
            training["lr_decay_steps"] = steps
        if self.bench.validations:
            trainer["val_check_interval"] = max(1, steps // self.bench.validations)
        self.cap_epochs(run, steps)
        if "warmup_steps" in training:
            fraction = training.get("warmup_fraction")
            record.warmup_steps = warmup_length(steps, training["warmup_steps"], fraction)
            if fraction is None and record.warmup_steps > 0.2 * steps:
                say(
                    f"warning: {run.entry.name} warms up for {record.warmup_steps} of its "
                    f"{steps} steps: set model.init_args.training.warmup_fraction (e.g. 0.05) to size "
                    "the warmup to each run"
                )

    def cap_epochs(self, run: Run, steps: int) -> None:
        """The run's planned epochs of the training split; on a frontier, a run that would
        read more than `max_epochs_of_data` is not run: its record says `bound` and why."""
        record, cap = run.record, self.bench.max_epochs_of_data
        if not record.train_split_tokens:
            return
        record.epochs = steps * record.tokens_per_step / record.train_split_tokens
        if self.bench.frontier and record.epochs > cap:
            record.bound = (
                f"needs {record.epochs:.2f} epochs of the training split, more than "
                f"max_epochs_of_data {cap:g}: not run"
            )
            record.status = "bound"

    def fit(self, run: Run) -> None:
        if not run.runs or run.fitted:
            return
        record, start = run.record, time.perf_counter()
        if not run.entry.budget.trains:
            record.update({"train_steps": 0, "train_tokens": 0})
            return
        run.stage, earlier = "fit", 0.0
        try:
            resume = self.unfinished_fit(run)
            # the time to the checkpoint resumed from: the record times the run as one fit
            earlier = (trained_seconds(resume) or 0.0) if resume else 0.0
            if resume is None:
                shutil.rmtree(self.here(run.root), ignore_errors=True)  # a re-run replaces its logs
                self.here(run.root).mkdir(parents=True)
                (self.here(run.root) / RUN_KEY_FILE).write_text(record.config_hash or "")
            else:
                say(f"{run.entry.name} {run.setting.label} seed {record.seed}: resuming {resume}")
            config = yaml.safe_load(self.here(run.config_path).read_text())
            steps = config["trainer"]["max_steps"]
            steps_text = f"{steps} steps" if steps > 0 else "until the clock ends it"
            say(
                f"{run.entry.name} {run.setting.label} seed {record.seed}: fit, {steps_text} x "
                f"{record.tokens_per_step:,} tokens ({run.config_path})"
            )
            record.load_avg_start = _load_average()
            resumed = ["--ckpt_path", str(resume)] if resume else []
            fit_dir = run_stage("fit", run.config_path, run.root, resumed, self.bench.env,
                                self._echo, self._cwd)  # fmt: skip
            record.load_avg_end = _load_average()
            global_step, ckpt = read_checkpoint_state(fit_dir, self._cwd)
            figures = records_.fit_figures(self.here(fit_dir), global_step, record.tokens_per_step)
            earlier = max(earlier, records_.logged_seconds_before_resumes(self.here(fit_dir)))
            record.update(figures | {"fit_run": str(fit_dir)})
            run.ckpt_args = ["--ckpt_path", str(ckpt)]
        except Exception as err:
            self.fail(run, err)
        seconds = time.perf_counter() - start
        record.fit_time_s = round(earlier + seconds, 1)
        record.wall_time_s = round((record.wall_time_s or 0) + record.fit_time_s, 1)

    def unfinished_fit(self, run: Run) -> Path | None:
        """The last.ckpt of this very run's fit, stopped before its end (a kill, a reboot):
        the fit continues from it, in its folder, to the uninterrupted run's result. Another
        run's folder (another run key) is never continued."""
        root = self.here(run.root)
        try:
            key = (root / RUN_KEY_FILE).read_text()
        except OSError:
            return None
        if key != run.record.config_hash and not self._rekey:
            return None
        return newest_checkpoint(root)

    def test(self, run: Run) -> None:
        if not run.runs or run.tested:
            return
        record, start = run.record, time.perf_counter()
        run.stage = "test"
        try:
            what = run.ckpt_args[-1] if run.ckpt_args else "(zero-shot)"
            say(f"{run.entry.name} {run.setting.label} seed {record.seed}: test {what}")
            test_dir = run_stage(
                "test",
                run.config_path,
                run.root,
                run.ckpt_args,
                self.bench.env,
                echo=self._echo,
                cwd=self._cwd,
            )
            record.update(records_.test_figures(self.here(test_dir)) | {"test_run": str(test_dir)})
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
        after = records_.environment(self._cwd)
        if run.before["git_commit"] is not None and record.git_commit == run.before["git_commit"]:
            # The commit is what ran only if clean throughout (a kept record keeps its own).
            record.git_dirty = bool(
                record.git_dirty or after["git_dirty"] or after["git_commit"] != record.git_commit
            )
        self.write()
        what = f"{run.setting.label} seed {record.seed}"
        if not run.ok:
            say(f"{tag} {what}: FAILED in {record.failed_stage}: {record.error}")
        elif record.bound:
            say(f"{tag} {run.entry.name} {what}: {record.bound}")
        elif record.test_bpb is not None:
            say(
                f"{tag} {what}: done in {record.wall_time_s:.0f} s, test bpb "
                f"{record.test_bpb:.4f}, loss {record.test_loss:.4f}"
            )
        elif record.best_val_loss is not None:
            say(
                f"{tag} {what}: trained in {record.wall_time_s:.0f} s, best validation loss "
                f"{record.best_val_loss:.4f} at step {record.best_step}"
            )


def run_key(bench: BenchmarkSpec, entry: ModelEntry, setting: Setting, seed: int | None) -> str:
    """What a run is, as the benchmark config says it: its name (unique: ladder.check_names),
    the text of its config layers (files read), its setting, seed, budget and validations. Code defaults are not part of it, so a
    resumed benchmark keeps its finished runs across a code change that alters none of those."""
    layers = []
    for layer in resolve.layers(bench, entry):
        path = Path(layer)
        layers.append(path.read_text() if "\n" not in layer and path.is_file() else layer)
    what = [entry.name, layers, setting.label, seed, budget_text(entry.budget), bench.validations]
    if entry.budget.flops is not None:  # steps from FLOPs: by which rule is part of the run
        what.append("flops: 3x reference forward")
    return hashlib.sha256(json.dumps(what, default=str).encode()).hexdigest()[:16]


def wait(futures: list[Future]) -> None:
    for future in futures:
        future.result()  # a bug in the matrix itself surfaces here


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not on every platform
        return None


def say(line: str) -> None:
    print(f"[benchmark] {line}", flush=True)
