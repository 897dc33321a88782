"""A benchmark run killed mid-fit (a real SIGKILL of its fit process) continues from its own
last.ckpt when the benchmark is run again, and ends where the uninterrupted run ends."""

import csv
import json
import math
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from bdh_pl.bench import matrix, run_queue, runner, spec
from bdh_pl.training.glue.checkpoint_io import saved_step

from helpers import in_process_stream, slow_saves

REPO = Path(__file__).resolve().parents[3]
STEPS = 40  # validated at 10, 20, 30, 40


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def one_run_spec(out: Path) -> spec.BenchmarkSpec:
    config = {
        "experiment": "resume",
        "output_dir": str(out),
        "dataset": "configs/shakespeare.yaml",
        "trainer": {"precision": "32-true", "limit_val_batches": 2,
                    "enable_progress_bar": False},
        "data": {"init_args": {"block_size": 32, "batch_size": 4}},
        "model": {"init_args": {"training": {"warmup_fraction": 0.1},
                                "config": {"n_layer": 1, "n_embd": 32, "n_head": 2,
                                           "mlp_internal_dim_multiplier": 4}}},
        "budget": {"steps": STEPS},
        "seeds": [1],
        "validations": 4,
        "env": {"OMP_NUM_THREADS": 1},
        "models": [{"name": "bdh", "config": "bdh"}],
    }  # fmt: skip
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return spec.load_spec(path)


def val_losses(fit_dir: Path) -> dict[int, float]:
    """The run's validation losses by step; each step once (a resumed run's metrics.csv is
    cut at its checkpoint's step before the rest is appended: no row twice)."""
    with open(fit_dir / "metrics.csv") as f:
        rows = [(int(r["step"]), float(r["val/loss"])) for r in csv.DictReader(f) if r["val/loss"]]
    steps = [step for step, _ in rows]
    assert len(steps) == len(set(steps)), f"a validation logged twice: {steps}"
    return dict(rows)


class Stages:
    """The runner's fit stage (with `kill`, its real subprocess, killed by SIGKILL once its
    last.ckpt passed step 10); the test stage a stand-in (what it measures is not what this
    test is about)."""

    def __init__(self, monkeypatch, kill: bool) -> None:
        self.kill, self.fit_args, self.killed_at = kill, [], None
        self.seconds = self.trained = 0.0  # the fit subprocess's time; the Timer's at the kill
        started = self.started = []

        class Recorded(subprocess.Popen):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, **kwargs)
                started.append(self)

        monkeypatch.setattr(runner.subprocess, "Popen", Recorded)

    def __call__(self, stage, config_path, root, extra=(), env=None, echo=True, cwd=None):
        if stage == "test":
            version = Path(root) / "version_test"
            version.mkdir()
            (version / "test_metrics.json").write_text(
                json.dumps({"metrics": {"test/bpb": 1.0, "test/loss": 0.7}})
            )
            return version
        self.fit_args.append(list(extra))
        if not self.kill:
            start = time.perf_counter()
            try:
                return runner.run_stage(stage, config_path, root, extra, env, echo, cwd)
            finally:
                self.seconds += time.perf_counter() - start
        # Each save pauses before its rename, so the kill lands before the run's end.
        env = {**(env or {}), **slow_saves(0.5)}
        watcher = threading.Thread(target=self.kill_mid_run, args=(Path(root),), daemon=True)
        watcher.start()
        try:
            return runner.run_stage(stage, config_path, root, extra, env, echo, cwd)
        finally:
            watcher.join()

    def kill_mid_run(self, root: Path) -> None:
        last = root / "version_0" / "checkpoints" / "last.ckpt"
        deadline = time.time() + 600  # a loaded machine starts a fit slowly
        while time.time() < deadline and not (last.is_file() and (saved_step(last) or 0) >= 10):
            time.sleep(0.05)
        self.started[-1].kill()  # SIGKILL: no clean-up, no checkpoint on the way out
        self.started[-1].wait()
        self.killed_at = saved_step(last)
        self.trained = runner.trained_seconds(last)


@pytest.mark.slow
def test_a_run_killed_mid_fit_resumes_from_its_last_checkpoint(data_dir, tmp_path, monkeypatch):
    bench = one_run_spec(tmp_path / "killed")
    killing = Stages(monkeypatch, kill=True)
    monkeypatch.setattr(run_queue, "run_stage", killing)
    (first,) = matrix.run_benchmark(bench, "cmd")
    assert first["status"] == "failed" and first["failed_stage"] == "fit"
    assert 10 <= killing.killed_at < STEPS, killing.killed_at

    # The resume and the reference run through the runner as before, the fit in this process
    # (the killed run above is the real process this test needs).
    monkeypatch.setattr(runner, "_stream", in_process_stream)
    again = Stages(monkeypatch, kill=False)
    monkeypatch.setattr(run_queue, "run_stage", again)
    (resumed,) = matrix.run_benchmark(bench, "cmd")
    root = bench.out_dir / "runs" / "bdh" / "lr1x-seed1"
    assert again.fit_args == [["--ckpt_path", str(root / "version_0/checkpoints/last.ckpt")]]
    assert resumed["status"] == "ok" and resumed["fit_run"] == str(root / "version_0")
    # Timed as one fit: the killed part up to its checkpoint, then the resumed part.
    assert killing.trained > 0  # ten steps and a validation at least
    assert resumed["fit_time_s"] >= round(killing.trained + again.seconds, 1) - 0.1

    straight_bench = one_run_spec(tmp_path / "straight")
    monkeypatch.setattr(run_queue, "run_stage", Stages(monkeypatch, kill=False))
    (straight,) = matrix.run_benchmark(straight_bench, "cmd")
    expected = val_losses(Path(straight["fit_run"]))
    got = val_losses(Path(resumed["fit_run"]))
    assert sorted(expected) == sorted(got) == [9, 19, 29, 39]  # one curve, through the end
    for step, loss in expected.items():
        assert got[step] == pytest.approx(loss, abs=1e-6), step
    assert resumed["train_steps"] == straight["train_steps"] == STEPS
    assert resumed["best_val_loss"] == pytest.approx(straight["best_val_loss"], abs=1e-6)
    assert math.isfinite(resumed["best_val_loss"])


def test_another_runs_checkpoint_is_never_continued(tmp_path, monkeypatch):
    """A folder left by a run of another key (the config changed) starts over."""
    bench = one_run_spec(tmp_path / "other")
    queue = run_queue.RunQueue(bench, "cmd")
    run = queue.start(bench.models[0], run_queue.Setting(), 1)
    root = queue.here(run.root)
    (root / "version_0" / "checkpoints").mkdir(parents=True)
    (root / "version_0" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert queue.unfinished_fit(run) is None  # no run key there
    (root / run_queue.RUN_KEY_FILE).write_text("another")
    assert queue.unfinished_fit(run) is None
    (root / run_queue.RUN_KEY_FILE).write_text(run.record.config_hash)
    assert queue.unfinished_fit(run) == root / "version_0" / "checkpoints" / "last.ckpt"
    queue._pool.shutdown()


def test_a_checkpoint_without_the_timer_leaves_the_earlier_time_unknown(tmp_path):
    timed, untimed = tmp_path / "timed.ckpt", tmp_path / "untimed.ckpt"
    torch.save({"callbacks": {"Timer": {"time_elapsed": {"train": 12.5}}}}, timed)
    torch.save({"callbacks": {"LastCheckpoint": {}}, "global_step": 3}, untimed)
    assert runner.trained_seconds(timed) == 12.5
    assert runner.trained_seconds(untimed) is None
