"""Language-modelling metrics from sums and counts, and the model's size.

Perplexities are computed from summed NLL and summed token, byte and word counts (reduced
across processes by torchmetrics), never as a mean of per-batch means, so a number does not
depend on batch size, block size or the number of devices.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchmetrics import Metric

LN2 = math.log(2.0)


class LanguageModelingMetric(Metric):
    """Summed NLL (nats) over scored tokens, with the bytes and words those tokens cover.

    compute() gives, over everything seen since the last reset:
        loss      mean NLL per native token (byte for BDH, BPE token for GPT-2)
        ppl       exp(loss), per native token; not comparable across tokenizers
        bpb       total NLL / (ln 2 * UTF-8 bytes): comparable across tokenizers
        byte_ppl  2 ** bpb                       (lm-evaluation-harness byte_perplexity)
        word_ppl  exp(total NLL / words)         (lm-evaluation-harness word_perplexity)
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("nll", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("tokens", "bytes", "words"):
            self.add_state(name, torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(
        self, nll: torch.Tensor, tokens: torch.Tensor, n_bytes: torch.Tensor, words: torch.Tensor
    ) -> None:
        self.nll += nll.detach().to(torch.float64)
        self.tokens += tokens.detach().to(torch.int64)
        self.bytes += n_bytes.detach().to(torch.int64)
        self.words += words.detach().to(torch.int64)

    def compute(self) -> dict[str, torch.Tensor]:
        loss = self.nll / self.tokens.clamp(min=1)
        bpb = self.nll / (LN2 * self.bytes.clamp(min=1))
        return {
            "loss": loss,
            "ppl": torch.exp(loss),
            "bpb": bpb,
            "byte_ppl": torch.exp2(bpb),
            "word_ppl": torch.exp(self.nll / self.words.clamp(min=1)),
            "tokens": self.tokens.to(torch.float64),
            "bytes": self.bytes.to(torch.float64),
            "words": self.words.to(torch.float64),
        }


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(total, non-embedding) parameter counts; non-embedding leaves out every nn.Embedding
    (token and position tables), as in Kaplan et al. 2020. Tied weights count once."""
    params = {id(p): p for p in module.parameters()}
    embedding = {
        id(p) for m in module.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    total = sum(p.numel() for p in params.values())
    return total, total - sum(params[i].numel() for i in embedding if i in params)
