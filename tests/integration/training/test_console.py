"""What `fit` prints: the model summary without `Total FLOPs: 0`, a training bar that counts
steps out of max_steps (no `Epoch 0/-2`), and the same after a resume (no `60/29`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import ModelSummary, ProgressBar, TQDMProgressBar

from bdh_pl.training.glue.console import OUR_KINDS, swap_default_console

from helpers import SMOKE

REPO = Path(__file__).resolve().parents[3]
STEPS = 4
TINY = [
    "fit",
    *SMOKE,
    *("--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1"),
    *("--trainer.num_sanity_val_steps", "0"),
]
# `N/M` of a bar, not `0/-2` nor a path.
COUNT = re.compile(r"(?<![\d/])(\d+)/(\d+)(?![\d/])")


def fit(root: Path, *args: str) -> str:
    """stdout and stderr of a real `python -m bdh_pl fit`: the bar and the summary go through
    Rich's console, tqdm or logging, which only a child process captures all of."""
    result = subprocess.run(
        [sys.executable, "-m", "bdh_pl", *TINY, "--trainer.default_root_dir", str(root), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def training_bar(output: str) -> list[str]:
    """The training bar's states (Rich prints its last one when not on a terminal, tqdm each)."""
    lines = re.split(r"[\r\n]", output)
    return [line for line in lines if "it/s" in line and "Validation" not in line]


def counts(bar: list[str]) -> list[tuple[int, int]]:
    return [(int(n), int(m)) for line in bar for n, m in COUNT.findall(line)]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, data_dir) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("console")
    return root, fit(root, "--trainer.max_steps", str(STEPS))


@pytest.mark.slow
def test_the_summary_prints_no_zero_flops(first_run):
    output = first_run[1]
    assert "Trainable params" in output, "no model summary"
    assert "Total FLOPs" not in output  # Lightning's count without an example input: 0
    assert "FLOPs per training batch (forward + backward)" in output


@pytest.mark.slow
def test_the_training_bar_counts_steps_not_epochs(first_run):
    bar = training_bar(first_run[1])
    assert bar, first_run[1][-2000:]
    assert "/-2" not in first_run[1]
    assert all(line.lstrip().startswith("Training") for line in bar), bar
    assert counts(bar) and all(total == STEPS for _, total in counts(bar)), bar
    assert counts(bar)[-1] == (STEPS, STEPS)


@pytest.mark.slow
def test_a_resumed_bar_counts_from_the_step_reached_to_max_steps(first_run):
    root, _ = first_run
    output = fit(root, "--trainer.max_steps", str(2 * STEPS), "--ckpt_path", "last")
    assert f"continuing {root / 'version_0'} from step {STEPS}" in output
    found = counts(training_bar(output))
    assert found, output[-2000:]
    for done, total in found:
        assert STEPS <= done <= total == 2 * STEPS, found
    assert found[-1] == (2 * STEPS, 2 * STEPS)


def test_only_lightning_s_own_bar_and_summary_are_swapped():
    trainer = L.Trainer(logger=False, enable_checkpointing=False)
    defaults = [type(c) for c in trainer.callbacks if isinstance(c, (ProgressBar, ModelSummary))]
    swap_default_console(trainer, named=[])
    swapped = [type(c) for c in trainer.callbacks if isinstance(c, (ProgressBar, ModelSummary))]
    assert swapped == [OUR_KINDS[kind] for kind in defaults]  # Rich or not, as Lightning chose

    mine = TQDMProgressBar(refresh_rate=7)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, callbacks=[mine])
    swap_default_console(trainer, named=[mine])
    assert trainer.progress_bar_callback is mine  # a bar the config names stays
