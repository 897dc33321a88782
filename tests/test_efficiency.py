import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from bdh_pl.efficiency import (
    flops_per_token,
    mfu,
    parameter_counts,
    peak_flops,
    transformer_flops_per_token,
)
from bdh_pl.models.bdh import BDH, BDHConfig


@pytest.mark.parametrize(("n_layer", "n_embd", "block_size"), [(2, 64, 64), (3, 96, 128)])
def test_counted_flops_match_the_analytic_count_for_gpt2(n_layer, n_embd, block_size):
    vocab = 256
    config = GPT2Config(
        n_layer=n_layer, n_embd=n_embd, n_head=2, n_positions=block_size, vocab_size=vocab,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    model = GPT2LMHeadModel(config)
    counted = flops_per_token(model, block_size, vocab)
    analytic = transformer_flops_per_token(n_layer, n_embd, block_size, vocab)
    assert counted["forward"] == pytest.approx(analytic, rel=0.05)
    # backward: gradients for inputs and weights, twice the forward
    assert counted["forward_backward"] == pytest.approx(3 * analytic, rel=0.05)
    assert all(p.grad is None for p in model.parameters())  # counting leaves no gradients


def test_bdh_flops_are_counted_and_parameters_split():
    config = BDHConfig(n_layer=2, n_embd=32, n_head=2, mlp_internal_dim_multiplier=4, dropout=0)
    network = BDH(config)
    flops = flops_per_token(network, block_size=32, vocab_size=256)
    counts = parameter_counts(network)
    assert 0 < counts["non_embedding_params"] < counts["params"]
    # At least the 2 FLOPs per multiply of each non-embedding weight; training about 3x.
    assert flops["forward"] >= 2 * counts["non_embedding_params"]
    assert 2.5 < flops["forward_backward"] / flops["forward"] < 3.5


def test_mfu_uses_the_device_peak_and_is_none_on_cpu():
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16-mixed") == pytest.approx(989.4e12)
    assert peak_flops("NVIDIA H100 PCIe", "bf16-mixed") == pytest.approx(756.5e12)
    assert peak_flops("NVIDIA A100-SXM4-40GB", "16-mixed") == pytest.approx(312e12)
    assert peak_flops("cpu (x86_64, 2 threads)", "32-true") is None
    # 6N-style training FLOPs x tokens/s over the peak
    assert mfu(3e9, 1e5, "NVIDIA A100-SXM4-80GB", "bf16-mixed") == pytest.approx(3e14 / 312e12)
    assert mfu(3e9, 1e5, "cpu (x86_64, 2 threads)", "32-true") is None
    if torch.get_float32_matmul_precision() == "highest":
        assert peak_flops("NVIDIA A100-SXM4-80GB", "32-true") == pytest.approx(19.5e12)
