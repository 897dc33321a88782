"""Synapse selectivity (the paper's Sec. 6.2) of a BDH for two classes of sentences, against its
untrained twin and shuffled labels (bdh_pl/analysis/synapses.py).

    OMP_NUM_THREADS=1 python benchmarks/synapses.py --ckpt_path /tmp/bdh-merge/base.pt \
        --init /tmp/bdh-merge/init.pt --n_layer 2 --out results/synapses

The classes: A, sentences of tiny Shakespeare's last 10% (held out by benchmarks/merge.py,
whose base model this reads by default); B, sentences of WikiText-2's test split. A sentence is
text ending in . ! or ?, its line breaks as spaces, 60-160 bytes; speakers' names
("ROMEO:") and WikiText headings are dropped, WikiText's tokenised spacing undone. --per_class
of each, drawn with --seed; half of each class chooses the synapse, the other half tests it
(Mann-Whitney U of at most (per_class / 2)^2, as the paper's 50 x 50 = 2,500).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bdh_pl.analysis.synapses import synapse_selectivity
from bdh_pl.training.loading import load_model

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MIN_BYTES, MAX_BYTES = 60, 160


def sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(text) if MIN_BYTES <= len(s.strip()) <= MAX_BYTES]


def shakespeare_sentences(text: str) -> list[str]:
    speeches = []
    for block in text.split("\n\n"):
        lines = block.strip().splitlines()
        if len(lines) > 1 and lines[0].endswith(":"):
            speeches.append(" ".join(lines[1:]))
    return sentences(" ".join(speeches))


def detokenize(text: str) -> str:
    """WikiText's tokenised spacing undone ("a @-@ b ," -> "a-b,"), so the two classes do not
    differ by that artefact alone."""
    text = re.sub(r" @(.)@ ", r"\1", text)
    return re.sub(r" ([.,;:!?)'])", r"\1", re.sub(r"([(]) ", r"\1", text))


def wikitext_sentences(text: str) -> list[str]:
    lines = [
        line for line in text.splitlines() if line.strip() and not line.strip().startswith("=")
    ]
    return sentences(detokenize(" ".join(lines)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ckpt_path", default="/tmp/bdh-merge/base.pt")
    parser.add_argument("--init", default="/tmp/bdh-merge/init.pt", help="the untrained twin")
    parser.add_argument("--n_layer", type=int, default=2)
    parser.add_argument("--per_class", type=int, default=100)
    parser.add_argument("--shuffles", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/synapses")
    args = parser.parse_args()
    root = Path(os.environ.get("BDH_PL_DATA_DIR", "../shared/data"))
    shakespeare = (root / "tinyshakespeare/input.txt").read_text()
    held_out = shakespeare[int(0.9 * len(shakespeare)) :]
    wiki = (root / "wikitext-2-raw/wiki.test.raw").read_text()
    rng = np.random.default_rng(args.seed)
    classes = {"A": shakespeare_sentences(held_out), "B": wikitext_sentences(wiki)}
    chosen = {k: [v[i] for i in rng.choice(len(v), args.per_class, replace=False)]
              for k, v in classes.items()}  # fmt: skip
    texts = chosen["A"] + chosen["B"]
    idx = [torch.tensor(list(t.encode()), dtype=torch.long) for t in texts]
    labels = np.repeat([True, False], args.per_class)
    start = time.time()
    report = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/synapses.py " + " ".join(sys.argv[1:]),
        "classes": {"A": "tiny Shakespeare, last 10% (held out)", "B": "WikiText-2 test"},
        "paper": {"currency synapse": {"U": 2368, "U_max": 2500}},
        "sentences": chosen,
        "models": {},
    }
    for name, path in (("trained", args.ckpt_path), ("untrained twin", args.init)):
        network = load_model(path, args.n_layer).model.network.eval()
        report["models"][name] = synapse_selectivity(network, idx, labels, args.shuffles, args.seed)
        print(name, json.dumps(report["models"][name]["true_labels"]), flush=True)
    report["wall_seconds"] = round(time.time() - start)
    report["load_average"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "synapses.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Synapse selectivity: tiny Shakespeare (A) against WikiText-2 (B) sentences",
        "",
        f"`{report['command']}` ({report['wall_seconds']} s, load average "
        f"{report['load_average'][0]:.1f} on a shared 2-core machine)",
        "",
        f"{args.per_class} sentences of each class ({MIN_BYTES}-{MAX_BYTES} bytes, listed in "
        "synapses.json); the synapse chosen on half of each, tested on the other half "
        "(one-sided Mann-Whitney U, its maximum, rank-biserial r); shuffled labels: the mean "
        f"and the largest of {args.shuffles} shuffles:",
        "",
        "| model | direction | synapse (layer, head, x-neuron -> y-neuron) | U | U max | p "
        "| r | shuffled labels: mean r (max U) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, entry in report["models"].items():
        for d, e in enumerate(entry["true_labels"]):
            shuffled = [row[d] for row in entry["shuffled_labels"]]
            mean_r = np.mean([s["rank_biserial"] for s in shuffled])
            max_u = max(s["U"] for s in shuffled)
            lines.append(
                f"| {name} | {e['direction']} | L{e['layer']} h{e['head']} "
                f"{e['x_neuron']} -> {e['y_neuron']} | {e['U']:.0f} | {e['U_max']} | "
                f"{e['p']:.2g} | {e['rank_biserial']:.3f} | {mean_r:.3f} ({max_u:.0f}) |"
            )
    lines.append("")
    (out / "summary.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
