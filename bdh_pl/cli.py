"""The command line: LightningCLI's fit/validate/test/predict, plus bdh-pl's own tools.

python -m bdh_pl fit  --config configs/shakespeare.yaml
python -m bdh_pl test --config configs/shakespeare.yaml --ckpt_path best.ckpt
python -m bdh_pl benchmark|plot|generate|speed ...   (see each tool's --help)
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from bdh_pl.callbacks import PeakMemory, TestMetricsWriter
from bdh_pl.data.datamodule import TextDataModule
from bdh_pl.errors import UserError
from bdh_pl.lm_module import LanguageModel

DEFAULT_ROOT_DIR = "lightning_logs"
# Subcommands that are not LightningCLI's: name -> module with a `main(argv)`.
TOOLS: dict[str, str] = {
    "benchmark": "bdh_pl.benchmark",
    "plot": "bdh_pl.plotting",
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

    def instantiate_trainer(self, **kwargs):
        # TensorBoard and CSV side by side in {default_root_dir}/version_N/, with the
        # checkpoints, so two runs with different roots never mix.
        config = self._get(self.config_init, "trainer", default={})
        if config.get("logger") in (None, True):
            root = config.get("default_root_dir") or DEFAULT_ROOT_DIR
            tensorboard = TensorBoardLogger(root, name="", default_hp_metric=False)
            config["logger"] = [tensorboard, CSVLogger(root, name="", version=tensorboard.version)]
        return super().instantiate_trainer(**kwargs)

    def _resolve_ckpt_alias(self) -> None:
        """`--ckpt_path last|best` names the newest such file of any earlier run under the
        root (Lightning alone would only look in this new run's empty folder)."""
        config = self.config_init[self.subcommand]
        alias = config.get("ckpt_path")
        if alias not in ("last", "best"):
            return
        root = Path(
            self._get(self.config_init, "trainer", default={}).get("default_root_dir")
            or DEFAULT_ROOT_DIR
        )
        found = newest_checkpoint(root, alias)
        if found is not None:
            config["ckpt_path"] = str(found)
            print(f"{self.subcommand}: --ckpt_path {alias} -> {found}", file=sys.stderr)
        elif self.subcommand == "fit" and alias == "last":
            config["ckpt_path"] = (
                None  # nothing to resume yet: a fresh start, as litgpt's resume="auto"
            )
            print(f"fit: no last.ckpt under {root}: starting from scratch", file=sys.stderr)
        else:
            raise UserError(
                f"--ckpt_path {alias}: no {alias}.ckpt under {root}/version_*/checkpoints/"
            )

    def before_fit(self) -> None:
        self._resolve_ckpt_alias()

    before_validate = before_test = before_predict = before_fit


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
            "callbacks": [PeakMemory(), TestMetricsWriter()],
        },
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"exit_on_error": False},
        args=args,
    )


_NOISE = (
    "Does not validate",
    "Subtypes:",
    "Errors:",
    "Given value",
    "Expected a <class 'NoneType'>",
)


def config_error_line(err: Exception) -> str:
    """jsonargparse's nested explanation of a bad option, cut down to the line that matters."""
    lines = [line.strip(" -").rstrip(":") for line in str(err).splitlines()]
    details = [line for line in lines[1:] if line and not line.startswith(_NOISE)]
    where = lines[0].rstrip(":") if lines else "config"
    detail = "; ".join(details) or where
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
    except argparse.ArgumentError as err:
        print(f"error: {config_error_line(err)}", file=sys.stderr)
        sys.exit(2)
