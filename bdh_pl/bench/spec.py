"""The benchmark config, typed: parsed and type-checked by jsonargparse (so `--print_config`,
`--help` and one-line type errors come for free), then checked for what types cannot say
(files exist, names are plain and unique, every model has a budget).

    experiment: smoke                   # results go to {output_dir}/{experiment}/
    output_dir: results                 # optional
    dataset: configs/shakespeare.yaml   # the data (and trainer) config: a YAML or a list
    trainer: {...}                      # optional, for every model, applied after the model's
    data: {init_args: {...}}            #   own YAMLs: all models see the same data and steps
    model: {init_args: {training: {...}}}  # and the same recipe (learning rate, schedule)
    budget: {flops: 6.0e13}             # default for every model: tokens, steps, flops or
                                        #   seconds; {zero_shot: true}: test only
    sweep: {lr: [0.5, 1, 2, 4]}         # optional: lr multipliers, dropout, weight_decay
    seeds: [1337, 1338]                 # optional: sweep on the first, repeat the winner
    env: {OMP_NUM_THREADS: 1}           # optional environment of the fit/test subprocesses
    jobs: 2                             # optional: runs at once (one subprocess each)
    validations: 4                      # optional: validations per run (val_check_interval)
    models:
      - name: bdh-tiny                  # label; default: the model name or the YAML's stem
        config: bdh                     # model name, model YAML, or a list of them
        model_args: {n_layer: 2}        # optional model.init_args.config fields, applied last
        budget: {zero_shot: true}       # optional, this model's own
        sweep: {lr: [1, 2]}             # optional, this model's own

A compute frontier (docs/benchmark.md): `budgets` instead of `budget`, and per model (a family)
a ladder of sizes, each budget training a window of the ladder that moves up with the budget:

    budgets: [{flops: 1e13}, {flops: 3e13}, {flops: 1e14}]
    sweep: {lr: [0.5, 1, 2]}            # on one size at the smallest budget per family
    lr_sweeps: [{budget: 1e14}]         # optional: again at larger budgets (rates between)
    seeds: [1337, 1338]                 # the best size of each budget repeated on the others
    models:
      - name: bdh
        config: bdh
        sizes:                          # smallest first
          - {name: bdh-xs, model_args: {n_layer: 2, n_embd: 64}}
          - ...
        sizes_per_budget: 3             # the window (default: every size at every budget)
        windows: [[bdh-xs, bdh-s], ...] # or each budget's sizes by name
        sweep_size: bdh-s               # default: the middle of the smallest budget's window
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser
from jsonargparse.typing import NonNegativeInt, PositiveFloat, PositiveInt, final

from bdh_pl.bench.budget import (
    BUDGET_KINDS,
    NAME,
    Budget,
    LrSweep,
    Shape,
    Size,
    Sweep,
    budget_text,
    check_lr_sweeps,
    check_sweep,
)
from bdh_pl.bench.ladder import StopRule, check_ladder, check_names
from bdh_pl.errors import UserError


def model_config_path(name: str) -> Path:
    """The model YAML of a model name (`bdh`, `gpt2-scratch`, ...): the one place the benchmark
    meets the model registry."""
    from bdh_pl.training.registry import model_config_path as registry_path

    return registry_path(name)  # UserError for an unknown name


@final
@dataclass
class ModelEntry:
    """One model of the matrix (of a compute frontier: one family).

    Args:
        config: a model name (configs/model/<name>.yaml), a model YAML, or a list of them.
        name: its label in the results (default: the last config's stem).
        model_args: this model's config fields (`model.init_args.config`), applied last.
        budget: this model's budget (default: the benchmark's).
        sweep: this model's sweep (default: the benchmark's); on a frontier, run on
            `sweep_size` at the smallest budget, its best setting reused for every run.
        sizes: a frontier's size ladder, smallest first (default: one size, this model).
        sizes_per_budget: how many neighbouring sizes each budget trains: the window moves
            from the smallest sizes at the smallest budget to the largest at the largest
            (IsoFLOP style; default: every size at every budget).
        windows: each budget's sizes by name, one list per budget (instead of the even
            windows of `sizes_per_budget`): to move a window where the last run found its
            minimum at an edge.
        sweep_size: the size the learning-rate sweep runs on (default: the middle size of
            the smallest budget's window).
        shapes: shapes to compare at the smallest budget on `sweep_size`, each at its own
            best learning rate (`shape_sweep`); the ladder then uses the best one.
        shape_sweep: the learning-rate multipliers of each shape (default: `sweep`).
    """

    config: str | list[str]
    name: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    budget: Budget | None = None
    sweep: Sweep | None = None
    sizes: list[Size] | None = None
    sizes_per_budget: PositiveInt | None = None
    windows: list[list[str]] | None = None
    sweep_size: str | None = None
    shapes: list[Shape] | None = None
    shape_sweep: Sweep | None = None
    stop_after_behind: StopRule | None = None  # a frontier family's stop (ladder.StopRule)

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
        budgets: a compute frontier's budgets, one kind, ascending (instead of `budget`):
            each model is a family with a ladder of `sizes`; see ModelEntry.
        jobs: runs at once, each a fit or test subprocess (with `env: {OMP_NUM_THREADS: 1}`,
            one core each).
        validations: validations per run: val_check_interval = steps // validations, and
            the last step is always validated (default: the trainer config's interval).
        max_epochs_of_data: a frontier's cap on repeated data: a run that would read more
            epochs of the training split is not run, its record `bound` with the reason.
        lr_sweeps: a frontier's learning-rate sweeps past the smallest budget (see LrSweep),
            ascending: each budget's rate is log-linear in log budget between the two sweeps
            around it (beyond the last, the line of the last two).
        lr_widen: how many times a sweep whose best is its largest (smallest) rate adds the
            next x2 (x1/2), until the best is interior.
        repeat_largest: repeat the frontier points of only this many largest budgets on the
            other seeds (default: every budget's).
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
    budgets: list[Budget] | None = None
    jobs: PositiveInt = 1
    validations: PositiveInt | None = None
    max_epochs_of_data: PositiveFloat = 4.0
    lr_sweeps: list[LrSweep] | None = None
    lr_widen: NonNegativeInt = 3
    repeat_largest: PositiveInt | None = None

    @property
    def frontier(self) -> bool:
        """Whether this is a compute frontier (budgets x sizes) rather than one budget."""
        return self.budgets is not None

    @property
    def out_dir(self) -> Path:
        return Path(self.output_dir) / self.experiment

    @property
    def entries(self) -> list[ModelEntry]:
        """The models, each a ModelEntry (after `check`: named, with its YAMLs and budget)."""
        return [ModelEntry(m) if isinstance(m, str) else m for m in self.models]

    @property
    def shared(self) -> dict[str, Any]:  # the trainer/data/model settings every model gets
        return {k: v for k in ("trainer", "data", "model") if (v := getattr(self, k))}


def parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m bdh_pl benchmark",
        description=(
            "Train and test every model of a benchmark config; write results/. --plan (and "
            "--plan_from RESULTS): print a frontier's runs, FLOPs and hours, run nothing. --rekey: "
            "keep earlier records by run folder (the configs' text changed, not the runs)."
        ),
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
    check_sweep(spec.sweep, "sweep")
    if spec.seeds is not None and (not spec.seeds or len(set(spec.seeds)) != len(spec.seeds)):
        raise UserError(f"seeds: give distinct seeds, e.g. [1337, 1338], got {spec.seeds}")
    if spec.seeds and (bad := [s for s in spec.seeds if not 0 <= s < 2**32]):
        raise UserError(f"seeds: each must be in [0, 2**32) (numpy's range), got {bad}")
    if spec.frontier:
        _check_budgets(spec)
    elif spec.lr_sweeps or spec.repeat_largest:
        raise UserError("lr_sweeps and repeat_largest belong to a frontier (`budgets`)")
    entries = [
        _check_entry(e, i, spec.budget, spec.sweep, spec.budgets)
        for i, e in enumerate(spec.entries)
    ]
    check_names(entries)  # and their stop rules
    return dataclasses.replace(
        spec,
        dataset=datasets,
        models=entries,
        env={str(k): str(v) for k, v in spec.env.items()},
        jobs=int(spec.jobs),  # plain numbers for YAML (jsonargparse's are subclasses)
        validations=int(spec.validations) if spec.validations else None,
        max_epochs_of_data=float(spec.max_epochs_of_data),
        lr_sweeps=list(spec.lr_sweeps) if spec.lr_sweeps else None,
        lr_widen=int(spec.lr_widen),
        repeat_largest=int(spec.repeat_largest) if spec.repeat_largest else None,
    )


def _check_budgets(spec: BenchmarkSpec) -> None:
    budgets = spec.budgets
    if spec.budget is not None:
        raise UserError("give `budget` (one budget) or `budgets` (a compute frontier), not both")
    if not budgets:
        raise UserError("budgets: give at least one, e.g. [{flops: 1e13}, {flops: 3e13}]")
    for i, budget in enumerate(budgets):
        _check_budget(budget, f"budgets[{i}]")
        if not budget.trains:
            raise UserError(f"budgets[{i}]: a frontier trains: zero_shot has no place in it")
    kinds = {b.kind for b in budgets}
    values = [getattr(b, b.kind) for b in budgets]
    if len(kinds) > 1 or values != sorted(set(values)):
        raise UserError(
            f"budgets: give one kind in ascending order without repeats, got "
            f"{[budget_text(b) for b in budgets]}"
        )
    check_lr_sweeps(spec.lr_sweeps or [], values)


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
    if not (value := getattr(budget, given[0])) or not math.isfinite(value):
        raise UserError(
            f"{where}.{given[0]} is {value:g}: a budget must be a positive finite number (to test "
            "without training, write `budget: {zero_shot: true}`)"
        )


def _check_entry(
    entry: ModelEntry,
    index: int,
    default: Budget | None,
    default_sweep: Sweep | None,
    budgets: list[Budget] | None = None,
) -> ModelEntry:
    where = f"models[{index}]"
    configs = [model_config(ref, where) for ref in entry.configs]
    name = entry.name or Path(configs[-1]).stem
    if not NAME.match(name):
        raise UserError(f"{where}: name {name!r} must be letters, digits, . _ - only")
    _check_budget(entry.budget, f"{where}.budget")
    check_sweep(entry.sweep, f"{where}.sweep")
    sweep = entry.sweep or default_sweep
    if budgets is not None:
        if entry.budget is not None:
            raise UserError(f"{where}: a frontier's models take the benchmark's `budgets`")
        sizes, per_budget, sweep_size = check_ladder(entry, name, where, len(budgets))
        check_sweep(entry.shape_sweep, f"{where}.shape_sweep")
        for shape in entry.shapes or []:
            if not NAME.match(shape.name):
                raise UserError(
                    f"{where}: shape name {shape.name!r} must be letters, digits, . _ -"
                )
        return ModelEntry(
            configs, name, entry.model_args, None, sweep, sizes, per_budget, entry.windows,
            sweep_size, entry.shapes, entry.shape_sweep, entry.stop_after_behind,
        )  # fmt: skip
    if entry.sizes or entry.sizes_per_budget or entry.sweep_size or entry.windows or entry.shapes:
        raise UserError(
            f"{where}: sizes belong to a compute frontier: give `budgets: [...]` instead of "
            "`budget`"
        )
    budget = entry.budget or default
    if budget is None:
        raise UserError(
            f"{where}: needs a budget: `budget: {{tokens: N}}` (or flops, seconds, steps; "
            "`{zero_shot: true}`: test only)"
        )
    return ModelEntry(configs, name, entry.model_args, budget, sweep)


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
