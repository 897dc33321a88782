"""BDH's neuron graph, the paper's protocol: G from the weights, the signal level, degrees,
Louvain modularity, the controls; planted graphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bdh_pl.analysis.graph import (
    above,
    beta_for_edges,
    degrees,
    describe,
    erdos_renyi,
    low_rank,
    modularity,
    neuron_graph,
    top_edges,
    variants,
)


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


def test_the_signal_level_keeps_the_entries_above_it_and_never_the_diagonal():
    G = torch.tensor([[9.0, 1.0, -2.0], [3.0, 9.0, 0.5], [-1.0, 2.0, 9.0]])
    assert beta_for_edges(G, 3) == 1.0  # off-diagonal, largest first: 3, 2, 1, 0.5, ...
    assert above(G, 0.9).tolist() == [
        [False, True, False],
        [True, False, False],
        [False, True, False],
    ]
    assert torch.equal(top_edges(G, 3), above(G, 0.9))
    d = degrees(above(G, 0.9))
    assert d["out"].tolist() == [1, 1, 1] and d["in"].tolist() == [1, 2, 0]
    assert above(G, 2.5).sum() == 1 and above(G, 100.0).sum() == 0


def test_erdos_renyi_draws_m_distinct_off_diagonal_edges_uniformly():
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(5, 5)
    for _ in range(1000):
        a = erdos_renyi(5, 7, gen)
        assert a.sum() == 7 and not a.diagonal().any()
        counts += a
    # each of the 20 ordered pairs with probability 7/20: 350 of 1000 draws, sd ~15
    off = counts[~torch.eye(5, dtype=torch.bool)]
    assert off.min() > 290 and off.max() < 410


def test_a_planted_modular_graph_scores_high_and_its_erdos_renyi_control_near_zero():
    gen = torch.Generator().manual_seed(0)
    blocks = torch.block_diag(*[torch.ones(20, 20)] * 4)  # 4 communities of 20 neurons
    G = blocks * torch.rand(80, 80, generator=gen) + 0.01 * torch.rand(80, 80, generator=gen)
    m = 1200  # 15 edges per neuron, all inside the communities
    q, communities = modularity(top_edges(G, m))
    assert communities == 4 and q == pytest.approx(0.75, abs=0.01)  # 1 - 1/4
    # Louvain finds some modularity in any random graph (fluctuations), less the denser it is
    q_er, _ = modularity(erdos_renyi(80, m, gen))
    assert q_er < 0.15
    q_lr, _ = modularity(top_edges(low_rank(80, 8, gen), m))
    assert q_lr < 0.5


def test_modularity_is_the_best_of_its_seeds():
    gen = torch.Generator().manual_seed(1)
    a = erdos_renyi(60, 240, gen)
    best = modularity(a, seeds=5)[0]
    assert best >= modularity(a, seeds=1)[0] and best >= modularity(a, seeds=3)[0]


def test_variants_cut_every_control_to_the_trained_graphs_edges(tiny_bdh):
    trained, init = tiny_bdh(seed=0), tiny_bdh(seed=1)
    graphs = variants(
        (trained.decoder, trained.encoder), (init.decoder, init.encoder), head=1, m=20, seed=0
    )
    assert set(graphs) == {"trained", "init", "erdos-renyi", "low-rank", "factors shuffled"}
    assert all(int(a.sum()) == 20 and not a.diagonal().any() for a in graphs.values())
    want = top_edges(neuron_graph(trained.decoder, trained.encoder, 1), 20)
    assert torch.equal(graphs["trained"], want)


def test_describe_fits_in_and_out_degree_apart(sample_power_law):
    """A planted graph with power-law out-degrees and uniform targets: the out-degree is the
    power law, the in-degree (binomial) is not."""
    rng = np.random.default_rng(3)
    N = 800
    out = np.minimum(sample_power_law(2.5, 2, N, seed=3), N // 4)
    adjacency = torch.zeros(N, N, dtype=torch.bool)
    for i, k in enumerate(out):
        adjacency[i, rng.choice(np.delete(np.arange(N), i), size=int(k), replace=False)] = True
    result = describe(adjacency, seeds=1)
    assert result["edges"] == out.sum()
    assert result["fits"]["out"]["alpha"] == pytest.approx(2.5, abs=0.15)
    assert result["fits"]["out"]["alternatives"]["exponential"]["power_law_wins"]
    assert not result["fits"]["in"]["alternatives"]["exponential"]["power_law_wins"]
    assert not result["fits"]["in"]["preferred"].startswith("power law")
