"""The benchmark config, typed: parsed and type-checked by jsonargparse (so `--print_config`,
`--help` and one-line type errors come for free), then checked for what types cannot say
(files exist, names are plain and unique, every model has a budget).

    experiment: smoke                   # results go to {output_dir}/{experiment}/
    output_dir: results                 # optional
    dataset: configs/shakespeare.yaml   # the data (and trainer) config: a YAML or a list
    trainer: {...}                      # optional, for every model, applied after the model's
    data: {init_args: {...}}            #   own YAMLs: all models see the same data and steps
    model: {init_args: {...}}           #   and the same recipe (learning rate, schedule)
    budget: {flops: 6.0e13}             # default for every model: tokens, steps, flops or
                                        #   seconds; {zero_shot: true}: test only
    sweep: {lr: [0.5, 1, 2, 4]}         # optional: lr multipliers, dropout, weight_decay
    seeds: [1337, 1338]                 # optional: sweep on the first, repeat the winner
    env: {OMP_NUM_THREADS: 1}           # optional environment of the fit/test subprocesses
    models:
      - name: bdh-tiny                  # label; default: the model name or the YAML's stem
        config: bdh                     # model name, model YAML, or a list of them
        model_args: {n_layer: 2}        # optional model.init_args, applied last
        budget: {zero_shot: true}       # optional, this model's own
        sweep: {lr: [1, 2]}             # optional, this model's own
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveFloat, final

from bdh_pl.errors import UserError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def model_config_path(name: str) -> Path:
    """The model YAML of a model name (`bdh`, `gpt2-scratch`, ...): the one place the benchmark
    meets the model registry."""
    from bdh_pl.training.registry import model_config_path as registry_path

    return registry_path(name)  # UserError for an unknown name


BUDGET_KINDS = ("tokens", "steps", "flops", "seconds")


@final  # plain values, not a class to pick (jsonargparse's subclass mode)
@dataclass
class Budget:
    """What each model trains on: one of `tokens`, `steps`, `flops`, `seconds`, positive; or
    `zero_shot: true` (no training, test only).

    Args:
        tokens: training tokens; steps = ceil(tokens / tokens per step).
        steps: optimizer steps.
        flops: training FLOPs (forward + backward, counted per token by `measure_flops`);
            steps = ceil(flops / (training FLOPs per token x tokens per step)).
        seconds: wall-clock seconds of training and validation (Lightning's max_time); the
            learning-rate schedule is sized from a short timing of the model before the run.
        zero_shot: test the model as configured (pretrained weights), no training.
    """

    tokens: NonNegativeInt | None = None
    steps: NonNegativeInt | None = None
    flops: NonNegativeFloat | None = None
    seconds: NonNegativeFloat | None = None
    zero_shot: bool = False

    def __post_init__(self) -> None:
        # jsonargparse's checked numbers are subclasses: plain ones for YAML and JSON.
        for f in dataclasses.fields(self):
            if (value := getattr(self, f.name)) is not None and f.name != "zero_shot":
                setattr(self, f.name, int(value) if f.name in ("tokens", "steps") else float(value))

    @property
    def kind(self) -> str:
        """`tokens`, `steps`, `flops`, `seconds` or `zero_shot`."""
        given = [k for k in BUDGET_KINDS if getattr(self, k) is not None]
        return given[0] if given else "zero_shot"

    @property
    def trains(self) -> bool:
        return not self.zero_shot

    def max_steps(
        self,
        tokens_per_step: int,
        train_flops_per_token: float | None = None,
        seconds_per_step: float | None = None,
    ) -> int:
        """Optimizer steps the budget buys: the run's max_steps (for `seconds`, the estimate
        that sizes the learning-rate schedule; the clock ends the run)."""
        if self.steps is not None:
            return self.steps
        if self.tokens is not None:
            return math.ceil(self.tokens / tokens_per_step)
        if self.flops is not None:
            if not train_flops_per_token:
                raise UserError("a flops budget needs the model's training FLOPs per token")
            return math.ceil(self.flops / (train_flops_per_token * tokens_per_step))
        if self.seconds is not None:
            if not seconds_per_step:
                raise UserError("a seconds budget needs the model's measured seconds per step")
            return max(1, math.floor(self.seconds / seconds_per_step))
        raise UserError("a zero-shot budget trains no steps")


@final
@dataclass
class Sweep:
    """The settings each model is trained with (every combination); the one with the lowest
    validation loss represents the model.

    Args:
        lr: multipliers of the model's learning rate (and of its min_learning_rate, so the
            schedule keeps its shape).
        dropout: dropout values (default: the model's own).
        weight_decay: AdamW weight decay values (default: the model's own).
    """

    lr: list[PositiveFloat] = field(default_factory=lambda: [1.0])
    dropout: list[NonNegativeFloat] | None = None
    weight_decay: list[NonNegativeFloat] | None = None

    def __post_init__(self) -> None:
        self.lr = [float(v) for v in self.lr]
        for name in ("dropout", "weight_decay"):
            if (values := getattr(self, name)) is not None:
                setattr(self, name, [float(v) for v in values])

    def settings(self) -> list[Setting]:
        return [
            Setting(lr, dropout, decay)
            for lr in self.lr
            for dropout in (self.dropout if self.dropout is not None else [None])
            for decay in (self.weight_decay if self.weight_decay is not None else [None])
        ]


@dataclass(frozen=True)
class Setting:
    """One point of a sweep: a learning-rate multiplier, and dropout and weight decay when
    swept (None: the model's own)."""

    lr_scale: float = 1.0
    dropout: float | None = None
    weight_decay: float | None = None

    @property
    def label(self) -> str:
        """A plain name for folders and tables: `lr2x`, `lr0.5x_do0.1_wd0`."""
        parts = [f"lr{self.lr_scale:g}x"]
        if self.dropout is not None:
            parts.append(f"do{self.dropout:g}")
        if self.weight_decay is not None:
            parts.append(f"wd{self.weight_decay:g}")
        return "_".join(parts)


@final
@dataclass
class ModelEntry:
    """One model of the matrix.

    Args:
        config: a model name (configs/model/<name>.yaml), a model YAML, or a list of them.
        name: its label in the results (default: the last config's stem).
        model_args: this model's model.init_args, applied after everything else.
        budget: this model's budget (default: the benchmark's).
        sweep: this model's sweep (default: the benchmark's).
    """

    config: str | list[str]
    name: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    budget: Budget | None = None
    sweep: Sweep | None = None

    @property
    def configs(self) -> list[str]:
        return [self.config] if isinstance(self.config, str) else list(self.config)


@dataclass
class BenchmarkSpec:
    """A benchmark: every model trained on the same data for the same budget, then tested.

    Args:
        experiment: results go to {output_dir}/{experiment}/ (letters, digits, . _ -).
        dataset: the data (and trainer) config: a YAML or a list of them.
        models: the models, each a model name or a mapping (see ModelEntry).
        output_dir: the results root.
        trainer: trainer settings for every model, applied after the model's YAMLs.
        data: data settings (`init_args: {...}`) for every model.
        model: model settings (`init_args: {...}`) for every model: the shared recipe.
        budget: the default budget of every model.
        sweep: the default sweep of every model (default: the configured recipe only).
        seeds: seeds of the runs (seed_everything and data.seed, which the CLI links to the
            model's dropout seed); the sweep runs on the first, the chosen setting is repeated
            on the others (default: the dataset config's seed).
        env: environment variables of the fit and test subprocesses.
    """

    experiment: str
    dataset: str | list[str]
    models: list[ModelEntry]
    output_dir: str = "results"
    trainer: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    budget: Budget | None = None
    sweep: Sweep | None = None
    seeds: list[int] | None = None
    env: dict[str, str | int | float] = field(default_factory=dict)

    @property
    def out_dir(self) -> Path:
        return Path(self.output_dir) / self.experiment

    @property
    def entries(self) -> list[ModelEntry]:
        """The models, each a ModelEntry (after `check`: named, with its YAMLs and budget)."""
        return [ModelEntry(m) if isinstance(m, str) else m for m in self.models]

    @property
    def shared(self) -> dict[str, Any]:
        """The trainer/data/model settings every model gets."""
        return {k: v for k in ("trainer", "data", "model") if (v := getattr(self, k))}


def parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m bdh_pl benchmark",
        description="Train and test every model of a benchmark config; write results/.",
        exit_on_error=False,
    )
    parser.add_argument("--config", action=ActionConfigFile, help="benchmark YAML")
    parser.add_class_arguments(BenchmarkSpec)
    return parser


def parse(argv: list[str]) -> BenchmarkSpec:
    """The spec from command-line arguments (`--config X.yaml`, overrides), checked."""
    from argparse import ArgumentError

    from bdh_pl.errors import config_error_line

    p = parser()
    try:
        namespace = p.parse_args(argv)
    except ArgumentError as err:
        where = str(err).splitlines()[0].rstrip(":") if str(err) else ""
        detail = config_error_line(err, hint=False)
        where = f"{where}: " if where and where not in detail else ""
        raise UserError(f"benchmark config: {where}{detail}") from None
    namespace = (
        p.instantiate(namespace) if hasattr(p, "instantiate") else p.instantiate_classes(namespace)
    )
    fields = {f.name for f in dataclasses.fields(BenchmarkSpec)}
    return check(BenchmarkSpec(**{k: v for k, v in vars(namespace).items() if k in fields}))


def load_spec(path: str | Path) -> BenchmarkSpec:
    if not Path(path).is_file():
        raise UserError(f"benchmark config {path} not found")
    return parse(["--config", str(path)])


def check(spec: BenchmarkSpec) -> BenchmarkSpec:
    """What the types do not say; returns the spec with every model named, its configs as
    paths and its budget set (the form `as_yaml` writes and that runs again as is)."""
    if not NAME.match(spec.experiment):
        raise UserError("experiment must be a plain name (letters, digits, . _ -)")
    datasets = [spec.dataset] if isinstance(spec.dataset, str) else spec.dataset
    for path in datasets:
        if not Path(path).is_file():
            raise UserError(f"dataset: {path} not found")
    if not datasets or not spec.models:
        raise UserError("dataset and models must not be empty")
    _check_budget(spec.budget, "budget")
    _check_sweep(spec.sweep, "sweep")
    if spec.seeds is not None and (not spec.seeds or len(set(spec.seeds)) != len(spec.seeds)):
        raise UserError(f"seeds: give distinct seeds, e.g. [1337, 1338], got {spec.seeds}")
    entries = [_check_entry(e, i, spec.budget, spec.sweep) for i, e in enumerate(spec.entries)]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise UserError(f"model names must be unique, got {names} (set `name:`)")
    return dataclasses.replace(
        spec,
        dataset=datasets,
        models=entries,
        env={str(k): str(v) for k, v in spec.env.items()},
    )


def _check_budget(budget: Budget | None, where: str) -> None:
    if budget is None:
        return
    given = [k for k in BUDGET_KINDS if getattr(budget, k) is not None]
    if budget.zero_shot:
        if given:
            raise UserError(f"{where}: zero_shot trains nothing; drop {given[0]}")
        return
    if len(given) != 1:
        raise UserError(
            f"{where}: give one of {', '.join(BUDGET_KINDS)} (or zero_shot: true), got "
            f"{given or 'none'}"
        )
    if not getattr(budget, given[0]):
        raise UserError(
            f"{where}.{given[0]} is 0: a budget must be positive (to test without training, "
            "write `budget: {zero_shot: true}`)"
        )


def _check_sweep(sweep: Sweep | None, where: str) -> None:
    if sweep is None:
        return
    for name in ("lr", "dropout", "weight_decay"):
        values = getattr(sweep, name)
        if values is not None and (not values or len(set(values)) != len(values)):
            raise UserError(f"{where}.{name}: give distinct numbers, e.g. [1, 2], got {values}")
    if sweep.dropout and max(sweep.dropout) >= 1:
        raise UserError(f"{where}.dropout: values must be in [0, 1), got {sweep.dropout}")


def _check_entry(
    entry: ModelEntry, index: int, default: Budget | None, default_sweep: Sweep | None
) -> ModelEntry:
    where = f"models[{index}]"
    configs = [model_config(ref, where) for ref in entry.configs]
    name = entry.name or Path(configs[-1]).stem
    if not NAME.match(name):
        raise UserError(f"{where}: name {name!r} must be letters, digits, . _ - only")
    _check_budget(entry.budget, f"{where}.budget")
    _check_sweep(entry.sweep, f"{where}.sweep")
    budget = entry.budget or default
    if budget is None:
        raise UserError(
            f"{where}: needs a budget: `budget: {{tokens: N}}` (or flops, seconds, steps; "
            "`{zero_shot: true}`: test only)"
        )
    return ModelEntry(configs, name, entry.model_args, budget, entry.sweep or default_sweep)


def model_config(ref: str, where: str = "model") -> str:
    """A model YAML path, or a model name mapped to its YAML (relative to the working folder
    when it lies below it, as a user would write it)."""
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        if not Path(ref).is_file():
            raise UserError(f"{where}: model config {ref} not found")
        return ref
    try:
        path = model_config_path(ref)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    if not path.is_file():
        raise UserError(f"{where}: no model {ref!r} ({path} not found)")
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


def as_yaml(spec: BenchmarkSpec) -> str:
    """The checked spec in its own schema, unset values left out: it runs again as is."""
    return yaml.safe_dump(_without_none(dataclasses.asdict(spec)), sort_keys=False)


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value
