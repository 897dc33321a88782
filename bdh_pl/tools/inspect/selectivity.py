"""Selectivity in `inspect`: each model's neurons scored for byte classes (inspect.json's
`selectivity` section), its claim and the sparsity claim judged by the one rule, each model's
population in words (the README's tables are in tables.py)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from bdh_pl.analysis.activations import is_bdh, n_layers, neurons_per_layer
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


class Unit(NamedTuple):
    """One model's neurons read on the text, for selectivity."""

    label: str
    network: torch.nn.Module
    tokens: np.ndarray  # the text's tokens (activations are of the first len(acts))
    token_bytes: list[bytes]  # the tokenizer's bytes of each token id
    acts: torch.Tensor  # positions, n_layer * neurons (fp16, layer-major)
    signed: bool  # score -activation too (a transformer's MLP neuron)


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
        + f"; populations: {populations(models)}"
        + "; median nAP "
        + ", ".join(f"{k} {m['median']:.3f}" for k, m in models.items())
        + "; z at nAP >= 0.5: "
        + (", ".join(f"{k} {v:.1f}" for k, v in z_at.get(0.5, {}).items()) or "-")
        + (
            f"; classes whose best neuron among {sel['equal_size']:,} is {label}'s: "
            f"{', '.join(won) or 'none'} of {len(ours['per_class'])}; neurons on at > "
            f"{sel['dense_above']:.0%} of positions (not detectors): "
            + ", ".join(f"{k} {m['dense']['neurons']:,}" for k, m in models.items())
            if "equal_size" in sel
            else "; (measured before equal-size and always-on neurons were reported)"
        ),
        "test": "at each threshold, a larger share than every control's by z > 2 (standard "
        "errors clustered by weight vector: BDH's layers share one)",
    }


def populations(models: dict) -> str:
    """Each model's neuron count (and BDH's weight vectors): 'bdh 12,288 (3,072 vectors), ...'."""
    return ", ".join(
        f"{k} {m['neurons']:,}"
        + (f" ({m['weight_vectors']:,} vectors)" if m.get("weight_vectors") else "")
        for k, m in models.items()
    )
