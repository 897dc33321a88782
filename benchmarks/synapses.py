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

--classes topics: two topics within one register, both from WikiText-2's test split
(encyclopedic prose): A, sentences of its articles on warfare (battles, warships, military
units: WAR below), B, of its articles on music, film and television (ARTS). Sentences are drawn
evenly over the articles (round robin), and each article lies wholly in the choosing or the
testing half, so a synapse cannot win the test by recognising an article it was chosen on.

    OMP_NUM_THREADS=1 python benchmarks/synapses.py --classes topics --out results/synapses/topics
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
from bdh_pl.tools.inspect.command import init_twin
from bdh_pl.training.loading import load_model

HALVES = ", drawn evenly over the articles, each article wholly in the choosing or the testing half"

WAR = (
    "Ise @-@ class battleship", "Second Battle of Naktong Bulge", "Ironclad warship",
    "Operation Eastern Exit", "Battle of Dürenstein", "No. 20 Squadron RAAF",
    "Light Tank Mk VII Tetrarch", "Zrinski Battalion", "German Type UB I submarine",
    "Military history of Gibraltar during World War II",
)  # fmt: skip
ARTS = (
    "Kiss You ( One Direction song )", "Hed PE", "Independiente ( Ricardo Arjona album )",
    "American Beauty ( 1999 film )", "The Heart of Ezra Greer", "The Hustler ( film )",
    "The Snowmen",
)  # fmt: skip
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


def articles(text: str) -> dict[str, str]:
    """WikiText's articles by title (the ' = Title = ' lines; sections are '= = ... = =')."""
    parts = re.split(r"^ = ([^=].*) = $", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def round_robin(groups: list[list[str]], n: int, rng: np.random.Generator) -> list[list[str]]:
    """n sentences drawn evenly over the groups (each shuffled), kept by group."""
    pools = [list(rng.permutation(g)) for g in groups]
    taken: list[list[str]] = [[] for _ in groups]
    while sum(map(len, taken)) < n:
        if not any(pools):
            raise SystemExit(f"error: fewer than {n} sentences in the chosen articles")
        for pool, out in zip(pools, taken, strict=True):
            if pool and sum(map(len, taken)) < n:
                out.append(str(pool.pop()))
    return taken


def whole_halves(taken: list[list[str]]) -> list[bool]:
    """Per article, whether its sentences choose (True) or test: each article on one side, the
    halves as even as they go (largest article first, each to the smaller half)."""
    sizes, side = [0, 0], [False] * len(taken)
    for i in sorted(range(len(taken)), key=lambda i: -len(taken[i])):
        half = int(sizes[1] < sizes[0])
        side[i] = half == 0
        sizes[half] += len(taken[i])
    return side


def topic_classes(wiki: str, per_class: int, rng: np.random.Generator):
    """(sentences of A and B, the selection mask over them, each article's side and count)."""
    found = articles(wiki)
    chosen, selection, listed = {}, [], {}
    for cls, titles in (("A", WAR), ("B", ARTS)):
        taken = round_robin([wikitext_sentences(found[t]) for t in titles], per_class, rng)
        side = whole_halves(taken)
        chosen[cls] = [s for group in taken for s in group]
        selection += [side[i] for i, group in enumerate(taken) for _ in group]
        listed[cls] = {t: {"half": "choose" if side[i] else "test", "sentences": len(taken[i])}
                       for i, t in enumerate(titles)}  # fmt: skip
    return chosen, np.array(selection), listed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ckpt_path", default="/tmp/bdh-merge/base.pt")
    parser.add_argument("--init", default="/tmp/bdh-merge/init.pt",
                        help="the untrained twin; 'twin': rebuilt from the checkpoint's "
                        "hyperparameters and seed, as inspect does")  # fmt: skip
    parser.add_argument("--classes", choices=("registers", "topics"), default="registers")
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
    selection, articles_used = None, None
    if args.classes == "topics":
        chosen, selection, articles_used = topic_classes(wiki, args.per_class, rng)
        names = {"A": "WikiText-2 test, articles on warfare",
                 "B": "WikiText-2 test, articles on music, film and television"}  # fmt: skip
    else:
        classes = {"A": shakespeare_sentences(held_out), "B": wikitext_sentences(wiki)}
        chosen = {k: [v[i] for i in rng.choice(len(v), args.per_class, replace=False)]
                  for k, v in classes.items()}  # fmt: skip
        names = {"A": "tiny Shakespeare, last 10% (held out)", "B": "WikiText-2 test"}
    texts = chosen["A"] + chosen["B"]
    idx = [torch.tensor(list(t.encode()), dtype=torch.long) for t in texts]
    labels = np.repeat([True, False], args.per_class)
    start = time.time()
    report = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/synapses.py " + " ".join(sys.argv[1:]),
        "classes": names,
        "paper": {"currency synapse": {"U": 2368, "U_max": 2500}},
        "sentences": chosen,
        "models": {},
    }
    if articles_used:
        report["articles"] = articles_used
    trained = load_model(args.ckpt_path, args.n_layer).model
    twin = init_twin(trained) if args.init == "twin" else load_model(args.init, args.n_layer).model
    for name, model in (("trained", trained), ("untrained twin", twin)):
        network = model.network.eval()
        report["models"][name] = synapse_selectivity(
            network, idx, labels, args.shuffles, args.seed, selection
        )
        print(name, json.dumps(report["models"][name]["true_labels"]), flush=True)
    report["wall_seconds"] = round(time.time() - start)
    report["load_average"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "synapses.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Synapse selectivity: {names['A']} (A) against {names['B']} (B)",
        "",
        f"`{report['command']}` ({report['wall_seconds']} s, load average "
        f"{report['load_average'][0]:.1f} on a shared 2-core machine)",
        "",
        f"{args.per_class} sentences of each class ({MIN_BYTES}-{MAX_BYTES} bytes, listed in "
        f"synapses.json{HALVES if articles_used else ''}); the synapse chosen on half of each, "
        "tested on the other half "
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
    if articles_used:
        lines += ["", "Articles (title: half, sentences drawn):", ""]
        lines += [f"- {cls}: " + "; ".join(f"{t}: {v['half']}, {v['sentences']}"
                  for t, v in used.items()) for cls, used in articles_used.items()]  # fmt: skip
    lines.append("")
    (out / "summary.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
