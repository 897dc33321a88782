"""Lightning's DDP through Trainer flags only: 2 CPU processes (gloo) give the 1-process numbers."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE = [
    "--config",
    "configs/shakespeare.yaml",
    "--config",
    "configs/cpu.yaml",
    "--config",
    "configs/cpu/bdh.yaml",
    "--trainer.enable_progress_bar",
    "false",
]


def bdh_pl(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bdh_pl", *args, *SMOKE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_ddp_two_processes_match_one(data_dir, tmp_path):
    bdh_pl(
        "fit",
        "--trainer.max_steps",
        "6",
        "--trainer.val_check_interval",
        "3",
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--trainer.default_root_dir",
        str(tmp_path / "fit"),
    )
    ckpt = tmp_path / "fit" / "version_0" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), "DDP training wrote no checkpoint"

    results = {}
    for devices in ("1", "2"):
        root = tmp_path / f"test{devices}"
        bdh_pl(
            "test",
            "--ckpt_path",
            str(ckpt),
            "--trainer.strategy",
            "ddp",
            "--trainer.devices",
            devices,
            "--trainer.accelerator",
            "cpu",
            "--trainer.default_root_dir",
            str(root),
        )
        results[devices] = json.loads((root / "version_0" / "test_metrics.json").read_text())
    one, two = results["1"]["metrics"], results["2"]["metrics"]
    assert results["2"]["world_size"] == 2
    assert two["test/tokens"] == one["test/tokens"] == 55_770  # each token on exactly one rank
    assert two["test/bytes"] == one["test/bytes"] and two["test/words"] == one["test/words"]
    assert two["test/loss"] == pytest.approx(one["test/loss"], abs=1e-6)
