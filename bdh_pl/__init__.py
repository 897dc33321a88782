"""bdh-pl: train and benchmark BDH against GPT-2 and LLaMA baselines with PyTorch Lightning.

The names below are imported on first use, so that `import bdh_pl` (and the command line's
--help) does not pay for Lightning and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bdh_pl.data import TextDataModule, TinyShakespeare, WikiText2
    from bdh_pl.training.language_model import LanguageModel
    from bdh_pl.training.lit_models import BDHLM

_HOMES = {
    "BDHLM": "bdh_pl.training.lit_models",
    "LanguageModel": "bdh_pl.training.language_model",
    "TextDataModule": "bdh_pl.data",
    "TinyShakespeare": "bdh_pl.data",
    "WikiText2": "bdh_pl.data",
}
__all__ = ["BDHLM", "LanguageModel", "TextDataModule", "TinyShakespeare", "WikiText2"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'bdh_pl' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
