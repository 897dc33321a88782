"""BDH's synapses: the recurrent state read as neuron-to-neuron connections, and how selective
one synapse is for a class of sentences (arXiv 2509.26507, Sec. 6.2).

model.py's recurrent form keeps, per layer and head, S_T = sum_{s<T} rope_s(x_s)^T v_s (N x D;
x_s the sparse neurons, v_s the layer's input), and the next token reads a_T = rope_T(x_T) S_T.
In the next token's own frame this is a_T = x_T sigma_T with

    sigma_T = sum_{s<T} rope_{s-T}(x_s)^T v_s          (N x D: the paper's rho, with U^(t-s))

and y_latent_T = LN(a_T) @ encoder_v = x_T (sigma_T C encoder_v) / std(a_T), C the centring
LayerNorm applies. So the N x N matrix

    synapse[i, j] = (sigma_T C encoder_v[h])[i, j] / T

is how strongly x-neuron i, firing at the next token, drives y-neuron j through what the text
so far left in the state (per position: a sentence's length does not scale it): the paper's
synapse sigma(i, j), read from BDH-GPU's state.

Selectivity for two classes of sentences A and B, each sentence read from an empty state: the
sentences of each class are split in halves. On the selection half every synapse gets a score,
the difference of the class means over the standard deviation of all selection sentences, and
the synapse with the largest (A over B; the smallest: B over A) is chosen. On the held-out half
the chosen synapse is tested with a one-sided Mann-Whitney U (U_max = n_A n_B: every A sentence
above every B sentence) and its rank-biserial effect r = 2 U / U_max - 1. Controls: the same
with the labels shuffled (the maximum over many synapses finds something in noise too; the
held-out test should not), and the same on the untrained model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from bdh_pl.models.bdh.model import BDH, Attention

DIRECTIONS = ("A over B", "B over A")


@torch.no_grad()
def state_after(network: BDH, idx: Tensor) -> Tensor:
    """S (n_layer, nh, N, D) after the tokens idx (T,), read from an empty state."""
    _, state = network.prefill(idx.view(1, -1))
    return state.kv[:, :, 0]


def query_frame(S: Tensor, T: int, attn: Attention) -> Tensor:
    """sigma_T (N, D) of one layer and head: S rotated into the frame of position T."""
    phases = attn.phases(-T, 1)  # angles of position -T: rope_{s-T} = rope_s then rope_{-T}
    return attn.rope(S.T.float(), phases.cos(), phases.sin()).T  # N, D


def synapses(network: BDH, S: Tensor, T: int, layer: int, head: int) -> Tensor:
    """The N x N synapses of one layer and head after T tokens (see the module docstring)."""
    sigma = query_frame(S[layer, head], T, network.attn)  # N, D
    centred = sigma - sigma.mean(dim=1, keepdim=True)  # a C: LayerNorm removes a's mean
    return centred @ network.encoder_v[head].float() / T  # N, N


def rank_biserial(u: float, n_a: int, n_b: int) -> float:
    return 2.0 * u / (n_a * n_b) - 1.0


def select_and_test(
    read: Callable[[int, int], Tensor],
    chunks: int,
    labels: np.ndarray,
    selection: np.ndarray,
    labelings: np.ndarray,
) -> list[list[dict]]:
    """Choose a synapse on the selection sentences and test it on the others, per labeling.

    read(sentence, chunk) -> the synapses of one chunk (flattened) for one sentence; labels
    (S,) bool, True for class A; selection (S,) bool; labelings (K, S) bool, the labels to
    use (the first is `labels`, the rest shuffles). Returns, per labeling, one dict per
    direction (DIRECTIONS): chunk, index, score, U, U_max, p, rank_biserial."""
    sel = np.flatnonzero(selection)
    best: list[list[tuple]] = [[(-np.inf, 0, 0), (-np.inf, 0, 0)] for _ in labelings]
    for chunk in range(chunks):
        total = square = None
        weighted = None
        for s in sel:
            v = read(int(s), chunk).double()
            if total is None:
                total, square = torch.zeros_like(v), torch.zeros_like(v)
                weighted = torch.zeros(len(labelings), v.numel(), dtype=torch.float64)
            total += v
            square += v * v
            for k, lab in enumerate(labelings):
                a = lab[sel]
                weighted[k] += v / a.sum() if lab[s] else -v / (~a).sum()
        n = len(sel)
        sd = (square / n - (total / n) ** 2).clamp_min(0).sqrt()
        score = torch.where(sd > 1e-12, weighted / sd.clamp_min(1e-12), 0.0)  # K, synapses
        for k in range(len(labelings)):
            for d, signed in enumerate((score[k], -score[k])):
                i = int(signed.argmax())
                if float(signed[i]) > best[k][d][0]:
                    best[k][d] = (float(signed[i]), chunk, i)
    test = np.flatnonzero(~selection)
    values: dict[int, np.ndarray] = {}
    for chunk in sorted({b[1] for row in best for b in row}):
        values[chunk] = np.stack([read(int(s), chunk).double().numpy() for s in test])
    out = []
    for k, lab in enumerate(labelings):
        row = []
        for d, (score, chunk, index) in enumerate(best[k]):
            x = values[chunk][:, index]
            first, second = (lab[test], ~lab[test]) if d == 0 else (~lab[test], lab[test])
            u, p = stats.mannwhitneyu(x[first], x[second], alternative="greater")
            n_a, n_b = int(first.sum()), int(second.sum())
            row.append(
                {
                    "direction": DIRECTIONS[d],
                    "chunk": chunk,
                    "index": index,
                    "score": score,
                    "U": float(u),
                    "U_max": n_a * n_b,
                    "p": float(p),
                    "rank_biserial": rank_biserial(float(u), n_a, n_b),
                }
            )
        out.append(row)
    return out


def halves(labels: np.ndarray, seed: int) -> np.ndarray:
    """(S,) bool: a random half of each class, for the selection."""
    rng = np.random.default_rng(seed)
    selection = np.zeros(len(labels), dtype=bool)
    for cls in (True, False):
        members = rng.permutation(np.flatnonzero(labels == cls))
        selection[members[: len(members) // 2]] = True
    return selection


@torch.no_grad()
def synapse_selectivity(
    network: BDH,
    sentences: list[Tensor],
    labels: np.ndarray,
    shuffles: int = 5,
    seed: int = 0,
    selection: np.ndarray | None = None,
) -> dict:
    """Per labeling (true labels, then `shuffles` shuffles), the best synapse of each direction
    chosen on one half of the sentences and tested on the other (see the module docstring).
    selection (S,) bool: the sentences that choose (default a random half of each class; pass
    one that keeps each source document on one side, so the test cannot reward a synapse for
    recognising the document rather than its class)."""
    C = network.config
    selection = halves(labels, seed) if selection is None else np.asarray(selection, dtype=bool)
    rng = np.random.default_rng(seed + 1)
    labelings = np.stack([labels] + [rng.permutation(labels) for _ in range(shuffles)])
    chunks = [(layer, head) for layer in range(C.n_layer) for head in range(C.n_head)]
    cache: dict[int, tuple[Tensor, int]] = {}

    def read(s: int, chunk: int) -> Tensor:
        if s not in cache:
            cache[s] = (state_after(network, sentences[s]), len(sentences[s]))
        S, T = cache[s]
        return synapses(network, S, T, *chunks[chunk]).flatten()

    results = select_and_test(read, len(chunks), labels, selection, labelings)
    for row in results:
        for entry in row:
            layer, head = chunks[entry.pop("chunk")]
            i, j = divmod(entry.pop("index"), C.n_neurons)
            entry.update(layer=layer, head=head, x_neuron=i, y_neuron=j)
    return {
        "sentences": {"A": int(labels.sum()), "B": int((~labels).sum())},
        "selection": int(selection.sum()),
        "true_labels": results[0],
        "shuffled_labels": results[1:],
    }
