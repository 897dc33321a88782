"""The measures of `inspect` on loaded models, and the verdicts on BDH's claims: reading the
neurons of every layer over a text, the sparsity and graph reports (inspect.json's sections;
selectivity's is in inspect_selectivity.py), and each claim by the one rule."""

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
from bdh_pl.tools.inspect_selectivity import selectivity_claim, sparsity_claim

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
    """Per head and pooled over heads: each variant's edges, modularity and degree fits at
    `density`; and, as a robustness check, the pooled fits at other densities too."""
    nh = trained.config.n_head
    report: dict = {"density": density, "heads": []}
    pooled: dict[str, dict[str, list]] = {}
    matrices = []
    for head in range(nh):
        variants = {
            "trained": graphs.neuron_graph(trained.decoder, trained.encoder, head),
            "init": graphs.neuron_graph(init.decoder, init.encoder, head),
            **graphs.controls(trained.decoder, trained.encoder, head, seed + head),
        }
        matrices.append(variants)
        row = {}
        for name, G in variants.items():
            described = graphs.describe(G, density, seed)
            for kind, degs in described.pop("degrees").items():
                pooled.setdefault(name, {}).setdefault(kind, []).extend(degs)
            row[name] = described
        report["heads"].append(row)
    report["pooled"] = {}
    for name, kinds in pooled.items():
        report["pooled"][name] = {
            "modularity_mean": float(np.mean([h[name]["modularity"] for h in report["heads"]])),
            "fits": {kind: graphs.degree_fit(np.array(d)) for kind, d in kinds.items()},
            "degree_counts": {
                kind: [
                    [int(k), int(c)] for k, c in zip(*np.unique(d, return_counts=True), strict=True)
                ]
                for kind, d in kinds.items()
            },
        }
    report["by_density"] = {
        str(other): {
            name: {
                kind: _fit_brief(
                    np.concatenate(
                        [graphs.degrees(graphs.threshold(m[name], other))[kind] for m in matrices]
                    )
                )
                for kind in graphs.DEGREE_KINDS
            }
            for name in matrices[0]
        }
        for other in OTHER_DENSITIES
        if other != density
    }
    return report


OTHER_DENSITIES = (0.005, 0.01, 0.02, 0.05)


def _fit_brief(degrees: np.ndarray) -> dict:
    fit = graphs.degree_fit(degrees)
    alt = fit.get("alternatives", {})
    return {
        "alpha": fit.get("alpha"),
        "k_min": fit.get("k_min"),
        "beats_exponential": alt.get("exponential", {}).get("power_law_wins", False),
        "beats_lognormal": alt.get("lognormal", {}).get("power_law_wins", False),
    }


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
    if gr:
        pooled = gr["pooled"]

        def wins(name: str, kind: str, alternative: str) -> bool:
            alt = pooled[name]["fits"][kind].get("alternatives", {})
            return bool(alt.get(alternative, {}).get("power_law_wins", False))

        heavy = [
            kind
            for kind in graphs.DEGREE_KINDS
            if wins("trained", kind, "exponential")
            and not any(wins(name, kind, "exponential") for name in pooled if name != "trained")
        ]
        fits = pooled["trained"]["fits"]
        claims.append(
            {
                "claim": "heavy-tailed (power-law) degree distribution of the neuron graph",
                "evidence": "power law beats exponential (R > 0, p < 0.1) for the trained graph's "
                + ", ".join(
                    f"{kind}-degree: {'yes' if wins('trained', kind, 'exponential') else 'no'} "
                    f"(alpha {fits[kind].get('alpha', float('nan')):.2f}; "
                    f"{against_lognormal(fits[kind])})"
                    for kind in graphs.DEGREE_KINDS
                )
                + "; controls where it does too: "
                + (", ".join(
                    f"{name} {kind}" for name in pooled if name != "trained"
                    for kind in graphs.DEGREE_KINDS if wins(name, kind, "exponential")
                ) or "none"),
                "readings": {
                    f"{kind}-degree": kind in heavy and not lognormal_better(fits[kind])
                    for kind in graphs.DEGREE_KINDS
                },
                "test": "each degree (out, in, total): the trained graph's power law beats the "
                "exponential, no control's does, and the lognormal does not fit better",
                "other_densities": {
                    d: [
                        kind
                        for kind in graphs.DEGREE_KINDS
                        if fits_at["trained"][kind]["beats_exponential"]
                        and not any(v[kind]["beats_exponential"] for k, v in fits_at.items() if k != "trained")
                    ]
                    for d, fits_at in gr.get("by_density", {}).items()
                },
            }
        )  # fmt: skip
        robust = claims[-1]["other_densities"]
        if robust:
            claims[-1]["evidence"] += "; at other densities, degrees where it holds: " + ", ".join(
                f"{float(d):.1%} {'/'.join(kinds) or 'none'}" for d, kinds in robust.items()
            )
        q = {name: [h[name]["modularity"] for h in gr["heads"]] for name in pooled}
        claims.append(
            {
                "claim": "high modularity of the neuron graph",
                "evidence": "Louvain modularity, mean (range) over heads: "
                + ", ".join(
                    f"{k} {np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})" for k, v in q.items()
                ),
                "readings": {
                    f"head {h}": v > max(max(o) for k, o in q.items() if k != "trained")
                    for h, v in enumerate(q["trained"])
                },
                "test": "each head: its trained graph more modular than every head of every "
                "control",
            }
        )
    for claim in claims:
        claim["verdict"] = verdict(list(claim.get("readings", {}).values()))
        claim["rule"] = RULE
    return claims


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
