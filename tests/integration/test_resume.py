"""Nothing lost: a run killed mid-training resumes to exactly the uninterrupted result."""

import csv
import math
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from bdh_pl.cli import main
from bdh_pl.data import TinyShakespeare
from bdh_pl.errors import UserError
from bdh_pl.training.glue.checkpoint_io import saved_step
from bdh_pl.training.language_model import LanguageModel
from bdh_pl.training.training_config import TrainingConfig

from helpers import REPO, SMOKE, DataSized, slow_saves

RUN = [
    *(sys.executable, "-m", "bdh_pl", "fit", *SMOKE),
    "--trainer.max_steps",
    "30",
    "--model.init_args.config.dropout",
    "0.1",  # dropout masks must resume too
    "--trainer.enable_progress_bar",
    "false",
    # One validation batch (8,192 tokens), not cpu.yaml's 8: the losses compared are those of
    # the same weights on the same windows either way, and 7 batches more at each validation
    # were most of each run's CPU.
    "--trainer.limit_val_batches",
    "1",
]


def val_losses(root: Path) -> dict[int, float]:
    losses = {}
    for log in sorted(root.glob("version_*/metrics.csv")):
        with open(log) as f:
            for row in csv.DictReader(f):
                if row.get("val/loss"):
                    losses[int(row["step"])] = float(row["val/loss"])
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("train_mode", ["random", "stream"])
def test_sigkill_then_resume_matches_an_uninterrupted_run(data_dir, tmp_path, train_mode, run_cli):
    """Random windows, and consecutive windows with the state carried (truncated BPTT): the
    lanes' place and the carried state resume too. The killed run is a real process; the
    uninterrupted run and the resume run in this one (no process start each)."""
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    run = [*RUN, "--data.init_args.train_mode", train_mode]
    code, err = run_cli([*run[3:], "--trainer.default_root_dir", str(straight)])
    assert code == 0, err[-2000:]

    proc = subprocess.Popen(
        [*run, "--trainer.default_root_dir", str(crashed)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = crashed / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and not (
        last.exists() and max(val_losses(crashed), default=0) >= 9
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # mid-run, between checkpoints, no clean-up
    proc.wait()
    assert last.exists(), "the run never wrote a checkpoint"
    killed_at = max(val_losses(crashed))
    assert killed_at < 29, "the run finished before it could be killed"

    code, err = run_cli(
        [*run[3:], "--trainer.default_root_dir", str(crashed), "--ckpt_path", "last"]
    )
    assert code == 0, err[-2000:]
    expected, resumed = val_losses(straight), val_losses(crashed)
    assert resumed.keys() == expected.keys()  # validations at the same steps, through the end
    after_kill = [step for step in expected if step > killed_at]
    assert after_kill
    for step in after_kill:
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), step


class Exploding(LanguageModel):
    """Finite for two steps, then NaN: a stand-in for a diverging run."""

    def build_network(self) -> nn.Module:
        return nn.Embedding(self.config.vocab_size, self.config.vocab_size)

    def forward(self, input_ids):
        logits = self.network(input_ids)
        return logits * math.nan if self.global_step >= 2 else logits


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_last=True)
    trainer = L.Trainer(
        max_steps=10,
        logger=False,
        enable_progress_bar=False,
        callbacks=[checkpoint],
        limit_val_batches=0,
    )
    model = Exploding(config=DataSized(vocab_size=256, block_size=16), training=TrainingConfig())
    with pytest.raises(UserError, match="training loss is nan at step 2"):
        trainer.fit(model, datamodule=TinyShakespeare(block_size=16, batch_size=2))
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 2
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values())


# --- a run whose validation loss gets worse: last.ckpt must still follow the run ------------

STEPS, EVERY = 15, 5


def worsening_text(path: Path) -> Path:
    """Training text 'abab...', validation/test text of other letters: the more the model
    learns, the worse its validation loss (deterministically, from the first validation)."""
    rng = random.Random(0)
    other = bytes(rng.choice(b"xyzXYZ") for _ in range(2000))
    path.write_bytes(b"ab" * 9000 + other)
    return path


def worsening_args(data: Path, root: Path) -> list[str]:
    return [
        "fit",
        *SMOKE,
        "--data",
        "bdh_pl.data.TextFile",
        "--data.init_args.path",
        str(data),
        "--trainer.max_steps",
        str(STEPS),
        "--trainer.val_check_interval",
        str(EVERY),
        "--trainer.num_sanity_val_steps",
        "0",
        "--model.init_args.config.dropout",
        "0.1",  # dropout masks must resume too
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.default_root_dir",
        str(root),
    ]


@pytest.fixture(scope="module")
def worsening(tmp_path_factory) -> tuple[Path, dict[int, float]]:
    """The data file and the validation losses of an uninterrupted run (in this process: the
    kills below are of real processes)."""
    tmp = tmp_path_factory.mktemp("worsening")
    data = worsening_text(tmp / "worse.txt")
    root = tmp / "straight"
    main(worsening_args(data, root))
    losses = val_losses(root)
    assert list(losses) == [EVERY * k - 1 for k in range(1, STEPS // EVERY + 1)]
    values = list(losses.values())
    assert values == sorted(values) and len(set(values)) == len(values), losses
    checkpoints = root / "version_0" / "checkpoints"
    assert saved_step(checkpoints / "best.ckpt") == EVERY  # the first validation was the best
    assert saved_step(checkpoints / "last.ckpt") == STEPS  # what benchmark reads train_steps from
    return data, losses


def start(args: list[str], log: Path, **env: str) -> subprocess.Popen:
    """A real `python -m bdh_pl` process, stderr to `log` (a pipe could fill and block it)."""
    with open(log, "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "bdh_pl", *args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, **env},
        )


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def resume_and_compare(
    root: Path, args: list[str], expected: dict[int, float], after: int, run_cli
):
    code, err = run_cli(args)
    assert code == 0, err[-2000:]
    assert [p.name for p in root.iterdir()] == ["version_0"], "the resume went to a new folder"
    assert f"continuing {root / 'version_0'}" in err
    with open(root / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    val_steps = [int(r["step"]) for r in rows if r.get("val/loss")]
    assert val_steps == list(expected), "one curve: each validation once, in order"
    resumed = val_losses(root)
    assert [s for s in expected if s > after], "nothing was left to resume"
    for step in expected:
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), step
    assert not list(root.glob("version_0/**/.*.tmp")), "a temp file was left behind"


@pytest.mark.slow
def test_sigkill_after_the_loss_got_worse_resumes_from_the_last_validation(
    worsening, tmp_path, run_cli
):
    data, expected = worsening
    root = tmp_path / "crashed"
    args = worsening_args(data, root)
    # Each save pauses before its rename: on an idle machine the last 5 steps and the final
    # save otherwise end before the poll below has read step 10's checkpoint.
    proc = start(args, tmp_path / "stderr", **slow_saves(2))
    last = root / "version_0" / "checkpoints" / "last.ckpt"
    # Past the best step (5): a last.ckpt kept at the best step would never get here.
    wait_for(lambda: last.is_file() and (saved_step(last) or 0) >= 2 * EVERY, proc)
    proc.kill()
    proc.wait()
    killed_at = saved_step(last)
    assert EVERY < killed_at < STEPS, killed_at
    resume_and_compare(root, [*args, "--ckpt_path", "last"], expected, killed_at, run_cli)


@pytest.mark.slow
def test_sigterm_saves_exits_143_and_says_how_to_resume(worsening, tmp_path, run_cli):
    data, expected = worsening
    root = tmp_path / "preempted"
    args = worsening_args(data, root)
    proc = start(args, tmp_path / "stderr")
    csv_log = root / "version_0" / "metrics.csv"
    wait_for(lambda: csv_log.is_file() and val_losses(root), proc)  # after the first validation
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)
    err = (tmp_path / "stderr").read_text()
    assert proc.returncode == 143, err[-2000:]
    line = err.strip().splitlines()[-1]
    step = saved_step(root / "version_0" / "checkpoints" / "last.ckpt")
    assert f"stopped by SIGTERM at step {step}," in line and step >= EVERY
    command = shlex.split(line.split("resume with: ", 1)[1])
    assert command[:3] == ["python", "-m", "bdh_pl"] and "--ckpt_path" in command
    resume_and_compare(root, command[3:], expected, step, run_cli)


@pytest.mark.slow
def test_kill_during_a_checkpoint_write_keeps_the_previous_one(worsening, tmp_path, run_cli):
    data, expected = worsening
    root = tmp_path / "torn"
    args = worsening_args(data, root)
    # each save pauses between temp write and rename
    proc = start(args, tmp_path / "stderr", **slow_saves(3))
    folder = root / "version_0" / "checkpoints"
    last = folder / "last.ckpt"
    wait_for(lambda: last.is_file() and list(folder.glob(".last.ckpt.*.tmp")), proc)
    proc.kill()  # while the second last.ckpt is being written
    proc.wait()
    assert list(folder.glob(".last.ckpt.*.tmp")), "killed outside the write"
    assert saved_step(last) == EVERY  # the previous checkpoint, whole
    resume_and_compare(root, [*args, "--ckpt_path", "last"], expected, EVERY, run_cli)


# --- run folders: one per run, claimed atomically; a folder in use is refused ---------------


CLAIM = (
    "import sys, time; from pathlib import Path; from bdh_pl.fileio import claim_version\n"
    "print('ready', flush=True)\n"
    "while not Path(sys.argv[2]).exists(): time.sleep(0.0005)\n"
    "print(claim_version(Path(sys.argv[1])).name)"
)


def test_runs_started_together_get_their_own_folders(tmp_path):
    root, go = tmp_path / "runs", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM, str(root), str(go)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    assert [p.stdout.readline().strip() for p in procs] == ["ready"] * 3
    go.touch()  # all at once
    names = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert names == [f"version_{i}" for i in range(3)]


def test_a_run_folder_in_use_is_refused(tmp_path):
    from bdh_pl.training.run_folders import RunState

    (tmp_path / "version_0").mkdir()
    code = (
        "import sys; from pathlib import Path; from bdh_pl.fileio import lock_folder; "
        "lock_folder(Path(sys.argv[1])); print('locked', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "version_0")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match="is in use by another process"):
            RunState().lock(tmp_path / "version_0")
    finally:
        holder.stdin.close()
        holder.wait()
    state = RunState()
    state.lock(tmp_path / "version_0")  # free again once the holder ended
    state.release()


# --- the damped BDH trained with the carried state, reset per article: a real kill ---------


def train_losses(root: Path) -> list[tuple[int, float]]:
    """Every logged training loss, (step, loss) in the order of metrics.csv."""
    with open(root / "version_0" / "metrics.csv") as f:
        return [
            (int(r["step"]), float(r["train/loss"])) for r in csv.DictReader(f) if r["train/loss"]
        ]


def articles_file(path: Path, n: int = 40) -> Path:
    """WikiText-like text: n articles of 300-1,500 random letters, each under its ` = Title = `
    line, enough for the CPU config's 16 lanes."""
    rng = random.Random(0)
    body = lambda: "".join(rng.choice("abcde fgh") for _ in range(rng.randint(300, 1500)))  # noqa: E731
    path.write_text("".join(f" = Title {i} = \n \n {body()} \n \n" for i in range(n)))
    return path


@pytest.mark.slow
def test_sigkill_of_a_damped_carried_state_run_resumes_every_loss(tmp_path, run_cli):
    """Damped attention, state carried across batches and emptied where an article starts: after
    a SIGKILL mid-fit and `--ckpt_path last`, every step's training loss equals the uninterrupted
    run's. A resume that restarted the lanes or emptied the carried state would change the
    losses of the steps after the checkpoint (the decayed state still holds the bytes before)."""
    data = articles_file(tmp_path / "articles.txt")
    damped = [
        *("--model.init_args.config.attn_decay", "learned"),
        *(
            "--data.init_args.train_mode",
            "stream",
            "--data.init_args.stream_reset_articles",
            "true",
        ),
        *("--trainer.log_every_n_steps", "1"),
    ]
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    code, err = run_cli([*worsening_args(data, straight), *damped])
    assert code == 0, err[-2000:]
    expected = val_losses(straight)
    assert list(expected) == [EVERY * k - 1 for k in range(1, STEPS // EVERY + 1)]

    args = [*worsening_args(data, crashed), *damped]
    proc = start(args, tmp_path / "stderr", **slow_saves(2))
    last = crashed / "version_0" / "checkpoints" / "last.ckpt"
    wait_for(lambda: last.is_file() and (saved_step(last) or 0) >= EVERY, proc)
    proc.kill()  # between checkpoints: the steps after EVERY are lost and redone
    proc.wait()
    killed_at = saved_step(last)
    assert killed_at < STEPS, killed_at
    resume_and_compare(crashed, [*args, "--ckpt_path", "last"], expected, killed_at, run_cli)

    reference, resumed = train_losses(straight), train_losses(crashed)
    assert [s for s, _ in reference] == list(range(STEPS)), "a loss logged at every step"
    assert [s for s, _ in resumed] == [s for s, _ in reference], "each step once, in order"
    for (step, want), (_, got) in zip(reference, resumed, strict=True):
        assert got == pytest.approx(want, abs=1e-6), step
