"""bdh-pl: train and benchmark BDH against GPT-2 and LLaMA baselines with PyTorch Lightning."""

from bdh_pl.data import TextDataModule, TinyShakespeare, WikiText2
from bdh_pl.lit_models import BDHLM
from bdh_pl.lm_module import LanguageModel

__all__ = ["BDHLM", "LanguageModel", "TextDataModule", "TinyShakespeare", "WikiText2"]
