"""A checkpoint written before the LightningModules moved to `bdh_pl.training` (it stores the
class path `bdh_pl.lit_models.BDHLM`) still loads: in `generate` and in `test --ckpt_path`."""

import json
from pathlib import Path

import torch

from bdh_pl.training.lit_models import BDHLM
from bdh_pl.training.loading import model_class

from helpers import SMOKE

# Written by bdh-pl 0.1.0 (commit c9f942f): a 2-step fit of a tiny BDH on tiny Shakespeare.
LEGACY = Path(__file__).resolve().parents[2] / "fixtures" / "bdh-tiny-v0.1.0.ckpt"
SIZES = ["--model.init_args.n_embd", "16", "--model.init_args.n_head", "1"]
SIZES += ["--model.init_args.mlp_internal_dim_multiplier", "4", "--data.init_args.block_size", "16"]


def test_the_old_class_path_resolves_to_the_same_class():
    checkpoint = torch.load(LEGACY, weights_only=True)
    assert checkpoint["hyper_parameters"]["_class_path"] == "bdh_pl.lit_models.BDHLM"
    assert model_class("bdh_pl.lit_models.BDHLM") is BDHLM


def test_a_checkpoint_from_before_the_move_is_tested(tmp_path, run_cli, data_dir):
    code, err = run_cli(
        ["test", *SMOKE, "--model", "bdh_pl.lit_models.BDHLM", *SIZES, "--ckpt_path", str(LEGACY)]
        + ["--trainer.default_root_dir", str(tmp_path), "--trainer.limit_test_batches", "2"]
    )
    assert code == 0, err
    (metrics_file,) = tmp_path.glob("version_*/test_metrics.json")
    metrics = json.loads(metrics_file.read_text())
    # Two optimizer steps from random weights: still close to a uniform byte model (8 bits).
    assert 6.0 < metrics["metrics"]["test/bpb"] < 8.5
