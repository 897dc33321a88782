"""The concrete LightningModules: each says how to build its network, nothing more.

Select one in YAML with `model: {class_path: bdh_pl.training.lit_models.BDHLM, init_args: {...}}`
(configs/model/ names them). Each takes its network's sizes, keyword-only; vocab_size and
block_size come from the data (linked by the CLI); training options (learning rate, schedule,
weight decay, seed, compile) go on to LanguageModel. `tokenizer_need` says which data tokenizer
the network needs: "byte", "gpt2", or "any" (sized from the data).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchmetrics import MeanMetric

from bdh_pl.errors import UserError
from bdh_pl.hub import require_hub
from bdh_pl.models.bdh import BDH, AttentionMode, AttnDecay, BDHConfig, BDHExecution
from bdh_pl.models.hf import (
    from_config,
    gpt2_config,
    gpt2_from_pretrained,
    llama_config,
    load_gpt2_config,
)
from bdh_pl.training.language_model import LanguageModel


class BDHLM(LanguageModel):
    """BDH (Kosowski et al. 2025), arXiv 2509.26507; defaults are the paper code's 25.3M model.

    The architecture arguments are BDHConfig's fields, the execution switches (fused,
    attention, chunk_size, activation_checkpointing, compile_elementwise) BDHExecution's, with
    their defaults; `fused: false` runs the reference forward of models/bdh/model.py. Training
    options (learning rate, schedule, weight decay, seed, compile) are LanguageModel's.

    During validation and test it also logs the fraction of non-zero sparse activations per
    layer (`val/active_fraction_x_l{i}`, `val/active_fraction_y_l{i}`, and their means): the
    share of neurons active, so lower is sparser.
    """

    tokenizer_need = "byte"
    execution_options = LanguageModel.execution_options | {
        f.name for f in dataclasses.fields(BDHExecution)
    }

    def __init__(
        self,
        *,
        n_layer: int = BDHConfig.n_layer,
        n_embd: int = BDHConfig.n_embd,
        n_head: int = BDHConfig.n_head,
        mlp_internal_dim_multiplier: int = BDHConfig.mlp_internal_dim_multiplier,
        dropout: float = BDHConfig.dropout,
        fused: bool = BDHExecution.fused,
        attention: AttentionMode = BDHExecution.attention,
        chunk_size: int = BDHExecution.chunk_size,
        activation_checkpointing: bool = BDHExecution.activation_checkpointing,
        compile_elementwise: bool = BDHExecution.compile_elementwise,
        vocab_size: int = BDHConfig.vocab_size,
        attn_decay: AttnDecay = BDHConfig.attn_decay,
        block_size: int = 256,
        **training: Any,
    ) -> None:
        super().__init__(vocab_size=vocab_size, block_size=block_size, **training)
        keys = [f"{a}_l{i}" for i in range(n_layer) for a in ("x", "y")]
        self.sparsity = nn.ModuleDict({k: MeanMetric() for k in keys})

    def build_network(self) -> nn.Module:
        try:
            network = BDH(dataclass_from_hparams(BDHConfig, self.hparams))
            return dataclass_from_hparams(BDHExecution, self.hparams).apply(network)
        except ValueError as err:
            raise UserError(f"model: {err}") from None

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


def dataclass_from_hparams(cls: type, hparams: Mapping[str, Any]) -> Any:
    """`cls(...)` with each of its fields taken from the hyperparameter of the same name."""
    return cls(**{f.name: hparams[f.name] for f in dataclasses.fields(cls)})


def call_with_hparams(builder: Callable[..., Any], hparams: Mapping[str, Any]) -> Any:
    """`builder(**kwargs)` with each keyword-only argument taken from the hyperparameter of
    the same name: the constructor's arguments are the config builder's."""
    names = inspect.signature(builder).parameters
    return builder(**{name: hparams[name] for name in names})


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
        *,
        n_layer: int = 8,
        n_head: int = 8,
        n_embd: int = 512,
        dropout: float = 0.1,
        vocab_size: int = 256,
        block_size: int = 256,
        **training: Any,
    ) -> None:
        super().__init__(vocab_size=vocab_size, block_size=block_size, **training)

    def build_network(self) -> nn.Module:
        return from_config(call_with_hparams(gpt2_config, self.hparams))


class LlamaLM(LanguageModel):
    """A LLaMA (RMSNorm, RoPE, SwiGLU) trained from scratch with Hugging Face
    `LlamaForCausalLM`. Defaults: ~25M parameters at byte level (8 layers, 512 wide, SwiGLU
    of 1376 = 8/3 x 512 rounded up to a multiple of 32), BDH's size."""

    def __init__(
        self,
        *,
        n_layer: int = 8,
        n_head: int = 8,
        n_embd: int = 512,
        n_query_groups: int | None = None,
        intermediate_size: int = 1376,
        rope_theta: float = 10000.0,
        dropout: float = 0.0,
        vocab_size: int = 256,
        block_size: int = 256,
        **training: Any,
    ) -> None:
        super().__init__(vocab_size=vocab_size, block_size=block_size, **training)

    def build_network(self) -> nn.Module:
        return from_config(call_with_hparams(llama_config, self.hparams))


class PretrainedGPT2LM(LanguageModel):
    """GPT-2 with published weights: zero-shot `test`, or fine-tune with `fit`.

    Args:
        name_or_path: hub name (`gpt2`, `gpt2-medium`, ...) or a folder written by
            `save_pretrained`. Restoring a Lightning checkpoint loads this first, then the
            checkpoint's weights over it.
        dropout: replaces the checkpoint's dropouts (GPT-2 ships 0.1) when fine-tuning.
        vocab_size, block_size: the data's (linked by the CLI); default: the checkpoint's.

    The data must use the checkpoint's tokenizer (`data.tokenizer: gpt2`, or the same folder),
    and block_size must fit the checkpoint's positions (1024 for GPT-2).
    """

    tokenizer_need = "gpt2"

    def __init__(
        self,
        *,
        name_or_path: str = "gpt2",
        dropout: float | None = None,
        vocab_size: int | None = None,
        block_size: int | None = None,
        **training: Any,
    ) -> None:
        if not Path(name_or_path).expanduser().exists():  # a hub name: one line if offline
            require_hub(f"GPT-2 {name_or_path!r}", "give a folder written by save_pretrained")
        checkpoint = load_gpt2_config(name_or_path)
        positions = checkpoint.n_positions
        vocab_size = checkpoint.vocab_size if vocab_size is None else vocab_size
        block_size = positions if block_size is None else block_size
        check_vocab(checkpoint.vocab_size, vocab_size, f"GPT-2 {name_or_path!r}")
        if block_size > positions:
            raise UserError(
                f"data.block_size {block_size} exceeds the {positions} positions of "
                f"GPT-2 {name_or_path!r}: use data.block_size <= {positions}"
            )
        super().__init__(vocab_size=vocab_size, block_size=block_size, **training)

    def build_network(self) -> nn.Module:
        return gpt2_from_pretrained(self.hparams.name_or_path, self.hparams.dropout)
