"""bdh-pl: train and benchmark BDH against GPT-2 and LLaMA baselines with PyTorch Lightning."""

from bdh_pl.data import TextDataModule, TinyShakespeare, WikiText2
from bdh_pl.training.language_model import LanguageModel
from bdh_pl.training.lit_models import BDHLM

__all__ = ["BDHLM", "LanguageModel", "TextDataModule", "TinyShakespeare", "WikiText2"]
