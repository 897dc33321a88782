"""Merging two BDHs fine-tuned from one base (the paper's Sec. 7.1), measured on small models.

    OMP_NUM_THREADS=1 python benchmarks/merge.py --out results/merge      # ~10-20 min on CPU

A base BDH is trained on X, a mix of the two texts (batches alternate between them); two copies
are fine-tuned, one on Y (tiny Shakespeare) and one on Z (WikiText-2); then `python -m bdh_pl
merge` joins them (each parent's heads kept whole, the rest averaged), and every tensor of the
two is also averaged (plain weight averaging, the usual merge of same-shape models). Each model
is scored in bits per byte on held-out text: Y's (the last 10% of tiny Shakespeare, never
trained on), Z's (WikiText-2's test split; Z trains on its validation split, as the local
data has no raw train split) and X's (the two together: the mean of the two bpb, equal bytes).
Writes OUT/merge.json and OUT/summary.md; the models go to --work (not committed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bdh_pl.models.bdh import BDH, BDHConfig
from bdh_pl.training.loading import load_bdh

BLOCK, BATCH = 128, 8


def texts(root: Path, eval_bytes: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (training bytes, held-out bytes)."""
    shakespeare = np.frombuffer((root / "tinyshakespeare/input.txt").read_bytes(), np.uint8)
    cut = int(0.9 * len(shakespeare))
    wiki_train = np.frombuffer((root / "wikitext-2-raw/wiki.valid.raw").read_bytes(), np.uint8)
    wiki_test = np.frombuffer((root / "wikitext-2-raw/wiki.test.raw").read_bytes(), np.uint8)
    return {
        "shakespeare": (shakespeare[:cut], shakespeare[cut:][:eval_bytes]),
        "wikitext": (wiki_train, wiki_test[:eval_bytes]),
    }


def batch(data: np.ndarray, gen: np.random.Generator) -> torch.Tensor:
    starts = gen.integers(0, len(data) - BLOCK - 1, BATCH)
    return torch.as_tensor(np.stack([data[s : s + BLOCK + 1] for s in starts]).astype(np.int64))


def train(model: BDH, sources: list[np.ndarray], steps: int, lr: float, seed: int) -> BDH:
    """AdamW, 10 warmup steps then cosine to lr/10; batches cycle through `sources`."""
    gen = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    model.train()
    for step in range(steps):
        scale = min(1.0, (step + 1) / 10) * (0.55 + 0.45 * math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        idx = batch(sources[step % len(sources)], gen)
        loss = F.cross_entropy(model(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 20 == 0:
            print(f"step {step + 1}/{steps}: loss {loss.item():.3f}", flush=True)
    return model.eval()


@torch.no_grad()
def bpb(model: BDH, data: np.ndarray) -> float:
    """Bits per byte over disjoint windows of BLOCK + 1 bytes (each byte after the first of
    its window is scored once)."""
    n = (len(data) - 1) // BLOCK
    idx = torch.as_tensor(data[: n * BLOCK + 1].astype(np.int64))
    windows = torch.stack([idx[i * BLOCK : (i + 1) * BLOCK + 1] for i in range(n)])
    total, count = 0.0, 0
    for chunk in windows.split(32):
        logits = model(chunk[:, :-1])
        total += float(
            F.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten(), reduction="sum")
        )
        count += chunk[:, 1:].numel()
    return total / count / math.log(2)


def copy(model: BDH) -> BDH:
    twin = BDH(model.config)
    twin.load_state_dict(model.state_dict())
    return twin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="results/merge")
    parser.add_argument("--work", default="/tmp/bdh-merge", help="where the models are saved")
    parser.add_argument("--base_steps", type=int, default=300)
    parser.add_argument("--finetune_steps", type=int, default=150)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eval_bytes", type=int, default=65_536)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = Path(os.environ.get("BDH_PL_DATA_DIR", "../shared/data"))
    data = texts(root, args.eval_bytes)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    torch.manual_seed(args.seed)
    config = BDHConfig(n_layer=2, n_embd=64, n_head=2, mlp_internal_dim_multiplier=16, dropout=0.0)
    base = BDH(config)
    torch.save(base.state_dict(), work / "init.pt")  # the untrained twin, for synapses.py
    base = train(base, [data["shakespeare"][0], data["wikitext"][0]], args.base_steps, args.lr, 1)
    models = {"base (X)": base}
    for name, seed in (("shakespeare", 2), ("wikitext", 3)):
        models[f"fine-tuned on {name}"] = train(
            copy(base), [data[name][0]], args.finetune_steps, args.lr, seed
        )
    paths = {}
    for name, file in (("base (X)", "base.pt"), ("fine-tuned on shakespeare", "a.pt"),
                       ("fine-tuned on wikitext", "b.pt")):  # fmt: skip
        paths[name] = work / file
        torch.save(models[name].state_dict(), paths[name])
    merged_dir = work / "merged"
    if merged_dir.exists():
        for f in merged_dir.iterdir():
            f.unlink()
        merged_dir.rmdir()
    command = [sys.executable, "-m", "bdh_pl", "merge", str(work / "a.pt"), str(work / "b.pt"),
               "--n_layer", "2", "--out", str(merged_dir)]  # fmt: skip
    subprocess.run(command, check=True)
    models["merged (neurons concatenated)"] = load_bdh(merged_dir)[0]
    a, b = models["fine-tuned on shakespeare"], models["fine-tuned on wikitext"]
    averaged = copy(a)
    averaged.load_state_dict({k: (v + b.state_dict()[k]) / 2 for k, v in a.state_dict().items()})
    models["every tensor averaged"] = averaged
    rows = {}
    for name, model in models.items():
        y, z = bpb(model, data["shakespeare"][1]), bpb(model, data["wikitext"][1])
        rows[name] = {"X (both)": (y + z) / 2, "Y (shakespeare)": y, "Z (wikitext)": z,
                      "parameters": sum(p.numel() for p in model.parameters())}  # fmt: skip
        print(name, rows[name], flush=True)
    record = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/merge.py " + " ".join(sys.argv[1:]),
        "config": {**vars(args), "model": config.__dict__, "block": BLOCK, "batch": BATCH},
        "bpb": rows,
        "wall_seconds": round(time.time() - start),
        "load_average": os.getloadavg(),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "merge.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Merging two BDHs fine-tuned from one base",
        "",
        f"`{record['command']}` ({record['wall_seconds']} s, load average "
        f"{record['load_average'][0]:.1f} on a shared 2-core machine)",
        "",
        "BDH 2 layers x 64 wide x 2 heads, multiplier 16; base trained "
        f"{args.base_steps} steps on X (batches alternating between tiny Shakespeare and "
        f"WikiText-2), each copy fine-tuned {args.finetune_steps} steps on Y (tiny Shakespeare) "
        f"or Z (WikiText-2); batches of {BATCH} x {BLOCK} bytes. Held-out bits per byte "
        f"({args.eval_bytes:,} bytes each; X is the mean of Y and Z):",
        "",
        "| model | parameters | X (both) | Y (shakespeare) | Z (wikitext) |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {r['parameters']:,} | {r['X (both)']:.3f} | {r['Y (shakespeare)']:.3f} | "
            f"{r['Z (wikitext)']:.3f} |"
            for name, r in rows.items()
        ),  # fmt: skip
        "",
    ]
    (out / "summary.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
