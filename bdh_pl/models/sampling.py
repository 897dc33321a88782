"""Sampling one next token from logits: temperature, then top-k, then nucleus (top-p), the
order of transformers' and litgpt's samplers, so every model samples the same way."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sample_next(
    logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> Tensor:
    """One token per row of logits (B, V) -> (B, 1)."""
    logits = logits / temperature
    if top_k is not None:
        values, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = logits.masked_fill(logits < values[:, [-1]], float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        # drop a token once the likelier ones already hold top_p: the likeliest always stays
        drop = probs.cumsum(-1) - probs >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.empty_like(logits).scatter_(-1, order, sorted_logits)
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
