"""BDH's neuron graph: G from the weights, thresholding, degrees, modularity, planted graphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bdh_pl.analysis.graph import controls, degrees, describe, modularity, neuron_graph, threshold
from bdh_pl.analysis.powerlaw import fit_power_law


def test_g_is_each_neuron_writing_through_the_decoder_read_by_the_encoder():
    torch.manual_seed(0)
    nh, D, N = 2, 3, 4
    decoder, encoder = torch.randn(nh * N, D), torch.randn(nh, D, N)
    for head in range(nh):
        G = neuron_graph(decoder, encoder, head)
        for i in range(N):
            for j in range(N):
                want = sum(decoder[head * N + i, d] * encoder[head, d, j] for d in range(D))
                assert G[i, j] == pytest.approx(float(want), abs=1e-5)


def test_threshold_keeps_the_largest_positive_off_diagonal_entries():
    G = torch.tensor([[9.0, 1.0, -2.0], [3.0, 9.0, 0.5], [-1.0, 2.0, 9.0]])
    adjacency = threshold(G, density=3 / 6)  # 3 of the 6 off-diagonal entries
    assert adjacency.tolist() == [[False, True, False], [True, False, False], [False, True, False]]
    assert threshold(G, density=0.99).sum() == 4  # only the 4 positive ones, never the diagonal
    d = degrees(adjacency)
    assert d["out"].tolist() == [1, 1, 1] and d["in"].tolist() == [1, 2, 0]
    assert d["total"].tolist() == [1, 2, 1]  # undirected: 0-1 (both ways) and 1-2


def planted(out_degrees: np.ndarray, seed: int = 0) -> torch.Tensor:
    """A weight matrix whose top entries are a graph with the given out-degrees (random
    targets), every edge above every non-edge."""
    rng = np.random.default_rng(seed)
    N = len(out_degrees)
    G = torch.as_tensor(rng.random((N, N)) * 1e-3, dtype=torch.float32)
    for i, k in enumerate(out_degrees):
        targets = rng.choice(np.delete(np.arange(N), i), size=int(k), replace=False)
        G[i, targets] += 1.0
    return G


def test_a_planted_power_law_graph_gives_its_exponent_back_and_an_erdos_renyi_graph_does_not(
    sample_power_law,
):
    N = 2000
    out = np.minimum(sample_power_law(2.5, 2, N, seed=3), N // 4)
    density = out.sum() / (N * (N - 1))
    result = describe(planted(out), density)
    fit = result["fits"]["out"]
    assert result["edges"] == out.sum()
    assert fit["alpha"] == pytest.approx(2.5, abs=0.15)
    assert fit["alternatives"]["exponential"]["power_law_wins"]

    torch.manual_seed(0)
    er = describe(torch.randn(N, N), density)  # Gaussian entries thresholded: Erdos-Renyi
    for kind in ("out", "in", "total"):
        assert not er["fits"][kind]["alternatives"]["exponential"]["power_law_wins"]


def test_modularity_finds_planted_communities_and_not_in_a_shuffle():
    blocks = torch.block_diag(*[torch.ones(20, 20)] * 4)  # 4 communities of 20 neurons
    q, communities = modularity(threshold(blocks + 0.01 * torch.rand(80, 80), 0.2))
    assert communities == 4 and q == pytest.approx(0.75, abs=0.02)  # 1 - 1/4
    decoder = blocks.repeat(1, 1)[:, :80]  # G = decoder @ encoder with encoder = identity
    shuffled = controls(decoder, torch.eye(80)[None], head=0, seed=0)["shuffled"]
    assert modularity(threshold(shuffled + 0.01 * torch.rand(80, 80), 0.2))[0] < 0.3


def test_fit_power_law_on_degrees_agrees_with_describe(sample_power_law):
    out = np.minimum(sample_power_law(2.2, 1, 500, seed=4), 100)
    G = planted(out, seed=1)
    result = describe(G, out.sum() / (500 * 499))
    assert result["fits"]["out"]["alpha"] == pytest.approx(fit_power_law(out).alpha)
