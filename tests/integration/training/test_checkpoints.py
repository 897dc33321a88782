"""The integration half of tests/unit/training/test_checkpoints.py: its tests that fit, compile, read
more than a slice of real data or spend seconds of CPU (the unit tier has a minute)."""

import errno
import json
import os

import pytest
import torch
from unit.training.test_checkpoints import TINY

from bdh_pl.models.bdh import BDH

from helpers import SMOKE

ARGS = [
    *SMOKE,
    "--model.init_args.config.n_embd",
    "64",  # deliberately wrong: sizes must come from the weights
    "--model.init_args.config.n_head",
    "4",
]


@pytest.mark.slow
@pytest.mark.parametrize("compiled", [False, True])
def test_official_weights_give_the_same_test_loss_as_the_model(
    compiled, tmp_path, data_dir, run_cli
):
    torch.manual_seed(0)
    model = BDH(TINY).eval()
    weights = model.state_dict()
    if compiled:  # what torch.compile(model).state_dict() gives, in a wrapping dict
        weights = {"model": {f"_orig_mod.{k}": v for k, v in weights.items()}, "iter": 500}
    torch.save(weights, tmp_path / "best.pt")
    code, err = run_cli(
        [
            "test",
            *ARGS,
            "--ckpt_path",
            str(tmp_path / "best.pt"),
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    assert code == 0, err
    assert "n_layer=2 from the config" in err
    metrics = json.loads((tmp_path / "version_0" / "test_metrics.json").read_text())["metrics"]

    # Independent: the same model scores the test split in a plain loop.
    data = (data_dir / "tinyshakespeare" / "input.txt").read_bytes()
    test = torch.tensor(list(data[int(len(data) * 0.95) :]))
    stream = torch.cat([torch.tensor([ord("\n")]), test])
    nll, block = 0.0, 64
    with torch.no_grad():
        for start in range(0, len(test), block):
            x = stream[start : start + block][None]
            y = stream[start + 1 : start + block + 1][None]
            logits = model(x)[:, : y.size(1)]
            nll += torch.nn.functional.cross_entropy(logits[0], y[0], reduction="sum").item()
    assert metrics["test/tokens"] == len(test)
    assert metrics["test/loss"] == pytest.approx(nll / len(test), rel=1e-5)


@pytest.mark.slow
def test_plain_weights_cannot_seed_fit(tmp_path, run_cli):
    torch.save(BDH(TINY).state_dict(), tmp_path / "w.pt")
    code, err = run_cli(["fit", *ARGS, "--ckpt_path", str(tmp_path / "w.pt")])
    assert code == 2 and "plain weights" in err


def test_a_full_disk_during_a_checkpoint_save_is_one_line_and_keeps_the_previous_one(
    tmp_path, monkeypatch, run_cli
):
    from bdh_pl.training.glue import checkpoint_io

    saves, real_save = [], torch.save

    def save_until_full(obj, f):
        saves.append(1)
        if len(saves) == 3:  # best + last at step 2, then the disk is full
            f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(obj, f)

    monkeypatch.setattr(checkpoint_io.torch, "save", save_until_full)
    data = tmp_path / "text.txt"
    data.write_bytes(b"To be, or not to be, that is the question. " * 200)
    root = tmp_path / "runs"
    code, err = run_cli(
        [
            "fit",
            *SMOKE,  # the CPU-size BDH (ARGS[:4] had lost cpu/bdh.yaml: a 25M BDH, for 2 steps)
            "--data",
            "bdh_pl.data.TextFile",
            "--data.init_args.path",
            str(data),
            "--data.init_args.block_size",
            "16",
            "--data.init_args.batch_size",
            "2",
            "--trainer.max_steps",
            "6",
            "--trainer.val_check_interval",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.num_sanity_val_steps",
            "0",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.default_root_dir",
            str(root),
        ]
    )
    checkpoints = root / "version_0" / "checkpoints"
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert lines[-1].startswith(f"error: no space left on the device of '{checkpoints}'")
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 2
    assert not list(checkpoints.glob(".*")), "a temp file was left behind"
