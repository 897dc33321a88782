"""The models by name: `bdh`, `gpt2`, `gpt2-medium`, `gpt2-scratch`, `llama-tiny`.

Each name gives its LightningModule, its default init args (architecture and optimiser recipe,
the same as its YAML overlay `configs/model/<name>.yaml`; a test keeps the two in step) and
the tokenizer it needs:

    "byte"  byte-level only (BDH)
    "gpt2"  GPT-2 BPE only (pretrained GPT-2: its embeddings are BPE tokens)
    "any"   sized from the data, either tokenizer (the from-scratch baselines)

In Python (the benchmark runner):

    spec = get_spec("gpt2-scratch")
    dm = WikiText2(tokenizer=spec.default_tokenizer, ...)
    model = build_model("gpt2-scratch", vocab_size=dm.vocab_size, block_size=dm.block_size)

From the command line, the same model is `--config configs/model/gpt2-scratch.yaml`
(`model_config_path(name)`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bdh_pl.errors import UserError
from bdh_pl.training.language_model import LanguageModel
from bdh_pl.training.lit_models import BDHLM, GPT2LM, LlamaLM, PretrainedGPT2LM

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "model"


@dataclass(frozen=True)
class ModelSpec:
    lit_class: type[LanguageModel]
    init_args: dict[str, Any] = field(default_factory=dict)
    tokenizer: str = "any"  # "byte" | "gpt2" | "any"
    about: str = ""

    @property
    def default_tokenizer(self) -> str:
        """The `data.tokenizer` to use: the needed one, byte level for "any"."""
        return "byte" if self.tokenizer == "any" else self.tokenizer

    def accepts(self, tokenizer_name: str) -> bool:
        """Whether data tokenized with `tokenizer_name` ("byte" or "gpt2") suits the model."""
        return self.tokenizer in ("any", tokenizer_name)


# The optimiser recipe of each model, on top of LanguageModel's defaults.
_SCRATCH_RECIPE = {
    "learning_rate": 1e-3,
    "min_learning_rate": 1e-4,
    "warmup_steps": 100,
    "weight_decay": 0.1,
    "betas": [0.9, 0.95],
}


def _finetune_recipe(learning_rate: float) -> dict[str, Any]:
    return {
        "dropout": None,
        "learning_rate": learning_rate,
        "min_learning_rate": learning_rate / 10,
        "warmup_steps": 100,
        "weight_decay": 0.1,
    }


MODELS: dict[str, ModelSpec] = {
    "bdh": ModelSpec(
        BDHLM,
        {
            "n_layer": 6,
            "n_embd": 256,
            "n_head": 4,
            "mlp_internal_dim_multiplier": 128,
            "dropout": 0.1,
        },
        "byte",
        "BDH, the paper code's 25.3M model",
    ),
    "gpt2": ModelSpec(
        PretrainedGPT2LM,
        {"name_or_path": "gpt2", **_finetune_recipe(6e-5)},
        "gpt2",
        "GPT-2 124M, OpenAI's weights",
    ),
    "gpt2-medium": ModelSpec(
        PretrainedGPT2LM,
        {"name_or_path": "gpt2-medium", **_finetune_recipe(3e-5)},
        "gpt2",
        "GPT-2 355M, OpenAI's weights",
    ),
    "gpt2-scratch": ModelSpec(
        GPT2LM,
        {"n_layer": 8, "n_head": 8, "n_embd": 512, "dropout": 0.1, **_SCRATCH_RECIPE},
        "any",
        "GPT-2 architecture from scratch, 25.6M at byte level",
    ),
    "llama-tiny": ModelSpec(
        LlamaLM,
        {
            "n_layer": 8,
            "n_head": 8,
            "n_embd": 512,
            "n_query_groups": None,
            "intermediate_size": 1376,
            "rope_theta": 10000.0,
            "dropout": 0.1,
            **_SCRATCH_RECIPE,
        },
        "any",
        "LLaMA architecture from scratch, 25.6M at byte level",
    ),
}


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}: use one of {', '.join(MODELS)}")
    return MODELS[name]


def build_model(name: str, **overrides: Any) -> LanguageModel:
    """The LightningModule `name` with its default init args, updated by `overrides`
    (e.g. vocab_size and block_size from the DataModule, learning_rate, ...)."""
    spec = get_spec(name)
    return spec.lit_class(**{**spec.init_args, **overrides})


def model_config_path(name: str) -> Path:
    """The YAML overlay selecting `name` for the CLI (`--config <path>`)."""
    get_spec(name)
    return CONFIG_DIR / f"{name}.yaml"
