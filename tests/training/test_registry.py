"""The model registry and its YAML overlays agree, and the overlays compose with the dataset
configs into what the CLI instantiates (checked with --print_config: nothing is built)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from transformers import GPT2Config, GPT2LMHeadModel

from bdh_pl.cli import main
from bdh_pl.errors import UserError
from bdh_pl.training.lit_models import GPT2LM, LlamaLM
from bdh_pl.training.registry import MODELS, build_model, get_spec, model_config_path

REPO = Path(__file__).resolve().parents[2]
RECIPE = str(REPO / "configs" / "recipes" / "nanogpt-shakespeare-cpu.yaml")
WIKITEXT2 = str(REPO / "configs" / "wikitext2.yaml")

# main(args) in-process, under pytest's own sys.argv: Lightning warns about having both.
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")


def print_config(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_names():
    assert set(MODELS) == {"bdh", "gpt2", "gpt2-medium", "gpt2-scratch", "llama-tiny"}
    with pytest.raises(UserError, match="gpt2-scratch"):
        get_spec("gpt3")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_yaml_overlay_matches_registry(name):
    spec = get_spec(name)
    config = yaml.safe_load(model_config_path(name).read_text())
    class_path = f"{spec.lit_class.__module__}.{spec.lit_class.__qualname__}"
    assert config["model"]["class_path"] == class_path
    assert config["model"]["init_args"] == spec.init_args
    assert config["data"]["init_args"]["tokenizer"] == spec.default_tokenizer
    assert spec.accepts(spec.default_tokenizer)


def test_tokenizer_needs():
    assert get_spec("bdh").accepts("byte") and not get_spec("bdh").accepts("gpt2")
    assert get_spec("gpt2").accepts("gpt2") and not get_spec("gpt2").accepts("byte")
    assert get_spec("llama-tiny").accepts("byte") and get_spec("llama-tiny").accepts("gpt2")


@pytest.mark.parametrize("name, lit_class", [("gpt2-scratch", GPT2LM), ("llama-tiny", LlamaLM)])
def test_build_model_with_overrides(name, lit_class):
    model = build_model(name, n_layer=1, n_embd=32, n_head=2, vocab_size=50257, block_size=32)
    assert isinstance(model, lit_class)
    assert model.hparams.learning_rate == get_spec(name).init_args["learning_rate"]
    assert model.network.hf.config.vocab_size == 50257


@pytest.mark.parametrize("name", ["gpt2", "gpt2-scratch", "llama-tiny"])
def test_overlay_replaces_the_dataset_model(capsys, name):
    config = print_config(
        capsys,
        "test",
        "--config",
        "configs/wikitext2.yaml",
        "--config",
        str(model_config_path(name)),
    )
    spec = get_spec(name)
    assert config["model"]["class_path"].endswith(spec.lit_class.__name__)
    for key, value in spec.init_args.items():  # nothing of BDH's config leaks through
        assert config["model"]["init_args"][key] == (list(value) if key == "betas" else value)
    assert config["data"]["init_args"]["tokenizer"] == spec.default_tokenizer
    assert config["data"]["class_path"] == "bdh_pl.data.WikiText2"


def test_nanogpt_recipe_parses(capsys):
    config = print_config(capsys, "fit", "--config", RECIPE)
    model, data = config["model"]["init_args"], config["data"]["init_args"]
    assert config["model"]["class_path"] == "bdh_pl.training.lit_models.GPT2LM"
    assert (model["n_layer"], model["n_head"], model["n_embd"], model["dropout"]) == (4, 4, 128, 0)
    assert (model["learning_rate"], model["min_learning_rate"]) == (1e-3, 1e-4)
    assert (model["warmup_steps"], model["lr_decay_steps"]) == (100, 2000)
    assert model["betas"] == [0.9, 0.99] and model["weight_decay"] == 0.1
    assert (data["tokenizer"], data["block_size"], data["batch_size"]) == ("byte", 64, 12)
    assert config["trainer"]["max_steps"] == 2000 and config["trainer"]["gradient_clip_val"] == 1.0


@pytest.mark.slow
def test_nanogpt_recipe_trains(data_dir, tmp_path):
    # A few steps of the real recipe through the CLI; the full run is in results/nanogpt-recipe.
    main(
        [
            *("fit", "--config", RECIPE, "--trainer.max_steps", "4"),
            *("--trainer.val_check_interval", "4", "--trainer.limit_val_batches", "2"),
            *("--trainer.default_root_dir", str(tmp_path)),
            *("--trainer.enable_progress_bar", "false"),
        ]
    )
    assert (tmp_path / "version_0" / "checkpoints" / "last.ckpt").is_file()


def test_gpt2_checkpoint_with_byte_data_is_one_line_error(capsys, tmp_path):
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=64)).save_pretrained(
        tmp_path
    )
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                *("test", "--config", WIKITEXT2, "--config", str(model_config_path("gpt2"))),
                *("--model.init_args.name_or_path", str(tmp_path)),
                *("--data.init_args.tokenizer", "byte", "--data.init_args.block_size", "64"),
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("error: ")]
    assert "vocabulary of 50257" in line and "256" in line and "data.tokenizer" in line
