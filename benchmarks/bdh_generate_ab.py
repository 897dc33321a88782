"""Generation per token, this tree against an older commit's BDH (default c9f942f, the single
file before the model/kernels split): greedy generation from the recurrent state, same weights
and prompt, the two interleaved in one process (order reversed every other round). Checks the
tokens are identical, prints old time / new time per round (above 1: this tree is faster).

    python benchmarks/bdh_generate_ab.py --config small-1.6M --tokens 512 --rounds 5 --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from bdh_ab import CONFIGS, load_old, new_model, old_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="small-1.6M")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--old-ref", default="c9f942f")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kw = CONFIGS[args.config][0]
    torch.manual_seed(0)
    models = {"new": new_model(kw).eval()}
    models["old"] = old_model(load_old(args.old_ref), kw).eval()
    models["old"].load_state_dict(models["new"].state_dict(), strict=True)
    prompt = torch.tensor([list(b"To be, or not to be")])
    print("load before:", os.getloadavg(), flush=True)
    outs = {k: m.generate(prompt, 8, top_k=1) for k, m in models.items()}  # warm-up
    times = {k: [] for k in models}
    for r in range(args.rounds):
        for k in ("old", "new") if r % 2 == 0 else ("new", "old"):
            start = time.perf_counter()
            outs[k] = models[k].generate(prompt, args.tokens, top_k=1)
            times[k].append(time.perf_counter() - start)
    assert torch.equal(outs["old"], outs["new"]), "the two generated different tokens"
    ratios = [o / n for o, n in zip(times["old"], times["new"], strict=True)]
    print(
        f"{args.config}, {args.tokens} tokens, {args.threads} threads: old "
        f"{1e3 * statistics.median(times['old']) / args.tokens:.3f} ms/token, new "
        f"{1e3 * statistics.median(times['new']) / args.tokens:.3f} ms/token; old/new time per "
        f"round {', '.join(f'{x:.3f}' for x in ratios)} (median {statistics.median(ratios):.3f}); "
        "identical tokens"
    )
    print("load after:", os.getloadavg(), flush=True)


if __name__ == "__main__":
    main()
