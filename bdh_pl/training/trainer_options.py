"""The Trainer's numeric options, checked before the run: one line each.

Lightning checks some itself (limit_*_batches, max_epochs, num_nodes) but takes others that
fail later or silently mean something else: `val_check_interval 0` divides by zero in the
first step, `log_every_n_steps 0` at the first log, a NaN gradient_clip_val clips every
gradient to NaN."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

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
