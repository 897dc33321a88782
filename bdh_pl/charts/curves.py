"""A run folder's logged curves (metrics.csv, else TensorBoard events) and its tokens per
optimizer step: Lightning logs a row at step s after s + 1 optimizer steps, each of
batch_size x block_size x accumulate_grad_batches x devices tokens."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import yaml

from bdh_pl.errors import UserError
from bdh_pl.step_tokens import tokens_per_step

Curve = list[tuple[int, float]]  # (logged step, value)


# --- reading a run ---------------------------------------------------------------------------


def find_log_dir(run: str | Path) -> Path:
    """The folder holding a run's logs: the given one, or its newest version_N."""
    path = Path(run)
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        raise UserError(f"no run at {run}: give a log folder such as lightning_logs/version_0")
    if not _has_logs(path):
        versions = sorted(
            (p for p in path.glob("version_*") if _has_logs(p)),
            key=lambda p: int(p.name.split("_")[-1]) if p.name[8:].isdigit() else -1,
        )
        if not versions:
            raise UserError(f"{run} has no metrics.csv or TensorBoard event file")
        path = versions[-1]
    return path


def _has_logs(path: Path) -> bool:
    return (path / "metrics.csv").is_file() or any(path.glob("events.out.tfevents.*"))


def read_metrics(run: str | Path) -> dict[str, Curve]:
    """Every logged metric of a run as {name: [(step, value), ...]}, sorted by step."""
    log_dir = find_log_dir(run)
    csv_path = log_dir / "metrics.csv"
    curves = _read_csv(csv_path) if csv_path.is_file() else _read_events(log_dir)
    return {name: sorted(points) for name, points in curves.items()}


def _read_csv(path: Path) -> dict[str, Curve]:
    curves: dict[str, Curve] = {}
    line = 1
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for row in reader:
                line = reader.line_num
                step = row.get("step")
                if not step:
                    continue
                for name, value in row.items():
                    if name not in ("step", "epoch") and value not in (None, ""):
                        curves.setdefault(name, []).append((int(float(step)), float(value)))
    except (UnicodeDecodeError, ValueError, TypeError, csv.Error) as err:
        raise UserError(
            f"{path} is not a metrics CSV written by a run (line {line}: {err}); give a run's "
            "folder, or delete the damaged file to plot from its TensorBoard events"
        ) from None
    return curves


def _read_events(log_dir: Path) -> dict[str, Curve]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, Curve] = {}
    for events in sorted(log_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})  # 0: keep all
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            curves.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return curves


def run_tokens_per_step(run: str | Path) -> int | None:
    """`tokens_per_step` of a run folder's config.yaml (batch and block from its hparams.yaml
    where the config lacks them); None when the run does not say (curves by steps only)."""
    log_dir = find_log_dir(run)
    hparams = _load_yaml(log_dir / "hparams.yaml")
    config = _load_yaml(log_dir / "config.yaml")
    data = dict((config.get("data") or {}).get("init_args") or {})
    for key in ("batch_size", "block_size"):
        data[key] = hparams.get(key) or data.get(key)
    return tokens_per_step(config | {"data": {"init_args": data}})


def _load_yaml(path: Path) -> dict:
    if not path.is_file():
        return {}
    with open(path) as f:
        return yaml.safe_load(f) or {}


def steps_done(curve: Curve) -> list[int]:
    return [step + 1 for step, _ in curve]  # Lightning logs step s after s + 1 steps


def tokens_seen(curve: Curve, per_step: int) -> list[int]:
    return [n * per_step for n in steps_done(curve)]


def fit_seconds(curves: dict[str, Curve], steps: list[int]) -> list[float] | None:
    """Wall-clock seconds into the fit after `steps` optimizer steps (each just after a
    validation): training time (Lightning's train/time, validation excluded) interpolated at
    the step, plus the validation passes so far (validate/time, one value per pass)."""
    train_time = curves.get("train/time")
    if not train_time:
        return None
    seconds = np.interp(steps, [s + 1 for s, _ in train_time], [v for _, v in train_time])
    passes = [v for _, v in curves.get("validate/time", [])]
    if len(passes) == len(steps):
        seconds = seconds + np.cumsum(passes)
    return [float(x) for x in seconds]
