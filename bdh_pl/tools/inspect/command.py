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

import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from bdh_pl.errors import COUNT, UserError, check_options, count
from bdh_pl.fileio import atomic_write_text, check_writable, write_json
from bdh_pl.tools.options import SEED, Loading, check_paths, parse

if TYPE_CHECKING:
    from bdh_pl.training.language_model import LanguageModel
    from bdh_pl.training.loading import EvalModel

MEASURES = ("sparsity", "selectivity", "graph")


@dataclasses.dataclass(kw_only=True)
class Inspect(Loading):
    """What is measured, on what

    Args:
        ckpt_path: the BDH: a bdh-pl checkpoint, plain BDH weights or a BDH folder from `export`
        replot: redraw the charts and README of --out from its inspect.json (nothing is measured)
        label: its name in the outputs (default: bdh)
        control: checkpoints of same-size transformers (GPT-2, LLaMA): their MLP neurons are
            the selectivity control
        control_label: a name per control
        text: held-out text file (default: test split)
        measures: what to measure
        max_tokens: sparsity: the first N tokens (default all)
        selectivity_tokens: positions scored for selectivity
        graph_density: share of G's entries kept as edges
        top: most selective neurons listed per class
        contexts: top contexts per neuron
        batch_size: windows per forward
        seed: the random seed of the permutations and of Louvain
        out: folder for inspect.json, README.md, charts
    """

    ckpt_path: str | None = None
    replot: bool = False
    label: str | None = None
    control: list[str] = dataclasses.field(default_factory=list)
    control_label: list[str] | None = None
    text: str | None = None
    measures: list[Literal["sparsity", "selectivity", "graph"]] = dataclasses.field(
        default_factory=lambda: list(MEASURES)
    )
    max_tokens: int | None = None
    selectivity_tokens: int = 16384
    graph_density: float = 0.02
    top: int = 2
    contexts: int = 4
    batch_size: int = 16
    seed: int = 0
    out: str
    command: str = dataclasses.field(default="", init=False)  # as typed, for the report

    def __post_init__(self) -> None:
        if self.replot:
            return
        if self.ckpt_path is None:
            raise UserError("give --ckpt_path (or --replot to redraw --out from its inspect.json)")
        check_options(
            [
                *((f"--{k}", getattr(self, k), count(), COUNT) for k in COUNTS),
                ("--graph_density", self.graph_density, lambda v: 0 < v < 1, "in (0, 1)"),
                ("--seed", self.seed, *SEED),
            ]
        )
        if self.control_label is not None and len(self.control_label) != len(self.control):
            raise UserError(f"give one --control_label per --control ({len(self.control)})")
        self.label = self.label or "bdh"
        twin = f"{self.label} (init)"
        self.control_label = self.control_label or default_labels(self.control, (self.label, twin))
        names = [self.label, twin, *self.control_label]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise UserError(
                f"two models would be named {repeated[0]!r} (the BDH is --label, its untrained "
                f"twin '{twin}', the controls --control_label): give each its own name"
            )
        check_paths("--ckpt_path", [self.ckpt_path])
        check_paths("--control", self.control)
        super().__post_init__()


COUNTS = ("max_tokens", "selectivity_tokens", "top", "contexts", "batch_size")


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
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(model.training_config.seed)
        return type(model).from_hparams(model.hparams)


def require_bdh(model: LanguageModel, path: str, measures: list[str]) -> None:
    from bdh_pl.analysis.activations import is_bdh

    needs = [m for m in measures if m != "selectivity"]
    if needs and not is_bdh(model.network):
        name = type(model.network).__name__
        raise UserError(
            f"{path} holds a {type(model).__name__} ({name}), not BDH: {' and '.join(needs)} "
            "need BDH's sparse neurons and encoder/decoder; give a BDH checkpoint, or score this "
            "model's MLP neurons with `--measures selectivity` (or as --control of a BDH)"
        )


# --- the command ---------------------------------------------------------------------------


def load_controls(args: Inspect) -> list[tuple[str, EvalModel]]:
    """(label, network with its tokenizer) of each --control: a transformer with MLP neurons,
    from a checkpoint or a Hugging Face folder."""
    from bdh_pl.analysis.activations import is_bdh, mlp_output_modules
    from bdh_pl.training.loading import load_network

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
    from bdh_pl.analysis.activations import windows

    try:
        return windows(tokens, block, max_tokens)
    except ValueError as err:
        raise UserError(f"{what}: {err}; give a longer --text or a larger token count") from None


def control_units(args, controls: list[tuple[str, EvalModel]], text: bytes, keep: int):
    """Each control read on the same text, in its own tokens and block size; signed scores."""
    from bdh_pl.tools.inspect.measures import read
    from bdh_pl.tools.inspect.selectivity import Unit

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


def inspect(args: Inspect) -> dict:
    from bdh_pl.analysis.activations import is_bdh
    from bdh_pl.analysis.sparsity import SparsityCounter
    from bdh_pl.tools.common import checkpoint_data
    from bdh_pl.tools.inspect.measures import graph_report, read, sparsity_report, verdicts
    from bdh_pl.tools.inspect.selectivity import Unit, selectivity_report
    from bdh_pl.training.loading import load_model

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


def inspect_command(args: Inspect) -> None:
    """Measure (or with --replot, redraw) into --out; print each claim's verdict."""
    from bdh_pl.tools.inspect.measures import claim_verdict, rescored
    from bdh_pl.tools.inspect.report import readme, write_charts

    out = Path(args.out)
    check_writable(out, "give --out a writable folder")
    if args.replot:
        report = read_report(out / "inspect.json")
    else:
        report = inspect(args)
        report["command"] = args.command
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


def main(argv: list[str]) -> None:
    args = parse(inspect_command, argv, "inspect")["args"]
    args.command = f"python -m bdh_pl inspect {shlex.join(argv)}"
    inspect_command(args)


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
