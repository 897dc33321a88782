"""The command line: LightningCLI's fit/validate/test/predict, plus bdh-pl's own tools.

python -m bdh_pl fit  --config configs/shakespeare.yaml
python -m bdh_pl test --config configs/shakespeare.yaml --ckpt_path best.ckpt
python -m bdh_pl generate|benchmark|plot|export|mauve|lm-eval|download-data ...
python -m bdh_pl --help   (every subcommand; each has its own --help)
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from pathlib import Path

from jsonargparse import Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from bdh_pl.cli_help import PROG, top_level_help
from bdh_pl.data.datamodule import TextDataModule
from bdh_pl.errors import UserError, config_error_line
from bdh_pl.fileio import check_writable, disk_error
from bdh_pl.training.callbacks import PeakMemory, TestMetricsWriter, Throughput
from bdh_pl.training.checkpoint_io import AtomicCheckpointIO, LastCheckpoint
from bdh_pl.training.checkpoints import (
    check_hparams,
    check_matches,
    explicit_options,
    import_class,
    infer_bdh_dims,
    is_lightning_checkpoint,
    load_untrusted,
    plain_state_dict,
    plain_value,
)
from bdh_pl.training.console import swap_default_console
from bdh_pl.training.language_model import LanguageModel
from bdh_pl.training.memory import out_of_memory_line, warn_if_too_big
from bdh_pl.training.runs import (
    RUN,
    best_checkpoint,
    make_loggers,
    newest_checkpoint,
    open_run_folder,
    preempted_line,
)

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
    "context-curve": "bdh_pl.tools.context_curve",
    "inspect": "bdh_pl.tools.inspect",
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
            if plain_value(current) == plain_value(value):
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
        self.model.check_data(self.datamodule, self.trainer)
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
            resuming = self.subcommand == "fit" and self._checkpoint is not None
            self.trainer.loggers = open_run_folder(
                root, config.get("ckpt_path"), self._checkpoint, resuming
            )

    before_fit = before_validate = before_test = _check_run


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


def fail(message: str, code: int = 2, abandon: bool = True) -> None:
    """Print one line, drop the folder of a run that never got going, exit."""
    if code == 2 and abandon:
        RUN.abandon()
    print(message, file=sys.stderr)
    sys.exit(code)


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
