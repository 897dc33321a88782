"""The baselines as plain logits networks: GPT-2 (pretrained or from scratch) and a LLaMA.

Each is a `transformers` model used as is, so its numbers are Hugging Face's own. The wrapper
only turns it into the interface every network here has, token ids (B, T) -> logits (B, T, V)
and `generate(idx, max_new_tokens, temperature, top_k, top_p)`, which is `transformers`' own
(cropping the context past the model's positions, like nanoGPT); the
model itself is `.hf`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from bdh_pl.errors import UserError
from bdh_pl.models.sampling import sample_next

# transformers' model classes are imported where they are used: every training process imports
# this module (training/lit_models.py), and a BDH run would otherwise pay ~0.2 s of CPU for them.
if TYPE_CHECKING:
    from transformers import GPT2Config, LlamaConfig, PretrainedConfig, PreTrainedModel


class HFCausalLM(nn.Module):
    """A `transformers` causal LM seen as a network from token ids to logits."""

    def __init__(self, hf: PreTrainedModel) -> None:
        super().__init__()
        self.hf = hf  # state_dict keys: hf.<the model's own names>

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # No attention mask: windows are right-padded and attention is causal, so padding never
        # reaches a scored position. No KV cache: every call sees a whole window.
        return self.hf(input_ids=input_ids, use_cache=False).logits  # B, T, V

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> torch.Tensor:
        """Sample up to max_new_tokens after idx (B, T). Within the model's positions this is
        transformers' own `generate` (KV cache); past them, like nanoGPT, each next token is
        predicted from the last `positions` tokens (a full forward per token). A checkpoint with
        an end-of-text token (GPT-2) stops a row at it (padded with it) and stops when all have."""
        if max_new_tokens <= 0:
            return idx
        config = self.hf.config
        positions = getattr(config, "n_positions", None) or config.max_position_embeddings
        eos = self.hf.generation_config.eos_token_id
        eos = eos[0] if isinstance(eos, list) else eos
        cached = min(max_new_tokens, positions - idx.size(1))
        if cached > 0:
            idx = self.hf.generate(
                idx,
                attention_mask=torch.ones_like(idx),
                do_sample=True,
                max_new_tokens=cached,
                temperature=temperature,
                top_k=top_k or 0,  # 0 = no top-k (None would mean generation_config's 50)
                top_p=top_p if top_p is not None else 1.0,
                pad_token_id=eos if eos is not None else 0,
            )
            max_new_tokens -= cached
        done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        if eos is not None and cached > 0:
            done = (idx[:, -cached:] == eos).any(dim=1)
        for _ in range(max_new_tokens):
            if done.all():
                break
            logits = self.hf(input_ids=idx[:, -positions:], use_cache=False).logits[:, -1]
            idx_next = sample_next(logits.float(), temperature, top_k, top_p)
            if eos is not None:
                idx_next[done] = eos
                done |= idx_next[:, 0] == eos
            idx = torch.cat((idx, idx_next), dim=1)
        return idx


SIZES = ("n_layer", "n_head", "n_embd", "vocab_size", "block_size")


def _check_shape(dropout: float | None, **sizes: int | None) -> None:
    for name, value in sizes.items():
        if value is not None and value <= 0:
            raise UserError(f"model.config.{name} must be a positive integer, got {value}")
    if dropout is not None and not 0.0 <= dropout < 1.0:
        raise UserError(f"model.config.dropout must be in [0, 1), got {dropout}")


@dataclass
class GPT2Size:
    """GPT-2 from scratch (GPT2LM's `config`). Defaults: ~25M parameters at byte level (8
    layers, 512 wide), BDH's size; vocab_size and block_size (positions) come from the data."""

    n_layer: int = 8
    n_head: int = 8
    n_embd: int = 512
    dropout: float = 0.1  # residual, embedding and attention dropout
    vocab_size: int = 256
    block_size: int = 256

    def __post_init__(self) -> None:
        sizes = (self.n_layer, self.n_head, self.n_embd, self.vocab_size, self.block_size)
        _check_shape(self.dropout, **dict(zip(SIZES, sizes, strict=True)))
        if self.n_embd % self.n_head:
            raise UserError(
                f"model.config.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )


@dataclass
class LlamaSize:
    """A LLaMA from scratch (LlamaLM's `config`). Defaults: ~25M parameters at byte level (8
    layers, 512 wide, SwiGLU of 1376 = 8/3 x 512 rounded up to a multiple of 32), BDH's size."""

    n_layer: int = 8
    n_head: int = 8
    n_embd: int = 512
    n_query_groups: int | None = None  # None: n_head (multi-head attention, no GQA)
    intermediate_size: int = 1376
    rope_theta: float = 10000.0
    dropout: float = 0.0  # attention dropout, the only dropout the Hugging Face LLaMA has
    vocab_size: int = 256
    block_size: int = 256

    def __post_init__(self) -> None:
        sizes = (self.n_layer, self.n_head, self.n_embd, self.vocab_size, self.block_size)
        _check_shape(self.dropout, **dict(zip(SIZES, sizes, strict=True)))
        _check_shape(
            None, n_query_groups=self.n_query_groups, intermediate_size=self.intermediate_size
        )
        groups = self.n_query_groups or self.n_head
        if self.n_embd % self.n_head or self.n_head % groups:
            raise UserError(
                f"model.config.n_embd ({self.n_embd}) must be divisible by n_head "
                f"({self.n_head}), and n_head by n_query_groups ({groups})"
            )


@dataclass
class PretrainedGPT2:
    """Published GPT-2 weights (PretrainedGPT2LM's `config`): a hub name (`gpt2`, ...) or a
    folder written by save_pretrained; dropout None keeps the checkpoint's; vocab_size and
    block_size, the data's (linked by the CLI), None: the checkpoint's."""

    name_or_path: str = "gpt2"
    dropout: float | None = None
    vocab_size: int | None = None
    block_size: int | None = None

    def __post_init__(self) -> None:
        _check_shape(self.dropout, vocab_size=self.vocab_size, block_size=self.block_size)


# --- pretrained ---------------------------------------------------------------------------


def _resolve(name_or_path: str) -> str:
    """A local folder (expanded) or a hub name, left for transformers to find."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists() or name_or_path.startswith(("/", ".", "~")):
        raise UserError(
            f"no GPT-2 checkpoint folder at {name_or_path!r} (not found): give a folder written by "
            "save_pretrained (config.json + model.safetensors) or a hub name such as 'gpt2'"
        )
    return name_or_path


def load_gpt2_config(name_or_path: str) -> GPT2Config:
    """The config of a GPT-2 checkpoint: a hub name (`gpt2`, `gpt2-medium`, ...) or a folder
    written by `save_pretrained` (config.json + model.safetensors)."""
    from transformers import AutoConfig

    path = _resolve(name_or_path)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise UserError(
            f"cannot load the GPT-2 config from {name_or_path!r} ({type(err).__name__}): without "
            "internet, give a local folder written by save_pretrained (config.json + weights)"
        ) from None
    if config.model_type != "gpt2":
        raise UserError(
            f"{name_or_path!r} holds a {config.model_type!r} model, not GPT-2: give a GPT-2 "
            "checkpoint (model_type 'gpt2' in config.json)"
        )
    return config


def gpt2_from_pretrained(name_or_path: str, dropout: float | None = None) -> HFCausalLM:
    """GPT-2 with its published weights, safetensors preferred (`.bin` only as a fallback, read
    with weights_only), never remote code. `dropout` overrides the checkpoint's three
    dropouts (GPT-2 ships 0.1) for fine-tuning; evaluation runs in eval mode either way."""
    from transformers import GPT2LMHeadModel

    config = load_gpt2_config(name_or_path)
    if dropout is not None:
        _check_shape(dropout)
        config.resid_pdrop = config.embd_pdrop = config.attn_pdrop = dropout
    try:
        hf = GPT2LMHeadModel.from_pretrained(
            _resolve(name_or_path),
            config=config,
            use_safetensors=None,  # None = safetensors when present, else the .bin file
            weights_only=True,
            trust_remote_code=False,
            dtype=torch.float32,  # Lightning's precision setting decides the compute dtype
        )
    except (OSError, ValueError) as err:
        raise UserError(
            f"cannot load GPT-2 weights from {name_or_path!r} ({type(err).__name__}): give a "
            "folder written by save_pretrained (model.safetensors) or a reachable hub name"
        ) from None
    return HFCausalLM(hf)


def causal_lm_from_folder(path: str | Path) -> tuple[HFCausalLM, int]:
    """A GPT-2 / LLaMA folder (save_pretrained, as `export` writes it) in eval mode, and its
    number of positions: safetensors weights only, never remote code."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
        hf = AutoModelForCausalLM.from_pretrained(
            path, trust_remote_code=False, use_safetensors=True, dtype=torch.float32
        )
    except Exception as err:  # a damaged folder fails in many ways (safetensors' own error too)
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise UserError(
            f"cannot load the Hugging Face folder {str(path)!r}: {first} (export the checkpoint "
            "again)"
        ) from None
    block_size = getattr(config, "n_positions", None) or config.max_position_embeddings
    return HFCausalLM(hf).eval(), int(block_size)


# --- from scratch -------------------------------------------------------------------------


def gpt2_config(size: GPT2Size) -> GPT2Config:
    """GPT-2's architecture (pre-norm, learned positions, tied embeddings, GELU MLP of 4x)."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=size.vocab_size,
        n_positions=size.block_size,
        n_layer=size.n_layer,
        n_head=size.n_head,
        n_embd=size.n_embd,
        resid_pdrop=size.dropout,
        embd_pdrop=size.dropout,
        attn_pdrop=size.dropout,
        bos_token_id=None,
        eos_token_id=None,
    )


def llama_config(size: LlamaSize) -> LlamaConfig:
    """LLaMA's architecture (RMSNorm, RoPE, SwiGLU, no biases, untied head)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=size.vocab_size,
        max_position_embeddings=size.block_size,
        num_hidden_layers=size.n_layer,
        num_attention_heads=size.n_head,
        num_key_value_heads=size.n_query_groups or size.n_head,
        hidden_size=size.n_embd,
        intermediate_size=size.intermediate_size,
        rope_parameters={"rope_type": "default", "rope_theta": size.rope_theta},
        attention_dropout=size.dropout,
        rms_norm_eps=1e-5,
        bos_token_id=None,
        eos_token_id=None,
    )


def from_config(config: PretrainedConfig) -> HFCausalLM:
    """A freshly initialised model (Hugging Face's own init, e.g. GPT-2's scaled residuals)."""
    from transformers import GPT2LMHeadModel, LlamaForCausalLM

    model_class = {"gpt2": GPT2LMHeadModel, "llama": LlamaForCausalLM}[config.model_type]
    return HFCausalLM(model_class(config))
