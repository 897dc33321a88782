"""The command line: LightningCLI's fit/validate/test/predict, plus bdh-pl's own tools.

python -m bdh_pl fit  --config configs/shakespeare.yaml
python -m bdh_pl test --config configs/shakespeare.yaml --ckpt_path best.ckpt
python -m bdh_pl benchmark|plot|generate|speed ...   (see each tool's --help)
"""

from __future__ import annotations

import importlib
import sys
import warnings

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from bdh_pl.callbacks import PeakMemory, TestMetricsWriter
from bdh_pl.data.datamodule import TextDataModule
from bdh_pl.errors import UserError
from bdh_pl.lm_module import LanguageModel

DEFAULT_ROOT_DIR = "lightning_logs"
# Subcommands that are not LightningCLI's: name -> module with a `main(argv)`.
TOOLS: dict[str, str] = {}


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
        args=args,
    )


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
