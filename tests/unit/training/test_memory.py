"""validate and test fitted to the memory at hand as fit is: an evaluation batch whose estimate
does not fit runs in smaller batches (the same windows, the same loss), said in one line; with
--memory_fit off, one line refuses."""

import csv
from pathlib import Path

import pytest
import torch

from bdh_pl.training import memory, trainer_options
from bdh_pl.training.memory import HEADROOM, LIMIT_ENV, step_memory
from bdh_pl.training.trainer_options import FORCE_BF16_ENV

from helpers import SMOKE, digit_text

BLOCK, EVAL_BATCH, BATCHES = 32, 8, 2


def limit_for(network: torch.nn.Module, windows: int) -> str:
    """A $BDH_PL_MEMORY_LIMIT_GB under which evaluation batches of `windows` fit, and no larger
    ones (no gradients nor AdamW moments: an evaluation alone)."""
    model = type("Holder", (), {"network": network})()
    step = step_memory(model, BLOCK, "32-true", torch.device("cpu"), training=False)
    between = (step.bytes(windows) + step.bytes(windows + 1)) / 2
    return str(between / HEADROOM / 2**30)


@pytest.fixture
def evaluate(tmp_path, run_cli, save_checkpoint):
    """evaluate(stage, root, *extra) -> (exit code, stderr): a tiny BDH checkpoint validated
    or tested on BATCHES batches of EVAL_BATCH windows of its own text."""
    ckpt = tmp_path / "tiny.ckpt"
    network = save_checkpoint(ckpt, "bdh", block_size=BLOCK)
    text = tmp_path / "text.txt"
    text.write_bytes(digit_text(20000))

    def run(stage: str, root: Path, *extra: str) -> tuple[int, str]:
        limit = "limit_val_batches" if stage == "validate" else "limit_test_batches"
        return run_cli([
            stage, *SMOKE, "--data", "bdh_pl.data.TextFile", "--data.init_args.path", str(text),
            *("--data.init_args.eval_batch_size", str(EVAL_BATCH), f"--trainer.{limit}", str(BATCHES)),
            *("--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root)),
            *("--ckpt_path", str(ckpt), *extra),
        ])  # fmt: skip

    run.network = network
    return run


def logged(root: Path, key: str) -> float:
    """`key`'s value in the run's metrics.csv (one evaluation: one row holds it)."""
    (log,) = root.glob("version_*/metrics.csv")
    with open(log) as f:
        (value,) = [row[key] for row in csv.DictReader(f) if row.get(key)]
    return float(value)


@pytest.mark.parametrize(("stage", "key"), [("test", "test/loss"), ("validate", "val/loss")])
def test_an_evaluation_batch_over_the_estimate_runs_in_smaller_batches_with_the_same_loss(
    tmp_path, evaluate, monkeypatch, stage, key
):
    """8 x 2 windows (whole) and 2 x 8 (split: the batch limit grows with the split, so the
    same windows are scored): the same loss."""
    code, err = evaluate(stage, tmp_path / "whole")
    assert code == 0, err[-2000:]
    assert "memory:" not in err

    monkeypatch.setenv(LIMIT_ENV, limit_for(evaluate.network, 2))
    code, err = evaluate(stage, tmp_path / "split")
    assert code == 0, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("memory:")]
    assert len(lines) == 1, err[-2000:]
    assert lines[0].startswith(f"memory: evaluation in batches of 2 (not {EVAL_BATCH})")
    expected = logged(tmp_path / "whole", key)
    assert logged(tmp_path / "split", key) == pytest.approx(expected, rel=1e-6)
    if stage == "test":  # the same count too: 16 windows of 32 tokens
        assert logged(tmp_path / "split", "test/tokens") == EVAL_BATCH * BATCHES * BLOCK


def test_memory_fit_off_refuses_an_evaluation_batch_over_the_estimate(
    tmp_path, evaluate, monkeypatch
):
    monkeypatch.setenv(LIMIT_ENV, limit_for(evaluate.network, 4))
    code, err = evaluate("test", tmp_path / "runs", "--memory_fit", "off")
    # (besides the line naming what the checkpoint's hyperparameters set)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("test: ")]
    assert code == 2 and len(lines) == 1, err[-2000:]
    assert lines[0].startswith("error: this run does not fit in memory: an evaluation batch of 8")
    assert "evaluation batches of 4 would fit, but memory_fit is off" in lines[0]
    assert "eval_batch_size" in lines[0]
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_an_evaluation_says_the_bf16_fallback_once_and_estimates_in_fp32(
    tmp_path, evaluate, monkeypatch
):
    """On a CPU whose flags show no bf16 (faked, so the test is the same on any CPU), `test`
    runs a bf16 request in fp32 as `fit` does, and fits its batches to fp32's memory."""
    monkeypatch.setattr(trainer_options, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.delenv(FORCE_BF16_ENV, raising=False)
    estimated = []

    def recording(model, block_size, precision, device, training=True):
        estimated.append((precision, training))
        return step_memory(model, block_size, precision, device, training)

    monkeypatch.setattr(memory, "step_memory", recording)
    monkeypatch.setenv(LIMIT_ENV, limit_for(evaluate.network, 4))
    code, err = evaluate("test", tmp_path / "runs", "--trainer.precision", "bf16-mixed")
    assert code == 0, err[-2000:]
    lines = [line for line in err.splitlines() if "runs as 32-true" in line]
    assert len(lines) == 1 and lines[0].startswith("precision: bf16-mixed runs as 32-true")
    assert "memory: evaluation in batches of 4 (not 8)" in err
    assert estimated == [("32-true", False)]
