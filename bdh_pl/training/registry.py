"""The models by name: one YAML per model in `bdh_pl/configs/model/` (shipped inside the package,
like litgpt's config hub; `configs/model/` in the repository links to it), and nothing else.

A model's name is its file's stem (`gpt2-scratch.yaml` is `gpt2-scratch`), its LightningModule
the file's `model.class_path`, its default size and optimiser recipe the file's
`model.init_args` (`config` and `training`). The tokenizer it needs is its class's `tokenizer_need`, which
LanguageModel.check_data holds the data to before a run starts:

    "byte"  byte-level only (BDH)
    "gpt2"  GPT-2 BPE only (pretrained GPT-2: its embeddings are BPE tokens)
    "any"   sized from the data, either tokenizer (the from-scratch baselines)

From the command line a model is `--config configs/model/gpt2-scratch.yaml`; a benchmark spec
names it (`config: gpt2-scratch`) and resolves it to that file (`model_config_path(name)`)
through the CLI's own parser. In Python:

    spec = get_spec("gpt2-scratch")
    dm = WikiText2(tokenizer=spec.default_tokenizer, ...)
    sizes = {"vocab_size": dm.vocab_size, "block_size": dm.block_size}
    model = build_model("gpt2-scratch", config=sizes)

A new model is a new file there.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bdh_pl.errors import UserError
from bdh_pl.training.language_model import LanguageModel

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "model"


@dataclass(frozen=True)
class ModelSpec:
    lit_class: type[LanguageModel]
    init_args: dict[str, Any] = field(default_factory=dict)
    about: str = ""

    @property
    def tokenizer(self) -> str:
        """ "byte", "gpt2" or "any": what the network needs from the data."""
        return self.lit_class.tokenizer_need

    @property
    def default_tokenizer(self) -> str:
        """The `data.tokenizer` to use: the needed one, byte level for "any"."""
        return "byte" if self.tokenizer == "any" else self.tokenizer

    def accepts(self, tokenizer_name: str) -> bool:
        """Whether data tokenized with `tokenizer_name` ("byte" or "gpt2") suits the model."""
        return self.lit_class.reads(tokenizer_name)


def _load_class(class_path: str) -> type[LanguageModel]:
    module, _, name = class_path.rpartition(".")
    lit_class = getattr(importlib.import_module(module), name, None)
    if not (isinstance(lit_class, type) and issubclass(lit_class, LanguageModel)):
        raise UserError(f"model.class_path {class_path!r} is not a LanguageModel")
    return lit_class


def _read_spec(path: Path) -> ModelSpec:
    config = yaml.safe_load(path.read_text()) or {}
    model = config.get("model") or {}
    if "class_path" not in model:
        raise UserError(f"{path}: a model config needs model.class_path")
    first = path.read_text().splitlines()[0]
    about = first.lstrip("# ") if first.startswith("#") else ""
    return ModelSpec(_load_class(model["class_path"]), dict(model.get("init_args") or {}), about)


@functools.cache
def models() -> dict[str, ModelSpec]:
    """Every model of `configs/model/*.yaml`, by name (the file stem)."""
    return {path.stem: _read_spec(path) for path in sorted(CONFIG_DIR.glob("*.yaml"))}


def get_spec(name: str) -> ModelSpec:
    specs = models()
    if not specs:
        raise UserError(f"no model configs in {CONFIG_DIR}: reinstall bdh-pl (a broken install)")
    if name not in specs:
        raise UserError(f"unknown model {name!r}: use one of {', '.join(specs)}")
    return specs[name]


def build_model(name: str, **overrides: dict[str, Any]) -> LanguageModel:
    """The LightningModule `name` with its YAML's init args, each config's fields updated by
    `overrides` (e.g. `config={"vocab_size": ..., "block_size": ...}` from the DataModule,
    `training={"learning_rate": ...}`)."""
    spec = get_spec(name)
    groups = {**spec.init_args, **overrides}
    merged = {k: {**spec.init_args.get(k, {}), **overrides.get(k, {})} for k in groups}
    return spec.lit_class.from_hparams(merged)


def model_config_path(name: str) -> Path:
    """The YAML selecting `name` for the CLI (`--config <path>`)."""
    get_spec(name)
    return CONFIG_DIR / f"{name}.yaml"
