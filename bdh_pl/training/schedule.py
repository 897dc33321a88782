"""The learning-rate schedule of every model: linear warmup, then cosine decay to a floor
(nanoGPT's), its warmup given in steps or as a share of the run's own steps.

A share keeps schedules comparable across runs of different lengths: a 51-step and a 2,000-step
run of a budgeted benchmark both spend, say, 5% of their steps warming up, where a fixed 20-step
warmup would be 39% of the first and 1% of the second.
"""

from __future__ import annotations

import math


def warmup_length(total_steps: int, warmup_steps: int, warmup_fraction: float | None) -> int:
    """Warmup steps of a run of `total_steps`: `warmup_fraction` of them (rounded) when given,
    else `warmup_steps`."""
    if warmup_fraction is None:
        return warmup_steps
    return round(warmup_fraction * total_steps)


def lr_factor(step: int, warmup: int, decay_steps: int, floor: float) -> float:
    """The learning rate of `step` as a share of the peak: linear warmup over `warmup` steps,
    then cosine decay to `floor` at `decay_steps` (constant after warmup when decay_steps <= 0:
    no length known)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if decay_steps <= 0:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, decay_steps - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
