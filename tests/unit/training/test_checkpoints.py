"""Checkpoints are untrusted: safe loading, clear refusals, and official BDH weights imported."""

from pathlib import Path

import pytest
import torch

from bdh_pl.errors import UserError
from bdh_pl.models.bdh import BDH, BDHConfig
from bdh_pl.training.loading import infer_bdh_dims, load_untrusted, plain_state_dict

TINY = BDHConfig(n_layer=2, n_embd=32, n_head=2, mlp_internal_dim_multiplier=8, dropout=0.0)


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


# --- which checkpoint `--ckpt_path best` means, and a full disk during a save ---------------


def fake_best(path: Path, score: float, mode: str = "min") -> Path:
    """A file like the one ModelCheckpoint(monitor="val/loss") writes, with its stored score."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = f"ModelCheckpoint{{'monitor': 'val/loss', 'mode': '{mode}', 'every_n_train_steps': 0}}"
    state = {"monitor": "val/loss", "best_model_score": torch.tensor(score)}
    torch.save({"callbacks": {key: {**state, "best_model_path": str(path)}}}, path)
    return path


def test_best_means_the_best_stored_score_not_the_newest_file(tmp_path):
    from bdh_pl.training.run_folders import best_checkpoint

    good = fake_best(tmp_path / "version_0" / "checkpoints" / "best.ckpt", 1.5)
    fake_best(tmp_path / "version_1" / "checkpoints" / "best.ckpt", 2.5)  # newer, worse
    assert best_checkpoint(tmp_path) == good
