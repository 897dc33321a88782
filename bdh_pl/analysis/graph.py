"""BDH's neuron-neuron graph: what encoder and decoder wire together, thresholded, measured.

In BDH-GPU (the paper's eq. 8) the neurons of one layer reach the next through the residual
stream: neuron i writes its row of the decoder (paper: E, neurons -> D), and neuron j reads the
result through its column of the encoder (paper: D_x, D -> neurons). Per head h the N x N
matrix of these interactions is the paper's G_x = D_x E restricted to the head:

    G[i, j] = decoder[h*N + i] . encoder[h][:, j]        source i -> target j

The graph keeps the strongest positive interactions: the top `density` share of the
off-diagonal entries (at most the positive ones), so every variant compared has the same
number of edges. Its degrees (out: a neuron's fan-out, in: its fan-in, total: neighbours in
the undirected graph) are fitted by powerlaw.py; its modularity is Newman's, of the Louvain
partition of the undirected graph (networkx). Controls: the same matrices at initialization,
G with its entries randomly permuted (same weights, no structure: an Erdos-Renyi graph), and
the decoder's D coordinates permuted against the encoder's (each factor keeps its own
statistics, e.g. row norms, but not their learned alignment).
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import torch
from torch import Tensor

from bdh_pl.analysis.powerlaw import fit_power_law

DEGREE_KINDS = ("out", "in", "total")


def neuron_graph(decoder: Tensor, encoder: Tensor, head: int) -> Tensor:
    """G (N, N) of one head: decoder (nh*N, D), encoder (nh, D, N)."""
    N = encoder.shape[-1]
    return decoder[head * N : (head + 1) * N].float() @ encoder[head].float()


def threshold(G: Tensor, density: float) -> Tensor:
    """N, N bool: the largest round(density * N * (N - 1)) positive off-diagonal entries."""
    N = G.shape[0]
    off = G.clone().float()
    off.fill_diagonal_(float("-inf"))
    k = min(round(density * N * (N - 1)), int((off > 0).sum()))
    adjacency = torch.zeros(N * N, dtype=torch.bool)
    if k > 0:
        adjacency[off.flatten().topk(k).indices] = True
    return adjacency.view(N, N)


def degrees(adjacency: Tensor) -> dict[str, np.ndarray]:
    undirected = adjacency | adjacency.T
    return {
        "out": adjacency.sum(1).numpy(),
        "in": adjacency.sum(0).numpy(),
        "total": undirected.sum(1).numpy(),
    }


def modularity(adjacency: Tensor, seed: int = 0) -> tuple[float, int]:
    """Newman's modularity of the Louvain partition of the undirected graph; communities."""
    graph = nx.Graph()
    graph.add_nodes_from(range(adjacency.shape[0]))
    rows, cols = torch.nonzero(adjacency | adjacency.T, as_tuple=True)
    graph.add_edges_from((i, j) for i, j in zip(rows.tolist(), cols.tolist(), strict=True) if i < j)
    if graph.number_of_edges() == 0:
        return 0.0, adjacency.shape[0]
    parts = nx.community.louvain_communities(graph, seed=seed)
    return float(nx.community.modularity(graph, parts)), len(parts)


def describe(G: Tensor, density: float, seed: int = 0) -> dict:
    """Edges, degree statistics and fits, modularity of one thresholded interaction matrix."""
    adjacency = threshold(G, density)
    degs = degrees(adjacency)
    q, communities = modularity(adjacency, seed)
    out: dict = {
        "edges": int(adjacency.sum()),
        "modularity": q,
        "communities": communities,
        "degrees": {kind: degs[kind].tolist() for kind in DEGREE_KINDS},
        "fits": {},
    }
    for kind in DEGREE_KINDS:
        out["fits"][kind] = degree_fit(degs[kind])
    return out


def degree_fit(d: np.ndarray) -> dict:
    """Mean, max, isolated nodes, and the power-law fit with its comparisons."""
    stats = {"mean": float(d.mean()), "max": int(d.max()), "isolated": int((d == 0).sum())}
    try:
        stats.update(fit_power_law(d).as_dict())
    except ValueError as err:  # too few distinct degrees to fit anything
        stats["error"] = str(err)
    return stats


def controls(decoder: Tensor, encoder: Tensor, head: int, seed: int) -> dict[str, Tensor]:
    """The shuffled versions of one head's G: entries permuted; D coordinates permuted."""
    gen = torch.Generator().manual_seed(seed)
    G = neuron_graph(decoder, encoder, head)
    shuffled = G.flatten()[torch.randperm(G.numel(), generator=gen)].view_as(G)
    inner = torch.randperm(decoder.shape[1], generator=gen)
    return {
        "shuffled": shuffled,
        "factors shuffled": neuron_graph(decoder[:, inner], encoder, head),
    }
