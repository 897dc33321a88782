"""Test-only fault injection, never imported by bdh-pl itself: Python loads this file at start
in a process whose PYTHONPATH names this folder (tests/helpers.py: slow_saves). Each checkpoint
save then pauses BDH_PL_TEST_SAVE_DELAY seconds between writing its temp file and renaming it,
so a test can kill a real run in the middle of a save. The save path itself is untouched: the
pause wraps the `atomic_write` that training/glue/checkpoint_io.py saves through, once Python
imports that module (not before: the process does not import torch any earlier for it)."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import time
from collections.abc import Iterator
from types import ModuleType

TARGET = "bdh_pl.training.glue.checkpoint_io"
DELAY_ENV = "BDH_PL_TEST_SAVE_DELAY"


def pause_saves(module: ModuleType, seconds: float) -> None:
    """The module's `atomic_write`, pausing after the body wrote the temp file (flushed, so
    its size is on disk) and before the rename."""
    real = module.atomic_write

    @contextlib.contextmanager
    def paused_atomic_write(path: str | os.PathLike) -> Iterator:
        with real(path) as f:
            yield f
            f.flush()
            time.sleep(seconds)

    module.atomic_write = paused_atomic_write


class PauseOnImport(importlib.abc.MetaPathFinder):
    """Finds TARGET as Python would, and applies pause_saves once its code has run."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def find_spec(self, name: str, path=None, target=None):
        if name != TARGET:
            return None
        if self in sys.meta_path:  # once; and find_spec below must not find this finder
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            raise ImportError(f"{TARGET} is gone: point tests/fault_injection at the save path")
        run_module = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run_module(module)
            pause_saves(module, self.seconds)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if float(os.environ.get(DELAY_ENV) or 0) > 0:
    sys.meta_path.insert(0, PauseOnImport(float(os.environ[DELAY_ENV])))
