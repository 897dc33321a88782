"""The measures of `inspect` on loaded models, and the verdicts on BDH's claims: reading the
neurons of every layer over a text, the sparsity and graph reports (inspect.json's sections;
selectivity's is in selectivity.py), and each claim by the one rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bdh_pl.analysis import graph as graphs
from bdh_pl.analysis import powerlaw
from bdh_pl.analysis.activations import (
    NeuronRecorder,
    batches,
    n_layers,
    neurons_per_layer,
)
from bdh_pl.analysis.selectivity import THRESHOLDS, clustered_share
from bdh_pl.analysis.sparsity import SparsityCounter, training_curves
from bdh_pl.analysis.verdict import RULE, UNTESTED, verdict
from bdh_pl.charts import read_metrics
from bdh_pl.errors import UserError
from bdh_pl.tools.inspect.selectivity import selectivity_claim, sparsity_claim

ACTIVATION_BUDGET = 2**28  # stored activations (positions x neurons) per pass: 512 MiB at fp16


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


def verdicts(report: dict, label: str) -> list[dict]:
    """Each claim, the numbers it rests on, its readings and its verdict by the one rule
    (bdh_pl/analysis/verdict.py)."""
    claims = []
    if report.get("sparsity"):
        claims.append(sparsity_claim(report["sparsity"]))
    sel = report.get("selectivity")
    if sel:
        claims.append(selectivity_claim(sel, label))
    gr = report.get("graph")
    if gr and "sweep" in gr:
        claims += graph_claims(gr)
    elif gr:  # a report from before the paper's protocol: its graph claims as they were judged
        claims += [old_graph_claim(c) for c in report.get("claims", []) if "graph" in c["claim"]]
    for claim in claims:
        if "readings" in claim:
            claim["verdict"] = verdict(list(claim["readings"].values()))
            claim["rule"] = RULE
    return claims


# Reports before the paper's protocol said "holds" of a sub-test at other densities (the power
# law beats the exponential where no control's does; the lognormal was not tested there): in
# the rule's words a verdict, so their evidence says what was tested instead.
OLD_DENSITIES = "at other densities, degrees where it holds: "
DENSITIES = (
    "at other densities, degrees where the trained graph's power law beats the exponential and "
    "no control's does (the lognormal not tested there): "
)


def old_graph_claim(claim: dict) -> dict:
    """A graph claim of a report from before the paper's protocol, in the rule's words."""
    return {**claim, "evidence": claim["evidence"].replace(OLD_DENSITIES, DENSITIES)}


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
        "readings": {f"{kind}-degree": kind in heavy and not lognormal_better(fits[kind])
                     for kind in graphs.DEGREE_KINDS},
        "test": "each degree (in, out): the trained graph's power law beats the exponential "
        "(p < 0.1), no control's does, and the lognormal does not fit better",
    }  # fmt: skip
    q = {name: [h[name]["modularity"] for h in gr["heads"]] for name in pooled}
    margins = {
        f"{p['mean_degree']:.2f}": min(p["modularity"]["trained"])
        - max(max(p["modularity"][c]) for c in controls)
        for p in gr["sweep"]
    }
    modular = {
        "claim": "high modularity of the neuron graph",
        "evidence": f"Louvain modularity (best of {graphs.LOUVAIN_SEEDS} seeds) at {mean_degree}, "
        "mean (range) over heads: "
        + ", ".join(f"{k} {np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})" for k, v in q.items())
        + "; over the sweep, the trained graph's lowest head minus the best control head: "
        + ", ".join(f"{d} {v:+.3f}" for d, v in margins.items()),
        "readings": {f"mean degree {d}": v > 0 for d, v in margins.items()},
        "test": "at each mean degree of the sweep, every head's trained graph more modular than "
        "every head of every control (Erdos-Renyi, random low-rank, untrained, factors shuffled)",
        "sweep": margins,
    }  # fmt: skip
    return [heavy_claim, modular]


def lognormal_better(fit: dict) -> bool:
    alt = fit.get("alternatives", {}).get("lognormal")
    return bool(alt) and alt["p_value"] < powerlaw.SIGNIFICANCE and alt["loglik_ratio"] < 0


def claim_verdict(claim: dict) -> str:
    """The claim's verdict; a report written before the rule has only `holds`."""
    if "verdict" in claim:
        return claim["verdict"]
    return {True: "holds", False: "does not hold"}.get(claim.get("holds"), UNTESTED)


def rescored(report: dict) -> dict:
    """The report's claims judged again by the current rule from its stored numbers (what
    `--replot` redraws); a report written before the share curve gets it from each model's
    stored best scores (BDH's columns are layer-major: column % neurons is its weight vector)."""
    sel = report.get("selectivity")
    bdh_labels = (
        {report["label"], f"{report['label']} (init)"} if report["model"] == "BDHLM" else set()
    )
    for label, entry in (sel or {}).get("models", {}).items():
        if "share_at_least" in entry:
            continue
        best = np.asarray(entry["best_scores"], dtype=np.float64)
        vectors = None
        if label in bdh_labels:
            per_layer = len(best) // int(report["hyperparameters"]["n_layer"])
            vectors = np.arange(len(best)) % per_layer
            entry["weight_vectors"] = per_layer
        entry["thresholds"] = list(THRESHOLDS)
        entry["share_at_least"] = [float((best >= t).mean()) for t in THRESHOLDS]
        entry["share_se"] = [clustered_share(best, t, vectors)[1] for t in THRESHOLDS]
    report["claims"] = verdicts(report, report["label"])
    return report
