"""Synapses: the state in the next token's frame against a hand loop and the model's attention;
a planted selective synapse found and tested; shuffled labels find nothing that holds up."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bdh_pl.analysis.synapses import select_and_test, state_after, synapse_selectivity, synapses
from bdh_pl.models.bdh.model import rope_freqs


def rotate(x: torch.Tensor, position: int) -> torch.Tensor:
    """x (N,) with each pair (2i, 2i+1) turned by position * its RoPE frequency, by hand."""
    turns = rope_freqs(x.numel())
    out = x.clone()
    for i in range(0, x.numel(), 2):
        angle = position * float(turns[i]) * 2 * math.pi
        c, s = math.cos(angle), math.sin(angle)
        out[i], out[i + 1] = x[i] * c - x[i + 1] * s, x[i] * s + x[i + 1] * c
    return out


def test_synapses_are_the_state_in_the_next_tokens_frame(tiny_bdh):
    network = tiny_bdh(n_layer=1)
    idx = torch.tensor([72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100])
    T = len(idx) - 1  # the state after the first T tokens, read by token T
    S = state_after(network, idx[:T])
    seen = {}  # the model's own attention output (B, nh, T+1, D), in the parallel form
    hook = network.attn.register_forward_hook(lambda m, i, o: seen.update(a=o))
    with torch.no_grad():
        network(idx.view(1, -1))
    hook.remove()
    with torch.no_grad():
        v = network.ln(network.embed(idx))  # T+1, D: layer 0's input
        for head in range(network.config.n_head):
            x = torch.relu(v @ network.encoder[head])  # T+1, N
            sigma = sum(torch.outer(rotate(x[s], s - T), v[s]) for s in range(T))  # N, D
            want = (sigma - sigma.mean(1, keepdim=True)) @ network.encoder_v[head] / T
            torch.testing.assert_close(synapses(network, S, T, 0, head), want, atol=1e-5, rtol=1e-4)

            # the model's attention at position T is x_T sigma_T
            torch.testing.assert_close(seen["a"][0, head, T], x[T] @ sigma, atol=1e-5, rtol=1e-4)


def planted_reader(labels: np.ndarray, seed: int = 0):
    """2 chunks of 500 synapses of noise; chunk 1 synapse 123 higher in class A, chunk 0
    synapse 7 higher in class B."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((2, len(labels), 500))
    values[1, labels, 123] += 2.0
    values[0, ~labels, 7] += 2.0
    return lambda s, chunk: torch.as_tensor(values[chunk, s])


def test_a_planted_synapse_is_found_and_its_u_is_near_the_maximum():
    labels = np.repeat([True, False], 100)
    selection = np.tile([True, False], 100)  # 50 of each class to choose, 50 to test
    rng = np.random.default_rng(1)
    labelings = np.stack([labels] + [rng.permutation(labels) for _ in range(4)])
    found = select_and_test(planted_reader(labels), 2, labels, selection, labelings)
    a_over_b, b_over_a = found[0]
    assert (a_over_b["chunk"], a_over_b["index"]) == (1, 123)
    assert (b_over_a["chunk"], b_over_a["index"]) == (0, 7)
    for entry in (a_over_b, b_over_a):
        assert entry["U_max"] == 2500 and entry["U"] > 0.9 * 2500 and entry["p"] < 1e-10
        assert entry["rank_biserial"] == pytest.approx(2 * entry["U"] / 2500 - 1)
    # shuffled labels: the best of 1,000 noisy synapses on the selection half, then nothing
    shuffled = [e for row in found[1:] for e in row]
    assert np.mean([e["rank_biserial"] for e in shuffled]) == pytest.approx(0, abs=0.15)
    assert max(e["U"] for e in shuffled) < 0.75 * 2500


def test_u_is_counted_over_pairs():
    """U of the chosen synapse: the number of (A, B) test pairs with A above B."""
    labels = np.repeat([True, False], 20)
    selection = np.tile([True, False], 20)
    read = planted_reader(labels, seed=2)
    entry = select_and_test(read, 2, labels, selection, labels[None])[0][0]
    x = np.array([float(read(s, entry["chunk"])[entry["index"]]) for s in range(40)])
    test = ~selection
    a, b = x[test & labels], x[test & ~labels]
    assert entry["U"] == sum(float(p > q) for p in a for q in b)


def test_synapse_selectivity_runs_on_a_model_and_names_the_synapse(tiny_bdh):
    network = tiny_bdh(n_layer=2)
    gen = torch.Generator().manual_seed(0)
    sentences = [torch.randint(97, 123, (12,), generator=gen) for _ in range(8)]
    sentences += [torch.randint(65, 91, (12,), generator=gen) for _ in range(8)]
    labels = np.repeat([True, False], 8)
    report = synapse_selectivity(network, sentences, labels, shuffles=2)
    assert report["sentences"] == {"A": 8, "B": 8} and report["selection"] == 8
    assert len(report["shuffled_labels"]) == 2
    entry = report["true_labels"][0]
    assert entry["U_max"] == 16 and 0 <= entry["x_neuron"] < network.config.n_neurons
    assert {"layer", "head", "y_neuron", "rank_biserial", "p"} <= set(entry)


def test_a_given_selection_chooses_and_the_rest_tests(tiny_bdh):
    """Documents kept whole on one side: the caller's split is the one used (5 A and 3 B left to
    test, so U_max is 15, not the 4 x 4 of random halves)."""
    network = tiny_bdh(n_layer=1)
    gen = torch.Generator().manual_seed(1)
    sentences = [torch.randint(97, 123, (10,), generator=gen) for _ in range(16)]
    labels = np.repeat([True, False], 8)
    selection = np.array([True] * 3 + [False] * 5 + [True] * 5 + [False] * 3)
    report = synapse_selectivity(network, sentences, labels, shuffles=1, selection=selection)
    assert report["selection"] == 8
    assert all(e["U_max"] == 15 for e in report["true_labels"])


def test_synapse_selectivity_names_a_planted_synapse_by_layer_head_and_neurons(
    tiny_bdh, monkeypatch
):
    """Every synapse of every layer and head noise, but (layer 1, head 1, x 3 -> y 5) higher
    after lowercase sentences: the whole path (reading each sentence's state, the chunks, the
    flat index) names that synapse and tests it near U_max."""
    from bdh_pl.analysis import synapses as module

    network = tiny_bdh(n_layer=2)  # 2 heads of N = 8 neurons
    N = network.config.n_neurons

    def planted(network, S, T, layer, head):
        noise = torch.randn(N, N, generator=torch.Generator().manual_seed(int(S.sum()) + layer))
        if (layer, head) == (1, 1) and bool((S >= 97).all()):  # S: the sentence itself
            noise[3, 5] += 3.0
        return noise

    monkeypatch.setattr(module, "state_after", lambda network, idx: idx)
    monkeypatch.setattr(module, "synapses", planted)
    gen = torch.Generator().manual_seed(0)
    sentences = [torch.randint(97, 123, (12,), generator=gen) for _ in range(40)]
    sentences += [torch.randint(65, 91, (12,), generator=gen) for _ in range(40)]
    labels = np.repeat([True, False], 40)
    entry = synapse_selectivity(network, sentences, labels, shuffles=1)["true_labels"][0]
    assert (entry["layer"], entry["head"], entry["x_neuron"], entry["y_neuron"]) == (1, 1, 3, 5)
    assert entry["U_max"] == 400 and entry["U"] > 0.9 * 400
