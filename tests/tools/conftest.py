"""Fixtures of the tool tests: tiny bdh-pl checkpoints of each model kind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bdh_pl.training.lit_models import BDHLM, GPT2LM, LlamaLM

TINY = {
    "bdh": (
        BDHLM,
        {"n_layer": 2, "n_embd": 32, "n_head": 2, "mlp_internal_dim_multiplier": 8, "dropout": 0.0},
    ),
    "gpt2": (GPT2LM, {"n_layer": 2, "n_head": 2, "n_embd": 32, "dropout": 0.0}),
    "llama": (
        LlamaLM,
        {"n_layer": 2, "n_head": 4, "n_embd": 32, "n_query_groups": 2, "intermediate_size": 64},
    ),
}


def _save_checkpoint(
    path: Path, kind: str, tokenizer: str = "byte", vocab_size: int = 256, block_size: int = 32
) -> torch.nn.Module:
    """A bdh-pl checkpoint as Lightning writes it, with randomly initialised weights."""
    cls, hparams = TINY[kind]
    torch.manual_seed(0)
    model = cls(**hparams, vocab_size=vocab_size, block_size=block_size)
    # Non-trivial values everywhere (some inits are zeros or ones), so the round trip can fail.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    torch.save(
        {
            "pytorch-lightning_version": "2.6.0",
            "global_step": 7,
            "state_dict": model.state_dict(),
            "hyper_parameters": {
                **hparams,
                "vocab_size": vocab_size,
                "block_size": block_size,
                "_class_path": f"bdh_pl.training.lit_models.{cls.__name__}",
            },
            "datamodule_hyper_parameters": {
                "_class_path": "bdh_pl.data.TinyShakespeare",
                "tokenizer": tokenizer,
                "batch_size": 4,
                "block_size": block_size,
            },
        },
        path,
    )
    return model.network.eval()


@pytest.fixture
def save_checkpoint():
    """save_checkpoint(path, kind, tokenizer="byte", vocab_size=256, block_size=32) -> network"""
    return _save_checkpoint
