"""The benchmark config, typed: parsed and type-checked by jsonargparse (so `--print_config`,
`--help` and one-line type errors come for free), then checked for what types cannot say
(files exist, names are plain and unique, every model has a budget).

    experiment: smoke                   # results go to {output_dir}/{experiment}/
    output_dir: results                 # optional
    dataset: configs/shakespeare.yaml   # the data (and trainer) config: a YAML or a list
    trainer: {...}                      # optional, for every model, applied after the model's
    data: {init_args: {...}}            #   own YAMLs: all models see the same data and steps
    model: {init_args: {...}}           #   and the same recipe (learning rate, schedule)
    budget: {tokens: 1000000}           # default for every model: tokens or steps
    env: {OMP_NUM_THREADS: 1}           # optional environment of the fit/test subprocesses
    models:
      - name: bdh-tiny                  # label; default: the model name or the YAML's stem
        config: bdh                     # model name, model YAML, or a list of them
        model_args: {n_layer: 2}        # optional model.init_args, applied last
        budget: {tokens: 0}             # optional; 0: zero-shot, test only
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
from jsonargparse.typing import NonNegativeInt, final

from bdh_pl.errors import UserError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# The Lightning configs every model starts from, before its own: the dataset config is the spec's.
BASE_CONFIGS: list[str] = []


def model_config_path(name: str) -> Path:
    """The model YAML of a model name (`bdh`, `gpt2-scratch`, ...): the one place the benchmark
    meets the model registry."""
    from bdh_pl.training.registry import model_config_path as registry_path

    return registry_path(name)  # UserError for an unknown name


@final  # plain values, not a class to pick (jsonargparse's subclass mode)
@dataclass
class Budget:
    """What a model trains on: `tokens` or `steps`, one of them; 0 is zero-shot (test only).

    Args:
        tokens: training tokens; steps = ceil(tokens / tokens per step).
        steps: optimizer steps.
    """

    tokens: NonNegativeInt | None = None
    steps: NonNegativeInt | None = None

    def __post_init__(self) -> None:
        # jsonargparse's checked ints are int subclasses: plain ints for YAML and JSON.
        for f in dataclasses.fields(self):
            if (value := getattr(self, f.name)) is not None:
                setattr(self, f.name, int(value))

    @property
    def trains(self) -> bool:
        return bool(self.tokens or self.steps)

    def max_steps(self, tokens_per_step: int) -> int:
        if self.steps is not None:
            return self.steps
        return math.ceil(self.tokens / tokens_per_step)


@final
@dataclass
class ModelEntry:
    """One model of the matrix.

    Args:
        config: a model name (configs/model/<name>.yaml), a model YAML, or a list of them.
        name: its label in the results (default: the last config's stem).
        model_args: this model's model.init_args, applied after everything else.
        budget: this model's budget (default: the benchmark's).
    """

    config: str | list[str]
    name: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    budget: Budget | None = None

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

    from bdh_pl.cli import config_error_line

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
    entries = [_check_entry(e, i, spec.budget) for i, e in enumerate(spec.entries)]
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
    if budget is not None and (budget.tokens is None) == (budget.steps is None):
        raise UserError(f"{where}: give tokens or steps, not both or neither")


def _check_entry(entry: ModelEntry, index: int, default: Budget | None) -> ModelEntry:
    where = f"models[{index}]"
    configs = [model_config(ref, where) for ref in entry.configs]
    name = entry.name or Path(configs[-1]).stem
    if not NAME.match(name):
        raise UserError(f"{where}: name {name!r} must be letters, digits, . _ - only")
    _check_budget(entry.budget, f"{where}.budget")
    budget = entry.budget or default
    if budget is None:
        raise UserError(f"{where}: needs a budget: `budget: {{tokens: N}}` (0: zero-shot)")
    return ModelEntry(configs, name, entry.model_args, budget)


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
