"""The Trainer: Lightning's, but a stop request (SIGTERM or Ctrl-C) takes effect only between
optimizer steps, so that a resumed run is exactly the uninterrupted one."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn


# Lightning glue: changes: when a stop request (SIGTERM, Ctrl-C) ends fit/validate/test; why: exact resumes
class Trainer(L.Trainer):
    """Lightning's Trainer, but a stop request (SIGTERM, or Ctrl-C) takes effect only between
    steps, never inside a step or a validation.

    SIGTERM: Lightning's own check cuts a validation short at its next batch, so the resumed
    run would never see it (no metrics row, best.ckpt and EarlyStopping not told) and would
    differ from an uninterrupted run. The validation finishes, with its checkpoints and early
    stopping; then training stops as Lightning does (LastCheckpoint saves), or, when early
    stopping ended the run, the run ends as it would have.

    Ctrl-C (SIGINT): Python raises KeyboardInterrupt wherever the program is, mid-forward or
    mid-validation, and a checkpoint of that moment records a step begun but not finished,
    which Lightning's loops resume one step out of phase. So the first Ctrl-C is a stop
    request like SIGTERM (exit 130 instead of 143); a second one stops at once and saves
    nothing (the last validation's last.ckpt stays, a resume from it is exact).

    Nor does a stop request take effect between the micro-batches of one optimizer step
    (gradient accumulation): the step's first micro-batches would be lost on resume."""

    ctrl_c = 0  # Ctrl-Cs received during the current fit/validate/test

    # Lightning asks this at every batch: answer no inside a step, a validation or an accumulation
    @property
    def received_sigterm(self) -> bool:
        fitting = self.state.fn == TrainerFn.FITTING and not self.sanity_checking
        if fitting and (self.validating or self.fit_loop.epoch_loop.done):
            return False  # asked again at the end of the step, or the run is over anyway
        if fitting and self.training and self.fit_loop._should_accumulate():
            return False  # mid-accumulation: the step's first batches would be lost on resume
        return super().received_sigterm or self.ctrl_c > 0

    # Lightning's fit, with a first Ctrl-C counted as a stop request (not a KeyboardInterrupt)
    def fit(self, *args: Any, **kwargs: Any) -> None:
        with self.ctrl_c_stops_between_steps():
            return super().fit(*args, **kwargs)

    # the same for validate
    def validate(self, *args: Any, **kwargs: Any) -> Any:
        with self.ctrl_c_stops_between_steps():
            return super().validate(*args, **kwargs)

    # the same for test
    def test(self, *args: Any, **kwargs: Any) -> Any:
        with self.ctrl_c_stops_between_steps():
            return super().test(*args, **kwargs)

    @contextlib.contextmanager
    def ctrl_c_stops_between_steps(self) -> Iterator[None]:
        """SIGINT counted (first) or raised (second) while Lightning runs; the previous
        handler back afterwards (Lightning leaves SIGINT ignored after a KeyboardInterrupt)."""
        self.ctrl_c = 0
        # Only the main thread may set a handler; and a process started to ignore SIGINT
        # (in the background of a shell script) keeps ignoring it.
        main_thread = threading.current_thread() is threading.main_thread()
        if not main_thread or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            yield
            return
        previous = signal.signal(signal.SIGINT, self._on_ctrl_c)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _on_ctrl_c(self, signum: int, frame: Any) -> None:
        self.ctrl_c += 1
        if self.ctrl_c > 1:
            raise KeyboardInterrupt
        if self.state.fn == TrainerFn.FITTING:
            what = "after this step and its validation, saving last.ckpt; again: at once, unsaved"
        else:
            what = "at the next batch; again: at once"
        # os.write: a print here could land inside another print (a reentrant-call error).
        os.write(2, f"\nCtrl-C: stopping {what}\n".encode())
