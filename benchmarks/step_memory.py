"""Does the memory estimate that splits a batch (bdh_pl/training/memory.py) bound a real
training step? Per case (model class, batch, block, sizes as JSON), in this fresh process: one
fp32 training step (forward, loss, backward, AdamW) of the model, its peak resident memory over
the resident memory before it (Linux /proc: the high-water mark reset, the freed heap given back
between cases), against the estimate. Prints one JSON list; the step's CPU time on its one
intra-op thread (time.thread_time: a busy neighbour does not inflate it) and wall time.

    python benchmarks/step_memory.py '[["BDHLM", 2, 512, {}]]'    # the card's 25.3M BDH
    OMP_NUM_THREADS=1 python benchmarks/step_memory.py '[["GPT2LM", 16, 128, {"n_layer": 2}]]'

tests/integration/training/test_memory.py runs it on small BDH, GPT-2 and LLaMA models.
"""

from __future__ import annotations

import ctypes
import gc
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bdh_pl.training import lit_models
from bdh_pl.training.memory import step_memory


def resident(field: str) -> int:
    """VmRSS or VmHWM of this process, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def measure(name: str, batch: int, block: int, sizes: dict) -> dict:
    torch.manual_seed(0)
    model = getattr(lit_models, name).from_hparams({"config": {**sizes, "block_size": block}})
    estimate = step_memory(model, block, "32-true", torch.device("cpu")).bytes(batch)
    optimizer = torch.optim.AdamW(model.network.parameters())
    ids = torch.randint(0, model.config.vocab_size, (batch, block))
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark from here
    before = resident("VmRSS:")
    cpu, wall = time.thread_time(), time.perf_counter()
    logits = model.network(ids)  # B, T, V
    F.cross_entropy(logits.flatten(0, 1).float(), ids.flatten()).backward()
    optimizer.step()
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    measured = resident("VmHWM:") - before
    return {
        "model": name, "batch": batch, "block": block, "sizes": sizes,
        "measured_mib": round(measured / 2**20, 1), "estimate_mib": round(estimate / 2**20, 1),
        "ratio": round(measured / estimate, 3), "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
    }  # fmt: skip


def main() -> None:
    cases = json.loads(sys.argv[1]) if len(sys.argv) > 1 else [["BDHLM", 2, 512, {}]]
    print(json.dumps([measure(*case) for case in cases]))


if __name__ == "__main__":
    main()
