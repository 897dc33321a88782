"""The model registry is read from configs/model/*.yaml, and the configs compose by concern
(data, model, trainer, CPU size) into what the CLI instantiates (checked with --print_config:
nothing is built)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from bdh_pl.cli import main
from bdh_pl.errors import UserError
from bdh_pl.models.bdh import BDHConfig
from bdh_pl.models.hf import LlamaSize
from bdh_pl.training.lit_models import BDHLM, GPT2LM, LlamaLM
from bdh_pl.training.registry import build_model, get_spec, model_config_path, models
from bdh_pl.training.training_config import TrainingConfig

from helpers import tiny_gpt2_folder

REPO = Path(__file__).resolve().parents[3]
RECIPE = str(REPO / "configs" / "recipes" / "nanogpt-shakespeare-cpu.yaml")
WIKITEXT2 = str(REPO / "configs" / "wikitext2.yaml")

# main(args) in-process, under pytest's own sys.argv: Lightning warns about having both.
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")


def print_config(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


NAMES = ["bdh", "gpt2", "gpt2-medium", "gpt2-scratch", "llama-tiny"]


def test_names():
    assert set(models()) == set(NAMES)
    with pytest.raises(UserError, match="gpt2-scratch"):
        get_spec("gpt3")


def test_a_model_is_its_yaml(tmp_path, monkeypatch):
    # A new file is a new model: name from the stem, class and defaults from the file.
    (tmp_path / "small-llama.yaml").write_text(
        "# A small LLaMA\nmodel:\n  class_path: bdh_pl.training.lit_models.LlamaLM\n"
        "  init_args: {config: {n_layer: 1, n_head: 2, n_embd: 32, intermediate_size: 64}}\n"
    )
    monkeypatch.setattr("bdh_pl.training.registry.CONFIG_DIR", tmp_path)
    models.cache_clear()
    try:
        spec = get_spec("small-llama")
        assert spec.lit_class is LlamaLM and spec.about == "A small LLaMA"
        assert spec.init_args["config"]["n_layer"] == 1 and spec.accepts("gpt2")
        model = build_model("small-llama", config={"vocab_size": 300, "block_size": 16})
        assert model.network.hf.config.num_hidden_layers == 1
        assert model.network.hf.config.vocab_size == 300
        assert set(models()) == {"small-llama"}
    finally:
        models.cache_clear()


def test_tokenizer_needs():
    assert get_spec("bdh").accepts("byte") and not get_spec("bdh").accepts("gpt2")
    assert get_spec("gpt2").accepts("gpt2") and not get_spec("gpt2").accepts("byte")
    assert get_spec("llama-tiny").accepts("byte") and get_spec("llama-tiny").accepts("gpt2")


def test_the_data_is_held_to_the_models_tokenizer_need():
    """Where data meets model (before a run starts): BDH reads bytes, the baselines either."""
    bpe = SimpleNamespace(tokenizer_name="gpt2")
    bdh = BDHLM(BDHConfig(n_layer=1, n_embd=32, n_head=2, mlp_internal_dim_multiplier=4))
    with pytest.raises(UserError, match="BDHLM reads byte tokens, data.tokenizer gives gpt2"):
        bdh.check_data(bpe, trainer=None)
    bdh.check_data(SimpleNamespace(tokenizer_name="byte"), trainer=None)
    LlamaLM(LlamaSize(n_layer=1, n_head=2, n_embd=32, intermediate_size=64)).check_data(bpe, None)


def wheel_builder() -> str | None:
    """A Python whose setuptools builds wheels offline (>= 70.1, or with `wheel`): this one,
    else the interpreter a virtual environment was made from (a venv seeds an old setuptools)."""
    check = "import setuptools.command.bdist_wheel"
    for python in dict.fromkeys([sys.executable, getattr(sys, "_base_executable", sys.executable)]):
        if subprocess.run([python, "-c", check], capture_output=True).returncode == 0:
            return python
    return None


@pytest.mark.slow
def test_a_wheel_resolves_model_names_outside_the_repository(tmp_path):
    """`pip wheel .`, installed without -e (pip install --target, no network), imported from
    outside the repository: the registry's files travel inside the package."""
    builder = wheel_builder()
    if builder is None:
        pytest.skip("no setuptools here builds a wheel offline (needs >= 70.1 or `wheel`)")
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "bdh_pl", source / "bdh_pl", ignore=ignore)

    def run(*command, **env: str) -> str:
        done = subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env or None
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    pip = ("-m", "pip", "--disable-pip-version-check", "-q")
    run(builder, *pip, "wheel", "--no-deps", "--no-build-isolation", "-w", "wheels", str(source))
    (wheel,) = (tmp_path / "wheels").glob("bdh_pl-*.whl")
    run(sys.executable, *pip, "install", "--no-deps", "--no-index", "--target", "site", str(wheel))
    site = tmp_path / "site"
    script = (
        "import bdh_pl.training.registry as r; print(r.__file__); print(' '.join(r.models())); "
        "print(r.model_config_path('gpt2-scratch'))"
    )
    out = run(sys.executable, "-c", script, PYTHONPATH=str(site), PATH="/usr/bin:/bin")
    out = out.splitlines()
    assert out[0].startswith(str(site)), out  # the installed wheel, not this checkout
    assert sorted(out[1].split()) == sorted(NAMES)
    assert Path(out[2]).is_file() and out[2].startswith(str(site))


@pytest.mark.parametrize("name, lit_class", [("gpt2-scratch", GPT2LM), ("llama-tiny", LlamaLM)])
def test_build_model_with_overrides(name, lit_class):
    sizes = {"n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 50257, "block_size": 32}
    model = build_model(name, config=sizes)
    assert isinstance(model, lit_class)
    yaml_args = yaml.safe_load(model_config_path(name).read_text())["model"]["init_args"]
    assert model.training_config.learning_rate == yaml_args["training"]["learning_rate"]
    assert model.config.n_layer == 1 and yaml_args["config"]["n_layer"] == 8
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
    given = flat(config["model"]["init_args"])
    for key, value in flat(spec.init_args).items():
        assert given[key] == value, key
    # nothing of BDH's config leaks through: the swap replaces the class and its configs
    assert "execution" not in config["model"]["init_args"]
    assert "config.mlp_internal_dim_multiplier" not in given
    assert config["data"]["init_args"]["tokenizer"] == spec.default_tokenizer
    assert config["data"]["class_path"] == "bdh_pl.data.WikiText2"


def flat(init_args: dict) -> dict:
    """{"config.n_embd": 64, "training.learning_rate": ...} of nested init_args."""
    return {f"{g}.{k}": v for g, values in init_args.items() for k, v in values.items()}


def configs(*names: str) -> list[str]:
    args = []
    for name in names:
        flag = "--trainer" if name == "trainer" else "--config"  # trainer.yaml: Trainer args
        args += [flag, str(REPO / "configs" / f"{name}.yaml")]
    return args


@pytest.mark.parametrize("data", ["shakespeare", "wikitext2"])
@pytest.mark.parametrize("name", NAMES)
def test_every_model_composes_by_concern_and_has_a_cpu_size(capsys, name, data):
    config = print_config(
        capsys,
        "fit",
        *configs(f"data/{data}", f"model/{name}", "trainer", "cpu", f"cpu/{name}"),
    )
    spec = get_spec(name)
    assert config["model"]["class_path"].endswith(spec.lit_class.__name__)
    assert (
        config["data"]["class_path"]
        .lower()
        .endswith(data.replace("shakespeare", "tinyshakespeare"))
    )
    assert config["data"]["init_args"]["tokenizer"] == spec.default_tokenizer
    trainer = config["trainer"]
    monitors = [c["init_args"].get("monitor") for c in trainer["callbacks"]]
    assert monitors == ["val/loss", "val/loss"]  # best checkpoint, early stop
    assert (trainer["precision"], trainer["max_steps"], trainer["limit_val_batches"]) == (
        "32-true",
        60,
        8,  # bounded validation: not all of WikiText-2's 1.1 MB every 10 steps
    )
    assert config["data"]["init_args"]["block_size"] == 64
    cpu = yaml.safe_load((REPO / "configs" / "cpu" / f"{name}.yaml").read_text())
    given = flat(config["model"]["init_args"])
    for key, value in flat((cpu.get("model") or {}).get("init_args", {})).items():
        assert given[key] == value
    if "config.n_embd" in given:
        assert given["config.n_embd"] <= 96  # CPU-sized


@pytest.mark.parametrize(
    "recipe, parts, extra",
    [
        ("shakespeare", ["data/shakespeare", "model/bdh", "trainer"], []),
        (
            "wikitext2",
            ["data/wikitext2", "model/bdh", "trainer"],
            ["--trainer.max_steps", "20000", "--trainer.val_check_interval", "500"],
        ),
    ],
)
def test_a_recipe_is_data_model_and_trainer(capsys, recipe, parts, extra):
    whole = print_config(capsys, "fit", *configs(recipe))
    composed = print_config(capsys, "fit", *configs(*parts), "--seed_everything", "1337", *extra)
    assert whole == composed
    assert whole["model"]["init_args"]["config"]["n_embd"] == 256  # the reference run's BDH


def test_the_cpu_overlay_follows_a_baseline(capsys):
    # Was: a BDH-only smoke overlay after a baseline failed on BDH's keys.
    config = print_config(
        capsys, "fit", *configs("shakespeare", "model/llama-tiny", "cpu", "cpu/llama-tiny")
    )
    assert config["model"]["class_path"].endswith("LlamaLM")
    assert config["model"]["init_args"]["config"]["intermediate_size"] == 256


def test_nanogpt_recipe_parses(capsys):
    config = print_config(capsys, "fit", "--config", RECIPE)
    sizes, model = config["model"]["init_args"]["config"], config["model"]["init_args"]["training"]
    data = config["data"]["init_args"]
    assert config["model"]["class_path"] == "bdh_pl.training.lit_models.GPT2LM"
    assert (sizes["n_layer"], sizes["n_head"], sizes["n_embd"], sizes["dropout"]) == (4, 4, 128, 0)
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
    tiny_gpt2_folder(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                *("test", "--config", WIKITEXT2, "--config", str(model_config_path("gpt2"))),
                *("--model.init_args.config.name_or_path", str(tmp_path)),
                *("--data.init_args.tokenizer", "byte", "--data.init_args.block_size", "64"),
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("error: ")]
    assert "vocabulary of 50257" in line and "256" in line and "data.tokenizer" in line


def test_the_bdh_yaml_spells_out_the_code_defaults_the_dataset_configs_name():
    """configs/shakespeare.yaml names BDHLM at its defaults (a model YAML after it replaces the
    class whole); configs/model/bdh.yaml writes the same values out."""
    spec = get_spec("bdh")
    model = BDHLM.from_hparams(spec.init_args)
    assert model.config == BDHConfig() and model.training_config == TrainingConfig()
    dataset = yaml.safe_load((REPO / "configs" / "shakespeare.yaml").read_text())
    assert dataset["model"] == {"class_path": "bdh_pl.training.lit_models.BDHLM"}
