"""Did a change to BDH's fast path cost speed? The fast path of this tree against the BDH of an
older commit (default c9f942f, the single-file BDH before the model/kernels split; any later
commit works too), same weights and batch, one optimizer step each, interleaved in one process
(the order reversed every other round), so a shared machine slows both alike. Prints new/old
speed per variant.

    python benchmarks/bdh_ab.py --config small-1.6M --rounds 8 --threads 2
    python benchmarks/bdh_ab.py --old-ref 81a4dc1     # against the tree before a change
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bdh_pl.models.bdh import BDH, BDHConfig, BDHExecution  # noqa: E402

CONFIGS = {
    "seed-25M": (dict(), 1, 256),
    "small-1.6M": (dict(n_layer=4, n_embd=128, n_head=4, mlp_internal_dim_multiplier=32), 8, 256),
}
VARIANTS = {"fp32": (False, False), "bf16": (True, False), "bf16+kernels": (True, True)}


def git_show(ref: str, path: str) -> str | None:
    out = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{ref}:{path}"], capture_output=True, text=True
    )
    return out.stdout if out.returncode == 0 else None


def load_old(ref: str):
    """The BDH module of commit `ref`, importing torch only: the single file
    bdh_pl/models/bdh.py of the older commits, or the bdh_pl/models/bdh/ package of later ones
    (copied under another name, `old_bdh_pl`, so that it cannot import this tree's code)."""
    root = Path(tempfile.mkdtemp())
    single = git_show(ref, "bdh_pl/models/bdh.py")
    files = {"bdh.py": single} if single is not None else {}
    if single is None:
        names = ["bdh/__init__.py", "bdh/model.py", "bdh/kernels.py", "bdh/linear_attention.py"]
        files = {name: git_show(ref, f"bdh_pl/models/{name}") for name in names}
        files["sampling.py"] = git_show(ref, "bdh_pl/models/sampling.py")
    for name, source in files.items():
        if source is None:
            continue
        path = root / "old_bdh_pl" / "models" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source.replace("bdh_pl.", "old_bdh_pl."))
    for package in ("old_bdh_pl", "old_bdh_pl/models"):
        (root / package / "__init__.py").touch()
    sys.path.insert(0, str(root))
    return importlib.import_module("old_bdh_pl.models.bdh")


def old_model(old, kw: dict, kernels: bool = False):
    """A BDH of the old code, with its fused fast path (the execution switches were then
    BDHConfig fields, fused by default)."""
    return old.BDH(old.BDHConfig(**kw, compile_elementwise=kernels))


def new_model(kw: dict, kernels: bool = False) -> BDH:
    """A BDH of this tree with the fast path applied, as BDHLM builds it."""
    return BDHExecution(compile_elementwise=kernels).apply(BDH(BDHConfig(**kw)))


def build(old, which: str, kw: dict, batch: int, block: int, bf16: bool, kernels: bool):
    torch.manual_seed(0)
    m = old_model(old, kw, kernels) if which == "old" else new_model(kw, kernels)
    torch.manual_seed(0)
    ref = BDH(BDHConfig(**kw))
    m.load_state_dict(ref.state_dict(), strict=True)
    m.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.1)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 256, (batch, block + 1), generator=g)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = m(idx[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), idx[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="small-1.6M")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpu-time", action="store_true")
    ap.add_argument("--old-ref", default="c9f942f")
    args = ap.parse_args()
    old = load_old(args.old_ref)
    torch.set_num_threads(args.threads)
    clock = time.thread_time if args.cpu_time else time.perf_counter
    assert not args.cpu_time or args.threads == 1
    kw, batch, block = CONFIGS[args.config]
    print("load before:", os.getloadavg(), flush=True)
    steps = {}
    for v in args.variants.split(","):
        for which in ("old", "new"):
            s = build(old, which, kw, batch, block, *VARIANTS[v])
            s()
            s()
            steps[(v, which)] = s
    times = {k: [] for k in steps}
    for r in range(args.rounds):
        keys = list(steps)
        if r % 2:
            keys = keys[::-1]
        for k in keys:
            t = clock()
            steps[k]()
            times[k].append(clock() - t)
    tok = batch * block
    for v in args.variants.split(","):
        o, n = times[(v, "old")], times[(v, "new")]
        ratios = [a / b for a, b in zip(o, n, strict=True)]  # old time / new time = new/old speed
        print(
            f"{args.config} {v}: old {tok / statistics.median(o):.0f} tok/s, new "
            f"{tok / statistics.median(n):.0f} tok/s, new/old speed median-of-medians "
            f"{statistics.median(o) / statistics.median(n):.3f}, median per-round ratio "
            f"{statistics.median(ratios):.3f}"
        )
    print("load after:", os.getloadavg(), flush=True)


if __name__ == "__main__":
    main()
