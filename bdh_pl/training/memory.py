"""Memory before and after the fact: an activation estimate checked against free memory before
training, and one line naming the knobs when an allocation fails."""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

import torch

from bdh_pl.training.language_model import LanguageModel
from bdh_pl.training.runs import RUN

CPU_OVERLAY = "configs/cpu.yaml --config configs/cpu/<model>.yaml"


def activation_bytes(model: LanguageModel, batch_size: int, block_size: int) -> float:
    """Activation memory of one training step, estimated from a real forward of one short
    sequence (the tensors autograd saves), scaled to the batch and the block."""
    probe = min(block_size, 64)
    network, was_training = model.network, model.network.training
    weights = {p.untyped_storage().data_ptr() for p in network.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:  # weights do not grow with the batch
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    idx = torch.zeros(1, probe, dtype=torch.long)
    # No copy of the network (a pretrained one can be large); the forward changes no weights
    # and, with the random state forked, no random stream either.
    try:
        network.train()
        with (
            torch.random.fork_rng(devices=[]),
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        ):
            network(idx)
    finally:
        network.train(was_training)
    return sum(seen.values()) * batch_size * block_size / probe


def free_memory_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def warn_if_too_big(model: LanguageModel, datamodule, trainer) -> None:
    """One line before training when the activations would not fit in free memory: a CPU
    swaps, then the kernel kills the process without a word."""
    batch, block = getattr(datamodule, "batch_size", None), getattr(datamodule, "block_size", None)
    if not batch or not block:
        return
    try:
        needed = activation_bytes(model, batch, block)
        free = free_memory_bytes(trainer.strategy.root_device)
    except Exception:  # an estimate only: never a reason to stop
        return
    if "16" in str(trainer.precision):
        needed /= 2
    if free is not None and needed > free:
        hint = (
            f"on a CPU add --config {CPU_OVERLAY}, or "
            if trainer.strategy.root_device.type == "cpu"
            else ""
        )
        print(
            f"warning: this run needs about {needed / 2**30:.1f} GiB of activations (batch "
            f"{batch} x block {block}) but {free / 2**30:.1f} GiB are free: {hint}lower "
            "data.init_args.batch_size or block_size",
            file=sys.stderr,
        )


def out_of_memory_line(err: BaseException, tool: str | None = None) -> str | None:
    """One line for an allocation that failed, with its size and the knobs to turn (those of
    training, or of the `tool` that ran)."""
    text = str(err)
    if not (
        isinstance(err, torch.OutOfMemoryError)
        or re.search(r"can't allocate memory|not enough memory|out of memory", text)
    ):
        return None
    size = re.search(r"[Tt]ried to allocate ([\d.]+ ?[KMGT]?i?B|\d+ bytes)", text)
    what = f"allocating {size.group(1)} failed" if size else text.strip().splitlines()[0][:120]
    if tool is not None:
        return (
            f"out of memory: {what}; ask `{tool}` for less at once (fewer samples, a smaller "
            "batch size or shorter lengths: see its --help), or use a smaller model"
        )
    trainer = RUN.trainer
    datamodule = getattr(trainer, "datamodule", None)
    now = (
        f" (now batch_size {datamodule.batch_size}, block_size {datamodule.block_size})"
        if datamodule is not None and hasattr(datamodule, "batch_size")
        else ""
    )
    return (
        f"out of memory: {what}; lower --data.init_args.batch_size or block_size{now}, or use a "
        f"smaller model (on a CPU: --config {CPU_OVERLAY})"
    )
