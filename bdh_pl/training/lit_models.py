"""The concrete LightningModules: each says how to build its network, nothing more.

Select one in YAML with `model: {class_path: bdh_pl.training.lit_models.BDHLM, init_args: {...}}`
(configs/model/ names them). Each takes its typed configs whole: `config`, the network's (BDH:
BDHConfig; the baselines: their size dataclasses of models/hf.py), with vocab_size and
block_size set from the data by the CLI, and `training`, a TrainingConfig (learning rate,
schedule, weight decay, seed, compile); BDH also an `execution` (BDHExecution). In YAML:

    model:
      class_path: bdh_pl.training.lit_models.BDHLM
      init_args:
        config: {n_layer: 6, n_embd: 256}       # BDHConfig
        training: {learning_rate: 1.0e-3}       # TrainingConfig

`tokenizer_need` says which data tokenizer the network needs: "byte", "gpt2", or "any".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn
from torchmetrics import MeanMetric

from bdh_pl.errors import UserError
from bdh_pl.hub import require_hub
from bdh_pl.models.bdh import BDH, BDHConfig, BDHExecution
from bdh_pl.models.hf import (
    GPT2Size,
    LlamaSize,
    PretrainedGPT2,
    from_config,
    gpt2_config,
    gpt2_from_pretrained,
    llama_config,
    load_gpt2_config,
)
from bdh_pl.training.language_model import LanguageModel
from bdh_pl.training.training_config import TrainingConfig


class BDHLM(LanguageModel):
    """BDH (Kosowski et al. 2025), arXiv 2509.26507; defaults are the paper code's 25.3M model.

    `config` is the architecture (BDHConfig), `execution` how its layers run (BDHExecution:
    fused, attention, chunk_size, activation_checkpointing, compile_elementwise; `fused: false`
    runs the reference forward of models/bdh/model.py), `training` a TrainingConfig.

    During validation and test it also logs the fraction of non-zero sparse activations per
    layer (`val/active_fraction_x_l{i}`, `val/active_fraction_y_l{i}`, and their means): the
    share of neurons active, so lower is sparser.
    """

    tokenizer_need = "byte"
    execution_options = LanguageModel.execution_options | {"execution"}

    def __init__(
        self,
        config: BDHConfig = BDHConfig(),  # noqa: B008 (defaults, never changed)
        execution: BDHExecution = BDHExecution(),  # noqa: B008
        training: TrainingConfig = TrainingConfig(),  # noqa: B008
    ) -> None:
        super().__init__(config=config, execution=execution, training=training)
        keys = [f"{a}_l{i}" for i in range(config.n_layer) for a in ("x", "y")]
        self.sparsity = nn.ModuleDict({k: MeanMetric() for k in keys})

    def build_network(self) -> nn.Module:
        return self.execution.apply(BDH(self.config))

    def eval_forward(self, input_ids: torch.Tensor, state=None) -> torch.Tensor:
        stats: dict[str, torch.Tensor] = {}
        if state is not None:
            logits = self.network.forward_state(input_ids, state, sparsity=stats)
        else:
            logits = self.network(input_ids, sparsity=stats)
        for key, value in stats.items():
            self.sparsity[key].update(value)
        return logits

    def _log_sparsity(self, stage: str) -> None:
        values = {k: m.compute() for k, m in self.sparsity.items()}
        for metric in self.sparsity.values():
            metric.reset()
        for key, value in values.items():
            self.log(f"{stage}/active_fraction_{key}", value)
        for act in ("x", "y"):
            mean = torch.stack([v for k, v in values.items() if k.startswith(act)]).mean()
            self.log(f"{stage}/active_fraction_{act}", mean)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_sparsity("val")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._log_sparsity("test")


def check_vocab(model_vocab: int, data_vocab: int, what: str) -> None:
    if model_vocab != data_vocab:
        raise UserError(
            f"{what} has a vocabulary of {model_vocab} but the data's tokenizer has {data_vocab}: "
            "use the tokenizer the model was trained with (data.tokenizer)"
        )


class GPT2LM(LanguageModel):
    """GPT-2's architecture trained from scratch (Hugging Face `GPT2LMHeadModel`), sized by the
    data: vocabulary from its tokenizer, positions = block_size. Defaults: ~25M parameters at
    byte level (8 layers, 512 wide), BDH's size."""

    def __init__(
        self,
        config: GPT2Size = GPT2Size(),  # noqa: B008 (defaults, never changed)
        training: TrainingConfig = TrainingConfig(),  # noqa: B008
    ) -> None:
        super().__init__(config=config, training=training)

    def build_network(self) -> nn.Module:
        return from_config(gpt2_config(self.config))


class LlamaLM(LanguageModel):
    """A LLaMA (RMSNorm, RoPE, SwiGLU) trained from scratch with Hugging Face
    `LlamaForCausalLM`. Defaults: ~25M parameters at byte level (8 layers, 512 wide, SwiGLU
    of 1376 = 8/3 x 512 rounded up to a multiple of 32), BDH's size."""

    def __init__(
        self,
        config: LlamaSize = LlamaSize(),  # noqa: B008 (defaults, never changed)
        training: TrainingConfig = TrainingConfig(),  # noqa: B008
    ) -> None:
        super().__init__(config=config, training=training)

    def build_network(self) -> nn.Module:
        return from_config(llama_config(self.config))


class PretrainedGPT2LM(LanguageModel):
    """GPT-2 with published weights: zero-shot `test`, or fine-tune with `fit`.

    `config` (PretrainedGPT2): name_or_path, a hub name (`gpt2`, `gpt2-medium`, ...) or a
    folder written by `save_pretrained` (restoring a Lightning checkpoint loads this first, then
    the checkpoint's weights over it); dropout, replacing the checkpoint's dropouts (GPT-2 ships
    0.1) when fine-tuning; vocab_size and block_size, the data's (linked by the CLI), by
    default the checkpoint's.

    The data must use the checkpoint's tokenizer (`data.tokenizer: gpt2`, or the same folder),
    and block_size must fit the checkpoint's positions (1024 for GPT-2).
    """

    tokenizer_need = "gpt2"

    def __init__(
        self,
        config: PretrainedGPT2 = PretrainedGPT2(),  # noqa: B008 (defaults, never changed)
        training: TrainingConfig = TrainingConfig(),  # noqa: B008
    ) -> None:
        name = config.name_or_path
        if not Path(name).expanduser().exists():  # a hub name: one line if offline
            require_hub(f"GPT-2 {name!r}", "give a folder written by save_pretrained")
        checkpoint = load_gpt2_config(name)
        positions = checkpoint.n_positions
        vocab_size = checkpoint.vocab_size if config.vocab_size is None else config.vocab_size
        block_size = positions if config.block_size is None else config.block_size
        check_vocab(checkpoint.vocab_size, vocab_size, f"GPT-2 {name!r}")
        if block_size > positions:
            raise UserError(
                f"data.block_size {block_size} exceeds the {positions} positions of "
                f"GPT-2 {name!r}: use data.block_size <= {positions}"
            )
        config = dataclasses.replace(config, vocab_size=vocab_size, block_size=block_size)
        super().__init__(config=config, training=training)

    def build_network(self) -> nn.Module:
        return gpt2_from_pretrained(self.config.name_or_path, self.config.dropout)
