"""The measures of `inspect` on loaded models, and the verdicts on BDH's claims: reading the
neurons of every layer over a text, the sparsity, selectivity and graph reports (inspect.json's
sections), and each claim against its controls."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from bdh_pl.analysis import graph as graphs
from bdh_pl.analysis import powerlaw
from bdh_pl.analysis.activations import (
    NeuronRecorder,
    batches,
    is_bdh,
    n_layers,
    neurons_per_layer,
)
from bdh_pl.analysis.selectivity import (
    CLASSES,
    byte_classes,
    selectivity,
    summarize,
    top_contexts,
    top_tokens,
)
from bdh_pl.analysis.sparsity import SparsityCounter, training_curves
from bdh_pl.charts import read_metrics
from bdh_pl.errors import UserError

ACTIVATION_BUDGET = 2**28  # stored activations (positions x neurons) per pass: 512 MiB at fp16


class Unit(NamedTuple):
    """One model's neurons read on the text, for selectivity."""

    label: str
    network: torch.nn.Module
    tokens: np.ndarray  # the text's tokens (activations are of the first len(acts))
    token_bytes: list[bytes]  # the tokenizer's bytes of each token id
    acts: torch.Tensor  # positions, n_layer * neurons (fp16, layer-major)
    signed: bool  # score -activation too (a transformer's MLP neuron)


# --- reading neurons -----------------------------------------------------------------------


@torch.no_grad()
def read(
    network: torch.nn.Module,
    idx: torch.Tensor,
    keep: int,
    batch_size: int,
    counter: SparsityCounter | None = None,
) -> torch.Tensor:
    """One or more passes over the windows idx (n, T): the neurons of every layer at the first
    `keep` positions (keep, n_layer * M, layer-major; fp16, so activations within ~0.1% of
    each other may tie in a ranking), and, if given, the sparsity counts of every position.
    Layers are read in groups that fit ACTIVATION_BUDGET."""
    L, M = n_layers(network), neurons_per_layer(network)
    T = idx.shape[1]
    per_pass = max(1, ACTIVATION_BUDGET // max(keep * M, 1))
    out = torch.empty(keep, L * M, dtype=torch.float16)
    for first in range(0, L, per_pass):
        group = range(first, min(first + per_pass, L))
        count = counter if first == 0 else None
        layers = range(L) if count is not None else group
        with NeuronRecorder(network, layers, y=count is not None) as rec:
            for i, batch in enumerate(batches(idx, batch_size)):
                start = i * batch_size * T
                if start >= keep and count is None:
                    break
                network(batch.to(next(network.parameters()).device))
                if count is not None:
                    count.add({k: v.cpu() for k, v in rec.x.items()}, rec.y)
                if start < keep:
                    n = min(keep - start, batch.numel())
                    for layer in group:
                        acts = rec.x[layer].flatten(0, 1)[:n].cpu()  # n, M
                        out[start : start + n, layer * M : (layer + 1) * M] = acts.half()
    return out


def neuron_name(network: torch.nn.Module, column: int) -> dict:
    M = neurons_per_layer(network)
    layer, index = divmod(int(column), M)
    if is_bdh(network):
        head, neuron = divmod(index, network.config.n_neurons)
        return {
            "layer": layer,
            "head": head,
            "neuron": neuron,
            "name": f"L{layer} h{head} n{neuron}",
        }
    return {"layer": layer, "neuron": index, "name": f"L{layer} mlp{index}"}


# --- the measures --------------------------------------------------------------------------


def sparsity_report(counter: SparsityCounter, init: SparsityCounter, ckpt_path: str) -> dict:
    report = {"trained": counter.summary(), "init": init.summary()}
    report["frequency"] = {
        "trained": counter.frequency("x").mean(0).tolist(),
        "init": init.frequency("x").mean(0).tolist(),
    }
    report["over_training"] = logged_sparsity(ckpt_path)
    return report


def logged_sparsity(ckpt_path: str) -> dict:
    """The sparsity the run logged at each validation, from its folder next to the checkpoint."""
    path = Path(ckpt_path)
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    try:
        return training_curves(read_metrics(run))
    except UserError:
        return {}


def selectivity_report(units: list[Unit], per_class: int, n_contexts: int) -> dict:
    """Each model's score distribution, its best neuron per class, and its `per_class` most
    selective neurons of each class with their top contexts."""
    names = list(CLASSES)
    report: dict = {"classes": names, "models": {}}
    for label, network, tokens, token_bytes, acts, signed in units:
        labels = byte_classes(token_bytes, tokens[: acts.shape[0]])
        scores = selectivity(acts, labels, signed=signed)
        summary = summarize(scores, names)
        parameters = sum(p.numel() for p in network.parameters())
        summary.update(signed=signed, positions=int(acts.shape[0]), parameters=parameters)
        for entry in summary["per_class"].values():
            entry.update(neuron_name(network, entry["neuron"]))
        listed, seen = [], set()
        for c, name in enumerate(names):
            if name not in summary["per_class"]:
                continue
            column_scores = np.nan_to_num(scores.nap[:, c], nan=-1.0)
            for column in np.argsort(-column_scores, kind="stable")[:per_class]:
                if int(column) in seen:
                    continue
                seen.add(int(column))
                sign = float(scores.sign[column, c])
                active = float((acts[:, column].float() * sign > 0).float().mean())
                contexts = top_contexts(acts[:, column], token_bytes, tokens, n_contexts, sign=sign)
                highest = top_tokens(acts[:, column], token_bytes, tokens, sign=sign)
                listed.append(
                    {
                        **neuron_name(network, column),
                        "class": name,
                        "nap": float(scores.nap[column, c]),
                        "sign": sign,
                        "active_share": active,
                        "contexts": contexts,
                        "top_tokens": highest,
                    }
                )
        by_layer = scores.best.reshape(n_layers(network), -1)  # columns are layer-major
        summary["share_above_0.5_by_layer"] = [float((b >= 0.5).mean()) for b in by_layer]
        summary["top"] = listed
        summary["best_scores"] = [round(float(v), 4) for v in scores.best]  # for the chart
        report["models"][label] = summary
    return report


@torch.no_grad()
def graph_report(trained: torch.nn.Module, init: torch.nn.Module, density: float, seed: int):
    """The paper's graph protocol (analysis/graph.py), per head, at each mean degree of the
    sweep (graphs.MEAN_DEGREES and `density`'s, m = density * N (N - 1) edges per head): the
    trained graph's signal level beta, each variant's Louvain modularity (best of 5 seeds) and
    at the paper's mean degree (5.72) the in- and out-degree fits, pooled over heads."""
    nh, N = trained.config.n_head, trained.config.n_neurons
    factors = {"trained": (trained.decoder, trained.encoder), "init": (init.decoder, init.encoder)}
    points = sorted({*graphs.MEAN_DEGREES, round(density * (N - 1), 4)})
    report: dict = {
        "density": density,
        "neurons": N,
        "paper": {"beta": graphs.PAPER_BETA, "edges": graphs.PAPER_EDGES,
                  "neurons": graphs.PAPER_NEURONS, "mean_degree": graphs.PAPER_MEAN_DEGREE},
        "edges_at_paper_beta": [
            int(graphs.above(graphs.neuron_graph(*factors["trained"], h), graphs.PAPER_BETA).sum())
            for h in range(nh)
        ],
        "sweep": [],
    }  # fmt: skip
    for k in points:
        m = min(round(k * N), N * (N - 1))
        heads = [graphs.variants(factors["trained"], factors["init"], h, m, seed + h)
                 for h in range(nh)]  # fmt: skip
        described = [
            {name: graphs.describe(a, fits=False) for name, a in head.items()} for head in heads
        ]
        pooled = {
            name: {kind: np.concatenate([graphs.degrees(h[name])[kind] for h in heads])
                   for kind in graphs.DEGREE_KINDS}
            for name in heads[0]
        }  # fmt: skip
        point = {
            "mean_degree": k,
            "edges": m,
            "beta": [graphs.beta_for_edges(graphs.neuron_graph(*factors["trained"], h), m)
                     for h in range(nh)],
            "modularity": {name: [d[name]["modularity"] for d in described] for name in pooled},
            "communities": {name: [d[name]["communities"] for d in described] for name in pooled},
        }  # fmt: skip
        report["sweep"].append(point)
        if k != graphs.PAPER_MEAN_DEGREE:
            continue
        fits = {name: {kind: graphs.degree_fit(d) for kind, d in kinds.items()}
                for name, kinds in pooled.items()}  # fmt: skip
        report["heads"] = described
        report["pooled"] = {
            name: {
                "modularity_mean": float(np.mean(point["modularity"][name])),
                "fits": fits[name],
                "degree_counts": {
                    kind: [
                        [int(a), int(b)]
                        for a, b in zip(*np.unique(d, return_counts=True), strict=True)
                    ]
                    for kind, d in kinds.items()
                },
            }  # fmt: skip
            for name, kinds in pooled.items()
        }
    return report


def _wins(fit: dict, alternative: str) -> bool:
    alt = fit.get("alternatives", {})
    return bool(alt.get(alternative, {}).get("power_law_wins", False))


# --- verdicts ------------------------------------------------------------------------------


def against_lognormal(fit: dict) -> str:
    """Which of the power law and the lognormal the tail favours, in words and numbers."""
    alt = fit.get("alternatives", {}).get("lognormal")
    if alt is None:
        return "no fit"
    R, p = alt["loglik_ratio"], alt["p_value"]
    if p >= powerlaw.SIGNIFICANCE:
        verdict = "cannot tell from the lognormal"
    else:
        verdict = "power law beats the lognormal" if R > 0 else "the lognormal fits better"
    return f"{verdict}, R {R:.1f}, p {p:.2g}"


def share_z(a: dict, b: dict) -> float:
    """Two-proportion z of the shares of selective neurons (nAP >= 0.5) of a over b."""
    n1, n2 = a["neurons"], b["neurons"]
    p1, p2 = a["share_above_0.5"], b["share_above_0.5"]
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n1 + 1 / n2))
    return (p1 - p2) / se


def verdicts(report: dict, label: str) -> list[dict]:
    """Each claim, the numbers it rests on, and whether it holds against every control."""
    claims = []
    sp = report.get("sparsity")
    if sp:
        trained, init = sp["trained"]["x"]["active_fraction"], sp["init"]["x"]["active_fraction"]
        claims.append(
            {
                "claim": "sparse activations (the paper: ~5% of x_sparse active)",
                "holds": trained <= 0.10 and trained < init / 2,
                "evidence": f"x_sparse active {trained:.1%} trained vs {init:.1%} at init; "
                f"y_sparse {sp['trained']['y']['active_fraction']:.1%}; dead neurons "
                f"{sp['trained']['x']['dead_neurons']}",
                "rule": "at most 10% active, and less than half the untrained model's share",
            }
        )
    sel = report.get("selectivity")
    if sel:
        models = sel["models"]
        ours = models[label]
        others = {k: v for k, v in models.items() if k != label}
        won = [
            name
            for name, entry in ours["per_class"].items()
            if all(
                entry["best"] > v["per_class"].get(name, {"best": -1.0})["best"]
                for v in others.values()
            )
        ]
        z = {k: share_z(ours, v) for k, v in others.items()}
        claims.append(
            {
                "claim": "monosemantic neurons (selective for one concept)",
                "holds": all(v > 2 for v in z.values()) if others else None,
                "evidence": "share of neurons whose best class has nAP >= 0.5: "
                + ", ".join(f"{k} {v['share_above_0.5']:.1%}" for k, v in models.items())
                + f"; classes whose best neuron is {label}'s (beats every control): "
                + f"{', '.join(won) or 'none'} of {len(ours['per_class'])}; z against "
                + ", ".join(f"{k} {v:.1f}" for k, v in z.items()),
                "rule": "a larger share of selective neurons (nAP >= 0.5) than every control, "
                "by more than 2 standard errors (two-proportion z > 2)",
            }
        )
    gr = report.get("graph")
    if gr and "sweep" in gr:
        claims += graph_claims(gr)
    return claims


def graph_claims(gr: dict) -> list[dict]:
    """The heavy-tail and modularity claims, at the paper's mean degree, with the sweep."""
    pooled = gr["pooled"]
    controls = [name for name in pooled if name != "trained"]

    def wins(name: str, kind: str) -> bool:
        return _wins(pooled[name]["fits"][kind], "exponential")

    heavy = [k for k in graphs.DEGREE_KINDS
             if wins("trained", k) and not any(wins(c, k) for c in controls)]  # fmt: skip
    fits = pooled["trained"]["fits"]
    mean_degree = f"{graphs.PAPER_MEAN_DEGREE:.2f} edges per neuron (the paper's m / n*)"
    heavy_claim = {
        "claim": "heavy-tailed (power-law) degree distribution of the neuron graph",
        "holds": bool(heavy),
        "evidence": f"at {mean_degree}: "
        + "; ".join(
            f"{kind}-degree: power law beats exponential {'yes' if wins('trained', kind) else 'no'}"
            f" (alpha {fits[kind].get('alpha', float('nan')):.2f}; {against_lognormal(fits[kind])};"
            f" preferred: {fits[kind]['preferred']})"
            for kind in graphs.DEGREE_KINDS
        )
        + "; controls where the power law beats the exponential: "
        + (", ".join(f"{c} {k}" for c in controls for k in graphs.DEGREE_KINDS if wins(c, k))
           or "none"),
        "rule": "for the in- or the out-degree, the trained graph's power law beats the "
        "exponential (p < 0.1) and no control's does; the lognormal comparison says how strongly",
    }  # fmt: skip
    q = {name: [h[name]["modularity"] for h in gr["heads"]] for name in pooled}
    margins = {
        f"{p['mean_degree']:.2f}": min(p["modularity"]["trained"])
        - max(max(p["modularity"][c]) for c in controls)
        for p in gr["sweep"]
    }
    modular = {
        "claim": "high modularity of the neuron graph",
        "holds": all(min(q["trained"]) > max(v) for k, v in q.items() if k != "trained"),
        "evidence": f"Louvain modularity (best of {graphs.LOUVAIN_SEEDS} seeds) at {mean_degree}, "
        "mean (range) over heads: "
        + ", ".join(f"{k} {np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})" for k, v in q.items())
        + "; over the sweep, the trained graph's lowest head minus the best control head: "
        + ", ".join(f"{d} {v:+.3f}" for d, v in margins.items()),
        "rule": "at the paper's mean degree, every head's trained graph more modular than every "
        "head of every control (Erdos-Renyi, random low-rank, untrained, factors shuffled)",
        "sweep": margins,
    }  # fmt: skip
    return [heavy_claim, modular]
