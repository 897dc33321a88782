"""Training tokens per optimizer step: the formula every budget and every tokens axis rests on,
in one place for the benchmark (budgets, records) and the charts (a run folder's curves)."""

from __future__ import annotations

from typing import Any


def tokens_per_step(config: dict[str, Any]) -> int | None:
    """Training tokens per optimizer step of a Lightning config (a run's config.yaml, or a
    benchmark's resolved one): batch x block x gradient accumulation x devices ("auto"
    devices count as one: set trainer.devices to budget multi-device runs). None when the
    config does not give the batch and block size."""
    data = (config.get("data") or {}).get("init_args") or {}
    trainer = config.get("trainer") or {}
    if not data.get("batch_size") or not data.get("block_size"):
        return None
    devices = trainer.get("devices")
    world = (
        len(devices) if isinstance(devices, list) else devices if isinstance(devices, int) else 1
    )
    world *= trainer.get("num_nodes") or 1
    accumulate = trainer.get("accumulate_grad_batches") or 1
    return int(data["batch_size"]) * int(data["block_size"]) * int(accumulate) * max(1, world)
