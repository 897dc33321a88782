"""bdh-pl's LightningCLI: fit / validate / test with the model sized from the data, checkpoints
read safely (training/loading.py) and checked against the command line, runs kept under one
root. cli.py dispatches to it; bench/resolve.py builds the same CLI to resolve configs.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from bdh_pl.cli_help import PROG
from bdh_pl.data.datamodule import TextDataModule
from bdh_pl.errors import INTERRUPTED_EXIT_CODE, Preempted, UserError
from bdh_pl.fileio import check_writable
from bdh_pl.training.glue.callbacks import (
    PeakMemory,
    TestMetricsWriter,
    Throughput,
    ValidateFinalStep,
)
from bdh_pl.training.glue.checkpoint_io import AtomicCheckpointIO, LastCheckpoint, check_lanes
from bdh_pl.training.glue.console import swap_default_console
from bdh_pl.training.glue.model_args import constructor_defaults, import_class
from bdh_pl.training.glue.trainer import Trainer
from bdh_pl.training.language_model import LanguageModel
from bdh_pl.training.loading import (
    CHECKPOINT_FIX,
    FOLDER_FIX,
    check_hparams,
    check_matches,
    read_model_file,
)
from bdh_pl.training.memory import MicroBatchCounters, fit_to_memory
from bdh_pl.training.run_folders import (
    RUN,
    make_loggers,
    open_run_folder,
    preempted_line,
    resolve_ckpt_alias,
)
from bdh_pl.training.trainer_options import check_trainer_options, fit_precision

DEFAULT_ROOT_DIR = "lightning_logs"


class BDHLightningCLI(LightningCLI):
    """LightningCLI with the model sized from the data, and logs kept under one root."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # No `predict`: the DataModules have no predict split; `generate` samples text.
        subcommands = dict(LightningCLI.subcommands())
        subcommands.pop("predict")
        return subcommands

    def add_arguments_to_parser(self, parser) -> None:
        # The data sizes the model's config; one seed for data order and dropout masks.
        for source, target in [
            ("data.vocab_size", "model.init_args.config.vocab_size"),
            ("data.block_size", "model.init_args.config.block_size"),
            ("data.seed", "model.init_args.training.seed"),
        ]:
            parser.link_arguments(source, target, apply_on="instantiate")
        parser.add_argument(
            "--memory_fit",
            choices=["auto", "off"],
            default="auto",
            help="when a batch's activations do not fit in the free memory, run it as "
            "micro-batches with gradient accumulation (fit) and evaluate in smaller batches "
            "(fit, validate, test) (auto), or refuse in one line (off)",
        )

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
        check_trainer_options(config)
        fit_precision(config)  # bf16 asked on a CPU without bf16 arithmetic: fp32, said
        # Placeholders: the run's folder is allocated in _check_run, once every check passed.
        self._own_loggers = config.get("logger") in (None, True)
        if self._own_loggers:
            config["logger"] = make_loggers(config.get("default_root_dir") or DEFAULT_ROOT_DIR)
        if not config.get("plugins"):
            kwargs["plugins"] = [AtomicCheckpointIO()]
        named = config.get("callbacks")  # the config's own (Lightning adds to this very list)
        named = list(named) if isinstance(named, list) else [named]
        trainer = super().instantiate_trainer(**kwargs)
        swap_default_console(trainer, named)  # a step-counting bar, a summary without zero FLOPs
        if config.get("enable_checkpointing") is not False:
            for callback in trainer.checkpoint_callbacks:
                # last.ckpt is LastCheckpoint's alone: a monitored callback writes it only when
                # its score improves, and two writers would number it last-v1.ckpt.
                callback.save_last = False
            trainer.callbacks.append(LastCheckpoint())
        if not any(isinstance(c, Timer) for c in trainer.callbacks):  # max_time adds its own
            trainer.callbacks.append(Timer(verbose=False))  # a resumed fit's clock goes on
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
        root = Path(config.trainer.get("default_root_dir") or DEFAULT_ROOT_DIR)
        config.ckpt_path = resolve_ckpt_alias(config.ckpt_path, root, self.subcommand)
        if config.ckpt_path is None:
            return
        found = read_model_file(config.ckpt_path)
        if found.kind != "checkpoint":
            self._plain_weights = found.weights
            self._weights_fix = FOLDER_FIX if found.kind == "bdh-folder" else CHECKPOINT_FIX
            self._size_model_from_file(config, found)
            return
        self._checkpoint = found.checkpoint
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
        wanted = check_hparams(self._checkpoint, path)  # class and configs, checked
        cls = wanted.pop("_class")
        # How the same function is computed, not which: the command line may set these
        # whatever the checkpoint says.
        execution = getattr(
            cls or import_class(str(config.model.class_path)), "execution_options", ()
        )
        if cls is not None and import_class(str(config.model.class_path)) is not cls:
            if "model" in explicit:
                raise UserError(
                    f"checkpoint {path!r} is for another model: it holds a {cls.__name__}, the "
                    f"command line asks for {config.model.class_path}; drop --model to use the "
                    "checkpoint's"
                )
            config.model = Namespace(class_path=f"{cls.__module__}.{cls.__qualname__}")
            # its own defaults, not the config's class's: the checkpoint's values go on top
            config.model.init_args = constructor_defaults(cls)
        wanted = {
            f"{group}.{name}": value
            for group, values in wanted.items()
            for name, value in values.items()
        }
        data_hparams = self._checkpoint.get("datamodule_hyper_parameters") or {}
        if "tokenizer" in data_hparams:
            wanted["data.tokenizer"] = data_hparams["tokenizer"]
        taken = []
        for key, value in wanted.items():
            name = key.rpartition(".")[2]
            group, name = ("data", name) if key.startswith("data.") else ("model", key)
            if name == "config.vocab_size" or (
                name == "training.seed" and self.subcommand != "fit"
            ):
                continue  # the vocabulary follows the tokenizer; the seed matters to training only
            if name in ("config.block_size", "training.seed"):
                group, name = "data", name.rpartition(".")[2]  # linked from data to the model
            holder = config[group].init_args
            current = holder.get(name) if name in holder else None
            if name in holder and plain_value(current) == plain_value(value):
                continue  # (a class just switched to has no init_args yet: all are set)
            if f"{group}.{name}" in explicit:
                if name in execution or name.partition(".")[0] in execution:
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

    def _size_model_from_file(self, config, found) -> None:
        """Plain BDH weights (the official train.py's) or an exported BDH folder: the BDH
        model's sizes from the file (the tensors' shapes, or the folder's config.json)."""
        what = {"weights": "plain weights", "bdh-folder": "an exported BDH folder"}.get(found.kind)
        if what is None:  # a Hugging Face folder
            raise UserError(
                f"{found.path} is a Hugging Face folder: `test --ckpt_path` takes bdh-pl "
                "checkpoints, plain BDH weights or BDH folders (score it with lm-eval)"
            )
        if self.subcommand == "fit":
            raise UserError(
                f"{found.path} holds {what}, not a Lightning checkpoint: evaluate it with "
                "`test`/`validate`; `fit --ckpt_path` resumes bdh-pl checkpoints only"
            )
        if not str(config.model.class_path).endswith("BDHLM"):
            raise UserError(
                f"{found.path} holds {what} of a BDH model: use the BDH model config (BDHLM)"
            )
        sizes = found.bdh_sizes()
        vocab = sizes.pop("vocab_size")
        sizes.pop("dropout", None)  # a training setting: the config's
        sizes.pop("block_size", None)  # the data's (linked)
        for key, value in sizes.items():
            config.model.init_args[f"config.{key}"] = value
        note = (
            ""
            if "n_layer" in sizes
            else f"; n_layer={config.model.init_args.config.n_layer} from the config (weights "
            "shared across layers do not tell it)"
        )
        print(
            f"{self.subcommand}: sizes from {what}: {sizes}, vocab {vocab}{note}", file=sys.stderr
        )

    def _check_run(self) -> None:
        """Refuse what would fail late or silently: an unwritable root, a checkpoint that does
        not fit the model (before Lightning loads it). Only then is the run's folder
        allocated."""
        config = self.config_init[self.subcommand]
        root = Path(self.trainer.default_root_dir)
        check_writable(root, "set --trainer.default_root_dir to a writable path")
        self.model.check_data(self.datamodule, self.trainer)
        if config.get("weights_only") is None:
            config["weights_only"] = True  # never unpickle code from a checkpoint
        if self._plain_weights is not None:
            network = self.model.network
            path, fix = config["ckpt_path"], self._weights_fix
            check_matches(network.state_dict(), self._plain_weights, path, fix)
            network.load_state_dict(self._plain_weights, strict=True)
            config["ckpt_path"] = None  # weights are in; nothing left for Lightning to restore
        elif self._checkpoint is not None:
            path = config["ckpt_path"]
            check_matches(self.model.state_dict(), self._checkpoint["state_dict"], path)
            check_lanes(self._checkpoint, path, self.datamodule, self.trainer.world_size)
        memory_fit = config.get("memory_fit")
        fit_to_memory(self.model, self.datamodule, self.trainer, memory_fit, self.subcommand)
        if self.subcommand == "fit":
            self.trainer.callbacks.append(MicroBatchCounters())
        RUN.trainer, RUN.argv = self.trainer, self.argv
        if self._own_loggers and rank_zero_only.rank == 0:
            resuming = self.subcommand == "fit" and self._checkpoint is not None
            self.trainer.loggers = open_run_folder(
                root, config.get("ckpt_path"), self._checkpoint, resuming
            )

    before_fit = before_validate = before_test = _check_run


def explicit_options(argv: list[str]) -> set[str]:
    """`group.name` of every option set on the command line itself (not in a --config file),
    e.g. {"model.config.n_layer", "data.tokenizer", "model"}."""
    found = set()
    for arg in argv:
        match = re.match(r"--(model|data)(?:\.init_args)?((?:\.[A-Za-z_]\w*)*)(?:=|$)", arg)
        if not match:
            continue
        group, name = match.group(1), match.group(2).lstrip(".")
        found.add(group if name in ("", "class_path") else f"{group}.{name}")
    return found


def plain_value(value: Any) -> Any:
    """Compare YAML lists with checkpoint tuples (betas)."""
    if isinstance(value, list | tuple):
        return [plain_value(v) for v in value]
    return value


def build_cli(args: list[str], cls: type[LightningCLI] = BDHLightningCLI, **kwargs: Any):
    """bdh-pl's LightningCLI on `args`: any model and datamodule class, the optimizer and
    schedule the model's own, no prefix matching of options; kwargs go to LightningCLI."""
    no_abbrev = {"exit_on_error": False, "allow_abbrev": False}
    return cls(
        LanguageModel,
        TextDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_class=Trainer,  # SIGTERM never cuts a validation short
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
        **kwargs,
    )


def quiet_lightning(argv: list[str]) -> None:
    """Silence what every run prints that asks nothing of the user."""
    # Both loggers share version_N/ on purpose; the CSV logger's warning about it is noise, and
    # a resumed run's checkpoint folder is not empty by design.
    warnings.filterwarnings(
        "ignore", message="Experiment logs directory .* exists and is not empty"
    )
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
    # Lightning's own deprecated call inside its _pytree, and its advert for a cloud logger.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # `main` hands LightningCLI sys.argv[1:] as args (so tests and tools can call it too).
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(lambda r: not str(r.msg).startswith("💡 Tip:"))
    if argv[:1] in (["test"], ["validate"]):
        # Evaluation writes no checkpoint, so where the fit run kept them does not matter.
        warnings.filterwarnings("ignore", message="The dirpath has changed from")
    # The line `main` prints after SIGTERM says it all; Lightning's own would be a second one.
    logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector").setLevel(
        logging.WARNING
    )


def ctrl_c_count() -> int:
    """Ctrl-Cs the run's Trainer received (0 when none was built)."""
    return getattr(RUN.trainer, "ctrl_c", 0)


def run_lightning(argv: list[str]) -> None:
    """`python -m bdh_pl fit|validate|test ...`; Lightning's own errors as UserError/Preempted."""
    quiet_lightning(argv)
    try:
        build_cli(
            argv,
            trainer_defaults={
                "default_root_dir": DEFAULT_ROOT_DIR,
                "callbacks": [PeakMemory(), TestMetricsWriter(), Throughput(), ValidateFinalStep()],
            },
            save_config_kwargs={"overwrite": True},
        )
    except SIGTERMException:  # stopped between steps by SIGTERM or Ctrl-C (last.ckpt saved)
        if ctrl_c_count() == 0:
            raise Preempted(preempted_line(argv)) from None
        raise Preempted(preempted_line(argv, "Ctrl-C"), INTERRUPTED_EXIT_CODE) from None
    except SystemExit:  # Lightning's exit after a KeyboardInterrupt: a second Ctrl-C
        if ctrl_c_count() < 2:
            raise
        line = preempted_line(argv, "a second Ctrl-C", saved=False)
        raise Preempted(line, INTERRUPTED_EXIT_CODE) from None
    except MisconfigurationException as err:  # Lightning's own word on a bad trainer setting
        raise UserError(str(err).strip().splitlines()[0]) from None
