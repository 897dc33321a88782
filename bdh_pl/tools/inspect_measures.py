"""The measures of `inspect` on loaded models, and the verdicts on BDH's claims: reading the
neurons of every layer over a text, the sparsity, selectivity and graph reports (inspect.json's
sections), and each claim against its controls."""

from __future__ import annotations

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
    DENSE,
    THRESHOLDS,
    byte_classes,
    clustered_share,
    equal_size_best,
    selectivity,
    share_z,
    summarize,
    top_contexts,
    top_tokens,
)
from bdh_pl.analysis.sparsity import SparsityCounter, training_curves
from bdh_pl.analysis.verdict import RULE, UNTESTED, verdict
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


def weight_vectors(network: torch.nn.Module, columns: int) -> np.ndarray | None:
    """The weight vector of each column of `read`'s activations: BDH's neuron n of head h is
    one vector in every layer (its columns repeat every layer); None where every column has
    its own weights (a transformer's MLP neurons)."""
    return np.arange(columns) % neurons_per_layer(network) if is_bdh(network) else None


def selectivity_report(units: list[Unit], per_class: int, n_contexts: int) -> dict:
    """Each model's score distribution (its share of neurons at least as selective as each
    threshold, with standard errors clustered by weight vector), its best neuron per class
    among all and among as many neurons as the smallest model has, and its `per_class` most
    selective neurons of each class with their top contexts; neurons on at more than DENSE of
    the positions are counted apart and never listed."""
    names = list(CLASSES)
    smallest = min(u.acts.shape[1] for u in units)
    report: dict = {"classes": names, "dense_above": DENSE, "equal_size": smallest, "models": {}}
    for label, network, tokens, token_bytes, acts, signed in units:
        labels = byte_classes(token_bytes, tokens[: acts.shape[0]])
        scores = selectivity(acts, labels, signed=signed)
        summary = summarize(scores, names)
        parameters = sum(p.numel() for p in network.parameters())
        summary.update(signed=signed, positions=int(acts.shape[0]), parameters=parameters)
        vectors = weight_vectors(network, acts.shape[1])
        summary["weight_vectors"] = int(len(np.unique(vectors))) if vectors is not None else None
        summary["share_se"] = [clustered_share(scores.best, t, vectors)[1] for t in THRESHOLDS]
        at_equal_size = equal_size_best(scores, smallest)
        summary["equal_size_best"] = {
            name: float(at_equal_size[c])
            for c, name in enumerate(names)
            if name in summary["per_class"]
        }
        for entry in summary["per_class"].values():
            entry.update(neuron_name(network, entry["neuron"]))
        listed, seen = [], set()
        for c, name in enumerate(names):
            if name not in summary["per_class"]:
                continue
            detector = scores.active_share[:, c] <= DENSE
            column_scores = np.where(detector, np.nan_to_num(scores.nap[:, c], nan=-1.0), -2.0)
            for column in np.argsort(-column_scores, kind="stable")[:per_class]:
                if int(column) in seen or not detector[column]:
                    continue
                seen.add(int(column))
                sign = float(scores.sign[column, c])
                contexts = top_contexts(acts[:, column], token_bytes, tokens, n_contexts, sign=sign)
                highest = top_tokens(acts[:, column], token_bytes, tokens, sign=sign)
                listed.append(
                    {
                        **neuron_name(network, column),
                        "class": name,
                        "nap": float(scores.nap[column, c]),
                        "sign": sign,
                        "active_share": float(scores.active_share[column, c]),
                        "contexts": contexts,
                        "top_tokens": highest,
                    }
                )
        by_layer = scores.best.reshape(n_layers(network), -1)  # columns are layer-major
        summary["share_above_0.5_by_layer"] = [float((b >= 0.5).mean()) for b in by_layer]
        summary["median_by_layer"] = [float(np.median(b)) for b in by_layer]
        summary["top"] = listed
        summary["best_scores"] = [round(float(v), 4) for v in scores.best]  # for the chart
        report["models"][label] = summary
    return report


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


def sparsity_claim(sp: dict) -> dict:
    """The paper's ~5% of y non-zero: per layer, y_sparse active at most 10% and below half the
    untrained model's share."""
    trained, init = sp["trained"], sp["init"]
    ys = list(zip(trained["y"]["by_layer"], init["y"]["by_layer"], strict=True))
    return {
        "claim": "sparse activations (the paper: ~5% of y non-zero)",
        "readings": {f"y layer {i}": t <= 0.10 and t < i0 / 2 for i, (t, i0) in enumerate(ys)},
        "evidence": "y_sparse active by layer "
        + ", ".join(f"{t:.1%} (init {i0:.1%})" for t, i0 in ys)
        + f"; x_sparse {trained['x']['active_fraction']:.1%} (init "
        f"{init['x']['active_fraction']:.1%}); dead neurons {trained['x']['dead_neurons']}",
        "test": "each layer: y_sparse active at most 10% (the paper ~5%), and below half the "
        "untrained model's share",
    }


def selectivity_claim(sel: dict, label: str) -> dict:
    """Monosemantic neurons: at each nAP threshold, a larger share of BDH's neurons than of
    every control's, by z > 2 (standard errors clustered by weight vector); thresholds where no
    model has a neuron are no reading."""
    models = sel["models"]
    ours = models[label]
    others = {k: v for k, v in models.items() if k != label}
    thresholds = ours.get("thresholds", list(THRESHOLDS))
    readings, z_at = {}, {}
    for i, t in enumerate(thresholds):
        if not any(m["share_at_least"][i] > 0 for m in models.values()) or not others:
            continue
        z = {
            k: share_z(
                (ours["share_at_least"][i], ours["share_se"][i]),
                (v["share_at_least"][i], v["share_se"][i]),
            )
            for k, v in others.items()
        }
        readings[f"nAP >= {t:g}"] = all(v > 2 for v in z.values())
        z_at[t] = z
    won = [
        name
        for name, best in ours.get("equal_size_best", {}).items()
        if all(best > v.get("equal_size_best", {}).get(name, -1.0) for v in others.values())
    ]
    curve = "; ".join(
        f"{k} " + "/".join(f"{100 * v:.0f}" for v in m["share_at_least"]) for k, m in models.items()
    )
    return {
        "claim": "monosemantic neurons (selective for one byte class)",
        "readings": readings,
        "evidence": f"share (%) of neurons with nAP >= {thresholds[0]:g} .. {thresholds[-1]:g}: "
        + curve
        + "; median nAP "
        + ", ".join(f"{k} {m['median']:.3f}" for k, m in models.items())
        + "; z at nAP >= 0.5: "
        + (", ".join(f"{k} {v:.1f}" for k, v in z_at.get(0.5, {}).items()) or "-")
        + f"; classes whose best neuron among {sel.get('equal_size', 0):,} is {label}'s: "
        + f"{', '.join(won) or 'none'} of {len(ours['per_class'])}; neurons on at > "
        + f"{sel.get('dense_above', 0.5):.0%} of positions (not detectors): "
        + ", ".join(f"{k} {m['dense']['neurons']:,}" for k, m in models.items()),
        "test": "at each threshold, a larger share than every control's by z > 2 (standard "
        "errors clustered by weight vector: BDH's layers share one)",
    }


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
