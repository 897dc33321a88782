"""What Lightning does not ship: peak memory per phase, and the test metrics as a JSON file."""

from __future__ import annotations

import contextlib
import platform
import resource
from pathlib import Path

import lightning as L
import torch

from bdh_pl.fileio import write_json


def memory_kind(device: torch.device) -> str:
    return "cuda" if device.type == "cuda" else "cpu_rss"


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: CUDA's allocator counter, or the process RSS high-water mark (Linux)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    # Resets VmHWM to the current RSS; elsewhere the peak covers the whole process lifetime.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb(device: torch.device) -> float:
    """CUDA max allocated on GPU; peak resident set size of this process on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if platform.system() == "Darwin" else peak / 1024


class PeakMemory(L.Callback):
    """Logs `train/peak_memory_mb`, `val/peak_memory_mb`, `test/peak_memory_mb`, each phase
    measured from its own start (training's peak excludes the validation in between)."""

    def __init__(self) -> None:
        self.train_peak = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        reset_peak_memory(pl_module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train_peak = max(self.train_peak, peak_memory_mb(pl_module.device))
        pl_module.log("train/peak_memory_mb", self.train_peak)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if trainer.training:
            self.train_peak = max(self.train_peak, peak_memory_mb(pl_module.device))
        reset_peak_memory(pl_module.device)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("val/peak_memory_mb", peak_memory_mb(pl_module.device))
        reset_peak_memory(pl_module.device)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        reset_peak_memory(pl_module.device)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("test/peak_memory_mb", peak_memory_mb(pl_module.device))


class TestMetricsWriter(L.Callback):
    """Writes `test_metrics.json` in the run's log dir: the test/* metrics and what produced
    them (checkpoint, dataset, tokenizer, parameter counts, device, memory kind)."""

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log_dir = trainer.log_dir or trainer.default_root_dir  # a collective: all ranks ask
        if not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule
        total, non_embedding = pl_module.parameter_counts
        record = {
            "metrics": {
                k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")
            },
            "checkpoint": trainer.ckpt_path,
            "model": type(pl_module).__name__,
            "dataset": getattr(datamodule, "dataset_name", None),
            "tokenizer": getattr(datamodule, "tokenizer_name", None),
            "block_size": getattr(datamodule, "block_size", None),
            "eval_stride": getattr(datamodule, "eval_stride", None)
            or getattr(datamodule, "block_size", None),
            "params": total,
            "non_embedding_params": non_embedding,
            "device": _device_name(pl_module.device),
            "memory_kind": memory_kind(pl_module.device),
            "precision": str(trainer.precision),
            "world_size": trainer.world_size,
        }
        write_json(Path(log_dir) / "test_metrics.json", record)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
