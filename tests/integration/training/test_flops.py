"""The integration half of tests/unit/training/test_flops.py: its tests that fit, compile, read
more than a slice of real data or spend seconds of CPU (the unit tier has a minute)."""

import pytest
from transformers import GPT2Config, GPT2LMHeadModel

from bdh_pl.training.flops import (
    flops_per_token,
    training_flops_per_token,
    transformer_flops_per_token,
)


@pytest.mark.parametrize(("n_layer", "n_embd", "block_size"), [(2, 64, 64), (3, 96, 128)])
def test_counted_flops_match_the_analytic_count_for_gpt2(n_layer, n_embd, block_size):
    vocab = 256
    config = GPT2Config(
        n_layer=n_layer, n_embd=n_embd, n_head=2, n_positions=block_size, vocab_size=vocab,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    model = GPT2LMHeadModel(config)
    counted = flops_per_token(model, block_size)
    analytic = transformer_flops_per_token(n_layer, n_embd, block_size, vocab)
    assert counted["forward"] == pytest.approx(analytic, rel=0.05)
    # backward: gradients for inputs and weights, twice the forward
    assert counted["forward_backward"] == pytest.approx(3 * analytic, rel=0.05)
    assert all(p.grad is None for p in model.parameters())  # counting leaves no gradients


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_the_3x_forward_rule_is_the_same_for_sdpa_and_eager_attention(family):
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab, d, T, layers = 256, 32, 32, 2
    if family == "gpt2":
        config = GPT2Config(
            n_layer=layers, n_embd=d, n_head=2, n_positions=T, vocab_size=vocab,
            bos_token_id=0, eos_token_id=0,
        )  # fmt: skip
        build, mlp = GPT2LMHeadModel, 2 * 2 * d * 4 * d  # up and down, 4x
    else:
        config = LlamaConfig(
            num_hidden_layers=layers, hidden_size=d, num_attention_heads=2, vocab_size=vocab,
            intermediate_size=64, max_position_embeddings=T, bos_token_id=0, eos_token_id=0,
        )  # fmt: skip
        build, mlp = LlamaForCausalLM, 3 * 2 * d * 64  # gate, up and down
    counts = {}
    for implementation in ("sdpa", "eager"):
        config._attn_implementation = implementation
        network = build(config)
        counts[implementation] = training_flops_per_token(network, T)
        assert network.config._attn_implementation == implementation  # put back
    assert counts["sdpa"] == counts["eager"]
    # by hand: q, k, v, out (2 d^2 each), the MLP, scores and values over the block, LM head
    forward = layers * (4 * 2 * d * d + mlp + 4 * T * d) + 2 * d * vocab
    assert counts["eager"]["forward"] == pytest.approx(forward, rel=1e-9)
    assert counts["eager"]["train"] == 3 * counts["eager"]["forward"]
