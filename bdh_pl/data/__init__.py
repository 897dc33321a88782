"""The DataModules by their short paths (`bdh_pl.data.TinyShakespeare`, as configs and checkpoints
name them), imported on first use: the rest of the package (sources, the token cache, download)
does not need Lightning, and `download-data` would otherwise pay ~6 s of CPU for it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bdh_pl.data.datamodule import TextDataModule, TextFile, TinyShakespeare, WikiText2

__all__ = ["TextDataModule", "TextFile", "TinyShakespeare", "WikiText2"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'bdh_pl.data' has no attribute {name!r}")
    return getattr(importlib.import_module("bdh_pl.data.datamodule"), name)
