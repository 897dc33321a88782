"""What a run prints while it trains: the progress bar and the model summary, Lightning's own
kinds (Rich when `rich` is installed, else TQDM and plain text) told about step-based training.

Training here is step-based (`max_steps`, `max_epochs: -1`, an endless training stream), which
Lightning's defaults read as epochs: the bar said `Epoch 0/-2`, and after a resume it counted
the batch index against the steps left (`60/29`). Here the training bar counts optimizer steps
out of `max_steps`, resumed or not. The model summary printed `Total FLOPs: 0` (Lightning counts
FLOPs only by running a `example_input_array`, which these models do not set); here it gives
the FLOPs of one training batch instead, the count `Throughput` already made (callbacks.py).
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import (
    ModelSummary,
    RichModelSummary,
    RichProgressBar,
    TQDMProgressBar,
)
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.utilities.model_summary import get_human_readable_count
from lightning.pytorch.utilities.model_summary.model_summary import get_formatted_model_size

# Lightning's logger for the plain summary, so that its log settings apply to this one too.
summary_log = logging.getLogger(ModelSummary.__module__)


def counts_steps(trainer: L.Trainer) -> bool:
    """A step budget bounds the run: the bar counts steps out of it (epochs tell nothing on an
    endless stream, and a resumed run's batch index is not its step)."""
    return trainer.max_steps > 0


def step_description(bar: RichProgressBar | TQDMProgressBar, trainer: L.Trainer) -> str:
    """`Training` on an endless stream (one epoch that never ends, so no epoch number), else
    the epoch without Lightning's `/max_epochs - 1` (which reads `/-2` for `max_epochs: -1`)."""
    if math.isinf(trainer.num_training_batches):
        return bar.train_description
    return f"Epoch {trainer.current_epoch}"


class _CountsSteps:
    """Lightning's bars show `batch_idx + 1`; a step-based run shows the step count instead."""

    # the bars count global_step, not the batch index of the epoch (wrong after a resume)
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        index = trainer.global_step - 1 if counts_steps(trainer) else batch_idx
        super().on_train_batch_end(trainer, pl_module, outputs, batch, index)


# Lightning glue: changes: the Rich bar's total and position (steps of max_steps, not batches of an epoch)
class StepRichProgressBar(_CountsSteps, RichProgressBar):
    """Lightning's Rich bar whose training bar shows `global_step/max_steps`."""

    # max_steps, not the epoch's batches (endless on a stream)
    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps if counts_steps(self.trainer) else super().total_train_batches

    # a resumed run's bar is made at train start, at the step reached
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        # A resumed run gets no on_train_epoch_start (it restarts mid-epoch): without this,
        # Lightning would make the bar at the first batch, with its epoch description.
        self._show_steps(trainer)

    # no reset to `Epoch 0/-2` at each epoch
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if counts_steps(trainer):
            self._show_steps(trainer)  # not Lightning's reset: it would draw `Epoch 0/-2` first
        else:
            super().on_train_epoch_start(trainer, pl_module)

    def _show_steps(self, trainer: L.Trainer) -> None:
        if self.is_disabled or self.progress is None or not counts_steps(trainer):
            return
        # Padded to the validation bar's description, as Lightning does, so the bars line up.
        description = f"{step_description(self, trainer):{len(self.validation_description)}}"
        if self.theme.description:
            description = f"[{self.theme.description}]{description}"
        if self.train_progress_bar_id is None:
            self.train_progress_bar_id = self.progress.add_task(
                description, total=trainer.max_steps, completed=trainer.global_step
            )
        else:  # a reset, not an update: the steps already done are no speed sample
            self.progress.reset(
                self.train_progress_bar_id,
                total=trainer.max_steps,
                completed=trainer.global_step,
                description=description,
                visible=True,
            )
        self.refresh()


# Lightning glue: changes: the same for the TQDM bar
class StepTQDMProgressBar(_CountsSteps, TQDMProgressBar):
    """Lightning's TQDM bar whose training bar shows `global_step/max_steps`."""

    # max_steps, not the epoch's batches
    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps if counts_steps(self.trainer) else super().total_train_batches

    # the bar starts at the step reached (no `0/?`, no burst of speed)
    def init_train_tqdm(self) -> Tqdm:
        trainer = self.trainer
        if not counts_steps(trainer):
            return super().init_train_tqdm()
        # Lightning's bar, made at the step reached: it draws itself at once, and tqdm's rate
        # counts from `initial`, so a resumed run shows neither `0/?` nor a burst of speed.
        return Tqdm(
            desc=step_description(self, trainer),
            initial=trainer.global_step,
            total=trainer.max_steps,
            position=2 * self.process_position,
            disable=self.is_disabled,
            leave=True,
            dynamic_ncols=True,
            file=sys.stdout,
            smoothing=0,
            bar_format=self.BAR_FORMAT,
        )

    # no restart at 0 of each epoch
    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if not counts_steps(trainer):
            super().on_train_epoch_start(trainer, *args)
        elif self.train_progress_bar is not None:
            # The bar made at train start goes on (Lightning's would restart it at 0 of the
            # epoch); only the description can change (a finite loader's epoch number).
            self.train_progress_bar.set_description(step_description(self, trainer), refresh=False)


class _SummaryWithoutZeroFlops:
    """The summary table without its FLOPs column and `Total FLOPs` line when Lightning counted
    none (no `example_input_array`: every count is 0), plus the FLOPs of one training batch
    when known. A model with an example input keeps Lightning's table as it is."""

    flops_per_batch: int | None = None
    micro_batches = 1  # a split batch (training/memory.py): the count is a micro-batch's

    # reads Throughput's FLOPs count before Lightning prints the summary
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Throughput's count (forward and backward, one device), made at setup: before this.
        self.flops_per_batch = getattr(pl_module, "flops_per_batch", None)
        self.micro_batches = getattr(trainer.datamodule, "micro_batches", 1)
        super().on_fit_start(trainer, pl_module)  # type: ignore[misc]

    # Lightning declares `summarize` static but calls it as self.summarize: bound here, it can
    # read the count above.
    # no `Total FLOPs: 0` when Lightning counted none; the FLOPs per batch instead
    def summarize(
        self,
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        if total_flops:
            super().summarize(  # type: ignore[misc]
                summary_data, total_parameters, trainable_parameters, model_size,
                total_training_modes, total_flops, **summarize_kwargs,
            )  # fmt: skip
            return
        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        totals = [
            ("Trainable params", get_human_readable_count(trainable_parameters)),
            ("Non-trainable params", get_human_readable_count(total_parameters - trainable_parameters)),
            ("Total params", get_human_readable_count(total_parameters)),
            ("Total estimated model params size (MB)", get_formatted_model_size(model_size)),
            ("Modules in train mode", str(total_training_modes["train"])),
            ("Modules in eval mode", str(total_training_modes["eval"])),
        ]  # fmt: skip
        if self.flops_per_batch:
            flops = get_human_readable_count(self.flops_per_batch)
            what = "micro-batch" if self.micro_batches > 1 else "training batch"
            totals.append((f"FLOPs per {what} (forward + backward)", flops))
        self.render(columns, totals, **summarize_kwargs)

    def render(
        self, columns: list[tuple[str, list[str]]], totals: list[tuple[str, str]], **kwargs: Any
    ) -> None:
        raise NotImplementedError


# Lightning glue: changes: the Rich model summary's FLOPs lines
class FlopsRichModelSummary(_SummaryWithoutZeroFlops, RichModelSummary):
    """Lightning's Rich summary, in its style, without the zero FLOPs."""

    def render(
        self, columns: list[tuple[str, list[str]]], totals: list[tuple[str, str]], **kwargs: Any
    ) -> None:
        from rich import get_console
        from rich.table import Table

        table = Table(header_style=kwargs.get("header_style", "bold magenta"))
        for name, _ in columns:
            numbers = name in ("Params", "Params per Device", "In sizes", "Out sizes")
            table.add_column(
                name,
                justify="right" if numbers else "left",
                style="dim" if name == " " else None,
                no_wrap=name == "Name",
            )
        for row in zip(*(values for _, values in columns), strict=True):
            table.add_row(*row)
        grid = Table.grid(expand=True)
        grid.add_column()
        for label, value in totals:
            grid.add_row(f"[bold]{label}[/]: {value}")
        console = get_console()
        console.print(table)
        console.print(grid)


# Lightning glue: changes: the plain model summary's FLOPs lines
class FlopsModelSummary(_SummaryWithoutZeroFlops, ModelSummary):
    """Lightning's plain-text summary, in its layout, without the zero FLOPs."""

    def render(
        self, columns: list[tuple[str, list[str]]], totals: list[tuple[str, str]], **kwargs: Any
    ) -> None:
        widths = [max(len(name), *map(len, values)) for name, values in columns]
        header = " | ".join(f"{name:<{w}}" for (name, _), w in zip(columns, widths, strict=True))
        rows = [
            " | ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=True))
            for row in zip(*(values for _, values in columns), strict=True)
        ]
        rule = "-" * len(header)
        lines = [header, rule, *rows, rule, *(f"{value:<10} {label}" for label, value in totals)]
        summary_log.info("\n" + "\n".join(lines))


# Lightning's default kind -> the same kind, told about steps and FLOPs.
OUR_KINDS: dict[type, type] = {
    RichProgressBar: StepRichProgressBar,
    TQDMProgressBar: StepTQDMProgressBar,
    RichModelSummary: FlopsRichModelSummary,
    ModelSummary: FlopsModelSummary,
}


def swap_default_console(trainer: L.Trainer, named: list[Any]) -> None:
    """Swap the progress bar and model summary Lightning added by default for the same kind
    here (Rich or not, as Lightning chose). One the config names (in `named`, the config's
    callbacks) is the user's choice and stays."""
    for i, callback in enumerate(trainer.callbacks):
        kind = OUR_KINDS.get(type(callback))
        if kind is not None and not any(callback is c for c in named):
            trainer.callbacks[i] = kind()
