"""Checkpoints are untrusted: safe loading, clear refusals, and official BDH weights imported."""

import errno
import json
import os
from pathlib import Path

import pytest
import torch

from bdh_pl.errors import UserError
from bdh_pl.models.bdh import BDH, BDHConfig
from bdh_pl.training.loading import infer_bdh_dims, load_untrusted, plain_state_dict

from helpers import SMOKE

TINY = BDHConfig(n_layer=2, n_embd=32, n_head=2, mlp_internal_dim_multiplier=8, dropout=0.0)
ARGS = [
    *SMOKE,
    "--model.init_args.n_embd",
    "64",  # deliberately wrong: sizes must come from the weights
    "--model.init_args.n_head",
    "4",
]


class Payload:
    """Unpickling this would create the file named in `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload(marker)}, path)
    with pytest.raises(UserError, match="refused to load .* would import .* while unpickling"):
        load_untrusted(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: trusting the file runs it
    assert marker.exists()


def test_truncated_and_non_files_are_clear_errors(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(UserError, match="truncated or not a PyTorch file"):
        load_untrusted(path)
    with pytest.raises(UserError, match="is not a file"):
        load_untrusted(tmp_path)
    (tmp_path / "text.ckpt").write_text("hello")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_untrusted(tmp_path / "text.ckpt")


def test_plain_state_dicts_are_unwrapped_and_unprefixed():
    weights = BDH(TINY).state_dict()
    compiled = {f"_orig_mod.{k}": v for k, v in weights.items()}
    for saved in (weights, compiled, {"model": compiled}, {"state_dict": weights, "step": 3}):
        assert plain_state_dict(saved).keys() == weights.keys()
    assert infer_bdh_dims(weights) == {
        "n_embd": 32,
        "n_head": 2,
        "mlp_internal_dim_multiplier": 8,
        "vocab_size": 256,
    }
    with pytest.raises(UserError, match="not a BDH state_dict"):
        infer_bdh_dims({"weight": torch.ones(2)})


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


# --- which checkpoint `--ckpt_path best` means, and a full disk during a save ---------------


def fake_best(path: Path, score: float, mode: str = "min") -> Path:
    """A file like the one ModelCheckpoint(monitor="val/loss") writes, with its stored score."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = f"ModelCheckpoint{{'monitor': 'val/loss', 'mode': '{mode}', 'every_n_train_steps': 0}}"
    state = {"monitor": "val/loss", "best_model_score": torch.tensor(score)}
    torch.save({"callbacks": {key: {**state, "best_model_path": str(path)}}}, path)
    return path


def test_best_means_the_best_stored_score_not_the_newest_file(tmp_path):
    from bdh_pl.training.runs import best_checkpoint

    good = fake_best(tmp_path / "version_0" / "checkpoints" / "best.ckpt", 1.5)
    fake_best(tmp_path / "version_1" / "checkpoints" / "best.ckpt", 2.5)  # newer, worse
    assert best_checkpoint(tmp_path) == good


def test_a_full_disk_during_a_checkpoint_save_is_one_line_and_keeps_the_previous_one(
    tmp_path, monkeypatch, run_cli
):
    from bdh_pl.training import checkpoint_io

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
            *ARGS[:4],
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
