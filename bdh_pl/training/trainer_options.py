"""The Trainer's numeric options, checked before the run: one line each.

Lightning checks some itself (limit_*_batches, max_epochs, num_nodes) but takes others that
fail later or silently mean something else: `val_check_interval 0` divides by zero in the
first step, `log_every_n_steps 0` at the first log, a NaN gradient_clip_val clips every
gradient to NaN.

And the precision this machine runs: a bf16 request on a CPU without bf16 arithmetic runs in
fp32, said in one line (fit_precision)."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import torch

from bdh_pl.errors import UserError


def whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def at_least(low: int) -> Callable[[Any], bool]:
    return lambda v: whole(v) and v >= low


def steps_or_share(value: Any) -> bool:
    """A whole number of batches >= 1, or a share of an epoch in (0, 1]."""
    if whole(value):
        return value >= 1
    return isinstance(value, float) and 0 < value <= 1


def count_or_share(value: Any) -> bool:
    """A whole number of batches >= 0, or a share in [0, 1]."""
    if whole(value):
        return value >= 0
    return isinstance(value, float) and 0 <= value <= 1


# option: (accepts, what it must be); None always means Lightning's default.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_steps": (
        lambda v: whole(v) and (v >= 1 or v == -1),
        "positive (or -1: until early stopping)",
    ),
    "min_steps": (at_least(0), "a whole number >= 0"),
    "max_epochs": (lambda v: whole(v) and v >= -1, "a whole number >= 0, or -1"),
    "min_epochs": (at_least(0), "a whole number >= 0"),
    "val_check_interval": (steps_or_share, "a whole number of steps >= 1, or a share in (0, 1]"),
    "check_val_every_n_epoch": (at_least(1), "a whole number >= 1"),
    "log_every_n_steps": (at_least(1), "a whole number >= 1"),
    "accumulate_grad_batches": (at_least(1), "a whole number >= 1"),
    "num_sanity_val_steps": (at_least(-1), "a whole number >= 0, or -1 (all)"),
    "gradient_clip_val": (
        lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < math.inf,
        "a finite number >= 0 (0: no clipping)",
    ),
    **{
        f"limit_{split}_batches": (count_or_share, "a whole number >= 0, or a share in [0, 1]")
        for split in ("train", "val", "test", "predict")
    },
    "overfit_batches": (count_or_share, "a whole number >= 0, or a share in [0, 1]"),
    "reload_dataloaders_every_n_epochs": (at_least(0), "a whole number >= 0"),
}


def check_trainer_options(options: Mapping[str, Any]) -> None:
    """Each option of RULES that `options` (the parsed `trainer` section) sets, in range."""
    for name, (accepts, must_be) in RULES.items():
        value = options.get(name)
        if value is not None and not accepts(value):
            raise UserError(f"trainer.{name} must be {must_be}, got {value!r}")


# Set to 1 to keep a bf16 precision on a CPU without bf16 arithmetic (emulated: many times
# slower than fp32, e.g. to check a GPU recipe's numerics on a CPU).
FORCE_BF16_ENV = "BDH_PL_CPU_BF16"
# CPU flags of bf16 arithmetic: x86 AVX512-BF16 and AMX, Arm's BF16 extension.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU's feature flags (x86 `flags`, Arm `Features`), None where unreadable."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def cpu_precision(
    precision: Any, on_cpu: bool, flags: frozenset[str] | None, force: bool = False
) -> tuple[Any, str | None]:
    """The precision to run and, where it is not the one asked for, the line saying why: a
    bf16 request on a CPU whose flags show no bf16 arithmetic runs in fp32 (32-true), since
    emulated bf16 is many times slower than fp32 there. GPUs, CPUs with bf16 (or whose flags
    cannot be read) and `force` keep the request."""
    asked = str(precision)
    if not on_cpu or force or flags is None or not asked.startswith("bf16") or flags & BF16_FLAGS:
        return precision, None
    return "32-true", (
        f"precision: {asked} runs as 32-true on this CPU: it has no bf16 arithmetic (no "
        f"{' / '.join(sorted(BF16_FLAGS))} flag), so bf16 would be emulated, many times slower "
        f"than fp32; {FORCE_BF16_ENV}=1 keeps {asked}"
    )


def fit_precision(options: MutableMapping[str, Any]) -> None:
    """Sets the `trainer` section's precision to the one this machine runs (run_precision),
    saying so in one line when it changes."""
    precision, line = run_precision(options)
    if line:
        options["precision"] = precision
        print(line, file=sys.stderr)


def run_precision(options: Mapping[str, Any]) -> tuple[Any, str | None]:
    """The precision a run of the `trainer` section `options` runs on this machine, and the
    line saying why where it is not the one asked for (cpu_precision)."""
    accelerator = str(options.get("accelerator") or "auto")
    precision = options.get("precision")
    if precision is None:
        return None, None
    on_cpu = accelerator == "cpu" or (
        accelerator == "auto" and not torch.cuda.is_available() and not mps_available()
    )
    force = os.environ.get(FORCE_BF16_ENV, "") not in ("", "0")
    return cpu_precision(precision, on_cpu, cpu_flags() if on_cpu else None, force)


def mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
