"""The baselines: loading GPT-2 from a folder, sizing from the data, parameter counts, and
clear errors when model and data disagree. Models are tiny; no test touches the network."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig

from bdh_pl.errors import UserError
from bdh_pl.models.hf import GPT2Size, LlamaSize, PretrainedGPT2, from_config
from bdh_pl.training.lit_models import GPT2LM, LlamaLM, PretrainedGPT2LM

TINY_GPT2 = {"n_layer": 2, "n_head": 2, "n_embd": 32}
TINY_LLAMA = {"n_layer": 2, "n_head": 4, "n_embd": 32, "n_query_groups": 2, "intermediate_size": 64}


def scratch(lit_class: type, **fields):
    """GPT2LM or LlamaLM with a config of these fields."""
    return lit_class({GPT2LM: GPT2Size, LlamaLM: LlamaSize}[lit_class](**fields))


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """A small random GPT-2 with the real vocabulary, saved as a Hugging Face checkpoint."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50257, n_positions=64, **TINY_GPT2)
    path = tmp_path_factory.mktemp("tiny-gpt2")
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


def test_pretrained_loads_safetensors_folder(gpt2_dir):
    assert (gpt2_dir / "model.safetensors").is_file()
    assert not list(gpt2_dir.glob("*.bin"))
    reference = GPT2LMHeadModel.from_pretrained(gpt2_dir).eval()
    model = PretrainedGPT2LM(PretrainedGPT2(name_or_path=str(gpt2_dir), block_size=64)).eval()
    assert model.config.vocab_size == 50257  # the checkpoint's, when the data gives none
    ids = torch.randint(0, 50257, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), reference(ids).logits, rtol=0, atol=0)
    assert all(k.startswith("network.hf.") for k in model.state_dict())


def test_pretrained_dropout_override(gpt2_dir):
    model = PretrainedGPT2LM(PretrainedGPT2(name_or_path=str(gpt2_dir), block_size=64, dropout=0.0))
    config = model.network.hf.config
    assert config.resid_pdrop == config.embd_pdrop == config.attn_pdrop == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vocab_size": 256, "block_size": 64}, "tokenizer"),  # a byte DataModule
        ({"vocab_size": 50257, "block_size": 128}, "data.block_size <= 64"),
    ],
)
def test_pretrained_rejects_mismatched_data(gpt2_dir, kwargs, message):
    with pytest.raises(UserError, match=message):
        PretrainedGPT2LM(PretrainedGPT2(name_or_path=str(gpt2_dir), **kwargs))


def test_pretrained_missing_or_wrong_checkpoint(tmp_path):
    with pytest.raises(UserError, match="not found"):
        PretrainedGPT2LM(PretrainedGPT2(name_or_path=str(tmp_path / "missing")))
    llama = from_config(LlamaConfig(vocab_size=50257, hidden_size=32, **_llama_shape()))
    llama.hf.save_pretrained(tmp_path / "llama")
    with pytest.raises(UserError, match="not GPT-2"):
        PretrainedGPT2LM(PretrainedGPT2(name_or_path=str(tmp_path / "llama")))


def _llama_shape() -> dict:
    return {
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
    }


@pytest.mark.parametrize("lit_class, shape", [(GPT2LM, TINY_GPT2), (LlamaLM, TINY_LLAMA)])
@pytest.mark.parametrize("vocab_size", [256, 50257])
def test_scratch_sized_from_data(lit_class, shape, vocab_size):
    model = scratch(lit_class, **shape, vocab_size=vocab_size, block_size=48)
    logits = model(torch.randint(0, vocab_size, (3, 48)))
    assert logits.shape == (3, 48, vocab_size)
    hf = model.network.hf
    assert hf.config.vocab_size == vocab_size
    positions = getattr(hf.config, "n_positions", None) or hf.config.max_position_embeddings
    assert positions == 48


def test_gpt2_parameter_counts():
    model = scratch(GPT2LM, **TINY_GPT2, vocab_size=256, block_size=64)
    hf = model.network.hf
    assert hf.lm_head.weight is hf.transformer.wte.weight  # tied: counted once
    total = sum(p.numel() for p in hf.parameters())  # parameters() yields a tied weight once
    embedding = hf.transformer.wte.weight.numel() + hf.transformer.wpe.weight.numel()
    assert model.parameter_counts == (total, total - embedding)


def test_llama_parameter_counts():
    model = scratch(LlamaLM, **TINY_LLAMA, vocab_size=256, block_size=64)
    hf = model.network.hf
    d, n_layer, kv = 32, 2, 2 * 32 // 4  # key/value width: 2 groups of head_dim 8
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * 64 + 2 * d  # q,o; k,v; SwiGLU; two RMSNorms
    non_embedding = n_layer * per_layer + d + 256 * d  # + final norm + untied head
    assert model.parameter_counts == (non_embedding + 256 * d, non_embedding)
    assert sum(p.numel() for p in hf.parameters()) == non_embedding + 256 * d


def test_optimizer_groups_with_tied_head():
    model = scratch(GPT2LM, **TINY_GPT2, vocab_size=256, block_size=64)
    optimizer = model.configure_optimizers()["optimizer"]
    groups = {g["name"]: {id(p) for p in g["params"]} for g in optimizer.param_groups}
    every = {id(p) for p in model.parameters()}
    assert groups["decay"] | groups["no_decay"] == every
    assert not groups["decay"] & groups["no_decay"]
    hf = model.network.hf
    assert id(hf.lm_head.weight) in groups["no_decay"]  # the tied embedding does not decay
    assert id(hf.transformer.h[0].attn.c_attn.weight) in groups["decay"]
    assert id(hf.transformer.h[0].ln_1.weight) in groups["no_decay"]


@pytest.mark.parametrize(
    "lit_class, bad, message",
    [
        (GPT2LM, {"n_head": 3}, "divisible"),
        (GPT2LM, {"n_layer": 0}, "model.config.n_layer must be a positive integer"),
        (GPT2LM, {"dropout": 1.0}, "model.config.dropout"),
        (LlamaLM, {"n_query_groups": 3}, "n_query_groups"),
        (LlamaLM, {"intermediate_size": -1}, "model.config.intermediate_size"),
    ],
)
def test_bad_shapes_are_user_errors(lit_class, bad, message):
    shape = {**(TINY_GPT2 if lit_class is GPT2LM else TINY_LLAMA), **bad}
    with pytest.raises(UserError, match=message):
        scratch(lit_class, **shape, vocab_size=256, block_size=32)


@pytest.mark.parametrize("lit_class, shape", [(GPT2LM, TINY_GPT2), (LlamaLM, TINY_LLAMA)])
def test_greedy_generate_matches_a_hand_loop(lit_class, shape):
    torch.manual_seed(0)
    model = scratch(lit_class, **shape, vocab_size=256, block_size=32).eval()
    prompt = torch.randint(0, 256, (2, 5))
    out = model.generate(prompt, 6, top_k=1)  # LanguageModel.generate -> transformers' generate
    idx = prompt
    with torch.no_grad():
        for _ in range(6):  # no cache: the whole sequence every step
            next_id = model.network.hf(input_ids=idx).logits[:, -1].argmax(-1, keepdim=True)
            idx = torch.cat([idx, next_id], dim=1)
    assert torch.equal(out, idx)


def test_generate_continues_past_gpt2_positions(gpt2_dir):
    torch.manual_seed(0)  # a random GPT-2 could sample its end-of-text token and stop early
    model = PretrainedGPT2LM(PretrainedGPT2(name_or_path=str(gpt2_dir), block_size=64)).eval()
    prompt = torch.randint(0, 50256, (2, 10))
    out = model.generate(prompt, 8, temperature=0.8, top_k=5)
    assert out.shape == (2, 18) and torch.equal(out[:, :10], prompt)
    out = model.generate(prompt, 60, top_k=5)  # past the 64 positions: the context is cropped
    assert out.shape == (2, 70) and torch.equal(out[:, :10], prompt)
