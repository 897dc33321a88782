"""Checkpoints of earlier layouts still load and test to the same bpb: one written before the
LightningModules moved to `bdh_pl.training` (it stores the class path
`bdh_pl.lit_models.BDHLM`, a module that no longer exists), and ones whose hyperparameters are
flat (`n_embd`, `learning_rate`, ... side by side), as every bdh-pl wrote them before the
models took their configs whole. loading.py nests them; the model must be the one a reader
would build by hand from the same numbers."""

import importlib.util
import json
from pathlib import Path

import lightning as L
import pytest
import torch

from bdh_pl.data import TinyShakespeare
from bdh_pl.models.bdh import BDH, BDHConfig
from bdh_pl.models.hf import GPT2Size
from bdh_pl.training.lit_models import BDHLM, GPT2LM
from bdh_pl.training.loading import check_hparams, load_model, model_class

from helpers import SMOKE

# Written by bdh-pl 0.1.0 (commit c9f942f): a 2-step fit of a tiny BDH on tiny Shakespeare.
LEGACY = Path(__file__).resolve().parents[2] / "fixtures" / "bdh-tiny-v0.1.0.ckpt"
LEGACY_SIZES = {"n_layer": 2, "n_embd": 16, "n_head": 1, "mlp_internal_dim_multiplier": 4}
# The flat hyperparameters a BDHLM saved before the configs were passed whole (every key
# LightningCLI wrote for it then), with a damped attention and 3 layers: shapes cannot tell
# either the layer count or the training settings.
FLAT_BDH = {
    "_class_path": "bdh_pl.training.lit_models.BDHLM",
    "n_layer": 3,
    "n_embd": 16,
    "n_head": 2,
    "mlp_internal_dim_multiplier": 4,
    "dropout": 0.0,
    "fused": True,
    "attention": "auto",
    "chunk_size": 8,
    "activation_checkpointing": False,
    "compile_elementwise": False,
    "vocab_size": 256,
    "attn_decay": "learned",
    "block_size": 16,
    "learning_rate": 0.002,
    "min_learning_rate": 0.0002,
    "warmup_steps": 10,
    "warmup_fraction": 0.05,
    "lr_decay_steps": None,
    "weight_decay": 0.1,
    "betas": [0.9, 0.95],
    "seed": 7,
    "compile": False,
    "_instantiator": "lightning.pytorch.cli.instantiate_module",
}
FLAT_GPT2 = {
    "_class_path": "bdh_pl.training.lit_models.GPT2LM",
    "n_layer": 1,
    "n_head": 2,
    "n_embd": 16,
    "dropout": 0.0,
    "vocab_size": 256,
    "block_size": 16,
    "learning_rate": 0.003,
    "min_learning_rate": 0.0003,
    "warmup_steps": 10,
    "warmup_fraction": None,
    "lr_decay_steps": None,
    "weight_decay": 0.1,
    "betas": [0.9, 0.95],
    "seed": 1337,
    "compile": False,
}


def flat_checkpoint(path: Path, network: torch.nn.Module, hparams: dict) -> Path:
    """A checkpoint as Lightning wrote it with flat hyperparameters: the LightningModule's
    state_dict is its network's under `network.`."""
    with torch.no_grad():  # non-trivial values everywhere, so a wrong mapping shows
        for p in network.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    state = {f"network.{k}": v for k, v in network.state_dict().items()}
    torch.save(
        {
            "pytorch-lightning_version": "2.6.0",
            "global_step": 3,
            "state_dict": state,
            "hyper_parameters": hparams,
            "datamodule_hyper_parameters": {"tokenizer": "byte", "block_size": 16},
        },
        path,
    )
    return path


def test_the_old_module_path_resolves_through_loading_only():
    checkpoint = torch.load(LEGACY, weights_only=True)
    assert checkpoint["hyper_parameters"]["_class_path"] == "bdh_pl.lit_models.BDHLM"
    assert model_class("bdh_pl.lit_models.BDHLM") is BDHLM
    assert importlib.util.find_spec("bdh_pl.lit_models") is None  # no shim module left


def test_flat_hyperparameters_are_nested_into_the_classes_configs():
    nested = check_hparams({"hyper_parameters": FLAT_BDH}, "flat.ckpt")
    assert nested["_class"] is BDHLM
    assert nested["config"]["n_layer"] == 3 and nested["config"]["attn_decay"] == "learned"
    assert nested["config"]["block_size"] == 16 and nested["execution"]["chunk_size"] == 8
    assert nested["training"]["learning_rate"] == 0.002 and nested["training"]["seed"] == 7
    with pytest.raises(Exception, match=r"hyperparameters \['n_experts'\] that BDHLM"):
        check_hparams({"hyper_parameters": {**FLAT_BDH, "n_experts": 2}}, "flat.ckpt")


@pytest.mark.parametrize("kind", ["v0.1.0", "flat-bdh", "flat-gpt2"])
def test_an_older_checkpoint_loads_as_the_model_built_by_hand(kind, tmp_path):
    """The loaded network computes what a network built by hand from the file's numbers, with
    the file's weights, computes: the same model, so the same bpb on any text."""
    torch.manual_seed(0)
    if kind == "v0.1.0":
        path, by_hand = LEGACY, BDH(BDHConfig(**LEGACY_SIZES, dropout=0.0))
        state = torch.load(LEGACY, weights_only=True)["state_dict"]
        by_hand.load_state_dict({k.removeprefix("network."): v for k, v in state.items()})
    elif kind == "flat-bdh":
        sizes = {k: FLAT_BDH[k] for k in ("n_layer", "n_embd", "n_head", "dropout")}
        config = BDHConfig(**sizes, mlp_internal_dim_multiplier=4, attn_decay="learned")
        by_hand = BDH(config)
        path = flat_checkpoint(tmp_path / "flat.ckpt", by_hand, FLAT_BDH)
    else:
        by_hand = GPT2LM(GPT2Size(n_layer=1, n_head=2, n_embd=16, dropout=0.0, block_size=16))
        by_hand = by_hand.network
        path = flat_checkpoint(tmp_path / "flat.ckpt", by_hand, FLAT_GPT2)
    loaded = load_model(path).model
    ids = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(loaded.network(ids), by_hand.eval()(ids), rtol=0, atol=1e-6)
    assert loaded.block_size == 16
    if kind == "flat-bdh":
        assert loaded.training_config.learning_rate == 0.002
        assert loaded.execution.chunk_size == 8


def test_a_flat_checkpoint_tests_to_the_bpb_of_the_model_built_by_hand(tmp_path, run_cli, data_dir):
    """`test --ckpt_path` on a flat-layout checkpoint: the CLI takes the sizes from the file,
    and its test/bpb is the one Lightning gives the hand-built model on the same windows."""
    torch.manual_seed(0)
    by_hand = BDHLM(BDHConfig(n_layer=3, n_embd=16, n_head=2, mlp_internal_dim_multiplier=4,
                              dropout=0.0, attn_decay="learned", block_size=16))  # fmt: skip
    path = flat_checkpoint(tmp_path / "flat.ckpt", by_hand.network, FLAT_BDH)
    code, err = run_cli(
        ["test", *SMOKE, "--ckpt_path", str(path), "--trainer.default_root_dir", str(tmp_path)]
        + ["--trainer.limit_test_batches", "1", "--data.init_args.eval_batch_size", "8"]
    )
    assert code == 0, err
    assert "n_layer=3" in err  # taken from the checkpoint over the config's 2
    (metrics_file,) = tmp_path.glob("version_*/test_metrics.json")
    cli_bpb = json.loads(metrics_file.read_text())["metrics"]["test/bpb"]
    trainer = L.Trainer(logger=False, enable_progress_bar=False, limit_test_batches=1)
    data = TinyShakespeare(block_size=16, eval_batch_size=8)
    (expected,) = trainer.test(by_hand, datamodule=data, verbose=False)
    assert cli_bpb == pytest.approx(expected["test/bpb"], rel=1e-6)


def test_a_checkpoint_from_before_the_move_is_tested(tmp_path, run_cli, data_dir):
    code, err = run_cli(
        ["test", *SMOKE, "--ckpt_path", str(LEGACY), "--trainer.default_root_dir", str(tmp_path)]
        + ["--trainer.limit_test_batches", "2"]
    )
    assert code == 0, err
    (metrics_file,) = tmp_path.glob("version_*/test_metrics.json")
    metrics = json.loads(metrics_file.read_text())
    # Two optimizer steps from random weights: still close to a uniform byte model (8 bits).
    assert 6.0 < metrics["metrics"]["test/bpb"] < 8.5
