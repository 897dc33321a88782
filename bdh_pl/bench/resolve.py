"""One model's Lightning config, resolved by LightningCLI's own parser (the layers a user would
give as `--config` flags), and what is counted before it runs: parameters and FLOPs."""

from __future__ import annotations

import warnings
from argparse import ArgumentError
from typing import Any

import yaml

from bdh_pl.bench.spec import BASE_CONFIGS, BenchmarkSpec, ModelEntry
from bdh_pl.cli import DEFAULT_ROOT_DIR, BDHLightningCLI, config_error_line
from bdh_pl.data.datamodule import TextDataModule
from bdh_pl.errors import UserError
from bdh_pl.training.language_model import LanguageModel


class _ParseOnly(BDHLightningCLI):
    """The CLI's parser, links and defaults, stopping before anything is built."""

    def instantiate_classes(self) -> None:
        pass

    def _set_seed(self) -> None:
        pass  # the fit subprocess seeds itself; resolving a config must not


def layers(spec: BenchmarkSpec, entry: ModelEntry) -> list[str]:
    """The `--config` layers, in order: the base and dataset YAMLs, the model YAMLs, the
    benchmark's shared trainer/data/model settings, the entry's model_args."""
    result = [*BASE_CONFIGS, *spec.dataset, *entry.configs]
    if spec.shared:
        result.append(yaml.safe_dump(spec.shared))
    if entry.model_args:
        result.append(yaml.safe_dump({"model": {"init_args": entry.model_args}}))
    return result


def parse_lightning(args: list[str]) -> _ParseOnly:
    try:
        with warnings.catch_warnings():
            # `args` are the whole command here; this process's own argv is not for Lightning.
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            return _ParseOnly(
                LanguageModel,
                TextDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                run=False,
                trainer_defaults={"default_root_dir": DEFAULT_ROOT_DIR},
                parser_kwargs={"exit_on_error": False},
                args=args,
            )
    except ArgumentError as err:
        raise UserError(f"invalid config: {config_error_line(err, hint=False)}") from None


def lightning_config(spec: BenchmarkSpec, entry: ModelEntry) -> dict[str, Any]:
    """The full config LightningCLI resolves from the layers (a class swap drops the arguments
    the new class does not take, as on the command line)."""
    cli = parse_lightning([a for layer in layers(spec, entry) for a in ("--config", layer)])
    return yaml.safe_load(cli.parser.dump(cli.config))


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


def build(config: dict[str, Any]):
    """The LightningModule and DataModule of a resolved config, built by the CLI's parser (its
    argument links size the model from the data)."""
    cli = parse_lightning(["--config", yaml.safe_dump(config)])
    try:
        parser = cli.parser
        built = (
            parser.instantiate if hasattr(parser, "instantiate") else parser.instantiate_classes
        )(cli.config)
    except (ImportError, AttributeError, TypeError, ValueError) as err:
        raise UserError(f"cannot build the model: {err!r}") from None
    return built["model"], built["data"]


def static_figures(config: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Model class, parameters and FLOPs per token; and a warning if FLOPs could not be counted
    (a figure missing is no reason to skip the training)."""
    from bdh_pl import efficiency

    model, datamodule = build(config)
    figures: dict[str, Any] = {"model_class": type(model).__name__}
    figures.update(efficiency.parameter_counts(model.network))
    try:
        flops = efficiency.flops_per_token(
            model.network, datamodule.block_size, datamodule.vocab_size
        )
    except Exception as err:
        return figures, f"FLOPs not counted ({err!r})"
    figures.update(
        flops_per_token=flops["forward"], train_flops_per_token=flops["forward_backward"]
    )
    return figures, None
