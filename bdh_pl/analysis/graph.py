"""BDH's neuron-neuron graph as the paper measures it (arXiv 2509.26507, Sec. 5.5).

In BDH-GPU (the paper's eq. 8) the neurons of one layer reach the next through the residual
stream: neuron i writes its row of the decoder (the paper's E, neurons -> D) and neuron j reads
the result through its column of the encoder (the paper's D_x, D -> neurons). Per head h the
N x N block of the paper's G_x = D_x E is, in the official parameter names,

    G[i, j] = decoder[h*N + i] . encoder[h][:, j]        source i -> target j

(G is G_x transposed: a row is a neuron's fan-out.) The paper keeps the entries above a signal
level beta as edges (beta ~1.2 gave m = 46,820 edges on n* = 8,192 neurons, a mean degree of
5.72) and reports Newman's modularity of the Louvain partition, the best of 5 seeds, as beta
varies, and the in- and out-degree distributions. A beta is a number in the units of one
model's weights, so models are compared at equal edge counts m: the sweep is over the trained
graph's beta giving mean degrees MEAN_DEGREES, and every control is cut to the same m.

Controls (all with the trained graph's m): an Erdos-Renyi graph (m directed edges drawn
uniformly); a random low-rank product P1 P2^T (P ~ N(0, 1), n* x d, d = the model's width);
the same head of the untrained model; and G with the decoder's D coordinates permuted against
the encoder's, which keeps each factor's own statistics (row norms, ...) but not their learned
alignment (the control that showed, before this protocol, that such statistics alone make a
graph as modular as the trained one at these sizes).
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import torch
from torch import Tensor

from bdh_pl.analysis.powerlaw import fit_power_law, preferred

DEGREE_KINDS = ("out", "in")
PAPER_BETA = 1.2  # the paper's signal level
PAPER_EDGES, PAPER_NEURONS = 46_820, 8_192  # m and n* of its graph at that beta
PAPER_MEAN_DEGREE = PAPER_EDGES / PAPER_NEURONS  # 5.72 edges per neuron
MEAN_DEGREES = (1.0, 2.0, PAPER_MEAN_DEGREE, 2 * PAPER_MEAN_DEGREE)  # the sweep, in m / n*
LOUVAIN_SEEDS = 5


def neuron_graph(decoder: Tensor, encoder: Tensor, head: int) -> Tensor:
    """G (N, N) of one head: decoder (nh*N, D), encoder (nh, D, N)."""
    N = encoder.shape[-1]
    return decoder[head * N : (head + 1) * N].float() @ encoder[head].float()


def off_diagonal(G: Tensor) -> Tensor:
    off = G.clone().float()
    off.fill_diagonal_(float("-inf"))  # a neuron's loop onto itself is no edge
    return off


def above(G: Tensor, beta: float) -> Tensor:
    """N, N bool: the off-diagonal entries above the signal level beta."""
    return off_diagonal(G) > beta


def beta_for_edges(G: Tensor, m: int) -> float:
    """The signal level that keeps G's m largest off-diagonal entries: the m-th largest."""
    values = off_diagonal(G).flatten()
    return float(values.topk(max(m, 1)).values[-1])


def top_edges(G: Tensor, m: int) -> Tensor:
    """N, N bool: the m largest off-diagonal entries (ties broken by position), whatever sign."""
    N = G.shape[0]
    adjacency = torch.zeros(N * N, dtype=torch.bool)
    if m > 0:
        adjacency[off_diagonal(G).flatten().topk(m).indices] = True
    return adjacency.view(N, N)


def erdos_renyi(n: int, m: int, gen: torch.Generator) -> Tensor:
    """N, N bool: m directed edges drawn uniformly among the n (n - 1) ordered pairs."""
    flat = torch.randperm(n * (n - 1), generator=gen)[:m]
    rows, cols = flat // (n - 1), flat % (n - 1)
    cols = cols + (cols >= rows).long()  # skip the diagonal
    adjacency = torch.zeros(n, n, dtype=torch.bool)
    adjacency[rows, cols] = True
    return adjacency


def low_rank(n: int, d: int, gen: torch.Generator) -> Tensor:
    """P1 P2^T with P1, P2 ~ N(0, 1) of shape (n, d): a rank-d product with no training."""
    return torch.randn(n, d, generator=gen) @ torch.randn(n, d, generator=gen).T


def degrees(adjacency: Tensor) -> dict[str, np.ndarray]:
    return {"out": adjacency.sum(1).numpy(), "in": adjacency.sum(0).numpy()}


def modularity(adjacency: Tensor, seeds: int = LOUVAIN_SEEDS) -> tuple[float, int]:
    """Newman's modularity of the undirected graph's Louvain partition, the best over `seeds`
    seeds (Louvain is greedy and seed-dependent); and that partition's community count."""
    graph = nx.Graph()
    graph.add_nodes_from(range(adjacency.shape[0]))
    rows, cols = torch.nonzero(adjacency | adjacency.T, as_tuple=True)
    graph.add_edges_from((i, j) for i, j in zip(rows.tolist(), cols.tolist(), strict=True) if i < j)
    if graph.number_of_edges() == 0:
        return 0.0, adjacency.shape[0]
    best = (-1.0, 0)
    for seed in range(seeds):
        parts = nx.community.louvain_communities(graph, seed=seed)
        best = max(best, (float(nx.community.modularity(graph, parts)), len(parts)))
    return best


def degree_fit(d: np.ndarray) -> dict:
    """Mean, max, isolated nodes; the power-law fit against the exponential and the lognormal
    (Clauset, Shalizi & Newman), and which of the three the tail prefers."""
    stats = {"mean": float(d.mean()), "max": int(d.max()), "isolated": int((d == 0).sum())}
    try:
        fit = fit_power_law(d)
    except ValueError as err:  # too few distinct degrees to fit anything
        stats["error"] = str(err)
        stats["preferred"] = "no fit"
        return stats
    stats.update(fit.as_dict())
    stats["preferred"] = preferred(fit)
    return stats


def describe(adjacency: Tensor, seeds: int = LOUVAIN_SEEDS, fits: bool = True) -> dict:
    """Edges, modularity (best of `seeds`) and, if asked, in/out degree fits of one graph."""
    q, communities = modularity(adjacency, seeds)
    out: dict = {"edges": int(adjacency.sum()), "modularity": q, "communities": communities}
    if fits:
        degs = degrees(adjacency)
        out["degrees"] = {kind: degs[kind].tolist() for kind in DEGREE_KINDS}
        out["fits"] = {kind: degree_fit(degs[kind]) for kind in DEGREE_KINDS}
    return out


def variants(
    trained: tuple[Tensor, Tensor], init: tuple[Tensor, Tensor], head: int, m: int, seed: int
) -> dict[str, Tensor]:
    """The trained graph of one head and its controls, each cut to m edges.

    trained, init: (decoder, encoder) of the model and its untrained twin."""
    gen = torch.Generator().manual_seed(seed)
    decoder, encoder = trained
    N, D = encoder.shape[-1], encoder.shape[1]
    inner = torch.randperm(D, generator=gen)
    return {
        "trained": top_edges(neuron_graph(decoder, encoder, head), m),
        "init": top_edges(neuron_graph(*init, head), m),
        "erdos-renyi": erdos_renyi(N, m, gen),
        "low-rank": top_edges(low_rank(N, D, gen), m),
        "factors shuffled": top_edges(neuron_graph(decoder[:, inner], encoder, head), m),
    }
