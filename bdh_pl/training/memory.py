"""Memory before and after the fact: before a run (fit, validate, test), a step's memory
estimated from a real forward and fitted to the memory at hand (the batch run as micro-batches
with gradient accumulation, evaluation in smaller batches, or one line refusing); after, one
line naming the knobs when an allocation fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F

from bdh_pl.errors import UserError
from bdh_pl.training.language_model import LanguageModel
from bdh_pl.training.run_folders import RUN

CPU_OVERLAY = "configs/cpu.yaml --config configs/cpu/<model>.yaml"
# Simulates the memory available, in GiB (tests; or to keep a run under a budget on a shared
# machine): the split is chosen as if only this much were free.
LIMIT_ENV = "BDH_PL_MEMORY_LIMIT_GB"
MemoryFit = Literal["auto", "off"]
# A step's peak over its saved activations: backward holds the gradients of a layer's
# activations beside them (tests/integration/training/test_memory.py measures the peak against this).
BACKWARD_FACTOR = 1.5
ONE_OFF_BYTES = 64 * 2**20  # the first step's allocations that do not grow with the batch
HEADROOM = 0.9  # of the available memory, the share a step may plan to use


def activation_bytes(
    model: LanguageModel, batch_size: int, block_size: int, precision: str = "32-true"
) -> float:
    """Activation memory of one training step: the tensors autograd saves in a real fp32
    forward and loss of one short sequence, scaled to the batch and the block and to the
    precision's share of fp32 bytes (precision_share)."""
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
            logits = network(idx)
            F.cross_entropy(logits.flatten(0, 1).float(), idx.flatten())
    finally:
        network.train(was_training)
    return sum(seen.values()) * batch_size * block_size / probe * precision_share(precision)


def precision_share(precision: str) -> float:
    """Saved activations under `precision` over those in fp32. 16-bit weights: half. Mixed
    16-bit: 3/4, as probed under CPU autocast (BDH 0.73, GPT-2 0.80, LLaMA 0.99 of the fp32
    bytes; norms, softmax and the loss stay fp32). Not probed under autocast itself: emulated
    16-bit arithmetic makes that probe take minutes on CPUs without it."""
    if "16" not in precision:
        return 1.0
    return 0.75 if "mixed" in precision else 0.5


def free_memory_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def available_bytes(device: torch.device) -> int | None:
    """Memory a run may use: the free memory, or $BDH_PL_MEMORY_LIMIT_GB when set."""
    limit = os.environ.get(LIMIT_ENV)
    if limit:
        try:
            return int(float(limit) * 2**30)
        except ValueError:
            raise UserError(f"{LIMIT_ENV}={limit!r} is not a number of GiB") from None
    return free_memory_bytes(device)


@dataclass(frozen=True)
class StepMemory:
    """A training step's memory, from the estimate: what grows with the windows of a
    micro-batch, and what does not."""

    per_window: float  # bytes per window: activations and the backward's transients
    fixed: float  # bytes: gradients and AdamW moments (and the weights, on a GPU), one-offs

    def bytes(self, windows: int) -> float:
        return self.fixed + self.per_window * windows


def step_memory(
    model: LanguageModel,
    block_size: int,
    precision: str,
    device: torch.device,
    training: bool = True,
) -> StepMemory:
    """The estimate behind the split and the refusal (checked against measured
    peaks in tests/integration/training/test_memory.py). Not `training` (validate, test): no
    gradients nor AdamW moments; the per-window part, a training step's, bounds a no-grad
    forward of as many windows."""
    per_window = activation_bytes(model, 1, block_size, precision) * BACKWARD_FACTOR
    weights = sum(p.numel() * p.element_size() for p in model.network.parameters())
    # gradients + two AdamW moments; on a GPU the weights are not there yet
    fixed = weights * ((3 if training else 0) + (device.type == "cuda")) + ONE_OFF_BYTES
    return StepMemory(per_window, fixed)


def micro_batches(batch: int, step: StepMemory, budget: float) -> int | None:
    """The fewest equal micro-batches (a divisor of `batch`) whose step fits in `budget`
    bytes; None when not even one window does."""
    for parts in range(1, batch + 1):
        if batch % parts == 0 and step.bytes(batch // parts) <= budget:
            return parts
    return None


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


# Lightning's counts of evaluation batches, per stage: multiplied by an evaluation split so
# that the same windows are evaluated.
EVAL_LIMITS = {
    "fit": ("limit_val_batches", "num_sanity_val_steps"),
    "validate": ("limit_val_batches",),
    "test": ("limit_test_batches",),
}


def fit_to_memory(
    model: LanguageModel,
    datamodule,
    trainer: L.Trainer,
    mode: MemoryFit = "auto",
    stage: str = "fit",
) -> int:
    """Before a run: run each training batch as micro-batches with gradient accumulation when
    its activations do not fit (`stage` fit), and evaluate in smaller batches when an
    evaluation batch might not (every stage: fit, validate, test), saying so in one line (mode
    "auto"); or refuse in one line when nothing fits (or mode "off" and a batch does not).
    Returns the number of training micro-batches."""
    batch, block = getattr(datamodule, "batch_size", None), getattr(datamodule, "block_size", None)
    device = trainer.strategy.root_device
    if not batch or not block:
        return 1
    training = stage == "fit"
    # A no-grad evaluation forward holds less than a training step's estimate of as many
    # windows: the estimate bounds it (and the validation batches of a fit come beside the
    # gradients and AdamW moments, which the estimate counts).
    evaluation = getattr(datamodule, "eval_batch_size", None) or batch
    if getattr(datamodule, "eval_mode", "windows") == "stream":
        evaluation = 1  # one window per batch, whatever eval_batch_size says
    # a CPU's processes (DDP ranks on one host) share its memory; each GPU has its own
    sharing = trainer.num_devices if device.type == "cpu" else 1
    try:
        available = available_bytes(device)
        if available is None:
            return 1
        available //= sharing
        step = step_memory(model, block, str(trainer.precision), device, training)
    except UserError:
        raise
    except Exception:  # an estimate only: never a reason to stop
        return 1
    budget = available * HEADROOM
    train_fits = not training or step.bytes(batch) <= budget
    if train_fits and step.bytes(evaluation) <= budget:
        return 1
    need = f"batch {batch} x block {block} needs about {gib(step.bytes(batch))}"
    if train_fits:
        need = (
            f"an evaluation batch of {evaluation} needs at most about {gib(step.bytes(evaluation))}"
        )
    have = f"{gib(available)} {'set by ' + LIMIT_ENV if os.environ.get(LIMIT_ENV) else 'free'}"
    if sharing > 1:
        have += f" per process ({sharing} share this machine)"
    cpu = f"on a CPU add --config {CPU_OVERLAY}; " if device.type == "cpu" else ""
    parts = micro_batches(batch, step, budget) if training else 1
    eval_parts = micro_batches(evaluation, step, budget)
    if eval_parts is None:  # not even one window fits
        parts = None
    windows = evaluation // (eval_parts or evaluation)
    stream = training and getattr(datamodule, "train_mode", "random") != "random"
    if mode == "off" or parts is None or (parts > 1 and stream):
        if parts is None:
            why = f"not even one window of {block} fits (about {gib(step.bytes(1))})"
        elif mode == "off" and parts > 1:
            why = f"{batch // parts}-window micro-batches would fit, but memory_fit is off"
        elif mode == "off":
            why = f"evaluation batches of {windows} would fit, but memory_fit is off"
        else:
            why = "data.train_mode stream cannot be split into micro-batches"
        knob = "batch_size" if training and parts != 1 else "eval_batch_size"
        raise UserError(
            f"this run does not fit in memory: {need} and {have}; {why}: {cpu}lower "
            f"data.init_args.block_size or {knob}"
            + (", or drop --memory_fit off" if mode == "off" and parts is not None else "")
        )
    done = []
    if parts > 1:
        resplit(datamodule, trainer, parts)
        done.append(
            f"batch {batch} = {parts} x {batch // parts} micro-batches with gradient accumulation"
        )
    if eval_parts > 1:
        # Each window is scored on its own, and the batch counts grow with the split: the
        # same windows are evaluated, with the same losses.
        datamodule.eval_batch_size = windows
        for limit in EVAL_LIMITS[stage]:
            if isinstance(getattr(trainer, limit, None), int) and getattr(trainer, limit) > 0:
                setattr(trainer, limit, getattr(trainer, limit) * eval_parts)
        done.append(f"evaluation in batches of {windows} (not {evaluation})")
    print(
        f"memory: {', '.join(done)}, to fit {have} ({need}; --memory_fit off to refuse instead)",
        file=sys.stderr,
    )
    return parts


def resplit(datamodule, trainer: L.Trainer, parts: int) -> None:
    """Runs each batch as `parts` micro-batches instead of the present split: the gradient is
    accumulated over them, and the validation interval, which Lightning counts in batches,
    keeps its optimizer steps."""
    old = getattr(datamodule, "micro_batches", 1)
    datamodule.micro_batches = parts
    trainer.accumulate_grad_batches = trainer.accumulate_grad_batches // old * parts
    if isinstance(trainer.val_check_interval, int):
        trainer.val_check_interval = trainer.val_check_interval // old * parts


class MicroBatchCounters(L.Callback):
    """The split across ranks and runs. DDP ranks chose theirs each from its own free memory
    (before any process group): at setup they take the most micro-batches any rank needs, so
    that every rank accumulates as many. A resumed run may split its batches otherwise than
    the run it resumes (other free memory): Lightning's batch counters, which place
    accumulation and validation, are counted in micro-batches, so they are moved to this run's
    count at the checkpoint's step."""

    # every DDP rank takes the most micro-batches any rank chose (Lightning's ranks plan alone)
    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        datamodule = trainer.datamodule
        if stage != "fit" or trainer.world_size < 2 or datamodule is None:
            return
        parts = getattr(datamodule, "micro_batches", 1)
        count = torch.tensor(parts, device=trainer.strategy.root_device)
        most = int(trainer.strategy.reduce(count, reduce_op="max"))
        if most != parts:
            resplit(datamodule, trainer, most)
            print(
                f"memory: rank {trainer.global_rank} runs batch {datamodule.batch_size} as "
                f"{most} micro-batches as the rank with the least memory does (its own "
                f"estimate: {parts})",
                file=sys.stderr,
            )

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module, checkpoint: dict) -> None:
        loop = checkpoint.get("loops", {}).get("fit_loop", {})
        progress = loop.get("epoch_loop.batch_progress")
        step = int(checkpoint.get("global_step") or 0)
        if not progress or step <= 0 or progress["total"]["ready"] % step:
            return
        old = progress["total"]["ready"] // step  # batches per optimizer step when saved
        shift = step * (trainer.accumulate_grad_batches - old)
        # the training stream is one endless epoch: its current counts are the total ones
        same = progress["current"]["ready"] == progress["total"]["ready"]
        for counts in (progress["total"], progress["current"]) if same else (progress["total"],):
            for key in ("ready", "started", "processed", "completed"):
                counts[key] += shift


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
