"""How a model trains, as one typed config: the optimiser (AdamW), its learning-rate schedule
(training/schedule.py), the dropout seed and torch.compile. Every LanguageModel takes one as
`training` (YAML: `model.init_args.training.<field>`); it is checked once, here."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bdh_pl.errors import UserError


@dataclass
class TrainingConfig:
    """The optimiser, its schedule and the training switches (defaults: the reference run's)."""

    learning_rate: float = 1e-3  # peak, after warmup
    min_learning_rate: float = 1e-4  # floor of the cosine decay
    warmup_steps: int = 100  # linear warmup from 0
    # The warmup as a share of the run's steps (lr_decay_steps, else trainer.max_steps),
    # replacing warmup_steps when given: runs of any length spend the same share warming up.
    warmup_fraction: float | None = None
    lr_decay_steps: int | None = None  # steps of cosine decay (None: trainer.max_steps)
    weight_decay: float = 0.1  # AdamW's, on matrices only (not norms, biases, embeddings)
    betas: tuple[float, float] = (0.9, 0.95)
    # Seeds each step's dropout masks, so a resumed run repeats them (the CLI links data.seed).
    seed: int = 1337
    compile: bool = False  # torch.compile the network (same state_dict keys)

    def __post_init__(self) -> None:
        lr, floor = self.learning_rate, self.min_learning_rate
        # `not x >= 0` also catches NaN, which passes every plain comparison check.
        if not (0 <= floor <= lr < math.inf and lr > 0):
            raise UserError(
                "need 0 <= model.training.min_learning_rate <= learning_rate and learning_rate "
                f"> 0, got {floor} and {lr}"
            )
        if self.warmup_steps < 0 or not 0 <= self.weight_decay < math.inf:
            raise UserError("model.training.warmup_steps and weight_decay must be >= 0")
        if self.warmup_fraction is not None and not 0 <= self.warmup_fraction < 1:
            raise UserError(
                f"model.training.warmup_fraction is a share of the run's steps in [0, 1), got "
                f"{self.warmup_fraction} (for a number of steps use warmup_steps)"
            )
        if self.lr_decay_steps is not None and self.lr_decay_steps < 1:  # 0: the default
            raise UserError(
                f"model.training.lr_decay_steps must be >= 1 (or unset), got {self.lr_decay_steps}"
            )
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise UserError(
                f"model.training.betas must be two numbers in [0, 1), got {list(self.betas)}"
            )
        self.betas = (float(self.betas[0]), float(self.betas[1]))
