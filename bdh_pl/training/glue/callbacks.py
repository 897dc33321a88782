"""Callbacks of every run: peak memory per phase, the test metrics as a JSON file (what Lightning
does not ship), and Lightning's throughput meter fed with this project's batches and FLOPs."""

from __future__ import annotations

import contextlib
import platform
import resource
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.trainer.states import RunningStage

from bdh_pl.fileio import write_json
from bdh_pl.training.flops import flops_per_token, training_flops_per_token


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


# Lightning glue: adds (no Lightning behaviour changed): peak memory per phase, which Lightning does not log
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


# Lightning glue: changes: Lightning skips the validation after max_steps when it is off the interval
class ValidateFinalStep(L.Callback):
    """Validates after the run's last step (trainer.max_steps) as well as every
    val_check_interval steps: a run whose length is not a multiple of the interval would end
    unvalidated, its best checkpoint and its curve missing the end of training. Lightning
    validates when a stop is requested; this requests one at max_steps."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


# Lightning glue: adds: test_metrics.json (Lightning keeps test metrics in memory only)
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
            # "stream": the split read as one stream, the state carried (one piece per rank)
            "eval_mode": getattr(datamodule, "eval_mode", "windows"),
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


def batch_windows(batch: dict) -> int:
    return batch["input_ids"].shape[0]


def batch_tokens(batch: dict) -> int:
    return batch["targets"].numel()


# Lightning glue: changes: ThroughputMonitor's inputs (this project's batches, FLOPs) and adds whole-run tokens/s, MFU
class Throughput(ThroughputMonitor):
    """Lightning's ThroughputMonitor, the one training-speed meter of every run. Lightning logs
    the running `train/time` (validation excluded), `train/lengths` (tokens, this device) and,
    over its window of batches, `train/device/items_per_sec` and `train/device/mfu`; this adds,
    over the whole run so far, `train/tokens_per_sec` (all devices) and `train/mfu` (achieved
    FLOP/s per device over Lightning's `get_available_flops` for the device and precision;
    not logged on CPUs and unknown GPUs).

    Args:
        flops_per_batch: FLOPs of one training batch on one device (forward and backward);
            default: counted at setup on one window (bdh_pl.training.flops.flops_per_token).
        window_size: batches in Lightning's moving window.
    """

    def __init__(self, flops_per_batch: int | None = None, window_size: int = 20) -> None:
        super().__init__(batch_windows, batch_tokens, window_size=window_size)
        self.flops_per_batch = flops_per_batch

    # Lightning's setup, then the FLOPs per batch counted once, before the model is compiled
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        data = trainer.datamodule
        if stage == "fit" and self.flops_per_batch is None and hasattr(data, "block_size"):
            # Before configure_model: the plain network (not compiled), on the CPU or meta.
            per_token = flops_per_token(pl_module.network, data.block_size)
            # per batch the loader gives: a micro-batch when the batch is split
            windows = data.batch_size // getattr(data, "micro_batches", 1)
            self.flops_per_batch = round(per_token["forward_backward"] * data.block_size * windows)
            # the project's compute rule (train/flops, the HParams table): 3 x the reference forward
            pl_module.flops_per_token = training_flops_per_token(
                pl_module.network, data.block_size
            )["forward"]
        pl_module.flops_per_batch = self.flops_per_batch  # where ThroughputMonitor reads it

    # Lightning's windowed meters, then the whole run's tokens/s and MFU
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if not trainer.is_global_zero:  # the meter runs on rank zero only
            return
        totals = self._throughputs[RunningStage.TRAINING].compute()
        seconds = totals["time"]
        if seconds <= 0:
            return
        pl_module.log(
            "train/tokens_per_sec", totals["lengths"] * trainer.world_size / seconds,
            rank_zero_only=True,
        )  # fmt: skip
        if self.flops_per_batch and self.available_flops:
            achieved = self.flops_per_batch * totals["batches"] / seconds
            pl_module.log("train/mfu", achieved / self.available_flops, rank_zero_only=True)
