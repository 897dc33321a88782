"""A batch fitted to the memory at hand: split into micro-batches with the same losses per
optimizer step, refused in one line when nothing fits, and the estimate behind both checked
against the measured peak of real training steps."""

import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bdh_pl.errors import UserError
from bdh_pl.models.bdh import BDHConfig
from bdh_pl.training.glue.checkpoint_io import saved_step
from bdh_pl.training.lit_models import BDHLM
from bdh_pl.training.memory import (
    HEADROOM,
    LIMIT_ENV,
    MicroBatchCounters,
    fit_to_memory,
    step_memory,
)

from helpers import REPO, SMOKE, digit_text

BATCH, BLOCK = 4, 16


def tiny_fit(tmp: Path, root: Path, *extra: str) -> list[str]:
    text = tmp / "text.txt"
    if not text.exists():
        text.write_bytes(digit_text(6000))
    return [
        "fit", *SMOKE, "--data", "bdh_pl.data.TextFile", "--data.init_args.path", str(text),
        *("--data.init_args.block_size", str(BLOCK), "--data.init_args.batch_size", str(BATCH)),
        *("--trainer.max_steps", "4", "--model.init_args.training.lr_decay_steps", "4"),
        *("--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1"),
        *("--trainer.log_every_n_steps", "1", "--trainer.num_sanity_val_steps", "0"),
        *("--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root)),
        *extra,
    ]  # fmt: skip


def limit_for(windows: int) -> str:
    """A $BDH_PL_MEMORY_LIMIT_GB under which micro-batches of `windows` fit, and no larger ones
    (the smoke BDH: 2 layers of 64, CPU size)."""
    sizes = {"n_layer": 2, "n_embd": 64, "n_head": 2, "mlp_internal_dim_multiplier": 16}
    model = BDHLM(BDHConfig(**sizes, block_size=BLOCK))
    step = step_memory(model, BLOCK, "32-true", torch.device("cpu"))
    between = (step.bytes(windows) + step.bytes(windows + 1)) / 2
    return str(between / HEADROOM / 2**30)


def logged(root: Path) -> dict[tuple[int, str], float]:
    values = {}
    for log in sorted(root.glob("version_*/metrics.csv")):
        with open(log) as f:
            for row in csv.DictReader(f):
                for key in ("train/loss", "train/tokens", "train/lr", "val/loss"):
                    if row.get(key):
                        values[int(row["step"]), key] = float(row[key])
    return values


def test_micro_batches_train_as_the_whole_batch_and_resume_with_another_split(
    tmp_path, run_cli, monkeypatch
):
    """4 steps in one batch of 4 windows; the same 2 steps as 4 x 1 micro-batches, then resumed
    as 2 x 2: the same loss per optimizer step, validations and tokens at the same steps."""
    code, err = run_cli(tiny_fit(tmp_path, tmp_path / "whole"))
    assert code == 0, err[-2000:]
    assert "micro-batches" not in err
    expected = logged(tmp_path / "whole")

    split = tmp_path / "split"
    monkeypatch.setenv(LIMIT_ENV, limit_for(1))
    code, err = run_cli(tiny_fit(tmp_path, split, "--trainer.max_steps", "2"))
    assert code == 0, err[-2000:]
    lines = [line for line in err.splitlines() if "micro-batches" in line]
    assert len(lines) == 1 and lines[0].startswith("memory: batch 4 = 4 x 1 micro-batches")
    monkeypatch.setenv(LIMIT_ENV, limit_for(2))
    code, err = run_cli(tiny_fit(tmp_path, split, "--ckpt_path", "last"))
    assert code == 0, err[-2000:]
    assert "memory: batch 4 = 2 x 2 micro-batches" in err

    got = logged(split)
    assert sorted(got) == sorted(expected)
    assert {s for s, k in got if k == "val/loss"} == {1, 3}
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_a_run_nothing_can_fit_is_refused_in_one_line_before_any_folder(
    tmp_path, run_cli, monkeypatch
):
    monkeypatch.setenv(LIMIT_ENV, "0.001")
    code, err = run_cli(tiny_fit(tmp_path, tmp_path / "runs"))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: this run does not fit in memory")
    assert "not even one window of 16 fits" in lines[0] and "configs/cpu.yaml" in lines[0]
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_memory_fit_off_refuses_a_batch_that_needs_splitting(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv(LIMIT_ENV, limit_for(2))
    code, err = run_cli(tiny_fit(tmp_path, tmp_path / "runs", "--memory_fit", "off"))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err[-2000:]
    assert "2-window micro-batches would fit, but memory_fit is off" in lines[0]
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


CASES = [
    ["BDHLM", 4, 256, {"n_layer": 2, "n_embd": 128, "n_head": 4, "mlp_internal_dim_multiplier": 32}],
    ["BDHLM", 8, 128, {"n_layer": 4, "n_embd": 64, "n_head": 2, "mlp_internal_dim_multiplier": 32}],
    ["GPT2LM", 16, 128, {"n_layer": 2, "n_embd": 128, "n_head": 4}],
    ["LlamaLM", 16, 128, {"n_layer": 2, "n_embd": 128, "n_head": 4, "intermediate_size": 352}],
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux peak RSS only")
def test_the_estimate_bounds_the_measured_peak_of_a_training_step():
    """Steps of 80-300 MB, each in benchmarks/step_memory.py's fresh process: the measured peak
    is at least half the estimate and within the headroom a split leaves (it plans to use
    HEADROOM of the free memory), so a split chosen from the estimate fits. The small BDH steps
    peak at 0.87-0.95 of the estimate on a CPU without AVX-512 and at 0.93-1.03 on one with it
    (the same step's peak varies by ~30 MB run to run): results/memory-fit/summary.md."""
    result = subprocess.run(
        [sys.executable, "benchmarks/step_memory.py", json.dumps(CASES)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    for case in json.loads(result.stdout):
        assert 0.5 <= case["ratio"] <= 1 / HEADROOM, case


@pytest.mark.slow
def test_sigkill_mid_accumulation_then_resume_is_exact(tmp_path, run_cli, monkeypatch):
    """A split run (4 x 1, dropout on: the masks resume too) killed after its step-2
    checkpoint, while it accumulates step 3, resumes to the uninterrupted run's losses."""
    monkeypatch.setenv(LIMIT_ENV, limit_for(1))
    dropout = ("--model.init_args.config.dropout", "0.1", "--trainer.max_steps", "8")
    code, err = run_cli(tiny_fit(tmp_path, tmp_path / "straight", *dropout))
    assert code == 0, err[-2000:]
    expected = logged(tmp_path / "straight")

    root = tmp_path / "crashed"
    args = tiny_fit(tmp_path, root, *dropout)
    with open(tmp_path / "stderr", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bdh_pl", *args], cwd=REPO, stdout=subprocess.DEVNULL,
            stderr=log,
        )  # fmt: skip
    last = root / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not (last.is_file() and (saved_step(last) or 0) >= 2):
        assert proc.poll() is None and time.time() < deadline, "ended before it could be killed"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    killed_at = saved_step(last)
    assert killed_at < 8, killed_at
    code, err = run_cli([*args, "--ckpt_path", "last"])
    assert code == 0, err[-2000:]
    got = logged(root)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key


def fake_trainer(num_devices: int = 1, world_size: int = 1, **strategy) -> SimpleNamespace:
    return SimpleNamespace(
        strategy=SimpleNamespace(root_device=torch.device("cpu"), **strategy),
        num_devices=num_devices,
        world_size=world_size,
        global_rank=1,
        precision="32-true",
        accumulate_grad_batches=1,
        val_check_interval=2,
        datamodule=None,
    )


def test_processes_on_one_cpu_split_its_memory_between_them(monkeypatch, capsys):
    """Two DDP ranks on one host each get half of its memory: where one process would run
    the batch whole, each of two runs it as 2 x 2."""
    model = BDHLM(
        BDHConfig(n_layer=2, n_embd=64, n_head=2, mlp_internal_dim_multiplier=16, block_size=BLOCK)
    )
    monkeypatch.setenv(LIMIT_ENV, str(2 * float(limit_for(2))))
    parts = {}
    for devices in (1, 2):
        data = SimpleNamespace(batch_size=BATCH, block_size=BLOCK, micro_batches=1)
        trainer = fake_trainer(num_devices=devices)
        parts[devices] = fit_to_memory(model, data, trainer)
        assert data.micro_batches == trainer.accumulate_grad_batches == parts[devices]
        assert trainer.val_check_interval == 2 * parts[devices]
    assert parts == {1: 1, 2: 2}
    assert "per process (2 share this machine)" in capsys.readouterr().err


@pytest.mark.parametrize(("mine", "other"), [(2, 4), (4, 2), (1, 1)])
def test_ranks_take_the_most_micro_batches_any_rank_needs(mine, other, capsys):
    """At setup each rank learns the others' split (a fake all-reduce of two ranks) and runs
    the finer one: the same number of micro-batches per step on every rank."""

    def reduce(tensor, reduce_op):
        assert reduce_op == "max"
        return torch.tensor(mine if mine >= other else other)  # this rank's and the other's

    trainer = fake_trainer(world_size=2, reduce=reduce)
    trainer.datamodule = SimpleNamespace(batch_size=8, micro_batches=mine)
    trainer.accumulate_grad_batches, trainer.val_check_interval = 3 * mine, 10 * mine
    MicroBatchCounters().setup(trainer, None, "fit")
    most = max(mine, other)
    assert trainer.datamodule.micro_batches == most
    assert (trainer.accumulate_grad_batches, trainer.val_check_interval) == (3 * most, 10 * most)
    err = capsys.readouterr().err
    assert ("as 4 micro-batches" in err) == (mine < other)


def test_an_evaluation_batch_over_the_estimate_is_lowered_or_refused(monkeypatch, capsys):
    """Training batches of 4 fit, evaluation batches of 16 might not: evaluation runs in
    batches of the largest divisor of 16 whose estimate fits (4 of up to 5 windows), and twice
    as many batches are validated, said in one line; with memory_fit off, one line refuses."""
    model = BDHLM(
        BDHConfig(n_layer=2, n_embd=64, n_head=2, mlp_internal_dim_multiplier=16, block_size=BLOCK)
    )
    monkeypatch.setenv(LIMIT_ENV, limit_for(5))
    data = SimpleNamespace(batch_size=BATCH, block_size=BLOCK, micro_batches=1, eval_batch_size=16)
    trainer = fake_trainer()
    trainer.limit_val_batches, trainer.num_sanity_val_steps = 2, 1
    assert fit_to_memory(model, data, trainer) == 1
    assert (data.eval_batch_size, data.micro_batches, trainer.accumulate_grad_batches) == (4, 1, 1)
    assert (trainer.limit_val_batches, trainer.num_sanity_val_steps) == (8, 4)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("memory: evaluation in batches of 4 (not 16)")

    data.eval_batch_size = 16
    with pytest.raises(UserError, match="evaluation batches of 4 would fit, but memory_fit is off"):
        fit_to_memory(model, data, trainer, "off")
    data.eval_mode = "stream"  # one window per batch whatever eval_batch_size says: no split
    assert fit_to_memory(model, data, trainer, "off") == 1 and data.eval_batch_size == 16
