"""Old home of the LightningModules, kept so that checkpoints and configs written before the
move to `bdh_pl.training.lit_models` (they store `bdh_pl.lit_models.BDHLM`) still resolve."""

from bdh_pl.training.lit_models import BDHLM, GPT2LM, LlamaLM, PretrainedGPT2LM

__all__ = ["BDHLM", "GPT2LM", "LlamaLM", "PretrainedGPT2LM"]
