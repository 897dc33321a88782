"""NeuronRecorder: BDH's x_sparse and a transformer's MLP neurons, read without changing them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bdh_pl.analysis.activations import NeuronRecorder, neurons_per_layer, windows
from bdh_pl.models.hf import GPT2Size, LlamaSize, from_config, gpt2_config, llama_config


def test_bdh_x_sparse_of_layer_0_is_relu_of_the_encoded_embedding(tiny_bdh):
    model = tiny_bdh(n_layer=2)
    idx = torch.randint(0, 256, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(idx)
        with NeuronRecorder(model, layers=[0], y=True) as rec:
            recorded = model(idx)
        x = F.layer_norm(model.embed(idx), (8,)).unsqueeze(1) @ model.encoder  # B, nh, T, N
    assert torch.allclose(recorded, plain, atol=1e-5)  # reading changes nothing
    assert set(rec.x) == {0} and rec.x[0].shape == (2, 5, 16)  # heads side by side
    assert torch.allclose(rec.x[0], F.relu(x).transpose(1, 2).flatten(2), atol=1e-6)
    assert rec.y[0].shape == (2, 5, 16) and (rec.y[0] >= 0).all()
    assert neurons_per_layer(model) == 16


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_transformer_neurons_are_the_input_of_the_mlp_output_projection(kind):
    """What the recorder reads, put through the output projection, is the MLP's output."""
    torch.manual_seed(0)
    sizes = {
        "vocab_size": 256,
        "block_size": 16,
        "n_layer": 2,
        "n_head": 2,
        "n_embd": 16,
        "dropout": 0.0,
    }
    if kind == "gpt2":
        network = from_config(gpt2_config(GPT2Size(**sizes)))
        mlps = [block.mlp for block in network.hf.transformer.h]
        project = [m.c_proj for m in mlps]
    else:
        config = llama_config(LlamaSize(**sizes, intermediate_size=24, rope_theta=1e4))
        network = from_config(config)
        mlps = [layer.mlp for layer in network.hf.model.layers]
        project = [m.down_proj for m in mlps]
    network.eval()
    outputs = {}
    for i, mlp in enumerate(mlps):
        mlp.register_forward_hook(lambda m, a, out, i=i: outputs.__setitem__(i, out))
    idx = torch.randint(0, 256, (2, 7))
    with torch.no_grad(), NeuronRecorder(network) as rec:
        network(idx)
    assert neurons_per_layer(network) == (64 if kind == "gpt2" else 24)
    for i in range(2):
        assert rec.x[i].shape == (2, 7, neurons_per_layer(network))
        assert torch.allclose(project[i](rec.x[i]), outputs[i], atol=1e-6)


def test_windows_are_disjoint_and_drop_the_short_last_one():
    tokens = list(range(10))
    assert windows(tokens, 4).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert windows(tokens, 4, max_tokens=5).tolist() == [[0, 1, 2, 3]]
    with pytest.raises(ValueError, match="fewer than one window"):
        windows(tokens, 11)
