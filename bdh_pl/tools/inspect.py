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
same-size GPT-2 or LLaMA), scored the same way (allowed either sign). Selectivity is a curve
(the share of neurons with nAP >= t, t = 0.1 .. 0.9), compared with standard errors clustered by
weight vector, each class's best at equal population size; neurons on at more than half the
positions are counted apart, never listed. Each claim's verdict follows the one rule of
bdh_pl/analysis/verdict.py (holds / holds weakly / does not hold). Writes DIR/inspect.json,
DIR/README.md and charts under DIR/charts/; --replot redraws them and judges the stored numbers
again by the current rule.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from bdh_pl.analysis.activations import (
    is_bdh,
    mlp_output_modules,
    windows,
)
from bdh_pl.analysis.sparsity import SparsityCounter
from bdh_pl.errors import ArgumentParser, UserError
from bdh_pl.fileio import atomic_write_text, check_writable, write_json
from bdh_pl.tools.common import check_device, checkpoint_data
from bdh_pl.tools.inspect_measures import (
    claim_verdict,
    graph_report,
    read,
    rescored,
    sparsity_report,
    verdicts,
)
from bdh_pl.tools.inspect_report import readme, write_charts
from bdh_pl.tools.inspect_selectivity import Unit, selectivity_report
from bdh_pl.training.language_model import LanguageModel
from bdh_pl.training.loading import EvalModel, load_model, load_network

MEASURES = ("sparsity", "selectivity", "graph")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="python -m bdh_pl inspect",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--ckpt_path",
        default=None,
        help="the BDH: a bdh-pl checkpoint, plain BDH weights or a BDH folder from `export`",
    )
    parser.add_argument(
        "--replot",
        action="store_true",
        help="redraw the charts and README of --out from its inspect.json (nothing is measured)",
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
    parser.add_argument(
        "--n_layer", type=int, default=None, help="layers of plain BDH weights (they cannot say)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", required=True, help="folder for inspect.json, README.md, charts")
    args = parser.parse_args(argv)
    if args.replot:
        return args
    if args.ckpt_path is None:
        parser.error("give --ckpt_path (or --replot to redraw --out from its inspect.json)")
    counts = (args.selectivity_tokens, args.top, args.contexts, args.batch_size)
    optional = (args.max_tokens, args.n_layer)
    if min(counts) < 1 or any(n is not None and n < 1 for n in optional):
        parser.error("--max_tokens, --selectivity_tokens, --top, --contexts, --batch_size and "
                     "--n_layer must be positive")  # fmt: skip
    if not 0 < args.graph_density < 1:  # NaN too
        parser.error(f"--graph_density must be in (0, 1), got {args.graph_density}")
    if args.control_label is not None and len(args.control_label) != len(args.control):
        parser.error(f"give one --control_label per --control ({len(args.control)})")
    args.label = args.label or "bdh"
    twin = f"{args.label} (init)"
    args.control_label = args.control_label or default_labels(args.control, (args.label, twin))
    names = [args.label, twin, *args.control_label]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        parser.error(
            f"two models would be named {repeated[0]!r} (the BDH is --label, its untrained twin "
            f"'{twin}', the controls --control_label): give each its own name"
        )
    for option, path in [
        ("--ckpt_path", args.ckpt_path),
        *(("--control", p) for p in args.control),
    ]:
        if not Path(path).expanduser().exists():
            parser.error(f"{option} {path}: no such file or folder")
    args.device = check_device(args.device)
    return args


def default_labels(paths: list[str], taken: tuple[str, ...]) -> list[str]:
    """Each control's name: its file's stem, with as many parent folders as tell it apart from
    the others and from the names `taken` (two `.../checkpoints/last.ckpt`: their run folders)."""
    parts = [Path(p).expanduser().resolve().with_suffix("").parts for p in paths]
    labels: list[str] = []
    for depth in range(1, max((len(p) for p in parts), default=1) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels) and not set(labels) & set(taken):
            break
    return labels  # the same file twice: refused as a repeated name


# --- models --------------------------------------------------------------------------------


def init_twin(model: LanguageModel) -> LanguageModel:
    """The same model untrained: its class and hyperparameters, weights drawn from its seed as
    `fit` drew them (seed_everything(seed), then the constructor)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(model.training_config.seed)
        return type(model).from_hparams(model.hparams)


def require_bdh(model: LanguageModel, path: str, measures: list[str]) -> None:
    needs = [m for m in measures if m != "selectivity"]
    if needs and not is_bdh(model.network):
        name = type(model.network).__name__
        raise UserError(
            f"{path} holds a {type(model).__name__} ({name}), not BDH: {' and '.join(needs)} "
            "need BDH's sparse neurons and encoder/decoder; give a BDH checkpoint, or score this "
            "model's MLP neurons with `--measures selectivity` (or as --control of a BDH)"
        )


# --- the command ---------------------------------------------------------------------------


def load_controls(args: argparse.Namespace) -> list[tuple[str, EvalModel]]:
    """(label, network with its tokenizer) of each --control: a transformer with MLP neurons,
    from a checkpoint or a Hugging Face folder."""
    controls = []
    for path, label in zip(args.control, args.control_label, strict=True):
        loaded = load_network(path, args.data_dir)
        if is_bdh(loaded.network) or not mlp_output_modules(loaded.network):
            raise UserError(
                f"--control {path} holds a {type(loaded.network).__name__}: a control needs a "
                "transformer with MLP neurons (GPT-2 or LLaMA); the untrained BDH is already one"
            )
        controls.append((label, loaded))
    return controls


def text_windows(tokens: np.ndarray, block: int, max_tokens: int | None, what: str):
    try:
        return windows(tokens, block, max_tokens)
    except ValueError as err:
        raise UserError(f"{what}: {err}; give a longer --text or a larger token count") from None


def control_units(args, controls: list[tuple[str, EvalModel]], text: bytes, keep: int):
    """Each control read on the same text, in its own tokens and block size; signed scores."""
    units = []
    for label, (network, tokenizer, block) in controls:
        network = network.to(args.device).eval()
        tokens = np.asarray(tokenizer.encode(text))
        idx = text_windows(tokens, block, max(keep, block), f"--control {label}")
        acts = read(network, idx, min(keep, idx.numel()), args.batch_size)
        print(f"inspect: read {label}", file=sys.stderr)
        units.append(Unit(label, network, tokens, tokenizer.token_bytes(), acts, True))
    return units


def check_graph_density(model: LanguageModel, density: float) -> None:
    """Before any measuring: --graph_density must keep at least one edge per neuron of a head's
    N x N graph, or there is no degree distribution to fit."""
    N = model.network.config.n_neurons
    if density * N * (N - 1) < N:
        raise UserError(
            f"--graph_density {density:g} keeps {density * N * (N - 1):.3g} edges of a head's "
            f"{N:,}-neuron graph, fewer than one per neuron: give at least {1 / (N - 1):.2g}"
        )


def inspect(args: argparse.Namespace) -> dict:
    label = args.label
    loaded = load_model(args.ckpt_path, args.n_layer)
    model = loaded.model.to(args.device).eval()
    require_bdh(model, args.ckpt_path, args.measures)
    if "graph" in args.measures:
        check_graph_density(model, args.graph_density)
    controls = load_controls(args) if "selectivity" in args.measures else []
    data, source = checkpoint_data(loaded, args.ckpt_path, args.text, args.data_dir)
    tokens = np.asarray(data.split_tokens("test"))
    token_bytes = data.tokenizer.token_bytes()
    block = model.block_size
    idx = text_windows(tokens, block, args.max_tokens, "the held-out text")
    keep = min(args.selectivity_tokens, idx.numel()) if "selectivity" in args.measures else 0
    hparams = {
        f"{group}.{k}": v
        for group, values in model.hparams.items()
        if isinstance(values, dict)
        for k, v in values.items()
        if isinstance(v, int | float | str | bool)
    }
    report: dict = {
        "checkpoint": args.ckpt_path,
        "label": label,
        "model": type(model).__name__,
        "parameters": sum(p.numel() for p in model.network.parameters()),
        "hyperparameters": hparams,
        "text": {"source": source, "tokens": int(idx.numel()), "block_size": block},
        "measures": list(args.measures),
    }
    if not is_bdh(model.network):  # a transformer: the selectivity of its MLP neurons only
        acts = read(model.network, idx, keep, args.batch_size)
        units = [Unit(label, model.network, tokens, token_bytes, acts, True)]
    else:
        twin = init_twin(model).to(args.device).eval()
        C = model.network.config
        units, counters = [], []
        for network, name in ((model.network, label), (twin.network, f"{label} (init)")):
            counter = SparsityCounter(C.n_layer, C.n_head, C.n_neurons)
            want = counter if "sparsity" in args.measures else None
            acts = read(network, idx, keep, args.batch_size, want)
            print(f"inspect: read {name} on {idx.numel():,} tokens", file=sys.stderr)
            units.append(Unit(name, network, tokens, token_bytes, acts, False))
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
    if args.replot:
        report = read_report(out / "inspect.json")
    else:
        report = inspect(args)
        report["command"] = f"python -m bdh_pl inspect {shlex.join(argv)}"
        write_json(out / "inspect.json", report)
    try:
        if args.replot:
            report = rescored(report)
            write_json(out / "inspect.json", report)
        charts = write_charts(report, out / "charts")
        text = readme(report, charts)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        if not args.replot:
            raise
        raise UserError(
            f"--replot: {out / 'inspect.json'} is not a whole inspect report ({type(err).__name__}: "
            f"{err}); rerun inspect into --out"
        ) from None
    atomic_write_text(out / "README.md", text)
    for claim in report["claims"]:
        print(f"{claim['claim']}: {claim_verdict(claim)} ({claim['evidence']})")


REPORT_KEYS = {"label": str, "claims": list, "checkpoint": str, "model": str, "text": dict}


def read_report(path: Path) -> dict:
    """inspect.json of an earlier run, its shape checked: one line if it is not a report."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(
            f"--replot: cannot read {path} ({err}); run inspect into --out first"
        ) from None
    wrong = (
        ["a JSON object"]
        if not isinstance(report, dict)
        else [
            f"{key!r} ({kind.__name__})"
            for key, kind in REPORT_KEYS.items()
            if not isinstance(report.get(key), kind)
        ]
    )
    if not wrong and not all(isinstance(c, dict) and "claim" in c for c in report["claims"]):
        wrong = ["claims with a 'claim' each"]
    if wrong:
        raise UserError(
            f"--replot: {path} is not an inspect report (needs {', '.join(wrong)}); rerun "
            "inspect into --out"
        )
    return report
