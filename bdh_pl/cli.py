"""The command line: LightningCLI's fit/validate/test/predict, plus bdh-pl's own tools.

python -m bdh_pl fit  --config configs/shakespeare.yaml
python -m bdh_pl test --config configs/shakespeare.yaml --ckpt_path best.ckpt
python -m bdh_pl benchmark|plot|generate|download-data ...   (see each tool's --help)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from pathlib import Path

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from bdh_pl.data.datamodule import TextDataModule
from bdh_pl.errors import UserError
from bdh_pl.training.callbacks import PeakMemory, TestMetricsWriter, Throughput
from bdh_pl.training.checkpoints import (
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


class BDHLightningCLI(LightningCLI):
    """LightningCLI with the model sized from the data, and logs kept under one root."""

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

    def instantiate_trainer(self, **kwargs):
        # TensorBoard and CSV side by side in {default_root_dir}/version_N/, with the
        # checkpoints, so two runs with different roots never mix.
        config = self._get(self.config_init, "trainer", default={})
        if config.get("logger") in (None, True):
            root = config.get("default_root_dir") or DEFAULT_ROOT_DIR
            tensorboard = TensorBoardLogger(root, name="", default_hp_metric=False)
            config["logger"] = [tensorboard, CSVLogger(root, name="", version=tensorboard.version)]
        return super().instantiate_trainer(**kwargs)

    def _parse_ckpt_path(self) -> None:
        # Replaces LightningCLI's, which torch.loads the file unguarded to copy hparams into
        # the config: here the config defines the model and a mismatch is a clear error.
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

    def _resolve_ckpt_alias(self, ckpt_path: str | None, trainer_config) -> str | None:
        """`--ckpt_path last|best` names the newest such file of any earlier run under the
        root (Lightning alone would only look in this new run's empty folder)."""
        if ckpt_path not in ("last", "best"):
            return ckpt_path
        root = Path(trainer_config.get("default_root_dir") or DEFAULT_ROOT_DIR)
        found = newest_checkpoint(root, ckpt_path)
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
        a checkpoint that does not fit the model (before Lightning loads it)."""
        config = self.config_init[self.subcommand]
        check_writable(Path(self.trainer.default_root_dir))
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

    before_fit = before_validate = before_test = before_predict = _check_run


def check_writable(root: Path) -> None:
    """The run's root, or its nearest existing parent, must be a writable folder."""
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UserError(
            f"cannot write run outputs under {str(root)!r} ({str(existing)!r} is not a writable "
            "folder): set --trainer.default_root_dir to a writable path"
        )


def newest_checkpoint(root: Path, name: str) -> Path | None:
    found = sorted(root.glob(f"version_*/checkpoints/{name}.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def run_lightning(args: list[str] | None) -> None:
    # Both loggers share version_N/ on purpose; the CSV logger's warning about it is noise.
    warnings.filterwarnings(
        "ignore", message="Experiment logs directory .* exists and is not empty"
    )
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
        parser_kwargs={"exit_on_error": False},
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


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args and args[0] in TOOLS:
            importlib.import_module(TOOLS[args[0]]).main(args[1:])
        else:
            run_lightning(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except MisconfigurationException as err:  # Lightning's own word on a bad trainer setting
        print(f"error: {str(err).strip().splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
    except argparse.ArgumentError as err:
        print(f"error: {config_error_line(err)}", file=sys.stderr)
        sys.exit(2)
    except ValueError as err:
        # jsonargparse re-raises a class's own error (our UserErrors included) as this.
        if not str(err).startswith("Does not validate against any of the Union subtypes"):
            raise
        print(f"error: {config_error_line(err, hint=False)}", file=sys.stderr)
        sys.exit(2)
