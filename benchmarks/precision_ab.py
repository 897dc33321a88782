"""Is bf16-mixed faster than fp32 for every model of a benchmark? Each size of a benchmark
config's models (a compute frontier's ladders, or its plain models), built as the benchmark
builds it, one training step (forward, backward, AdamW) per round in fp32 and in bf16 autocast,
interleaved in one process (the order reversed every other round) on the benchmark's batch and
block, one intra-op thread. Prints tokens/s per precision and the bf16/fp32 ratio per size.

    python benchmarks/precision_ab.py --config configs/benchmark/wikitext2-frontier.yaml
    python benchmarks/precision_ab.py --config configs/benchmark/wikitext2-frontier.yaml --rounds 6 --only bdh

--cpu-time times each step by its thread's CPU time (time.thread_time): on a shared machine a
busy neighbour then does not inflate a step by descheduling it.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bdh_pl.bench import resolve, spec  # noqa: E402
from bdh_pl.bench.budget import Budget, Size  # noqa: E402
from bdh_pl.bench.spec import ModelEntry  # noqa: E402


def entries(bench: spec.BenchmarkSpec) -> list[ModelEntry]:
    """Every size of every model, as the benchmark builds it."""
    out = []
    for entry in bench.models:
        for size in entry.sizes or [Size(entry.name)]:
            args = {**entry.model_args, **size.model_args}
            out.append(ModelEntry(entry.configs, size.name, args, Budget(steps=1), None))
    return out


def step_seconds(
    network, batch: int, block: int, vocab: int, bf16: bool, optimizer, clock=time.perf_counter
) -> float:
    ids = torch.randint(0, vocab, (batch, block))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    start = clock()
    with autocast:
        out = network(ids)
    logits = out.logits if hasattr(out, "logits") else out
    F.cross_entropy(logits.flatten(0, 1).float(), ids.flatten()).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a benchmark config")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--only", help="models (families) whose name starts with this")
    parser.add_argument("--cpu-time", action="store_true", help="time steps by thread CPU time")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clock = time.thread_time if args.cpu_time else time.perf_counter
    bench = spec.load_spec(args.config)
    print("| size | params | fp32 tok/s | bf16 tok/s | bf16 / fp32 |\n|---|---:|---:|---:|---:|")
    for entry in entries(bench):
        if args.only and not entry.name.startswith(args.only):
            continue
        config = resolve.lightning_config(bench, entry)
        model, datamodule = resolve.build(config)
        network = model.network
        data = config["data"]["init_args"]
        batch, block = int(data["batch_size"]), int(data["block_size"])
        optimizer = torch.optim.AdamW(network.parameters(), lr=1e-5)
        times: dict[bool, list[float]] = {False: [], True: []}
        for bf16 in (False, True):  # warm-up, untimed
            step_seconds(network, batch, block, datamodule.vocab_size, bf16, optimizer, clock)
        for r in range(args.rounds):
            for bf16 in (False, True) if r % 2 == 0 else (True, False):
                times[bf16].append(
                    step_seconds(
                        network, batch, block, datamodule.vocab_size, bf16, optimizer, clock
                    )
                )
        fp32, bf16 = (batch * block / statistics.median(times[k]) for k in (False, True))
        params = sum(p.numel() for p in network.parameters())
        print(f"| {entry.name} | {params:,} | {fp32:,.0f} | {bf16:,.0f} | {bf16 / fp32:.2f} |")


if __name__ == "__main__":
    main()
