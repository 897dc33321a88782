"""The values a benchmark is made of: a training budget, a sweep of settings, one setting;
and a compute frontier's size ladder and the window of it each budget trains."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveFloat, final

from bdh_pl.errors import UserError

BUDGET_KINDS = ("tokens", "steps", "flops", "seconds")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a label: model, size, shape, experiment


@final  # plain values, not a class to pick (jsonargparse's subclass mode)
@dataclass
class Budget:
    """What each model trains on: one of `tokens`, `steps`, `flops`, `seconds`, positive; or
    `zero_shot: true` (no training, test only).

    Args:
        tokens: training tokens; steps = ceil(tokens / tokens per step).
        steps: optimizer steps.
        flops: training FLOPs by the one rule, 3 x the forward FLOPs per token of the model's
            reference computation (training/flops.py); steps = ceil(flops / (training FLOPs
            per token x tokens per step)).
        seconds: wall-clock seconds of training and validation (Lightning's max_time); the
            learning-rate schedule is sized from a short timing of the model before the run.
        zero_shot: test the model as configured (pretrained weights), no training.
    """

    tokens: NonNegativeInt | None = None
    steps: NonNegativeInt | None = None
    flops: NonNegativeFloat | None = None
    seconds: NonNegativeFloat | None = None
    zero_shot: bool = False

    def __post_init__(self) -> None:
        # jsonargparse's checked numbers are subclasses: plain ones for YAML and JSON.
        for f in dataclasses.fields(self):
            if (value := getattr(self, f.name)) is not None and f.name != "zero_shot":
                setattr(self, f.name, int(value) if f.name in ("tokens", "steps") else float(value))

    @property
    def kind(self) -> str:
        """`tokens`, `steps`, `flops`, `seconds` or `zero_shot`."""
        given = [k for k in BUDGET_KINDS if getattr(self, k) is not None]
        return given[0] if given else "zero_shot"

    @property
    def trains(self) -> bool:
        return not self.zero_shot

    def max_steps(
        self,
        tokens_per_step: int,
        train_flops_per_token: float | None = None,
        seconds_per_step: float | None = None,
    ) -> int:
        """Optimizer steps the budget buys: the run's max_steps (for `seconds`, the estimate
        that sizes the learning-rate schedule; the clock ends the run)."""
        if self.steps is not None:
            return self.steps
        if self.tokens is not None:
            return math.ceil(self.tokens / tokens_per_step)
        if self.flops is not None:
            if not train_flops_per_token:
                raise UserError("a flops budget needs the model's training FLOPs per token")
            return math.ceil(self.flops / (train_flops_per_token * tokens_per_step))
        if self.seconds is not None:
            if not seconds_per_step:
                raise UserError("a seconds budget needs the model's measured seconds per step")
            return max(1, math.floor(self.seconds / seconds_per_step))
        raise UserError("a zero-shot budget trains no steps")


@final
@dataclass
class Sweep:
    """The settings each model is trained with (every combination); the one with the lowest
    validation loss represents the model.

    Args:
        lr: multipliers of the model's learning rate (and of its min_learning_rate, so the
            schedule keeps its shape).
        dropout: dropout values (default: the model's own).
        weight_decay: AdamW weight decay values (default: the model's own).
    """

    lr: list[PositiveFloat] = field(default_factory=lambda: [1.0])
    dropout: list[NonNegativeFloat] | None = None
    weight_decay: list[NonNegativeFloat] | None = None

    def __post_init__(self) -> None:
        self.lr = [float(v) for v in self.lr]
        for name in ("dropout", "weight_decay"):
            if (values := getattr(self, name)) is not None:
                setattr(self, name, [float(v) for v in values])

    def settings(self) -> list[Setting]:
        return [
            Setting(lr, dropout, decay)
            for lr in self.lr
            for dropout in (self.dropout if self.dropout is not None else [None])
            for decay in (self.weight_decay if self.weight_decay is not None else [None])
        ]


@final
@dataclass
class LrSweep:
    """A frontier's learning-rate sweep past its smallest budget (the first is each family's
    `sweep`, on its `sweep_size` there), on the middle size of this budget's window.

    Args:
        budget: where it runs: one of the frontier's `budgets` values, not the smallest.
        lr: the multipliers it starts from (default: each family's `sweep.lr`); widened as
            every sweep is, until its best is interior.
        relative: `lr` multiplies the multiplier each family chose at its sweep before this
            one (the same steps around every family's own rate).
    """

    budget: PositiveFloat
    lr: list[PositiveFloat] | None = None
    relative: bool = False

    def __post_init__(self) -> None:
        self.budget = float(self.budget)
        self.lr = [float(v) for v in self.lr] if self.lr is not None else None

    def grid(self, family: Sweep | None, previous: float) -> Sweep:
        """The settings this sweep starts from for a family whose own sweep is `family` and
        whose sweep before this one chose the multiplier `previous`."""
        family = family or Sweep()
        if not self.lr:
            return family
        scale = previous if self.relative else 1.0
        return dataclasses.replace(family, lr=[float(f"{scale * v:.4g}") for v in self.lr])


@dataclass(frozen=True)
class Setting:
    """One point of a sweep: a learning-rate multiplier, and dropout and weight decay when
    swept (None: the model's own)."""

    lr_scale: float = 1.0
    dropout: float | None = None
    weight_decay: float | None = None

    @property
    def label(self) -> str:
        """A plain name for folders and tables: `lr2x`, `lr0.5x_do0.1_wd0`."""
        parts = [f"lr{self.lr_scale:g}x"]
        if self.dropout is not None:
            parts.append(f"do{self.dropout:g}")
        if self.weight_decay is not None:
            parts.append(f"wd{self.weight_decay:g}")
        return "_".join(parts)


def budget_text(budget: Budget) -> str:
    """`flops 1e+13`, `tokens 50000`, `zero_shot`: a budget in tables and logs."""
    value = getattr(budget, budget.kind, None)
    return budget.kind if value is None or value is True else f"{budget.kind} {value:g}"


@final
@dataclass
class Size:
    """One rung of a family's size ladder (a compute frontier).

    Args:
        name: its label in the results (letters, digits, . _ -), unique in the benchmark.
        model_args: its model.init_args.config fields.config fields, applied after the family's.
    """

    name: str
    model_args: dict[str, Any] = field(default_factory=dict)


@final
@dataclass
class Shape:
    """One shape of a family (depth, neuron multiplier, ...) compared at the smallest budget:
    its model.init_args, applied after the family's and before each size's.

    Args:
        name: its label (letters, digits, . _ -), appended to each size's name.
        model_args: its model.init_args.config fields.
        published: the shape the model's authors published (its result is reported beside
            the best one's).
    """

    name: str
    model_args: dict[str, Any] = field(default_factory=dict)
    published: bool = False


def ladder_window(n_sizes: int, per_budget: int, n_budgets: int, index: int) -> range:
    """The sizes (indices into the ladder) budget `index` trains: `per_budget` neighbours,
    the window moving evenly from the smallest sizes at the smallest budget to the largest at
    the largest."""
    span = n_sizes - per_budget
    start = round(index * span / (n_budgets - 1)) if n_budgets > 1 else 0
    return range(start, start + per_budget)


def budget_windows(
    sizes: list[Size], per_budget: int, windows: list[list[str]] | None, n_budgets: int
) -> list[list[Size]]:
    """The sizes each budget trains: the named `windows`, else the even ladder windows."""
    if windows is not None:
        by_name = {s.name: s for s in sizes}
        return [[by_name[n] for n in window] for window in windows]
    return [
        [sizes[j] for j in ladder_window(len(sizes), per_budget, n_budgets, i)]
        for i in range(n_budgets)
    ]


def check_sweep(sweep: Sweep | None, where: str) -> None:
    """One-line errors for a sweep's repeated or empty values and dropout out of [0, 1)."""
    if sweep is None:
        return
    for name in ("lr", "dropout", "weight_decay"):
        values = getattr(sweep, name)
        if values is not None and (not values or len(set(values)) != len(values)):
            raise UserError(f"{where}.{name}: give distinct numbers, e.g. [1, 2], got {values}")
    if sweep.dropout and max(sweep.dropout) >= 1:
        raise UserError(f"{where}.dropout: values must be in [0, 1), got {sweep.dropout}")


def check_lr_sweeps(sweeps: list[LrSweep], values: list[float]) -> None:
    """A frontier's later sweeps: at its budgets after the smallest (`values`), ascending,
    each once, with distinct rates."""
    at = [s.budget for s in sweeps]
    if any(c not in values[1:] for c in at) or at != sorted(set(at)):
        raise UserError(
            f"lr_sweeps: budgets {[f'{c:g}' for c in at]}: each later sweep runs at one of the "
            f"budgets after the smallest, {[f'{c:g}' for c in values[1:]]}, ascending, once"
        )
    for i, sweep in enumerate(sweeps):
        check_sweep(Sweep(lr=sweep.lr) if sweep.lr is not None else None, f"lr_sweeps[{i}]")
