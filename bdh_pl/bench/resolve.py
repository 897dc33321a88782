"""One model's Lightning config, resolved by LightningCLI's own parser (the layers a user would
give as `--config` flags), one sweep setting and seed applied to it, and what is counted or
timed before it runs: parameters, FLOPs, seconds per step."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from argparse import ArgumentError
from typing import Any

import yaml

from bdh_pl.bench.budget import Setting
from bdh_pl.bench.spec import BenchmarkSpec, ModelEntry
from bdh_pl.errors import UserError, config_error_line


def layers(spec: BenchmarkSpec, entry: ModelEntry) -> list[str]:
    """The `--config` layers, in order: the dataset YAMLs, the model YAMLs, the
    benchmark's shared trainer/data/model settings, the entry's model_args (fields of the
    model's config: `model.init_args.config`)."""
    result = [*spec.dataset, *entry.configs]
    if spec.shared:
        result.append(yaml.safe_dump(spec.shared))
    if entry.model_args:
        result.append(yaml.safe_dump({"model": {"init_args": {"config": entry.model_args}}}))
    return result


def parse_lightning(args: list[str]):
    """The CLI's parser, links and defaults on `args`, stopping before anything is built."""
    from bdh_pl.training.glue.cli import DEFAULT_ROOT_DIR, BDHLightningCLI, build_cli

    class ParseOnly(BDHLightningCLI):
        def instantiate_classes(self) -> None:
            pass

        def _set_seed(self) -> None:
            pass  # the fit subprocess seeds itself; resolving a config must not

    try:
        with warnings.catch_warnings():
            # `args` are the whole command here; this process's own argv is not for Lightning.
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            return build_cli(
                args,
                ParseOnly,
                run=False,
                trainer_defaults={"default_root_dir": DEFAULT_ROOT_DIR},
            )
    except ArgumentError as err:
        raise UserError(f"invalid config: {config_error_line(err, hint=False)}") from None


def lightning_config(spec: BenchmarkSpec, entry: ModelEntry) -> dict[str, Any]:
    """The full config LightningCLI resolves from the layers (a class swap drops the arguments
    the new class does not take, as on the command line)."""
    cli = parse_lightning([a for layer in layers(spec, entry) for a in ("--config", layer)])
    return yaml.safe_load(cli.parser.dump(cli.config))


def apply_setting(config: dict[str, Any], setting: Setting, seed: int | None) -> dict[str, Any]:
    """The resolved config with one sweep setting and seed: the learning rate and its floor
    scaled together, dropout and weight decay replaced, the seed set for weights and data
    (the CLI links data.seed to the model's dropout seed)."""
    config = yaml.safe_load(yaml.safe_dump(config))  # a copy
    model = config["model"]["init_args"]
    swept = [
        ("config", "dropout", setting.dropout),
        ("training", "weight_decay", setting.weight_decay),
    ]
    for group, key, value in swept:
        if value is not None:
            if key not in model.get(group, {}):
                raise UserError(f"{config['model']['class_path']} has no {group}.{key} to sweep")
            model[group][key] = value
    if setting.lr_scale != 1:
        model["training"]["learning_rate"] *= setting.lr_scale
        model["training"]["min_learning_rate"] *= setting.lr_scale
    if seed is not None:
        config["seed_everything"] = seed
        config["data"]["init_args"]["seed"] = seed
    return config


def run_seed(config: dict[str, Any]) -> int | None:
    """The seed a resolved config trains with (the data's, linked to the model's)."""
    return config["data"]["init_args"].get("seed")


def build(config: dict[str, Any]):
    """The LightningModule and DataModule of a resolved config, built by the CLI's parser (its
    argument links size the model from the data)."""
    cli = parse_lightning(["--config", yaml.safe_dump(config)])
    try:
        parser = cli.parser
        built = (
            parser.instantiate if hasattr(parser, "instantiate") else parser.instantiate_classes
        )(cli.config)
    except ValueError as err:  # jsonargparse's nested explanation: the line that matters
        raise UserError(f"cannot build the model: {config_error_line(err, hint=False)}") from None
    except (ImportError, AttributeError, TypeError) as err:
        raise UserError(f"cannot build the model: {err!r}") from None
    return built["model"], built["data"]


def static_figures(model, datamodule) -> tuple[dict[str, Any], str | None]:
    """Model class, parameters and FLOPs per token; and a warning if FLOPs could not be counted
    (a figure missing is no reason to skip the training)."""
    from bdh_pl.training.flops import flops_per_token, parameter_counts, training_flops_per_token

    figures: dict[str, Any] = {"model_class": type(model).__name__}
    figures.update(parameter_counts(model.network))
    try:
        rule = training_flops_per_token(model.network, datamodule.block_size)
        measured = flops_per_token(model.network, datamodule.block_size)
    except Exception as err:
        return figures, f"FLOPs not counted ({err!r})"
    figures.update(  # the rule's (3 x the reference forward) and the kernels' own count
        flops_per_token=rule["forward"],
        train_flops_per_token=rule["train"],
        train_flops_per_token_measured=measured["forward_backward"],
    )
    return figures, None


def train_split_tokens(datamodule, required: bool) -> int | None:
    """Tokens of the training split (what an epoch is); None when the data cannot be read
    here and nothing depends on it (a frontier's epoch cap does: then the error)."""
    try:
        return len(datamodule.split_tokens("train"))
    except UserError:
        if required:
            raise
        return None


def seconds_per_step(
    model, datamodule, config: dict[str, Any], threads: int | None, steps: int = 3
) -> float:
    """Wall-clock seconds per optimizer step, validation included at its share, timed here on
    a few steps of random windows (after one untimed step): what sizes the learning-rate
    schedule of a `seconds` budget. On the GPU when the config would use one; with the
    fit's intra-op threads, at the precision the fit will run (bf16 on a CPU without it: fp32,
    as the fit's own line will say)."""
    import torch

    from bdh_pl.training.trainer_options import run_precision

    trainer = config["trainer"]
    use_cuda = torch.cuda.is_available() and trainer.get("accelerator") in (
        None,
        "auto",
        "gpu",
        "cuda",
    )
    device = torch.device("cuda" if use_cuda else "cpu")
    precision = str(run_precision(trainer)[0] or "32")
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
    autocast = (
        torch.autocast(device.type, dtype=dtype)
        if "mixed" in precision
        else contextlib.nullcontext()
    )
    network = model.network.to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-6)
    accumulate = int(trainer.get("accumulate_grad_batches") or 1)
    data = config["data"]["init_args"]
    vocab = datamodule.vocab_size

    def batch(size: int) -> torch.Tensor:
        return torch.randint(0, vocab, (size, datamodule.block_size), device=device)

    def train_step() -> None:
        for _ in range(accumulate):
            ids = batch(int(data["batch_size"]))
            with autocast:
                logits = network(ids)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), ids.flatten())
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def eval_batch() -> None:
        with torch.no_grad(), autocast:
            network(batch(datamodule.eval_batch_size))

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[device] if use_cuda else []):
            step, evaluation = _timed(train_step, steps, device), _timed(eval_batch, 1, device)
    finally:
        torch.set_num_threads(previous)
        network.to("cpu")
        network.zero_grad(set_to_none=True)
    interval = trainer.get("val_check_interval")
    if not isinstance(interval, int) or interval <= 0:
        return step  # validation once per (endless) epoch or by fraction: not counted
    return step + evaluation * validation_batches(datamodule, trainer) / interval


def _timed(fn, repeats: int, device) -> float:
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()  # warm-up: allocations, kernels chosen
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def validation_batches(datamodule, trainer: dict[str, Any]) -> int:
    """Batches of one validation pass: the whole validation split in disjoint windows (or the
    config's stride), cut by limit_val_batches."""
    datamodule.setup("validate")
    n = len(datamodule.val_dataloader())
    limit = trainer.get("limit_val_batches")
    if isinstance(limit, int) and not isinstance(limit, bool):
        return min(n, limit)
    if isinstance(limit, float):
        return max(1, math.ceil(n * limit))
    return n
