import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bdh_pl.models.bdh import BDH, BDHConfig, BDHExecution
from bdh_pl.training.flops import (
    count_flops,
    flops_per_token,
    parameter_counts,
    training_flops_per_token,
)


class OneAttentionLM(nn.Module):
    """Embedding, one causal attention through F.scaled_dot_product_attention without a mask
    (the CPU flash kernel, which torch's counter does not know by itself), LM head."""

    def __init__(self, vocab: int, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.embed, self.qkv = nn.Embedding(vocab, d), nn.Linear(d, 3 * d, bias=False)
        self.proj, self.head = nn.Linear(d, d, bias=False), nn.Linear(d, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        B, T = ids.shape
        q, k, v = self.qkv(self.embed(ids)).view(B, T, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.head(self.proj(y.transpose(1, 2).reshape(B, T, -1)))


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_the_attention_kernel_is_counted_on_cpu_too(device):
    vocab, d, T = 256, 64, 128
    network = OneAttentionLM(vocab, d, heads=4).to(device)
    counted = count_flops(network, torch.randint(0, vocab, (1, T), device=device))
    analytic = T * (2 * d * 3 * d + 2 * d * d + 4 * T * d + 2 * d * vocab)
    assert counted["forward"] == analytic


def test_bdh_flops_are_counted_and_parameters_split():
    config = BDHConfig(n_layer=2, n_embd=32, n_head=2, mlp_internal_dim_multiplier=4, dropout=0)
    network = BDH(config)
    flops = flops_per_token(network, block_size=32)
    counts = parameter_counts(network)
    assert 0 < counts["non_embedding_params"] < counts["params"]
    # At least the 2 FLOPs per multiply of each non-embedding weight; training about 3x.
    assert flops["forward"] >= 2 * counts["non_embedding_params"]
    assert 2.5 < flops["forward_backward"] / flops["forward"] < 3.5


def test_mfu_uses_lightnings_device_peak_and_is_none_on_cpu(monkeypatch):
    """The Throughput callback's peak is Lightning's get_available_flops (was our own table)."""
    from lightning.fabric.utilities.throughput import get_available_flops

    def peak(name: str, dtype) -> float | None:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        return get_available_flops(torch.device("cuda"), dtype)

    assert peak("NVIDIA H100 80GB HBM3", torch.bfloat16) == pytest.approx(989.4e12)
    assert peak("NVIDIA H100 PCIe", torch.bfloat16) == pytest.approx(756e12)
    assert peak("NVIDIA A100-SXM4-40GB", torch.float16) == pytest.approx(312e12)
    assert get_available_flops(torch.device("cpu"), torch.float32) is None


def bdh_forward_flops(config: BDHConfig, T: int) -> float:
    """BDH.layer's matmuls per token, by hand: encoder, encoder_v and decoder (2 nh N D each),
    the scores and the scores times values over the full block, and the LM head."""
    nh, N, D = config.n_head, config.n_neurons, config.n_embd
    per_layer = 3 * 2 * nh * N * D + 2 * nh * T * (N + D)
    return config.n_layer * per_layer + 2 * D * config.vocab_size


@pytest.mark.parametrize(
    "execution",
    [
        None,  # the reference itself
        BDHExecution(attention="quadratic"),
        BDHExecution(attention="chunked", chunk_size=8),
        BDHExecution(compile_elementwise=True, activation_checkpointing=True),
    ],
)
def test_the_3x_forward_rule_ignores_bdh_execution_switches(execution):
    config = BDHConfig(n_layer=2, n_embd=32, n_head=2, mlp_internal_dim_multiplier=4, dropout=0)
    network = BDH(config)
    if execution is not None:
        execution.apply(network)
    before = network.layer_runner
    rule = training_flops_per_token(network, block_size=32)
    assert rule["forward"] == bdh_forward_flops(config, 32)
    assert rule["train"] == 3 * bdh_forward_flops(config, 32)
    assert network.layer_runner is before  # the switch is put back


def test_the_fused_kernels_measured_count_is_not_the_rules():
    """What the rule corrects: the fused backward computes the symmetric scores' gradient in
    one matmul, so its measured training count is below 3x the forward."""
    config = BDHConfig(n_layer=2, n_embd=32, n_head=2, mlp_internal_dim_multiplier=4, dropout=0)
    network = BDHExecution(attention="quadratic").apply(BDH(config))
    measured = flops_per_token(network, block_size=64)["forward_backward"]
    rule = training_flops_per_token(network, block_size=64)["train"]
    assert measured < 0.97 * rule
