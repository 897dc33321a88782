"""Nothing lost under real faults: SIGTERM or Ctrl-C at any moment of a run, and a real full
disk.

Each faulted run is resumed with `--ckpt_path last` and compared with one uninterrupted run:
every row of metrics.csv (once each, same values; the speed meter's columns aside),
best.ckpt, and early stopping (which here ends the run at the second validation)."""

from __future__ import annotations

import csv
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from bdh_pl.training.glue import checkpoint_io
from bdh_pl.training.glue.checkpoint_io import LAST, saved_step

from helpers import slow_saves

REPO = Path(__file__).resolve().parents[2]
EVERY, STEPS = 5, 20  # validations at steps 5 and 10; early stopping (patience 1) stops at 10


def worsening_text(path: Path) -> Path:
    """Training text 'abab...', validation text of other letters: the more the model learns,
    the worse its validation loss, from the first validation on (so early stopping stops at
    the second)."""
    rng = random.Random(0)
    other = bytes(rng.choice(b"xyzXYZ") for _ in range(2000))
    path.write_bytes(b"ab" * 9000 + other)
    return path


CALLBACKS = """\
trainer:
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {monitor: val/loss, mode: min, save_top_k: 1, filename: best,
                  auto_insert_metric_name: false}
    - class_path: lightning.pytorch.callbacks.EarlyStopping
      init_args: {monitor: val/loss, mode: min, patience: 1}
"""


def fit_args(folder: Path, root: Path) -> list[str]:
    """A tiny BDH (about 30K parameters) on the worsening text, dropout on (its masks must
    resume too), validation in several batches (a SIGTERM can land between them)."""
    data, callbacks = folder / "worse.txt", folder / "callbacks.yaml"
    if not data.exists():
        worsening_text(data)
        callbacks.write_text(CALLBACKS)
    configs = [REPO / "configs" / name for name in ("shakespeare.yaml", "cpu.yaml", "cpu/bdh.yaml")]
    return [
        "fit",
        *(arg for config in [*configs, callbacks] for arg in ("--config", str(config))),
        *("--data", "bdh_pl.data.TextFile", "--data.init_args.path", str(data)),
        *("--data.init_args.block_size", "32", "--data.init_args.batch_size", "4"),
        *("--data.init_args.eval_batch_size", "8"),
        *(
            "--model.init_args.config.n_embd",
            "32",
            "--model.init_args.config.mlp_internal_dim_multiplier",
            "4",
        ),
        *("--model.init_args.config.dropout", "0.1"),
        *("--trainer.max_steps", str(STEPS), "--trainer.val_check_interval", str(EVERY)),
        *("--trainer.num_sanity_val_steps", "0", "--trainer.log_every_n_steps", "1"),
        *("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"),
        *("--trainer.default_root_dir", str(root)),
    ]


def call_main(args: list[str]) -> int:
    from bdh_pl.cli import main

    try:
        main(args)
    except SystemExit as exit_:
        return exit_.code
    return 0


# What measures this process rather than the run: the throughput meter's running counts
# (they restart with each process), times, speeds, memory.
METER = re.compile(
    r"/time$|_per_sec$|/mfu$|peak_memory|^train/device/|^train/(batches|samples|lengths)$"
)


def logged_rows(rows: list[dict]) -> list[tuple[int, dict[str, float]]]:
    """Every row of metrics.csv as (step, its logged values), the meter's columns left out."""
    kept = []
    for row in rows:
        values = {k: float(v) for k, v in row.items() if v and k != "step" and not METER.search(k)}
        if set(values) - {"epoch"}:
            kept.append((int(row["step"]), values))
    return kept


def outcome(root: Path) -> dict:
    """What an uninterrupted run and a faulted-then-resumed one must agree on."""
    run = root / "version_0"
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    checkpoints = run / "checkpoints"
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)
    best = torch.load(checkpoints / "best.ckpt", weights_only=True)
    stopping = next(v for k, v in last["callbacks"].items() if k.startswith("EarlyStopping"))
    return {
        "rows": logged_rows(rows),
        "val": [(int(r["step"]), float(r["val/loss"])) for r in rows if r.get("val/loss")],
        "train": [(int(r["step"]), float(r["train/loss"])) for r in rows if r.get("train/loss")],
        "last_step": last["global_step"],
        "best_step": best["global_step"],
        "early_stopping": {
            k: float(v) for k, v in stopping.items() if k in ("wait_count", "best_score")
        },
        "weights": last["state_dict"],
    }


def assert_same(resumed: dict, expected: dict) -> None:
    got, want = resumed["rows"], expected["rows"]
    assert [(s, sorted(v)) for s, v in got] == [(s, sorted(v)) for s, v in want], "row by row"
    for (step, values), (_, wanted) in zip(got, want, strict=True):
        assert values == pytest.approx(wanted, abs=1e-5), step
    assert [s for s, _ in resumed["val"]] == [s for s, _ in expected["val"]], "one row each"
    for (step, got), (_, want) in zip(resumed["val"], expected["val"], strict=True):
        assert got == pytest.approx(want, abs=1e-6), step
    assert [s for s, _ in resumed["train"]] == [s for s, _ in expected["train"]]
    for (step, got), (_, want) in zip(resumed["train"], expected["train"], strict=True):
        assert got == pytest.approx(want, abs=1e-5), step
    for key in ("last_step", "best_step", "early_stopping"):
        assert resumed[key] == pytest.approx(expected[key], abs=1e-6), key
    for name, tensor in expected["weights"].items():
        torch.testing.assert_close(resumed["weights"][name], tensor, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("uninterrupted")
    assert call_main(fit_args(folder, folder / "runs")) == 0
    expected = outcome(folder / "runs")
    steps = [s for s, _ in expected["val"]]
    assert steps == [EVERY - 1, 2 * EVERY - 1], "early stopping should end the run at step 10"
    assert expected["val"][1][1] > expected["val"][0][1] and expected["best_step"] == EVERY
    return folder, expected


# --- SIGTERM or Ctrl-C at any moment --------------------------------------------------------


class SignalAt(L.Callback):
    """Sends this process a real SIGTERM or SIGINT (Ctrl-C) at one moment: during the
    training step that ends with a validation, during a validation, or during `test`;
    "twice": two Ctrl-Cs in one step (the second stops at once)."""

    def __init__(self, moment: str, step: int, name: str = "SIGTERM") -> None:
        self.moment, self.step, self.signum = moment, step, signal.Signals[name]

    def kill(self) -> None:
        os.kill(os.getpid(), self.signum)

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        if self.moment in ("step", "twice") and trainer.global_step == self.step - 1:
            self.kill()
            if self.moment == "twice":
                self.kill()

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if self.moment == "validation" and trainer.global_step == self.step and batch_idx == 0:
            self.kill()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self.moment == "test" and batch_idx == 0:
            self.kill()


def signal_callback(moment: str, step: int, name: str = "SIGTERM") -> list[str]:
    return [
        "--trainer.callbacks+=tests.integration.test_faults.SignalAt",
        f"--trainer.callbacks.moment={moment}",
        f"--trainer.callbacks.step={step}",
        f"--trainer.callbacks.name={name}",
    ]


@pytest.fixture
def ctrl_c_raises() -> None:
    """SIGINT as a terminal's Python has it: a process started in the background of a
    non-interactive shell (or by a parent ignoring SIGINT) inherits SIG_IGN, and a test
    sending it would test nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(
    "name, moment, step",
    [
        ("SIGTERM", "validation", EVERY),  # a validation that early stopping does not end on
        ("SIGTERM", "validation", 2 * EVERY),  # the validation that ends the run by early stopping
        ("SIGTERM", "step", EVERY),  # the training step before a validation
        ("SIGTERM", "checkpoint", EVERY),  # while last.ckpt is written after a validation
        ("SIGINT", "step", EVERY),  # Ctrl-C: the same stop (a checkpoint write: the real
        ("SIGINT", "validation", EVERY),  # process test below)
        ("SIGINT", "twice", EVERY + 2),  # a second Ctrl-C stops at once, saves nothing
    ],
)
def test_sigterm_or_ctrl_c_at_any_moment_resumes_to_the_uninterrupted_run(
    name, moment, step, uninterrupted, tmp_path, monkeypatch, capsys, ctrl_c_raises
):
    folder, expected = uninterrupted
    root = tmp_path / "runs"
    args = fit_args(folder, root)
    extra = []
    if moment == "checkpoint":
        real_save, sent = torch.save, []

        def save_with_signal(obj, f):
            if obj["global_step"] == step and not sent:
                sent.append(SignalAt(moment, step, name).kill())  # the temp file is open
            real_save(obj, f)

        monkeypatch.setattr(checkpoint_io.torch, "save", save_with_signal)
    else:
        extra = signal_callback(moment, step, name)
    code = call_main([*args, *extra])
    monkeypatch.undo()
    err = capsys.readouterr().err
    last = root / "version_0/checkpoints/last.ckpt"
    if code == 0:  # SIGTERM in the run's last validation: it ended as the uninterrupted one
        assert saved_step(last) == expected["last_step"]
    else:
        assert code == (130 if name == "SIGINT" else 143), err[-3000:]
        line = err.strip().splitlines()[-1]
        if moment == "twice":  # the last validation's last.ckpt is the resume point
            assert f"stopped by a second Ctrl-C at step {step - 1}, kept {last} (step " in line
            assert saved_step(last) == EVERY
        else:
            cause = "Ctrl-C" if name == "SIGINT" else "SIGTERM"
            assert f"stopped by {cause} at step {step}, saved {last};" in line, line
            assert saved_step(last) == step < expected["last_step"]
        assert call_main([*args, "--ckpt_path", "last"]) == 0, capsys.readouterr().err[-3000:]
    assert_same(outcome(root), expected)


def as_from_a_terminal() -> None:
    """In the child before exec: SIGINT at its default, so Python turns it into
    KeyboardInterrupt as it does under a terminal (a child of a non-interactive shell's
    background job, or of a parent ignoring SIGINT, inherits SIG_IGN: a Ctrl-C test of such
    a child would test nothing)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_from_a_terminal_during_a_checkpoint_write_resumes_exactly(uninterrupted, tmp_path):
    """A terminal sends SIGINT to the whole foreground process group, DataLoader workers
    included: a real `python -m bdh_pl fit` in its own group with one worker, Ctrl-C while
    the first last.ckpt is being written. The run stops after the next step with last.ckpt
    saved (exit 130, one line saying so), and the resume ends as the uninterrupted run."""
    folder, expected = uninterrupted
    root = tmp_path / "runs"
    args = [*fit_args(folder, root), "--data.init_args.num_workers", "1"]
    with open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bdh_pl", *args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, **slow_saves(1)},  # each save pauses before its rename
            preexec_fn=as_from_a_terminal,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
    checkpoints = root / "version_0" / "checkpoints"
    deadline = time.time() + 300
    while not list(checkpoints.glob(f".{LAST}.*.tmp")):  # the first last.ckpt is being written
        assert proc.poll() is None and time.time() < deadline, "the run ended unsaved"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=300)
    err = (tmp_path / "stderr").read_text()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert err.count("Ctrl-C: stopping") == 1, "a DataLoader worker took the Ctrl-C too"
    step = saved_step(checkpoints / LAST)
    assert EVERY <= step < expected["last_step"], "the run was not interrupted"
    line = err.strip().splitlines()[-1]
    assert f"fit: stopped by Ctrl-C at step {step}, saved {checkpoints / LAST};" in line, line
    assert call_main([*args, "--ckpt_path", "last"]) == 0
    assert_same(outcome(root), expected)


# --- a real full disk -----------------------------------------------------------------------


def test_a_real_full_disk_is_one_line_and_the_run_resumes_from_its_last_checkpoint(
    uninterrupted, small_disk, tmp_path, capsys
):
    """A disk that holds the first validation's best.ckpt and last.ckpt but not the temp file
    of the next last.ckpt: torch's zip writer meets ENOSPC there (and calls it `unexpected
    pos`). One error line naming the folder, the previous last.ckpt whole, no temp file; with
    space freed, `--ckpt_path last` finishes the run as if nothing had happened."""
    folder, expected = uninterrupted
    size = (folder / "runs/version_0/checkpoints/last.ckpt").stat().st_size
    disk = small_disk(int(2.5 * size + 64 * 1024) // 1024)
    root = disk / "runs"
    args = fit_args(folder, root)
    code = call_main(args)
    err = capsys.readouterr().err
    checkpoints = root / "version_0" / "checkpoints"
    assert code == 2 and "Traceback" not in err, err[-3000:]
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(f"error: no space left on the device of '{checkpoints}'")
    )
    assert saved_step(checkpoints / "last.ckpt") == EVERY, "the previous last.ckpt is whole"
    assert not list(checkpoints.glob(".*")), "a temp file was left behind"
    small_disk.grow(disk, 64 * 1024)  # space freed
    assert call_main([*args, "--ckpt_path", "last"]) == 0, capsys.readouterr().err[-3000:]
    assert_same(outcome(root), expected)


def test_a_real_full_disk_at_the_first_checkpoint_keeps_everything_the_run_wrote(
    uninterrupted, small_disk, monkeypatch, capsys
):
    """A disk that holds the run's configs, curves and event files but not one checkpoint:
    the first save (at the first validation) fails. The folder keeps every file it had when
    the save began, none smaller, no temp file (was: the whole run folder deleted, while the
    error line said the files there were intact)."""
    folder, _ = uninterrupted
    size = (folder / "runs/version_0/checkpoints/last.ckpt").stat().st_size
    disk = small_disk(size // 2 // 1024)
    run = disk / "runs" / "version_0"

    def listing() -> dict[str, int]:
        return {str(p.relative_to(run)): p.stat().st_size for p in run.rglob("*") if p.is_file()}

    before, real_save = {}, checkpoint_io.AtomicCheckpointIO.save_checkpoint

    def save_after_listing(self, checkpoint, path, storage_options=None):
        before.update(listing() if not before else {})
        real_save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(checkpoint_io.AtomicCheckpointIO, "save_checkpoint", save_after_listing)
    code = call_main(fit_args(folder, disk / "runs"))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: no space left on the device of '{run / 'checkpoints'}'")
    assert "intact" in line
    assert {"config.yaml", "hparams.yaml", "metrics.csv"} <= before.keys(), before
    assert any(name.startswith("events.out.tfevents") for name in before), before
    after = listing()
    assert after.keys() == before.keys(), "a file was removed, or a temp file left"
    assert all(after[name] >= before[name] for name in before), (before, after)
    with open(run / "metrics.csv") as f:
        trained = {int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")}
    assert trained == set(range(EVERY)), "the curve up to the first validation"


def fill(disk: Path) -> None:
    """Take every free block of `disk`."""
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


@pytest.mark.parametrize("new_column", [False, True])
def test_metrics_csv_on_a_real_full_disk_keeps_every_row_it_had(small_disk, new_column):
    """Lightning appends rows, and rewrites the whole file (truncating it first) when a new
    column appears: on a full disk either could leave half a row or no rows."""
    from bdh_pl.training.glue.loggers import make_loggers

    disk = small_disk(256)
    run_dir = disk / "version_0"
    run_dir.mkdir()
    logger = make_loggers(disk, run_dir)[1]
    logger.log_metrics({"train/loss": 1.0}, step=0)
    logger.save()
    metrics = run_dir / "metrics.csv"
    before = metrics.read_bytes()
    fill(disk)
    extra = {"val/loss": 2.0} if new_column else {}
    for step in range(1, 3000):  # far more than the free part of the file's last page
        logger.experiment.log_metrics({"train/loss": 0.5, **extra}, step=step)
    with pytest.raises(Exception, match="[Nn]o space left"):
        logger.save()
    assert metrics.read_bytes() == before
    assert not list(run_dir.glob(".*")), "a temp file was left behind"


def test_tensorboard_on_a_real_full_disk_is_the_disk_error(small_disk, capfd):
    """TensorBoard's writer thread dies with ENOSPC (printing a traceback) and Lightning
    reports the next write as `you tried to log ... not supported`: both hide a full disk."""
    from bdh_pl.training.glue.loggers import make_loggers

    disk = small_disk(64)
    run_dir = disk / "version_0"
    run_dir.mkdir()
    logger = make_loggers(disk, run_dir)[0]
    logger.log_metrics({"train/loss": 1.0}, step=0)
    logger.save()
    fill(disk)
    with pytest.raises(OSError, match="No space left"):
        for step in range(1, 5000):
            logger.log_metrics({"train/loss": 0.5}, step=step)
        logger.save()
    assert "Traceback" not in capfd.readouterr().err


def test_a_real_full_disk_under_the_token_cache_is_one_line(
    uninterrupted, small_disk, tmp_path, monkeypatch, capsys
):
    folder, _ = uninterrupted
    cache = small_disk(16)  # the text's tokens need about 20 KB
    monkeypatch.setenv("BDH_PL_CACHE_DIR", str(cache))
    root = tmp_path / "runs"
    code = call_main(fit_args(folder, root))
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err, err[-3000:]
    assert (
        line.startswith(f"error: no space left on the device of '{cache}") and "CACHE_DIR" in line
    )
    assert not list(cache.rglob(".*.tmp")), "a temp file was left behind"
    assert not list(root.glob("version_*")), "the failed run left a folder"


def test_sigterm_during_test_says_to_run_it_again(uninterrupted, tmp_path, capsys):
    """An evaluation has nothing to resume: exit 143 and a line that says so (not `fit: ...`)."""
    folder, _ = uninterrupted
    ckpt = folder / "runs" / "version_0" / "checkpoints" / "best.ckpt"
    args = ["test", *fit_args(folder, tmp_path / "runs")[1:]]
    code = call_main([*args, "--ckpt_path", str(ckpt), *signal_callback("test", 0)])
    err = capsys.readouterr().err
    assert code == 143, err[-3000:]
    assert err.strip().splitlines()[-1] == "test: stopped by SIGTERM; run the same command again"
