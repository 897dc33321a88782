"""Saving checkpoints so that nothing is lost: every file atomically in its own folder, and
`last.ckpt` at every validation, at the end of training and on pre-emption."""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from bdh_pl.errors import UserError
from bdh_pl.fileio import atomic_write
from bdh_pl.training.loading import checkpoint_fields

LAST = "last.ckpt"


# Lightning glue: changes: how a checkpoint file is written; why: a kill never tears the previous one
class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temp file in the checkpoint's own folder, fsync, rename.

    Lightning's default writes through fsspec, whose temp file lives in $TMPDIR: when that is
    another filesystem the final move is a copy, and a kill during it leaves a truncated file
    in place of the previous good one."""

    # Lightning's fsspec write -> temp file in the same folder, fsync, rename
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None or "://" in str(path):  # remote: fsspec's own way
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        with atomic_write(path) as f:
            torch.save(checkpoint, f)


# Lightning glue: changes: when last.ckpt is written; why: a resume continues from the last validation, not the best
class LastCheckpoint(ModelCheckpoint):
    """`last.ckpt`, whatever the score: after every validation, at the end of training, and
    when the run is pre-empted (SIGTERM) or interrupted (Ctrl-C).

    A monitored ModelCheckpoint(save_last=True) writes last.ckpt only in a step where its
    top-k improved, so once the validation loss stops improving it stays at the best step and
    a resume would silently retrain everything after it."""

    def __init__(self) -> None:
        super().__init__(filename="last", monitor=None, save_top_k=1, enable_version_counter=False)

    # its own key in the checkpoint's callbacks state, apart from the config's ModelCheckpoint
    @property
    def state_key(self) -> str:
        return type(self).__name__  # never confused with a ModelCheckpoint of the config

    # no save every n steps: at validations only
    def on_train_batch_end(self, *args, **kwargs) -> None:
        pass  # saves at validations only, not every n steps

    # no save at epoch ends (training is step-based)
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    # last.ckpt at every validation, whatever the score
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write_last(trainer)

    # and at the end of training
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write_last(trainer)

    # and on a stop request between steps (SIGTERM, first Ctrl-C)
    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # Only at a step boundary (SIGTERM, or a first Ctrl-C, which Trainer turns into the
        # same stop). Not on other errors: a diverged step must leave the last good checkpoint
        # as it was. Not on KeyboardInterrupt (a second Ctrl-C): it lands anywhere in a step,
        # and Lightning's loops resume from such a state one step out of phase.
        if isinstance(exception, SIGTERMException):
            self.write_last(trainer)

    def write_last(self, trainer: L.Trainer) -> None:
        if self._should_skip_saving_checkpoint(trainer):
            return
        for logger in trainer.loggers:
            logger.save()  # the curves on disk reach at least as far as the checkpoint
        self.last_model_path = self.best_model_path = os.path.join(self.dirpath, LAST)
        self._save_checkpoint(trainer, self.last_model_path)


def saved_step(path: str | os.PathLike) -> int | None:
    """The global step stored in a checkpoint (the weights are not read); None if unreadable."""
    return (checkpoint_fields(path) or {}).get("global_step")


def check_lanes(checkpoint: dict, path: str, datamodule, world_size: int) -> None:
    """A `data.train_mode stream` run resumes only onto the lanes it was cut into: their
    number (batch size x devices) decides which text each row of the carried state has read,
    so another batch size would continue every row from the wrong text (or fail on shapes)."""
    carried = checkpoint.get("carried_state")
    if carried is None or getattr(datamodule, "train_mode", None) != "stream":
        return
    devices, batch = int(carried["kv"].size(0)), int(carried["kv"].size(3))
    now = int(datamodule.batch_size)
    if (devices, batch) != (world_size, now):
        raise UserError(
            f"{path} carries the state of {devices * batch} stream lanes (data.batch_size "
            f"{batch} x {devices} device(s)), this run would cut {now * world_size} (batch_size "
            f"{now} x {world_size}): resume with --data.init_args.batch_size {batch} on "
            f"{devices} device(s), or start a new run"
        )
