"""`python -m bdh_pl inspect`: what a BDH learned, its interpretability claims measured against
controls that could refute them.

    python -m bdh_pl inspect --ckpt_path bdh.ckpt --control llama.ckpt gpt2.ckpt --out DIR
    python -m bdh_pl inspect --ckpt_path bdh.ckpt --text held_out.txt --out DIR

On the held-out text (the test split of the checkpoint's dataset, or --text FILE), read in
disjoint windows of the model's block size, and on its weights:

1. sparsity: the share of active (> 0) x_sparse and y_sparse entries per layer and head; each
   neuron's activation frequency (dead neurons, the distribution); from the run's logs next to
   the checkpoint, the logged sparsity over training steps.
2. selectivity: each x_sparse neuron of each layer scored, over the first
   --selectivity_tokens positions, by how well its activation detects simple byte classes
   (digit, uppercase, space, word start, ...: normalised average precision, see
   bdh_pl/analysis/selectivity.py); the most selective neurons with their top contexts.
3. the neuron graph: per head, G = decoder @ encoder (N x N), its strongest --graph_density
   share of entries as edges; degree distributions fitted by a power law against exponential
   and lognormal alternatives (likelihood ratios), and the Louvain modularity.

Controls: the same model at initialization (rebuilt from the checkpoint's hyperparameters and
seed, untrained) for all three; for the graph also G with its entries permuted and G with the
decoder's coordinates permuted; for selectivity the MLP neurons of each --control checkpoint (a
same-size GPT-2 or LLaMA), scored the same way (allowed either sign). A claim holds only
where the trained BDH beats every control. Writes DIR/inspect.json, DIR/README.md and charts
under DIR/charts/.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from bdh_pl.analysis import graph as graphs
from bdh_pl.analysis.activations import (
    NeuronRecorder,
    batches,
    is_bdh,
    mlp_output_modules,
    n_layers,
    neurons_per_layer,
    windows,
)
from bdh_pl.analysis.selectivity import (
    CLASSES,
    byte_classes,
    selectivity,
    summarize,
    top_contexts,
)
from bdh_pl.analysis.sparsity import SparsityCounter, training_curves
from bdh_pl.data.sources import resolve_data_dir
from bdh_pl.data.tokenizers import get_tokenizer
from bdh_pl.errors import ArgumentParser, UserError
from bdh_pl.fileio import atomic_write_text, check_writable, write_json
from bdh_pl.tools.generate import check_device, checkpoint_data, load_checkpoint_model
from bdh_pl.tools.inspect_report import readme, write_charts
from bdh_pl.training.language_model import LanguageModel

MEASURES = ("sparsity", "selectivity", "graph")
ACTIVATION_BUDGET = 2**28  # stored activations (positions x neurons) per pass: 512 MiB at fp16


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="python -m bdh_pl inspect",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--ckpt_path",
        required=True,
        help="the BDH: a bdh-pl checkpoint, plain BDH weights or a BDH folder from `export`",
    )
    parser.add_argument("--label", default=None, help="its name in the outputs (default: bdh)")
    parser.add_argument(
        "--control",
        nargs="*",
        default=[],
        help="checkpoints of same-size transformers (GPT-2, LLaMA): their MLP neurons are the "
        "selectivity control",
    )
    parser.add_argument("--control_label", nargs="*", default=None, help="a name per control")
    parser.add_argument("--text", default=None, help="held-out text file (default: test split)")
    parser.add_argument("--data_dir", default=None, help="data root (default: the run's)")
    parser.add_argument(
        "--measures", nargs="+", choices=MEASURES, default=list(MEASURES), help="what to measure"
    )
    parser.add_argument(
        "--max_tokens", type=int, default=None, help="sparsity: the first N tokens (default all)"
    )
    parser.add_argument(
        "--selectivity_tokens", type=int, default=16384, help="positions scored for selectivity"
    )
    parser.add_argument(
        "--graph_density", type=float, default=0.02, help="share of G's entries kept as edges"
    )
    parser.add_argument(
        "--top", type=int, default=2, help="most selective neurons listed per class"
    )
    parser.add_argument("--contexts", type=int, default=4, help="top contexts per neuron")
    parser.add_argument("--batch_size", type=int, default=16, help="windows per forward")
    parser.add_argument("--seed", type=int, default=0, help="permutations and Louvain")
    parser.add_argument("--n_layer", type=int, default=6, help="layers, plain BDH weights only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", required=True, help="folder for inspect.json, README.md, charts")
    args = parser.parse_args(argv)
    counts = (args.selectivity_tokens, args.top, args.contexts, args.batch_size, args.n_layer)
    if min(counts) < 1 or (args.max_tokens is not None and args.max_tokens < 1):
        parser.error("--max_tokens, --selectivity_tokens, --top, --contexts, --batch_size and "
                     "--n_layer must be positive")  # fmt: skip
    if not 0 < args.graph_density < 1:  # NaN too
        parser.error(f"--graph_density must be in (0, 1), got {args.graph_density}")
    if args.control_label is not None and len(args.control_label) != len(args.control):
        parser.error(f"give one --control_label per --control ({len(args.control)})")
    args.device = check_device(args.device)
    return args


# --- models --------------------------------------------------------------------------------


def load(path: str, n_layer: int = 6):
    if not Path(path).exists():
        raise UserError(f"--ckpt_path {path}: no such file or folder")
    return load_checkpoint_model(path, n_layer)


def init_twin(model: LanguageModel) -> LanguageModel:
    """The same model untrained: its class and hyperparameters, weights drawn from its seed as
    `fit` drew them (seed_everything(seed), then the constructor)."""
    hparams = dict(model.hparams)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(hparams.get("seed", 1337)))
        return type(model)(**hparams)


def require_bdh(model: LanguageModel, path: str, measures: list[str]) -> None:
    needs = [m for m in measures if m != "selectivity"]
    if needs and not is_bdh(model.network):
        name = type(model.network).__name__
        raise UserError(
            f"{path} holds a {type(model).__name__} ({name}), not BDH: {' and '.join(needs)} "
            "need BDH's sparse neurons and encoder/decoder; give a BDH checkpoint, or score this "
            "model's MLP neurons with `--measures selectivity` (or as --control of a BDH)"
        )


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
    `keep` positions (keep, n_layer * M, fp16, layer-major), and, if given, the sparsity
    counts of every position. Layers are read in groups that fit ACTIVATION_BUDGET."""
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
    from bdh_pl.charts import read_metrics

    path = Path(ckpt_path)
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    try:
        return training_curves(read_metrics(run))
    except UserError:
        return {}


def selectivity_report(units: list[tuple], per_class: int, n_contexts: int) -> dict:
    """units: (label, network, tokens, token_bytes, activations P x neurons, signed). Each
    model's score distribution, its best neurons per class, and (the units' first model) the
    `per_class` most selective neurons of each class with their top contexts."""
    names = list(CLASSES)
    report: dict = {"classes": names, "models": {}}
    for label, network, tokens, token_bytes, acts, signed in units:
        labels = byte_classes(token_bytes, tokens[: acts.shape[0]])
        scores = selectivity(acts, labels, signed=signed)
        summary = summarize(scores, names)
        summary.update(signed=signed, positions=int(acts.shape[0]))
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
                listed.append(
                    {
                        **neuron_name(network, column),
                        "class": name,
                        "nap": float(scores.nap[column, c]),
                        "sign": sign,
                        "active_share": active,
                        "contexts": contexts,
                    }
                )
        summary["top"] = listed
        summary["best_scores"] = [round(float(v), 4) for v in scores.best]  # for the chart
        report["models"][label] = summary
    return report


def graph_report(trained: torch.nn.Module, init: torch.nn.Module, density: float, seed: int):
    nh = trained.config.n_head
    report: dict = {"density": density, "heads": []}
    pooled: dict[str, dict[str, list]] = {}
    for head in range(nh):
        variants = {
            "trained": graphs.neuron_graph(trained.decoder, trained.encoder, head),
            "init": graphs.neuron_graph(init.decoder, init.encoder, head),
            **graphs.controls(trained.decoder, trained.encoder, head, seed + head),
        }
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
    return report


# --- verdicts ------------------------------------------------------------------------------


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
                "holds": bool(heavy),
                "evidence": "power law beats exponential (R > 0, p < 0.1) for the trained graph's "
                + ", ".join(
                    f"{kind}-degree: {'yes' if wins('trained', kind, 'exponential') else 'no'} "
                    f"(alpha {fits[kind].get('alpha', float('nan')):.2f}, vs lognormal "
                    f"{'wins' if wins('trained', kind, 'lognormal') else 'not better'})"
                    for kind in graphs.DEGREE_KINDS
                )
                + "; controls where it does too: "
                + (", ".join(
                    f"{name} {kind}" for name in pooled if name != "trained"
                    for kind in graphs.DEGREE_KINDS if wins(name, kind, "exponential")
                ) or "none"),
                "rule": "for some degree (out, in, total), the trained graph's power law beats the "
                "exponential and no control's does",
            }
        )  # fmt: skip
        q = {name: [h[name]["modularity"] for h in gr["heads"]] for name in pooled}
        claims.append(
            {
                "claim": "high modularity of the neuron graph",
                "holds": all(min(q["trained"]) > max(v) for k, v in q.items() if k != "trained"),
                "evidence": "Louvain modularity, mean (range) over heads: "
                + ", ".join(
                    f"{k} {np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})" for k, v in q.items()
                ),
                "rule": "every head's trained graph more modular than every head of every control",
            }
        )
    return claims


# --- the command ---------------------------------------------------------------------------


def load_controls(args: argparse.Namespace) -> list[tuple[str, object]]:
    """(label, loaded) of each --control, checked to be a transformer with MLP neurons."""
    labels = args.control_label or [Path(p).stem for p in args.control]
    controls = []
    for path, label in zip(args.control, labels, strict=True):
        loaded = load(path)
        network = loaded.model.network
        if is_bdh(network) or not mlp_output_modules(network):
            raise UserError(
                f"--control {path} holds a {type(loaded.model).__name__}: a control needs a "
                "transformer with MLP neurons (GPT-2 or LLaMA); the untrained BDH is already one"
            )
        controls.append((label, loaded))
    return controls


def control_units(args, controls: list[tuple[str, object]], text: bytes, keep: int) -> list:
    """Each control read on the same text, in its own tokens and block size; signed scores."""
    units = []
    for label, loaded in controls:
        model = loaded.model.to(args.device).eval()
        data_dir = resolve_data_dir(args.data_dir or loaded.data_dir)
        tokenizer = get_tokenizer(loaded.tokenizer, data_dir)
        tokens = np.asarray(tokenizer.encode(text))
        idx = windows(tokens, int(model.hparams.block_size), keep)
        acts = read(model.network, idx, min(keep, idx.numel()), args.batch_size)
        print(f"inspect: read {label}", file=sys.stderr)
        units.append((label, model.network, tokens, tokenizer.token_bytes(), acts, True))
    return units


def inspect(args: argparse.Namespace) -> dict:
    label = args.label or "bdh"
    loaded = load(args.ckpt_path, args.n_layer)
    model = loaded.model.to(args.device).eval()
    require_bdh(model, args.ckpt_path, args.measures)
    controls = load_controls(args) if "selectivity" in args.measures else []
    data, source = checkpoint_data(loaded, args.ckpt_path, args.text, args.data_dir)
    tokens = np.asarray(data.split_tokens("test"))
    token_bytes = data.tokenizer.token_bytes()
    block = int(model.hparams.block_size)
    idx = windows(tokens, block, args.max_tokens)
    keep = min(args.selectivity_tokens, idx.numel()) if "selectivity" in args.measures else 0
    report: dict = {
        "checkpoint": args.ckpt_path,
        "label": label,
        "model": type(model).__name__,
        "hyperparameters": {
            k: v for k, v in model.hparams.items() if isinstance(v, int | float | str | bool)
        },
        "text": {"source": source, "tokens": int(idx.numel()), "block_size": block},
        "measures": list(args.measures),
    }
    signed = not is_bdh(model.network)
    if signed:  # a transformer: selectivity of its MLP neurons only
        units = [
            (
                label,
                model.network,
                tokens,
                token_bytes,
                read(model.network, idx, keep, args.batch_size),
                True,
            )
        ]
    else:
        twin = init_twin(model).to(args.device).eval()
        C = model.network.config
        units = []
        counters = []
        for network, name in ((model.network, label), (twin.network, f"{label} (init)")):
            counter = SparsityCounter(C.n_layer, C.n_head, C.n_neurons)
            want = counter if "sparsity" in args.measures else None
            acts = read(network, idx, keep, args.batch_size, want)
            print(f"inspect: read {name} on {idx.numel():,} tokens", file=sys.stderr)
            units.append((name, network, tokens, token_bytes, acts, False))
            counters.append(counter)
        if "sparsity" in args.measures:
            report["sparsity"] = sparsity_report(*counters, args.ckpt_path)
        if "graph" in args.measures:
            report["graph"] = graph_report(
                model.network, twin.network, args.graph_density, args.seed
            )
            print("inspect: neuron graph measured", file=sys.stderr)
    if "selectivity" in args.measures:
        text = bytes(np.asarray(data.split_text("test").data))  # the controls read these bytes
        units += control_units(args, controls, text, keep)
        report["selectivity"] = selectivity_report(units, args.top, args.contexts)
        print("inspect: selectivity scored", file=sys.stderr)
    report["claims"] = verdicts(report, label)
    return report


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    check_writable(out, "give --out a writable folder")
    report = inspect(args)
    write_json(out / "inspect.json", report)
    charts = write_charts(report, out / "charts")
    atomic_write_text(out / "README.md", readme(report, charts, argv))
    for claim in report["claims"]:
        verdict = {True: "holds", False: "does not hold", None: "untested"}[claim["holds"]]
        print(f"{claim['claim']}: {verdict} ({claim['evidence']})")
