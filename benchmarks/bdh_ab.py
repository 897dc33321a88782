"""Did a change to BDH's fast path cost speed? The fast path of this tree against the single-file
BDH of an older commit (default c9f942f, before the model/kernels split), same weights and batch,
one optimizer step each, interleaved in one process (the order reversed every other round), so
a shared machine slows both alike. Prints new/old speed per variant.

    python benchmarks/bdh_ab.py --config small-1.6M --rounds 8 --threads 2
"""

import argparse
import importlib.util
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
from bdh_pl.models.bdh import BDH, BDHConfig  # noqa: E402


def load_old(ref: str):
    """bdh_pl/models/bdh.py as it was at `ref` (a one-file module importing torch only)."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{ref}:bdh_pl/models/bdh.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "old_bdh.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_bdh", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_bdh"] = module
    spec.loader.exec_module(module)
    return module


CONFIGS = {
    "seed-25M": (dict(), 1, 256),
    "small-1.6M": (dict(n_layer=4, n_embd=128, n_head=4, mlp_internal_dim_multiplier=32), 8, 256),
}
VARIANTS = {"fp32": (False, False), "bf16": (True, False), "bf16+kernels": (True, True)}

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


def build(which, bf16, kernels):
    torch.manual_seed(0)
    if which == "old":
        m = old.BDH(old.BDHConfig(**kw, compile_elementwise=kernels))
    else:
        m = BDH(BDHConfig(**kw, compile_elementwise=kernels))
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


print("load before:", os.getloadavg(), flush=True)
steps = {}
for v in args.variants.split(","):
    for which in ("old", "new"):
        s = build(which, *VARIANTS[v])
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
    ratios = [
        a / b for a, b in zip(o, n, strict=True)
    ]  # old time / new time = new speed / old speed
    print(
        f"{args.config} {v}: old {tok / statistics.median(o):.0f} tok/s, new {tok / statistics.median(n):.0f} tok/s, "
        f"new/old speed median-of-medians {statistics.median(o) / statistics.median(n):.3f}, "
        f"median per-round ratio {statistics.median(ratios):.3f}"
    )
print("load after:", os.getloadavg(), flush=True)
