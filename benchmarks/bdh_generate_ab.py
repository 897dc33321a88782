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
    ap.add_argument("--cpu-time", action="store_true", help="CPU time of this thread (1 thread)")
    args = ap.parse_args()
    assert not args.cpu_time or args.threads == 1
    clock = time.thread_time if args.cpu_time else time.perf_counter
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
            start = clock()
            outs[k] = models[k].generate(prompt, args.tokens, top_k=1)
            times[k].append(clock() - start)
    assert torch.equal(outs["old"], outs["new"]), "the two generated different tokens"
    ratios = [o / n for o, n in zip(times["old"], times["new"], strict=True)]
    print(
        f"{args.config}, {args.tokens} tokens, {args.threads} threads"
        f"{' (CPU time)' if args.cpu_time else ''}: old "
        f"{1e3 * statistics.median(times['old']) / args.tokens:.3f} ms/token, new "
        f"{1e3 * statistics.median(times['new']) / args.tokens:.3f} ms/token; old/new time per "
        f"round {', '.join(f'{x:.3f}' for x in ratios)} (median {statistics.median(ratios):.3f}); "
        "identical tokens"
    )
    print(step_overhead(models["new"], prompt, clock))
    print("load after:", os.getloadavg(), flush=True)


@torch.no_grad()
def step_overhead(model, prompt: torch.Tensor, clock, steps: int = 200) -> str:
    """What a recurrent step of this tree spends before its layers: the new position's RoPE
    angles and the layer runner built for the forward, against the whole step."""
    _, state = model.prefill(prompt)
    token = prompt[:, -1]
    model.step(token, state)
    start = clock()
    for _ in range(steps):
        model.step(token, state)
    step = (clock() - start) / steps
    start = clock()
    for _ in range(steps):
        model.layer_runner(model, model.attn.phases(state.pos, 1), True)
    setup = (clock() - start) / steps
    return (
        f"new step {1e3 * step:.3f} ms, of which RoPE angles + layer setup {1e3 * setup:.3f} ms "
        f"({setup / step:.1%})"
    )


if __name__ == "__main__":
    main()
