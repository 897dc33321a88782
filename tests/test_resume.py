"""Nothing lost: a run killed mid-training resumes to exactly the uninterrupted result."""

import csv
import math
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

from bdh_pl.data import TinyShakespeare
from bdh_pl.errors import UserError
from bdh_pl.training.language_model import LanguageModel

REPO = Path(__file__).resolve().parents[1]
RUN = [
    sys.executable,
    "-m",
    "bdh_pl",
    "fit",
    "--config",
    "configs/shakespeare.yaml",
    "--config",
    "configs/cpu.yaml",
    "--config",
    "configs/cpu/bdh.yaml",
    "--trainer.max_steps",
    "30",
    "--model.init_args.dropout",
    "0.1",  # dropout masks must resume too
    "--trainer.enable_progress_bar",
    "false",
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
def test_sigkill_then_resume_matches_an_uninterrupted_run(data_dir, tmp_path):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    subprocess.run(
        [*RUN, "--trainer.default_root_dir", str(straight)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )

    proc = subprocess.Popen(
        [*RUN, "--trainer.default_root_dir", str(crashed)],
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

    subprocess.run(
        [*RUN, "--trainer.default_root_dir", str(crashed), "--ckpt_path", "last"],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )
    expected, resumed = val_losses(straight), val_losses(crashed)
    assert resumed.keys() == expected.keys()  # validations at the same steps, through the end
    after_kill = [step for step in expected if step > killed_at]
    assert after_kill
    for step in after_kill:
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), step


class Exploding(LanguageModel):
    """Finite for two steps, then NaN: a stand-in for a diverging run."""

    def build_network(self) -> nn.Module:
        return nn.Embedding(self.hparams.vocab_size, self.hparams.vocab_size)

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
    model = Exploding(vocab_size=256, block_size=16)
    with pytest.raises(UserError, match="training loss is nan at step 2"):
        trainer.fit(model, datamodule=TinyShakespeare(block_size=16, batch_size=2))
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 2
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values())
