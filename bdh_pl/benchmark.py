"""The benchmark matrix: every model trained on the same data for the same token budget, then
tested on its best checkpoint, in one command.

python -m bdh_pl benchmark --config configs/benchmark/smoke.yaml

writes results/{experiment}/: metrics.json and metrics.csv (one record per model), summary.md
(a Markdown table), charts/*.png, benchmark.yaml (the benchmark config, resolved), configs/
(the full Lightning config each model ran with) and runs/{model}/ (its Lightning logs).

A benchmark config (see configs/benchmark/*.yaml):

    experiment: smoke                   # results go to {output_dir}/{experiment}/
    output_dir: results                 # optional
    dataset: configs/shakespeare.yaml   # the data (and trainer) config: a YAML or a list
    trainer: {...}                      # optional, for every model, applied after the model's
    data: {init_args: {...}}            #   own YAMLs: all models see the same data and steps
    model: {init_args: {...}}           #   and the same recipe (learning rate, schedule)
    max_tokens: 1000000                 # default budget for every model (or max_steps)
    env: {OMP_NUM_THREADS: 1}           # optional environment of the fit/test subprocesses
    models:
      - name: bdh-tiny                  # label; default: the registry name or the YAML's stem
        config: bdh                     # registry name, model YAML, or a list of them
        init_args: {n_layer: 2}         # optional model.init_args, applied last
        max_tokens: none                # optional budget; none: zero-shot, test only

Each model is two subprocesses, `python -m bdh_pl fit` then `python -m bdh_pl test`, given one
resolved config file: a crash or an out-of-memory ends that model only (its record says why),
and each process measures its own memory peak.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import copy
import csv
import io
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import yaml
from matplotlib.ticker import EngFormatter

from bdh_pl.errors import UserError
from bdh_pl.fileio import atomic_write_text, write_json
from bdh_pl.tools import plot as plotting

# The keys every record has (None where a model did not get that far), in table order.
RECORD_KEYS = [
    "model", "status", "failed_stage", "error", "model_class", "dataset", "tokenizer",
    "block_size", "params", "non_embedding_params", "train_steps", "train_tokens",
    "tokens_per_step", "best_step", "best_val_loss", "best_val_bpb", "test_loss", "test_ppl",
    "test_bpb", "test_byte_ppl", "test_word_ppl", "test_tokens", "train_tokens_per_sec",
    "eval_tokens_per_sec", "flops_per_token", "train_flops_per_token", "mfu", "peak_memory_mb",
    "train_peak_memory_mb", "test_peak_memory_mb", "memory_kind", "device", "precision",
    "checkpoint", "config", "fit_run", "test_run", "wall_time_s", "git_commit", "git_dirty",
    "torch_version", "lightning_version",
]  # fmt: skip
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
ZERO_SHOT = "none"
SHARED = ("trainer", "data", "model")


# --- the benchmark config --------------------------------------------------------------------


@dataclass
class ModelEntry:
    name: str
    configs: list[str]  # model YAMLs, applied in order
    init_args: dict[str, Any] = field(default_factory=dict)
    max_steps: int | None = None
    max_tokens: int | None = None  # both None: zero-shot

    @property
    def trains(self) -> bool:
        return self.max_steps is not None or self.max_tokens is not None


@dataclass
class Benchmark:
    experiment: str
    dataset: list[str]
    models: list[ModelEntry]
    output_dir: str = "results"
    shared: dict[str, Any] = field(default_factory=dict)  # trainer/data/model for every model
    env: dict[str, str] = field(default_factory=dict)  # for the fit/test subprocesses

    @property
    def out_dir(self) -> Path:
        return Path(self.output_dir) / self.experiment


def load_benchmark(path: str | Path) -> Benchmark:
    """Read and check a benchmark YAML; every problem is a UserError naming the key."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"benchmark config {path} not found")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping with experiment, dataset and models")
    known = {"experiment", "output_dir", "dataset", "trainer", "data", "model", "models"}
    known |= {"max_steps", "max_tokens", "env"}
    if unknown := set(raw) - known:
        raise UserError(f"{path}: unknown keys {sorted(unknown)}; expected {sorted(known)}")
    experiment = str(raw.get("experiment") or "")
    if not NAME.match(experiment):
        raise UserError(f"{path}: experiment must be a plain name (letters, digits, . _ -)")
    dataset = _paths(raw.get("dataset"), f"{path}: dataset")
    if not dataset:
        raise UserError(f"{path}: dataset must name the data config, e.g. configs/shakespeare.yaml")
    models = raw.get("models")
    if not isinstance(models, list) or not models:
        raise UserError(f"{path}: models must be a non-empty list")
    default_budget = _budget(raw, str(path))
    entries = [_model_entry(m, i, default_budget, path) for i, m in enumerate(models)]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise UserError(f"{path}: model names must be unique, got {names} (set `name:`)")
    for key in SHARED:
        if not isinstance(raw.get(key) or {}, dict):
            raise UserError(f"{path}: {key} must be a mapping like a Lightning config's {key}:")
    return Benchmark(
        experiment=experiment,
        dataset=dataset,
        models=entries,
        output_dir=str(raw.get("output_dir") or "results"),
        shared={k: raw[k] for k in SHARED if raw.get(k)},
        env=_env(raw.get("env"), str(path)),
    )


def _env(value, where: str) -> dict[str, str]:
    if not isinstance(value or {}, dict) or any(
        not isinstance(v, str | int | float) for v in (value or {}).values()
    ):
        raise UserError(f"{where}: env must map variable names to values, e.g. OMP_NUM_THREADS: 1")
    return {str(k): str(v) for k, v in (value or {}).items()}


def _paths(value, what: str) -> list[str]:
    values = [value] if isinstance(value, str) else value or []
    if not isinstance(values, list):
        raise UserError(f"{what} must be a YAML path or a list of them")
    for v in values:
        if not Path(v).is_file():
            raise UserError(f"{what}: {v} not found")
    return [str(v) for v in values]


def _budget(raw: dict, where: str) -> tuple[int | None, int | None] | None:
    """(max_steps, max_tokens); (None, None) is zero-shot; None if not given."""
    given = [k for k in ("max_steps", "max_tokens") if k in raw]
    if len(given) > 1:
        raise UserError(f"{where}: give max_steps or max_tokens, not both")
    if not given:
        return None
    key, value = given[0], raw[given[0]]
    if value is None or str(value).lower() == ZERO_SHOT:
        return (None, None)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{where}: {key} must be a positive integer or none, got {value!r}")
    return (value, None) if key == "max_steps" else (None, value)


def _model_entry(raw, index: int, default_budget, path: Path) -> ModelEntry:
    where = f"{path}: models[{index}]"
    if isinstance(raw, str):
        raw = {"config": raw}
    if not isinstance(raw, dict) or "config" not in raw:
        raise UserError(f"{where} must be a registry name or a mapping with `config:`")
    if unknown := set(raw) - {"name", "config", "init_args", "max_steps", "max_tokens"}:
        raise UserError(f"{where}: unknown keys {sorted(unknown)}")
    refs = raw["config"] if isinstance(raw["config"], list) else [raw["config"]]
    configs = [model_config(str(ref), where) for ref in refs]
    name = str(raw.get("name") or Path(configs[-1]).stem)
    if not NAME.match(name):
        raise UserError(f"{where}: name {name!r} must be letters, digits, . _ - only")
    init_args = raw.get("init_args") or {}
    if not isinstance(init_args, dict):
        raise UserError(f"{where}: init_args must be a mapping")
    budget = _budget(raw, where) or default_budget
    if budget is None:
        raise UserError(f"{where}: needs a budget: max_steps, max_tokens, or max_tokens: none")
    return ModelEntry(name, configs, init_args, *budget)


def model_config(ref: str, where: str = "model") -> str:
    """A model YAML path, or a registry name (`bdh`, `gpt2-scratch`, ...) mapped to its YAML."""
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        if not Path(ref).is_file():
            raise UserError(f"{where}: model config {ref} not found")
        return ref
    try:
        from bdh_pl.training.registry import model_config_path
    except ImportError:  # before the registry: the overlays still follow its layout
        model_config_path = None
    if model_config_path is not None:
        path = model_config_path(ref)  # UserError for an unknown name
    else:
        path = Path(__file__).resolve().parent.parent / "configs" / "model" / f"{ref}.yaml"
    if not path.is_file():
        raise UserError(f"{where}: no model {ref!r} ({path} not found)")
    return _relative(path)


def _relative(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


def resolved_benchmark(bench: Benchmark) -> dict[str, Any]:
    """The benchmark config as run, in its own schema (it runs again as is): defaults filled
    in, registry names replaced by their YAMLs."""
    models = []
    for m in bench.models:
        budget = {"max_steps": m.max_steps} if m.max_steps else {"max_tokens": m.max_tokens}
        models.append({"name": m.name, "config": m.configs, "init_args": m.init_args, **budget})
    return {
        "experiment": bench.experiment,
        "output_dir": bench.output_dir,
        "dataset": bench.dataset,
        **bench.shared,
        **({"env": bench.env} if bench.env else {}),
        "models": models,
    }


# --- one model's Lightning config ------------------------------------------------------------


def lightning_config(bench: Benchmark, entry: ModelEntry) -> dict[str, Any]:
    """The full config LightningCLI resolves from the layers, in order: the dataset YAMLs, the
    model YAMLs, the benchmark's shared trainer/data/model settings, the entry's init_args."""
    layers = [*bench.dataset, *entry.configs]
    if bench.shared:
        layers.append(yaml.safe_dump(bench.shared))
    if entry.init_args:
        layers.append(yaml.safe_dump({"model": {"init_args": entry.init_args}}))
    args = ["fit", *[a for layer in layers for a in ("--config", layer)], "--print_config"]
    from bdh_pl.cli import run_lightning

    out = io.StringIO()
    with _in_process_cli(out):
        run_lightning(args)  # prints the config and exits
    return yaml.safe_load(out.getvalue())


@contextlib.contextmanager
def _in_process_cli(stdout: io.StringIO):
    """Run LightningCLI in this process: our own argv hidden from it, its output captured, its
    parse errors (an exit, or an ArgumentError) turned into a UserError."""
    err = io.StringIO()
    try:
        with (
            mock.patch.object(sys, "argv", sys.argv[:1]),
            contextlib.redirect_stdout(stdout),
            contextlib.redirect_stderr(err),
        ):
            yield
    except SystemExit as exit_:
        if exit_.code:
            raise UserError(f"invalid config: {_error_line(err.getvalue())}") from None
    except argparse.ArgumentError as error:
        raise UserError(f"invalid config: {_error_line(f'error: {error}')}") from None


def tokens_per_step(config: dict[str, Any]) -> int:
    """Training tokens per optimizer step: batch x block x gradient accumulation x devices
    ("auto" devices count as one: set trainer.devices to budget multi-device runs)."""
    data = config["data"]["init_args"]
    trainer = config["trainer"]
    devices = trainer.get("devices")
    world = (
        len(devices) if isinstance(devices, list) else devices if isinstance(devices, int) else 1
    )
    world *= trainer.get("num_nodes") or 1
    accumulate = trainer.get("accumulate_grad_batches") or 1
    return int(data["batch_size"]) * int(data["block_size"]) * int(accumulate) * max(1, world)


def batch_windows(batch: dict) -> int:
    return batch["input_ids"].shape[0]


def batch_tokens(batch: dict) -> int:
    return batch["targets"].numel()


# Lightning's own throughput meter: its running `train/time` (validation excluded) and
# `train/lengths` (tokens, this device) give the whole run's training tokens/s per device,
# steadier than the per-step `train/tokens_per_sec` samples on a shared machine.
THROUGHPUT = {
    "class_path": "lightning.pytorch.callbacks.ThroughputMonitor",
    "init_args": {
        "batch_size_fn": "bdh_pl.benchmark.batch_windows",
        "length_fn": "bdh_pl.benchmark.batch_tokens",
    },
}


def max_steps_for(entry: ModelEntry, per_step: int) -> int:
    if entry.max_steps is not None:
        return entry.max_steps
    return math.ceil(entry.max_tokens / per_step)


def build_network(config: dict[str, Any]):
    """The LightningModule and DataModule of a resolved config, instantiated here for parameter
    and FLOP counts, the model sized from the data as the CLI's argument links do."""
    from lightning.pytorch.cli import instantiate_class

    try:
        datamodule = instantiate_class((), config["data"])
        model_init = copy.deepcopy(config["model"])
        model_init.setdefault("init_args", {}).update(
            vocab_size=datamodule.vocab_size, block_size=datamodule.block_size
        )
        model = instantiate_class((), model_init)
    except (ImportError, AttributeError, TypeError, ValueError) as err:
        raise UserError(f"cannot build the model: {err!r}") from None
    return model, datamodule


# --- running Lightning -----------------------------------------------------------------------


class StageFailed(Exception):
    """A fit or test subprocess ended with an error; the message is its last error line."""


def run_stage(
    stage: str,
    config_path: Path,
    root: Path,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Path:
    """Run `python -m bdh_pl {stage}` with the config, streaming its progress bar, teeing its
    stderr to {root}/{stage}.log. Returns the version_N folder the run logged to."""
    before = set(root.glob("version_*"))
    cmd = [sys.executable, "-m", "bdh_pl", stage, "--config", str(config_path), *extra]
    root.mkdir(parents=True, exist_ok=True)
    code, tail = _stream(cmd, root / f"{stage}.log", {**os.environ, **(env or {})})
    if code:
        raise StageFailed(_error_line(tail) or f"exit code {code}")
    new = sorted(set(root.glob("version_*")) - before)
    if len(new) != 1:
        raise StageFailed(f"{stage} wrote {len(new)} log folders under {root}, expected one")
    return new[0]


def _stream(cmd: list[str], log_path: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run cmd; its stderr goes to our stderr (Lightning's progress bar) and to the log file.
    Returns the exit code and the end of its stderr."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail: list[str] = []
    with open(log_path, "w") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env)
        while chunk := proc.stderr.read1(1 << 16):
            text = decoder.decode(chunk)
            log.write(text)
            sys.stderr.write(text)
            sys.stderr.flush()
            tail = (tail + [text])[-64:]
        code = proc.wait()
    return code, "".join(tail)


def _error_line(stderr: str) -> str:
    """The one line that says what went wrong: the CLI's `error:` line and what follows it
    (jsonargparse explains on a few lines), else a traceback's last line."""
    lines = [ln.strip() for ln in stderr.replace("\r", "\n").splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith("error:"):
            return " ".join(lines[i : i + 8])[:600]
    for line in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line):
            return line[:600]
    return lines[-1][:600] if lines else ""


def read_checkpoint_state(fit_dir: Path) -> tuple[int | None, Path]:
    """(global step at the end of training, the checkpoint to test): ModelCheckpoint's best
    model when it monitored something, else the last checkpoint."""
    ckpt_dir = fit_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    candidates = [last] if last.is_file() else sorted(ckpt_dir.glob("*.ckpt"))
    if not candidates:
        raise StageFailed(
            f"fit wrote no checkpoint in {ckpt_dir}: the dataset config needs a ModelCheckpoint "
            "callback and a val_check_interval <= max_steps"
        )
    state = torch.load(candidates[-1], map_location="cpu", weights_only=True, mmap=True)
    best = next(
        (
            Path(s["best_model_path"])
            for key, s in state.get("callbacks", {}).items()
            if key.startswith("ModelCheckpoint") and s.get("best_model_path")
        ),
        None,
    )
    return state.get("global_step"), best if best and best.is_file() else candidates[-1]


# --- one model -------------------------------------------------------------------------------


def run_model(bench: Benchmark, entry: ModelEntry, environment: dict[str, Any]) -> dict:
    """Fit, test and measure one model; never raises for a model-specific failure."""
    out = bench.out_dir
    record: dict[str, Any] = dict.fromkeys(RECORD_KEYS)
    record.update(model=entry.name, status="ok", **environment)
    start = time.perf_counter()
    stage = "config"
    try:
        config = lightning_config(bench, entry)
        per_step = tokens_per_step(config)
        root = out / "runs" / entry.name
        shutil.rmtree(root, ignore_errors=True)  # a re-run replaces this model's logs
        config["trainer"]["default_root_dir"] = str(root)
        if entry.trains:
            config["trainer"]["max_steps"] = max_steps_for(entry, per_step)
        config["trainer"]["callbacks"] = [*(config["trainer"].get("callbacks") or []), THROUGHPUT]
        config_path = out / "configs" / f"{entry.name}.yaml"
        atomic_write_text(config_path, yaml.safe_dump(config, sort_keys=False))
        record.update(config=str(config_path), tokens_per_step=per_step)

        stage = "build"
        record.update(_static_figures(config))

        ckpt_args: list[str] = []
        if entry.trains:
            stage = "fit"
            steps = config["trainer"]["max_steps"]
            _say(f"{entry.name}: fit, {steps} steps x {per_step:,} tokens ({config_path})")
            fit_dir = run_stage("fit", config_path, root, env=bench.env)
            global_step, ckpt = read_checkpoint_state(fit_dir)
            record.update(_fit_figures(fit_dir, global_step, per_step))
            ckpt_args = ["--ckpt_path", str(ckpt)]
        else:
            record.update(train_steps=0, train_tokens=0)
        stage = "test"
        _say(f"{entry.name}: test {ckpt_args[-1] if ckpt_args else '(zero-shot)'}")
        test_dir = run_stage("test", config_path, root, ckpt_args, bench.env)
        record.update(_test_figures(test_dir))
    except Exception as err:  # one model's failure must not end the matrix
        message = str(err) if isinstance(err, UserError | StageFailed) else repr(err)
        record.update(status="failed", failed_stage=stage, error=message)
    record["wall_time_s"] = round(time.perf_counter() - start, 1)
    _finish_record(record)
    return record


def _static_figures(config: dict[str, Any]) -> dict[str, Any]:
    from bdh_pl import efficiency

    model, datamodule = build_network(config)
    figures: dict[str, Any] = {"model_class": type(model).__name__}
    figures.update(efficiency.parameter_counts(model.network))
    try:
        flops = efficiency.flops_per_token(
            model.network, datamodule.block_size, datamodule.vocab_size
        )
        figures.update(
            flops_per_token=flops["forward"], train_flops_per_token=flops["forward_backward"]
        )
    except Exception as err:  # a figure missing is no reason to skip the training
        _say(f"warning: FLOPs not counted ({err!r})")
    return figures


def _fit_figures(fit_dir: Path, global_step: int | None, per_step: int) -> dict[str, Any]:
    curves = plotting.read_metrics(fit_dir)
    steps = global_step
    if steps is None:  # no checkpoint state: the last logged row
        steps = max((s + 1 for c in curves.values() for s, _ in c), default=0)
    figures: dict[str, Any] = {
        "fit_run": str(fit_dir),
        "train_steps": steps,
        "train_tokens": steps * per_step,
    }
    if val := curves.get("val/loss"):
        best_step, best = min(val, key=lambda p: p[1])
        bpb = dict(curves.get("val/bpb", []))
        figures.update(best_step=best_step + 1, best_val_loss=best, best_val_bpb=bpb.get(best_step))
    tokens, seconds = curves.get("train/lengths"), curves.get("train/time")
    if tokens and seconds and seconds[-1][1] > 0:
        figures["train_tokens_per_sec"] = tokens[-1][1] / seconds[-1][1]
    elif rates := [v for _, v in curves.get("train/tokens_per_sec", [])]:
        figures["train_tokens_per_sec"] = statistics.median(rates)  # per-step samples
    if peaks := [v for _, v in curves.get("train/peak_memory_mb", [])]:
        figures["train_peak_memory_mb"] = max(peaks)
    return figures


def _test_figures(test_dir: Path) -> dict[str, Any]:
    path = test_dir / "test_metrics.json"
    if not path.is_file():
        raise StageFailed(f"test wrote no {path}")
    result = json.loads(path.read_text())
    metrics = result["metrics"]
    figures = {
        f"test_{k}": metrics.get(f"test/{k}")
        for k in ("loss", "ppl", "bpb", "byte_ppl", "word_ppl", "tokens")
    }
    figures.update(
        test_run=str(test_dir),
        eval_tokens_per_sec=metrics.get("test/tokens_per_sec"),
        test_peak_memory_mb=metrics.get("test/peak_memory_mb"),
        checkpoint=result.get("checkpoint"),
        **{k: result.get(k) for k in ("dataset", "tokenizer", "block_size", "params")},
        **{k: result.get(k) for k in ("non_embedding_params", "device", "memory_kind")},
        precision=result.get("precision"),
    )
    return figures


def _finish_record(record: dict[str, Any]) -> None:
    from bdh_pl.efficiency import mfu

    peaks = [record[k] for k in ("train_peak_memory_mb", "test_peak_memory_mb") if record[k]]
    record["peak_memory_mb"] = max(peaks) if peaks else None
    if record["train_flops_per_token"] and record["train_tokens_per_sec"] and record["device"]:
        record["mfu"] = mfu(
            record["train_flops_per_token"],
            record["train_tokens_per_sec"],
            record["device"],
            record["precision"] or "",
        )


def environment() -> dict[str, Any]:
    import lightning

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "torch_version": torch.__version__,
        "lightning_version": lightning.__version__,
    }


def _say(line: str) -> None:
    print(f"[benchmark] {line}", flush=True)


# --- results ---------------------------------------------------------------------------------


def write_results(bench: Benchmark, records: list[dict], command: str) -> None:
    """metrics.json, metrics.csv and summary.md; rewritten after every model."""
    out = bench.out_dir
    write_json(
        out / "metrics.json",
        {
            "experiment": bench.experiment,
            "command": command,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": str(out / "benchmark.yaml"),
            "records": records,
        },
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RECORD_KEYS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(out / "metrics.csv", buffer.getvalue())
    atomic_write_text(out / "summary.md", summary_markdown(bench, records, command))


SUMMARY_COLUMNS = [
    ("model", "model", str),
    ("params", "params", "count"),
    ("non-emb. params", "non_embedding_params", "count"),
    ("tokenizer", "tokenizer", str),
    ("train tokens", "train_tokens", "count"),
    ("test loss", "test_loss", "{:.3f}"),
    ("test ppl", "test_ppl", "{:.2f}"),
    ("test bpb", "test_bpb", "{:.3f}"),
    ("word ppl", "test_word_ppl", "{:,.0f}"),
    ("train tok/s", "train_tokens_per_sec", "{:,.0f}"),
    ("eval tok/s", "eval_tokens_per_sec", "{:,.0f}"),
    ("FLOPs/token fwd", "flops_per_token", "count"),
    ("peak MB", "peak_memory_mb", "{:,.0f}"),
]


def _cell(value, fmt) -> str:
    if value is None:
        return "–"
    if fmt == "count":
        return EngFormatter(places=1, sep="")(value)
    return fmt(value) if callable(fmt) else fmt.format(value)


def summary_markdown(bench: Benchmark, records: list[dict], command: str) -> str:
    ok = [r for r in records if r["status"] == "ok"]
    first = ok[0] if ok else records[0]
    lines = [
        f"# Benchmark `{bench.experiment}`",
        "",
        f"`{command}`",
        "",
        f"Dataset {first['dataset'] or '?'}; device {first['device'] or '?'}, precision "
        f"{first['precision'] or '?'}; torch {first['torch_version']}, lightning "
        f"{first['lightning_version']}; git {(first['git_commit'] or '?')[:12]}"
        f"{' (uncommitted changes)' if first['git_dirty'] else ''}.",
        "",
        "| " + " | ".join(h for h, _, _ in SUMMARY_COLUMNS) + " |",
        "|" + "|".join("---" if k in ("model", "tokenizer") else "---:" for _, k, _ in SUMMARY_COLUMNS)
        + "|",
    ]  # fmt: skip
    for r in records:
        lines.append("| " + " | ".join(_cell(r[k], f) for _, k, f in SUMMARY_COLUMNS) + " |")
    lines += [
        "",
        "bpb (bits per UTF-8 byte of the test text) and word perplexity compare across "
        "tokenizers; test loss and ppl are per the model's own token (byte or BPE) and do not. "
        "Train tok/s: training tokens over training time, validation excluded (Lightning's "
        "ThroughputMonitor); eval tok/s: the whole test pass. FLOPs/token: forward, counted by "
        "torch's FlopCounterMode on one full block (a training step is about 3x). Peak "
        f"memory: {first['memory_kind'] or '?'} (`cuda`: max allocated; `cpu_rss`: process "
        "peak RSS), the larger of the train and test phases.",
    ]
    if failed := [r for r in records if r["status"] != "ok"]:
        lines += ["", "Failed:", ""]
        lines += [f"- `{r['model']}` in {r['failed_stage']}: {r['error']}" for r in failed]
    charts = ", ".join(f"[{c}](charts/{c}.png)" for c in plotting.BENCHMARK_CHARTS)
    lines += ["", f"Charts: {charts}.", ""]
    return "\n".join(lines)


# --- the `benchmark` subcommand --------------------------------------------------------------


def run_benchmark(config: str | Path, output_dir: str | None = None) -> list[dict]:
    bench = load_benchmark(config)
    if output_dir:
        bench.output_dir = output_dir
    command = shlex.join(["python", "-m", "bdh_pl", "benchmark", "--config", str(config)])
    out = bench.out_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out / "benchmark.yaml", yaml.safe_dump(resolved_benchmark(bench), sort_keys=False)
    )
    records: list[dict] = []
    n = len(bench.models)
    for i, entry in enumerate(bench.models, 1):
        _say(f"[{i}/{n}] {entry.name}: start")
        before = environment()
        record = run_model(bench, entry, before)
        after = environment()
        if before["git_commit"] is not None:  # the commit is what ran only if clean throughout
            record["git_dirty"] = bool(
                before["git_dirty"]
                or after["git_dirty"]
                or before["git_commit"] != after["git_commit"]
            )
        records.append(record)
        write_results(bench, records, command)
        if record["status"] == "ok":
            _say(
                f"[{i}/{n}] {entry.name}: done in {record['wall_time_s']:.0f} s, "
                f"test bpb {record['test_bpb']:.4f}, loss {record['test_loss']:.4f}"
            )
        else:
            _say(f"[{i}/{n}] {entry.name}: FAILED in {record['failed_stage']}: {record['error']}")
    for path in plotting.write_benchmark_charts(records, bench.experiment, out / "charts"):
        _say(f"chart {path}")
    _say(f"results in {out}/ (metrics.json, metrics.csv, summary.md, charts/)")
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bdh_pl benchmark",
        description="Train and test every model of a benchmark config; write results/.",
    )
    parser.add_argument("--config", required=True, help="benchmark YAML (configs/benchmark/)")
    parser.add_argument("--output_dir", help="results root (default: the config's, results)")
    args = parser.parse_args(argv)
    records = run_benchmark(args.config, args.output_dir)
    if all(r["status"] != "ok" for r in records):
        sys.exit(1)
