"""The one loader: every kind of model file told apart, official weights only with an explicit
n_layer, and damaged or foreign files refused in one line naming the file."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from bdh_pl.errors import UserError
from bdh_pl.tools.export import export, save_bdh
from bdh_pl.training.loading import load_model, load_network, read_model_file

IDS = torch.tensor([[10, 84, 111, 32, 98, 101]])


def logits(network: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return network.eval()(IDS)


@pytest.fixture
def files(tmp_path, save_checkpoint):
    """A BDH checkpoint, the same weights as official plain weights and as a BDH folder."""
    network = save_checkpoint(tmp_path / "m.ckpt", "bdh")
    torch.save({"model": network.state_dict(), "iter": 3}, tmp_path / "official.pt")
    save_bdh(network, tmp_path / "folder", block_size=32)
    return tmp_path, logits(network)


def test_each_kind_is_told_apart_and_loads_the_same_model(files, tmp_path, save_checkpoint):
    root, expected = files
    kinds = {"m.ckpt": "checkpoint", "official.pt": "weights", "folder": "bdh-folder"}
    for name, kind in kinds.items():
        assert read_model_file(root / name).kind == kind
        loaded = load_model(root / name, n_layer=2 if kind == "weights" else None)
        torch.testing.assert_close(logits(loaded.model.network), expected, rtol=0, atol=0)
        assert loaded.tokenizer == "byte" and not loaded.model.training
    save_checkpoint(tmp_path / "g.ckpt", "gpt2")
    export(str(tmp_path / "g.ckpt"), tmp_path / "hf")
    assert read_model_file(tmp_path / "hf").kind == "hf-folder"
    assert load_network(tmp_path / "hf").block_size == 32
    with pytest.raises(UserError, match="is a Hugging Face folder"):
        load_model(tmp_path / "hf")


def test_official_weights_need_an_explicit_n_layer(files):
    root, _ = files
    with pytest.raises(UserError, match=r"do not record n_layer.*give .*--n_layer N"):
        load_model(root / "official.pt")
    with pytest.raises(UserError, match="n_layer=N"):
        load_network(root / "official.pt")
    assert load_model(root / "official.pt", n_layer=3).model.config.n_layer == 3
    with pytest.raises(UserError, match="n_layer 3 was given, but .* of 2 layers"):
        load_model(root / "m.ckpt", n_layer=3)


def damage(folder, what: str) -> None:
    config = json.loads((folder / "config.json").read_text())
    weights = folder / "model.safetensors"
    if what == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif what == "a pickle for weights":
        weights.write_bytes(pickle.dumps({"encoder": [1, 2]}))
    elif what == "config without n_layer":
        del config["n_layer"]
    elif what == "config with another width":
        config["n_embd"] = 64
    elif what == "config with no neurons":
        config["mlp_internal_dim_multiplier"] = 0
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("what", "expected"),
    [
        ("truncated weights", "truncated or not a safetensors file"),
        ("a pickle for weights", "truncated or not a safetensors file"),
        ("config without n_layer", "config.json' lacks n_layer"),
        ("config with another width", "does not match the model config: decoder"),
        ("config with no neurons", "mlp_internal_dim_multiplier must be positive"),
    ],
)
def test_a_damaged_bdh_folder_is_one_line_naming_it(files, what, expected):
    root, _ = files
    damage(root / "folder", what)
    with pytest.raises(UserError, match=expected) as err:
        load_model(root / "folder")
    assert "\n" not in str(err.value) and "folder" in str(err.value)


def test_a_hugging_face_folder_without_weights_is_one_line(tmp_path, save_checkpoint):
    save_checkpoint(tmp_path / "g.ckpt", "gpt2")
    export(str(tmp_path / "g.ckpt"), tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").unlink()
    with pytest.raises(UserError, match="cannot load the Hugging Face folder"):
        load_network(tmp_path / "hf")


# --- the trust model: a config is code, a checkpoint never names code to run -----------------


@pytest.mark.parametrize(
    "field, class_path",
    [
        ("hyper_parameters", "lightning.pytorch.callbacks.LambdaCallback"),
        ("hyper_parameters", "os.system"),
        ("datamodule_hyper_parameters", "lightning.pytorch.callbacks.LambdaCallback"),
        ("datamodule_hyper_parameters", "os.system"),
    ],
)
def test_a_checkpoint_never_names_code_to_run(field, class_path, tmp_path, save_checkpoint):
    """docs/reliability.md's trust model: a config file may name any importable class (a
    LambdaCallback calling any function: it is code, as in Lightning); a checkpoint is data:
    the classes it names are looked up among bdh-pl's own models and data sets only."""
    from bdh_pl.tools.common import checkpoint_data
    from bdh_pl.training.loading import check_hparams

    save_checkpoint(tmp_path / "m.ckpt", "bdh")
    checkpoint = torch.load(tmp_path / "m.ckpt", weights_only=True)
    checkpoint.setdefault(field, {})["_class_path"] = class_path
    torch.save(checkpoint, tmp_path / "named.ckpt")
    found = read_model_file(tmp_path / "named.ckpt")
    with pytest.raises(UserError, match="not a bdh-pl (model|dataset)|does not name a bdh-pl"):
        if field == "hyper_parameters":
            check_hparams(found.checkpoint, found.path)
        else:
            loaded = load_model(tmp_path / "m.ckpt")._replace(checkpoint=found.checkpoint)
            checkpoint_data(loaded, found.path)
