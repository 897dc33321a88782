"""The command line: LightningCLI's fit/validate/test/predict, plus bdh-pl's own tools.

python -m bdh_pl fit  --config configs/shakespeare.yaml
python -m bdh_pl test --config configs/shakespeare.yaml --ckpt_path best.ckpt
python -m bdh_pl generate|benchmark|plot|export|mauve|lm-eval|download-data ...
python -m bdh_pl --help   (every subcommand; each has its own --help)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import io
import logging
import os
import re
import shlex
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from bdh_pl.data.datamodule import TextDataModule
from bdh_pl.errors import UserError
from bdh_pl.fileio import (
    atomic_write_text,
    check_writable,
    claim_version,
    disk_error,
    lock_folder,
    remove_stale_temp_files,
)
from bdh_pl.training.callbacks import PeakMemory, TestMetricsWriter, Throughput
from bdh_pl.training.checkpoint_io import LAST, AtomicCheckpointIO, LastCheckpoint
from bdh_pl.training.checkpoints import (
    best_score,
    check_hparams,
    check_matches,
    infer_bdh_dims,
    is_lightning_checkpoint,
    load_untrusted,
    plain_state_dict,
)
from bdh_pl.training.language_model import LanguageModel

DEFAULT_ROOT_DIR = "lightning_logs"
# Subcommands that are not LightningCLI's: name -> module with a `main(argv)`.
TOOLS: dict[str, str] = {
    "benchmark": "bdh_pl.bench.matrix",
    "plot": "bdh_pl.tools.plot",
    "generate": "bdh_pl.tools.generate",
    "download-data": "bdh_pl.data.download",
    "export": "bdh_pl.tools.export",
    "lm-eval": "bdh_pl.tools.lm_eval_cli",
    "mauve": "bdh_pl.tools.mauve",
}
PROG = "python -m bdh_pl"
# The top-level --help: every subcommand, LightningCLI's and the tools, one line each.
SUBCOMMAND_HELP = {
    "fit": "train a model (LightningCLI: --config, --model, --data, --trainer, ...)",
    "validate": "score a model or checkpoint on the validation split",
    "test": "score on the test split: loss, ppl, bits per byte, word ppl -> test_metrics.json",
    "generate": "sample text from a checkpoint (top-k, top-p, several samples)",
    "benchmark": "train and test every model of a benchmark config on the same budget",
    "plot": "chart the loss curves of a run",
    "export": "write a checkpoint as a folder other tools read",
    "mauve": "MAUVE of a model's continuations against the true text",
    "lm-eval": "lm-evaluation-harness tasks on a checkpoint",
    "download-data": "build a local data root from the Hugging Face hub",
}
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what job schedulers expect of a killed job
# Model options that change how the same function is computed, not which: the command line may
# set them whatever the checkpoint says.
RUNTIME_OPTIONS = {
    "fused",
    "attention",
    "activation_checkpointing",
    "compile_elementwise",
    "compile",
}
CPU_OVERLAY = "configs/cpu.yaml --config configs/cpu/<model>.yaml"


class RunState:
    """What `main` needs to report a failure of the run in progress: its folder, whether this
    process created it, and the trainer (for the step reached)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.run_dir: Path | None = None
        self.fresh = False
        self.trainer = None
        self.argv: list[str] = []
        self._locks: list[int] = []

    def lock(self, run_dir: Path) -> None:
        """Hold an exclusive lock on the run folder for the life of this process, so a second
        process cannot write into it (a resume of a run that is still going, say)."""
        fd = lock_folder(run_dir)
        if fd is None:
            raise UserError(
                f"run folder {str(run_dir)!r} is in use by another process: wait for it to end, "
                "or give this run another --trainer.default_root_dir"
            )
        self._locks.append(fd)

    def release(self) -> None:
        for fd in self._locks:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.reset()

    def abandon(self) -> None:
        """A run this process started that failed before its first checkpoint leaves nothing."""
        run_dir = self.run_dir
        if self.fresh and run_dir is not None and not any(run_dir.glob("checkpoints/*.ckpt")):
            shutil.rmtree(run_dir, ignore_errors=True)


RUN = RunState()


class BDHLightningCLI(LightningCLI):
    """LightningCLI with the model sized from the data, and logs kept under one root."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # No `predict`: the DataModules have no predict split; `generate` samples text.
        subcommands = dict(LightningCLI.subcommands())
        subcommands.pop("predict")
        return subcommands

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments(
            "data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate"
        )
        parser.link_arguments(
            "data.block_size", "model.init_args.block_size", apply_on="instantiate"
        )
        # One seed for data order and dropout masks (and no clash when Lightning merges the
        # model's and the data's hyperparameters).
        parser.link_arguments("data.seed", "model.init_args.seed", apply_on="instantiate")

    def parse_arguments(self, parser, args) -> None:
        self.argv = list(sys.argv[1:] if args is None else args)
        super().parse_arguments(parser, args)

    def _set_seed(self) -> None:
        # One seed: --seed_everything N also sets the training windows' order and the dropout
        # seed (data.seed, linked to the model). A resumed run keeps its checkpoint's data.seed,
        # or its data order would change mid-run; evaluation does not use it.
        config = self.config[self.subcommand] if self.subcommand else self.config
        seed = config.get("seed_everything")
        if (
            isinstance(seed, int)
            and not isinstance(seed, bool)
            and self.subcommand in (None, "fit")
            and self._checkpoint is None
        ):
            data = config.data.init_args
            given = any(a.split("=")[0] == "--seed_everything" for a in self.argv)
            if "data.seed" not in explicit_options(self.argv):
                data.seed = seed
            elif given and data.seed != seed:  # a --data.init_args.seed beats a config's seed
                raise UserError(
                    f"--seed_everything {seed} and --data.init_args.seed {data.seed} disagree: "
                    "give one of them (seed_everything sets the data and dropout seed too)"
                )
        super()._set_seed()

    def instantiate_trainer(self, **kwargs):
        config = self._get(self.config_init, "trainer", default={})
        # Placeholders: the run's folder is allocated in _check_run, once every check passed.
        self._own_loggers = config.get("logger") in (None, True)
        if self._own_loggers:
            config["logger"] = make_loggers(config.get("default_root_dir") or DEFAULT_ROOT_DIR)
        if not config.get("plugins"):
            kwargs["plugins"] = [AtomicCheckpointIO()]
        trainer = super().instantiate_trainer(**kwargs)
        if config.get("enable_checkpointing") is not False:
            for callback in trainer.checkpoint_callbacks:
                # last.ckpt is LastCheckpoint's alone: a monitored callback writes it only when
                # its score improves, and two writers would number it last-v1.ckpt.
                callback.save_last = False
            trainer.callbacks.append(LastCheckpoint())
        return trainer

    def _parse_ckpt_path(self) -> None:
        # Replaces LightningCLI's, which torch.loads the file unguarded to copy hparams into
        # the config: here the checkpoint is loaded safely and its hyperparameters define the
        # model, and a command line that asks for something else is a clear error.
        self._checkpoint: dict | None = None
        self._plain_weights: dict | None = None
        self.subcommand = self.config.get("subcommand")
        if not self.subcommand:
            return
        config = self.config[self.subcommand]
        if "ckpt_path" not in config:
            return
        config.ckpt_path = self._resolve_ckpt_alias(config.ckpt_path, config.trainer)
        if config.ckpt_path is None:
            return
        if Path(config.ckpt_path).is_dir():  # a BDH folder written by `export`
            from bdh_pl.tools.export import bdh_folder_weights

            self._plain_weights = bdh_folder_weights(
                config.ckpt_path, self.subcommand, config.model
            )
            return
        self._checkpoint = load_untrusted(config.ckpt_path)
        if not is_lightning_checkpoint(self._checkpoint):
            self._plain_weights = plain_state_dict(self._checkpoint)
            self._size_model_from_weights(config)
            return
        if self.subcommand == "fit" and not self._checkpoint.get("optimizer_states"):
            raise UserError(
                f"{config.ckpt_path} holds weights only (no optimizer state), so training cannot "
                "resume from it: evaluate it with `test`, or start a new run without --ckpt_path"
            )
        self._model_from_checkpoint(config)

    def _model_from_checkpoint(self, config) -> None:
        """The checkpoint's saved hyperparameters are the model: shapes cannot tell n_layer
        (BDH shares weights across layers), nor dropout or the schedule."""
        path = config.ckpt_path
        explicit = explicit_options(self.argv)
        wanted = check_hparams(self._checkpoint, path)  # class and init args, checked
        cls = wanted.pop("_class")
        if cls is not None and import_class(str(config.model.class_path)) is not cls:
            if "model" in explicit:
                raise UserError(
                    f"checkpoint {path!r} is for another model: it holds a {cls.__name__}, the "
                    f"command line asks for {config.model.class_path}; drop --model to use the "
                    "checkpoint's"
                )
            config.model = Namespace(class_path=f"{cls.__module__}.{cls.__qualname__}")
            config.model.init_args = Namespace()
        data_hparams = self._checkpoint.get("datamodule_hyper_parameters") or {}
        if "tokenizer" in data_hparams:
            wanted["data.tokenizer"] = data_hparams["tokenizer"]
        taken = []
        for key, value in wanted.items():
            group, _, name = key.rpartition(".")
            group = group or "model"
            if name == "vocab_size" or (name == "seed" and self.subcommand != "fit"):
                continue  # the vocabulary follows the tokenizer; the seed matters to training only
            if name in ("block_size", "seed"):
                group = "data"  # linked from data to the model
            holder = config[group].init_args
            current = holder.get(name) if name in holder else None
            if _plain(current) == _plain(value):
                continue
            if f"{group}.{name}" in explicit:
                if name in RUNTIME_OPTIONS:
                    continue
                raise UserError(
                    f"checkpoint {path!r} does not match the model config: it was trained with "
                    f"{name}={value!r}, the command line asks for {current!r}; drop "
                    f"--{group}.init_args.{name} to use the checkpoint's value"
                )
            holder[name] = value
            taken.append(
                f"{name}={value!r}" + (f" (config: {current!r})" if current is not None else "")
            )
        if taken:
            print(
                f"{self.subcommand}: from the checkpoint's hyperparameters: {', '.join(taken)}",
                file=sys.stderr,
            )

    def _resolve_ckpt_alias(self, ckpt_path: str | None, trainer_config) -> str | None:
        """`--ckpt_path last|best` names such a file of an earlier run under the root
        (Lightning alone would only look in this new run's empty folder): the newest last.ckpt,
        or the best.ckpt with the best stored score."""
        if ckpt_path not in ("last", "best"):
            return ckpt_path
        root = Path(trainer_config.get("default_root_dir") or DEFAULT_ROOT_DIR)
        found = newest_checkpoint(root) if ckpt_path == "last" else best_checkpoint(root)
        if found is not None:
            print(f"{self.subcommand}: --ckpt_path {ckpt_path} -> {found}", file=sys.stderr)
            return str(found)
        if self.subcommand == "fit" and ckpt_path == "last":
            # Nothing to resume yet: start fresh, so one command serves first run and restarts.
            print(f"fit: no last.ckpt under {root}: starting from scratch", file=sys.stderr)
            return None
        raise UserError(
            f"--ckpt_path {ckpt_path}: no {ckpt_path}.ckpt under {root}/version_*/checkpoints/"
        )

    def _size_model_from_weights(self, config) -> None:
        """Plain BDH weights (the official train.py's): take the sizes from the tensors."""
        if self.subcommand == "fit":
            raise UserError(
                f"{config.ckpt_path} holds plain weights, not a Lightning checkpoint: evaluate them "
                "with `test`/`validate`; `fit --ckpt_path` resumes bdh-pl checkpoints only"
            )
        if not str(config.model.class_path).endswith("BDHLM"):
            raise UserError(
                f"{config.ckpt_path} holds plain weights; only BDH weights can be imported this way "
                "(use the BDH model config)"
            )
        dims = infer_bdh_dims(self._plain_weights)
        vocab = dims.pop("vocab_size")
        for key, value in dims.items():
            config.model.init_args[key] = value
        print(
            f"{self.subcommand}: sizes from the weights: {dims}, vocab {vocab}; n_layer="
            f"{config.model.init_args.n_layer} from the config (weights shared across layers "
            "do not tell it)",
            file=sys.stderr,
        )

    def _check_run(self) -> None:
        """Refuse what would fail late or silently: an unwritable root, an empty step budget,
        a checkpoint that does not fit the model (before Lightning loads it). Only then is the
        run's folder allocated."""
        config = self.config_init[self.subcommand]
        root = Path(self.trainer.default_root_dir)
        check_writable(root, "set --trainer.default_root_dir to a writable path")
        if self.subcommand == "fit" and (
            self.trainer.max_steps == 0 or self.trainer.max_steps < -1
        ):
            raise UserError(
                f"trainer.max_steps must be positive (or -1: until early stopping), got {self.trainer.max_steps}"
            )
        if config.get("weights_only") is None:
            config["weights_only"] = True  # never unpickle code from a checkpoint
        if self._plain_weights is not None:
            network = self.model.network
            check_matches(network.state_dict(), self._plain_weights, config["ckpt_path"])
            network.load_state_dict(self._plain_weights, strict=True)
            config["ckpt_path"] = None  # weights are in; nothing left for Lightning to restore
        elif self._checkpoint is not None:
            check_matches(
                self.model.state_dict(), self._checkpoint["state_dict"], config["ckpt_path"]
            )
        if self.subcommand == "fit":
            warn_if_too_big(self.model, self.datamodule, self.trainer)
        RUN.trainer, RUN.argv = self.trainer, self.argv
        if self._own_loggers and rank_zero_only.rank == 0:
            self._allocate_run_folder(root, config.get("ckpt_path"))

    def _allocate_run_folder(self, root: Path, ckpt_path: str | None) -> None:
        """A resumed run continues its own folder (one curve in TensorBoard and metrics.csv);
        any other run gets a new version_N, claimed atomically (mkdir), so two runs started
        together into one root never share a folder."""
        resume_dir = None
        if self.subcommand == "fit" and self._checkpoint is not None:
            resume_dir = continuing_run(root, Path(ckpt_path), self._checkpoint)
        if resume_dir is None:
            run_dir = claim_version(root)
            RUN.run_dir, RUN.fresh = run_dir, True
            RUN.lock(run_dir)
            purge_step = None
            if self._checkpoint is not None and self.subcommand == "fit":
                print(
                    f"fit: resuming {ckpt_path} (step {self._checkpoint.get('global_step')}) in a "
                    f"new run folder {run_dir}",
                    file=sys.stderr,
                )
        else:
            run_dir = resume_dir
            RUN.run_dir, RUN.fresh = run_dir, False
            RUN.lock(run_dir)
            purge_step = int(self._checkpoint.get("global_step", 0))
            remove_stale_temp_files(run_dir / "checkpoints")
            remove_stale_temp_files(run_dir)
            print(f"fit: continuing {run_dir} from step {purge_step}", file=sys.stderr)
        self.trainer.loggers = make_loggers(root, run_dir, purge_step)

    before_fit = before_validate = before_test = _check_run


class TensorBoard(TensorBoardLogger):
    """TensorBoardLogger that fills the HParams tab: the run's hyperparameters against the
    metrics it logs anyway (Lightning writes that table only with a metric value to log at
    step 0, which would be a fake point on the curve)."""

    HP_METRICS = ("val/loss", "val/bpb", "test/loss", "test/bpb")

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Any = None) -> None:
        super().log_hyperparams(params, metrics)  # hparams.yaml
        if metrics is not None:
            return
        from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
        from torch.utils.tensorboard.summary import hparams

        flat = self._sanitize_params(_flatten_dict(_convert_params(params)))
        # the plugin takes numbers, strings and bools; anything else as its text
        flat = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}
        writer = self.experiment._get_file_writer()
        for summary in hparams(flat, dict.fromkeys(self.HP_METRICS, 0.0)):
            writer.add_summary(summary)


def make_loggers(
    root: str | Path, run_dir: Path | None = None, purge_step: int | None = None
) -> list:
    """TensorBoard and CSV side by side in {root}/version_N/, with the checkpoints, so two
    runs with different roots never mix. `purge_step`: a resumed run drops the events the
    killed one logged after its checkpoint (TensorBoard then shows one curve)."""
    version = int(run_dir.name.removeprefix("version_")) if run_dir is not None else None
    extra = {"purge_step": purge_step} if purge_step is not None else {}
    tensorboard = TensorBoard(root, name="", version=version, default_hp_metric=False, **extra)
    metrics = run_dir / "metrics.csv" if run_dir is not None else None
    kept = truncated_csv(metrics, purge_step) if purge_step is not None else None
    csv_logger = CSVLogger(root, name="", version=tensorboard.version)
    if kept is not None:
        writer = csv_logger.experiment  # Lightning's writer deletes metrics.csv: put it back
        atomic_write_text(metrics, kept[1])
        writer.metrics_keys = sorted(kept[0])  # and it appends only under a known header
    return [tensorboard, csv_logger]


def continuing_run(root: Path, ckpt_path: Path, checkpoint: dict) -> Path | None:
    """The run folder a resume continues: the checkpoint's own, when it is that run's newest
    state (its last.ckpt) under this root. Resuming from an older checkpoint (a best.ckpt)
    starts a new folder, so the later curves are not cut away."""
    ckpt_path = ckpt_path.resolve()
    run_dir = ckpt_path.parent.parent
    if ckpt_path.parent.name != "checkpoints" or run_dir.parent != root.resolve():
        return None
    if not run_dir.name.removeprefix("version_").isdigit():
        return None
    last = run_dir / "checkpoints" / LAST
    if ckpt_path != last.resolve():
        from bdh_pl.training.checkpoint_io import saved_step

        if not last.is_file() or saved_step(last) != checkpoint.get("global_step"):
            return None
    return root / run_dir.name


def truncated_csv(path: Path, step: int) -> tuple[list[str], str] | None:
    """(columns, text) of metrics.csv without the rows a killed run logged at or after
    `step` (the resumed run logs them again); None when there is no file."""
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = [r for r in reader if not r.get("step") or float(r["step"]) < step]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return fields, buffer.getvalue()


def explicit_options(argv: list[str]) -> set[str]:
    """`group.name` of every option set on the command line itself (not in a --config file),
    e.g. {"model.n_layer", "data.tokenizer", "model"}."""
    found = set()
    for arg in argv:
        match = re.match(r"--(model|data)(?:\.init_args)?(?:\.([A-Za-z_]\w*))?(?:=|$)", arg)
        if not match:
            continue
        group, name = match.groups()
        found.add(group if name in (None, "class_path") else f"{group}.{name}")
    return found


def import_class(class_path: str) -> type | None:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _plain(value: Any) -> Any:
    """Compare YAML lists with checkpoint tuples (betas)."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def newest_checkpoint(root: Path) -> Path | None:
    """The newest last.ckpt under root (last.ckpt is rewritten at every validation)."""
    found = sorted(root.glob(f"version_*/checkpoints/{LAST}"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def best_checkpoint(root: Path) -> Path | None:
    """The best*.ckpt under root with the best score its ModelCheckpoint stored (lowest for
    mode min); files without a stored score come after those with one, newest first."""
    candidates = list(root.glob("version_*/checkpoints/best*.ckpt"))
    if not candidates:
        return None

    def rank(path: Path) -> tuple:
        scored = best_score(path)
        if scored is None:
            return (1, -path.stat().st_mtime)
        score, mode = scored
        return (0, score if mode == "min" else -score)

    return min(candidates, key=rank)


def activation_bytes(model: LanguageModel, batch_size: int, block_size: int) -> float:
    """Activation memory of one training step, estimated from a real forward of one short
    sequence (the tensors autograd saves), scaled to the batch and the block."""
    probe = min(block_size, 64)
    network, was_training = model.network, model.network.training
    weights = {p.untyped_storage().data_ptr() for p in network.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:  # weights do not grow with the batch
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    idx = torch.zeros(1, probe, dtype=torch.long)
    # No copy of the network (a pretrained one can be large); the forward changes no weights
    # and, with the random state forked, no random stream either.
    try:
        network.train()
        with (
            torch.random.fork_rng(devices=[]),
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        ):
            network(idx)
    finally:
        network.train(was_training)
    return sum(seen.values()) * batch_size * block_size / probe


def free_memory_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def warn_if_too_big(model: LanguageModel, datamodule, trainer) -> None:
    """One line before training when the activations would not fit in free memory: a CPU
    swaps, then the kernel kills the process without a word."""
    batch, block = getattr(datamodule, "batch_size", None), getattr(datamodule, "block_size", None)
    if not batch or not block:
        return
    try:
        needed = activation_bytes(model, batch, block)
        free = free_memory_bytes(trainer.strategy.root_device)
    except Exception:  # an estimate only: never a reason to stop
        return
    if "16" in str(trainer.precision):
        needed /= 2
    if free is not None and needed > free:
        hint = (
            f"on a CPU add --config {CPU_OVERLAY}, or "
            if trainer.strategy.root_device.type == "cpu"
            else ""
        )
        print(
            f"warning: this run needs about {needed / 2**30:.1f} GiB of activations (batch "
            f"{batch} x block {block}) but {free / 2**30:.1f} GiB are free: {hint}lower "
            "data.init_args.batch_size or block_size",
            file=sys.stderr,
        )


def run_lightning(args: list[str] | None) -> None:
    # Both loggers share version_N/ on purpose; the CSV logger's warning about it is noise, and
    # a resumed run's checkpoint folder is not empty by design.
    warnings.filterwarnings(
        "ignore", message="Experiment logs directory .* exists and is not empty"
    )
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
    # Noise on every run that asks nothing of the user: Lightning's own deprecated call inside
    # its _pytree, and its advert for a cloud logger.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(lambda r: not str(r.msg).startswith("💡 Tip:"))
    argv = sys.argv[1:] if args is None else args
    if argv[:1] in (["test"], ["validate"]):
        # Evaluation writes no checkpoint, so where the fit run kept them does not matter.
        warnings.filterwarnings("ignore", message="The dirpath has changed from")
    # The line `main` prints after SIGTERM says it all; Lightning's own would be a second one.
    logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector").setLevel(
        logging.WARNING
    )
    no_abbrev = {"exit_on_error": False, "allow_abbrev": False}
    BDHLightningCLI(
        LanguageModel,
        TextDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults={
            "default_root_dir": DEFAULT_ROOT_DIR,
            "callbacks": [PeakMemory(), TestMetricsWriter(), Throughput()],
        },
        save_config_kwargs={"overwrite": True},
        # The optimizer and schedule are the model's (AdamW with decay groups, warmup + cosine,
        # set by model.init_args.*): LightningCLI's --optimizer/--lr_scheduler would silently
        # replace them all, so they are not offered.
        auto_configure_optimizers=False,
        # No prefix matching: `--trainer.max_step 5` must not silently mean max_steps.
        parser_kwargs={
            "prog": PROG,
            **no_abbrev,
            **{name: no_abbrev for name in BDHLightningCLI.subcommands()},
        },
        args=args,
    )


_NOISE = (
    "Does not validate",
    "Subtypes",
    "Errors",
    "Given value",
    "Expected a <class 'NoneType'>",
)


def config_error_line(err: Exception, hint: bool = True) -> str:
    """jsonargparse's nested explanation of a bad option, cut down to the line that matters."""
    lines = [line.strip(" -").rstrip(":") for line in str(err).splitlines()]
    details = [line for line in lines[1:] if line and not line.startswith(_NOISE)]
    where = lines[0].rstrip(":") if lines else "config"
    detail = "; ".join(details) or where
    if not hint:
        return detail
    hint = "check the spelling against `python -m bdh_pl <subcommand> --help` or --print_config"
    return f"{where}: {detail} ({hint})" if details else f"{detail} ({hint})"


def out_of_memory_line(err: BaseException) -> str | None:
    """One line for an allocation that failed, with its size and the knobs to turn."""
    text = str(err)
    if not (
        isinstance(err, torch.OutOfMemoryError)
        or re.search(r"can't allocate memory|not enough memory|out of memory", text)
    ):
        return None
    size = re.search(r"[Tt]ried to allocate ([\d.]+ ?[KMGT]?i?B|\d+ bytes)", text)
    what = f"allocating {size.group(1)} failed" if size else text.strip().splitlines()[0][:120]
    trainer = RUN.trainer
    datamodule = getattr(trainer, "datamodule", None)
    now = (
        f" (now batch_size {datamodule.batch_size}, block_size {datamodule.block_size})"
        if datamodule is not None and hasattr(datamodule, "batch_size")
        else ""
    )
    return (
        f"out of memory: {what}; lower --data.init_args.batch_size or block_size{now}, or use a "
        f"smaller model (on a CPU: --config {CPU_OVERLAY})"
    )


def preempted_line(argv: list[str]) -> str:
    """What a job script needs after SIGTERM: the step reached and the command that resumes."""
    trainer = RUN.trainer
    step = trainer.global_step if trainer is not None else "?"
    last = RUN.run_dir / "checkpoints" / LAST if RUN.run_dir is not None else None
    if last is None or not last.is_file():
        return f"fit: stopped by SIGTERM at step {step} before any checkpoint was written"
    args, skip = [], False
    for arg in argv:  # the same command, resuming from this run's last.ckpt
        if skip or arg.startswith("--ckpt_path="):
            skip = False
            continue
        if arg == "--ckpt_path":
            skip = True
            continue
        args.append(arg)
    command = shlex.join(["python", "-m", "bdh_pl", *args, "--ckpt_path", str(last)])
    return f"fit: stopped by SIGTERM at step {step}, saved {last}; resume with: {command}"


def fail(message: str, code: int = 2, abandon: bool = True) -> None:
    """Print one line, drop the folder of a run that never got going, exit."""
    if code == 2 and abandon:
        RUN.abandon()
    print(message, file=sys.stderr)
    sys.exit(code)


def top_level_help() -> str:
    lines = [
        f"usage: {PROG} SUBCOMMAND [options]",
        "",
        "BDH (Baby Dragon Hatchling) against GPT-2 and LLaMA: train, score, sample, compare.",
        "",
        "subcommands (each has its own --help):",
        *(f"  {name:<15}{text}" for name, text in SUBCOMMAND_HELP.items()),
        "",
        f"example: {PROG} fit --config configs/shakespeare.yaml",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] in (["-h"], ["--help"]):
            sys.stdout.write(top_level_help())
        elif args and args[0] in TOOLS:
            importlib.import_module(TOOLS[args[0]]).main(args[1:])
        elif args and args[0] == "predict":
            raise UserError(
                "`predict` is not supported: sample text with `python -m bdh_pl generate`, "
                "score a text with `test`"
            )
        else:
            run_lightning(argv)
    except UserError as err:
        fail(f"error: {err}")
    except SIGTERMException:  # Lightning's: the run stopped after SIGTERM (LastCheckpoint saved)
        fail(preempted_line(args), PREEMPTED_EXIT_CODE)
    except MisconfigurationException as err:  # Lightning's own word on a bad trainer setting
        fail(f"error: {str(err).strip().splitlines()[0]}")
    except argparse.ArgumentError as err:
        fail(f"error: {config_error_line(err)}")
    except ValueError as err:
        # jsonargparse re-raises a class's own error (our UserErrors included) as this.
        if not str(err).startswith("Does not validate against any of the Union subtypes"):
            raise
        fail(f"error: {config_error_line(err, hint=False)}")
    except OSError as err:
        folder = Path(err.filename).parent if err.filename else RUN.run_dir or Path(".")
        converted = disk_error(err, folder)
        if not isinstance(converted, UserError):
            raise
        fail(f"error: {converted}", abandon=False)  # the folder the message names stays
    except RuntimeError as err:
        line = out_of_memory_line(err)
        if line is None:
            raise
        fail(f"error: {line}")
    finally:
        RUN.release()
