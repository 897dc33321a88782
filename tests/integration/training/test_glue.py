"""Every Lightning method bdh-pl overrides, checked against Lightning itself: the first tests to
fail when Lightning is upgraded (pyproject pins one minor release; raise the pin after these
pass on the new one).

OVERRIDES pins, for each (class, method), the Lightning class that defines the method and that
method's parameters as of Lightning 2.6: a release that moves, renames or re-signs one fails
here, not deep inside a run. Each override must also accept every call Lightning's own method
accepts. BEHAVIOUR names the tests that run each glue class for real (most start a run); the
list is checked to exist and to cover every class."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from lightning.pytorch.cli import LightningCLI

from helpers import REPO, slow_saves

TESTS = REPO / "tests"
DELAY = "BDH_PL_TEST_SAVE_DELAY"
LIGHTNING = ("lightning", "pytorch_lightning", "lightning_fabric")
GLUE = "bdh_pl.training.glue"
# Modules outside glue/ with a Lightning subclass, kept beside what they serve (glue/__init__.py).
ELSEWHERE = ("bdh_pl.training.memory", "bdh_pl.data.datamodule")

# (module.Class, method): (the Lightning class defining it, its parameters without self, as of
# Lightning 2.6; `*` and `**` mark variadic ones).
OVERRIDES: dict[tuple[str, str], tuple[str, str]] = {
    ("cli.BDHLightningCLI", "subcommands"): ("LightningCLI", ""),
    ("cli.BDHLightningCLI", "add_arguments_to_parser"): ("LightningCLI", "parser"),
    ("cli.BDHLightningCLI", "parse_arguments"): ("LightningCLI", "parser args"),
    ("cli.BDHLightningCLI", "_set_seed"): ("LightningCLI", ""),
    ("cli.BDHLightningCLI", "instantiate_trainer"): ("LightningCLI", "**kwargs"),
    ("cli.BDHLightningCLI", "_parse_ckpt_path"): ("LightningCLI", ""),
    ("trainer.Trainer", "received_sigterm"): ("Trainer", ""),
    ("trainer.Trainer", "fit"): (
        "Trainer",
        "model train_dataloaders val_dataloaders datamodule ckpt_path weights_only",
    ),
    ("trainer.Trainer", "validate"): (
        "Trainer",
        "model dataloaders ckpt_path verbose datamodule weights_only",
    ),
    ("trainer.Trainer", "test"): (
        "Trainer",
        "model dataloaders ckpt_path verbose datamodule weights_only",
    ),
    ("checkpoint_io.AtomicCheckpointIO", "save_checkpoint"): (
        "TorchCheckpointIO",
        "checkpoint path storage_options",
    ),
    ("checkpoint_io.LastCheckpoint", "__init__"): (
        "ModelCheckpoint",
        "dirpath filename monitor verbose save_last save_top_k save_on_exception "
        "save_weights_only mode auto_insert_metric_name every_n_train_steps "
        "train_time_interval every_n_epochs save_on_train_epoch_end enable_version_counter",
    ),
    ("checkpoint_io.LastCheckpoint", "state_key"): ("ModelCheckpoint", ""),
    ("checkpoint_io.LastCheckpoint", "on_train_batch_end"): (
        "ModelCheckpoint",
        "trainer pl_module outputs batch batch_idx",
    ),
    ("checkpoint_io.LastCheckpoint", "on_train_epoch_end"): (
        "ModelCheckpoint",
        "trainer pl_module",
    ),
    ("checkpoint_io.LastCheckpoint", "on_validation_end"): ("ModelCheckpoint", "trainer pl_module"),
    ("checkpoint_io.LastCheckpoint", "on_train_end"): ("ModelCheckpoint", "trainer pl_module"),
    ("checkpoint_io.LastCheckpoint", "on_exception"): (
        "ModelCheckpoint",
        "trainer pl_module exception",
    ),
    ("callbacks.PeakMemory", "on_train_start"): ("Callback", "trainer pl_module"),
    ("callbacks.PeakMemory", "on_train_batch_end"): (
        "Callback",
        "trainer pl_module outputs batch batch_idx",
    ),
    ("callbacks.PeakMemory", "on_validation_epoch_start"): ("Callback", "trainer pl_module"),
    ("callbacks.PeakMemory", "on_validation_epoch_end"): ("Callback", "trainer pl_module"),
    ("callbacks.PeakMemory", "on_test_epoch_start"): ("Callback", "trainer pl_module"),
    ("callbacks.PeakMemory", "on_test_epoch_end"): ("Callback", "trainer pl_module"),
    ("callbacks.ValidateFinalStep", "on_train_batch_end"): (
        "Callback",
        "trainer pl_module outputs batch batch_idx",
    ),
    ("callbacks.TestMetricsWriter", "on_test_end"): ("Callback", "trainer pl_module"),
    ("callbacks.Throughput", "__init__"): ("ThroughputMonitor", "batch_size_fn length_fn **kwargs"),
    ("callbacks.Throughput", "setup"): ("ThroughputMonitor", "trainer pl_module stage"),
    ("callbacks.Throughput", "on_train_batch_end"): (
        "ThroughputMonitor",
        "trainer pl_module outputs batch *_",
    ),
    ("console.StepRichProgressBar", "total_train_batches"): ("ProgressBar", ""),
    ("console.StepRichProgressBar", "on_train_start"): ("RichProgressBar", "trainer pl_module"),
    ("console.StepRichProgressBar", "on_train_epoch_start"): (
        "RichProgressBar",
        "trainer pl_module",
    ),
    ("console.StepRichProgressBar", "on_train_batch_end"): (
        "RichProgressBar",
        "trainer pl_module outputs batch batch_idx",
    ),
    ("console.StepTQDMProgressBar", "total_train_batches"): ("ProgressBar", ""),
    ("console.StepTQDMProgressBar", "init_train_tqdm"): ("TQDMProgressBar", ""),
    ("console.StepTQDMProgressBar", "on_train_epoch_start"): ("TQDMProgressBar", "trainer *_"),
    ("console.StepTQDMProgressBar", "on_train_batch_end"): (
        "TQDMProgressBar",
        "trainer pl_module outputs batch batch_idx",
    ),
    **{
        (f"console.{summary}", "on_fit_start"): ("ModelSummary", "trainer pl_module")
        for summary in ("FlopsRichModelSummary", "FlopsModelSummary")
    },
    **{
        (f"console.{summary}", "summarize"): (
            base,
            "summary_data total_parameters trainable_parameters model_size "
            "total_training_modes total_flops **summarize_kwargs",
        )
        for summary, base in (
            ("FlopsRichModelSummary", "RichModelSummary"),
            ("FlopsModelSummary", "ModelSummary"),
        )
    },
    ("loggers.TensorBoard", "__init__"): (
        "TensorBoardLogger",
        "save_dir name version log_graph default_hp_metric prefix sub_dir **kwargs",
    ),
    ("loggers.TensorBoard", "log_hyperparams"): ("TensorBoardLogger", "params metrics step"),
    ("loggers.TensorBoard", "log_graph"): ("TensorBoardLogger", "model input_array"),
    ("loggers.TensorBoard", "log_metrics"): ("TensorBoardLogger", "metrics step"),
    ("loggers.CSVWriter", "save"): ("_ExperimentWriter", ""),
    ("loggers.CSV", "experiment"): ("CSVLogger", ""),
    ("memory.MicroBatchCounters", "setup"): ("Callback", "trainer pl_module stage"),
    ("memory.MicroBatchCounters", "on_load_checkpoint"): (
        "Callback",
        "trainer pl_module checkpoint",
    ),
    ("datamodule.ContiguousSampler", "__init__"): (
        "UnrepeatedDistributedSampler",
        "*args **kwargs",
    ),
    ("datamodule.ContiguousSampler", "__iter__"): ("UnrepeatedDistributedSampler", ""),
}

# Glue class -> tests that run it for real (file::test; the file is found under tests/ by name,
# wherever the test tiers put it).
BEHAVIOUR: dict[str, tuple[str, ...]] = {
    "BDHLightningCLI": (
        "test_cli.py::test_seed_everything_sets_the_data_and_dropout_seed",
        "test_cli.py::test_top_level_help_lists_every_subcommand_under_the_program_name",
        "test_cli.py::test_fit_keeps_best_and_last_checkpoints_and_a_csv_log",
        "test_bad_inputs.py::test_the_checkpoints_hyperparameters_define_the_model",
        "test_bad_inputs.py::test_bad_input_is_one_clear_line",
    ),
    "Trainer": (
        "test_faults.py::test_sigterm_or_ctrl_c_at_any_moment_resumes_to_the_uninterrupted_run",
        "test_faults.py::test_sigterm_during_test_says_to_run_it_again",
        "test_memory.py::test_sigkill_mid_accumulation_then_resume_is_exact",
    ),
    "AtomicCheckpointIO": (
        "test_resume.py::test_kill_during_a_checkpoint_write_keeps_the_previous_one",
        "test_checkpoints.py::test_a_full_disk_during_a_checkpoint_save_is_one_line_and_keeps_the_previous_one",
    ),
    "LastCheckpoint": (
        "test_resume.py::test_sigkill_after_the_loss_got_worse_resumes_from_the_last_validation",
        "test_resume.py::test_sigterm_saves_exits_143_and_says_how_to_resume",
    ),
    "PeakMemory": ("test_cli.py::test_test_writes_metrics_json_and_beats_a_uniform_byte_model",),
    "TestMetricsWriter": (
        "test_cli.py::test_test_writes_metrics_json_and_beats_a_uniform_byte_model",
    ),
    "ValidateFinalStep": (
        "test_callbacks.py::test_the_last_step_is_validated_when_the_interval_does_not_divide_the_run",
    ),
    "Throughput": (
        "test_flops.py::test_mfu_uses_lightnings_device_peak_and_is_none_on_cpu",
        "test_tensorboard.py::test_train_bpb_and_the_cumulative_training_flops_are_scalars",
    ),
    "StepRichProgressBar": (
        "test_console.py::test_the_training_bar_counts_steps_not_epochs",
        "test_console.py::test_a_resumed_bar_counts_from_the_step_reached_to_max_steps",
    ),
    "StepTQDMProgressBar": (
        "test_console.py::test_the_training_bar_counts_steps_not_epochs",
        "test_console.py::test_a_resumed_bar_counts_from_the_step_reached_to_max_steps",
    ),
    "FlopsRichModelSummary": ("test_console.py::test_the_summary_prints_no_zero_flops",),
    "FlopsModelSummary": ("test_console.py::test_the_summary_prints_no_zero_flops",),
    "TensorBoard": (
        "test_tensorboard.py::test_the_hparams_table_leads_with_model_size_recipe_and_data",
        "test_tensorboard.py::test_no_constant_or_internal_counter_is_a_scalar",
        "test_faults.py::test_tensorboard_on_a_real_full_disk_is_the_disk_error",
    ),
    "CSVWriter": ("test_faults.py::test_metrics_csv_on_a_real_full_disk_keeps_every_row_it_had",),
    "CSV": ("test_faults.py::test_metrics_csv_on_a_real_full_disk_keeps_every_row_it_had",),
    "MicroBatchCounters": (
        "test_memory.py::test_micro_batches_train_as_the_whole_batch_and_resume_with_another_split",
    ),
    "ContiguousSampler": (
        "test_distributed.py::test_ddp_two_processes_match_one_and_keep_every_ranks_state",
        "test_stream.py::test_test_in_stream_mode_scores_every_byte_once_with_all_the_text_before",
    ),
}


def glue_class(qualified: str) -> type:
    module, name = qualified.rsplit(".", 1)
    elsewhere = {m.rsplit(".", 1)[1]: m for m in ELSEWHERE}
    return getattr(importlib.import_module(elsewhere.get(module, f"{GLUE}.{module}")), name)


def lightning_bases(cls: type) -> list[type]:
    return [c for c in cls.__mro__ if c.__module__.split(".")[0] in LIGHTNING]


def callable_of(attr: object):
    attr = attr.fget if isinstance(attr, property) else attr
    return attr.__func__ if isinstance(attr, staticmethod | classmethod) else attr


def parameters(function) -> list[inspect.Parameter]:
    params = list(inspect.signature(function).parameters.values())
    return params[1:] if params and params[0].name in ("self", "cls") else params


def spelled(params: list[inspect.Parameter]) -> str:
    star = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return " ".join(star.get(p.kind, "") + p.name for p in params)


def accepts_every_call(ours: list[inspect.Parameter], theirs: list[inspect.Parameter]) -> str:
    """'' when a call Lightning's signature allows is allowed by ours too, else why not."""
    kinds = {p.kind for p in ours}
    by_name = {p.name: p for p in ours}
    positional = [p for p in ours if p.kind <= inspect.Parameter.POSITIONAL_OR_KEYWORD]
    their_positional = [p for p in theirs if p.kind <= inspect.Parameter.POSITIONAL_OR_KEYWORD]
    if len(their_positional) > len(positional) and inspect.Parameter.VAR_POSITIONAL not in kinds:
        return f"takes {len(positional)} positional arguments, Lightning passes up to {len(their_positional)}"
    for p in theirs:
        keyword = p.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        )
        named = keyword and not p.name.startswith("_")  # `_`: Lightning passes it by position
        if named and p.name not in by_name and inspect.Parameter.VAR_KEYWORD not in kinds:
            return f"has no parameter {p.name!r}"
    required = [
        p for p in ours if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in theirs)  # Lightning's `*_`: it passes more
    if len(required) > len(their_positional) and not variadic:
        return f"requires {[p.name for p in required]}, more than Lightning passes"
    return ""


def found_overrides() -> set[tuple[str, str]]:
    """(module.Class, method) for every method a glue class (or its bdh-pl mixin) defines over
    one a Lightning base defines; LightningModules and DataModules are the model and the data,
    whose hooks are Lightning's public API, not glue."""
    import lightning as L

    found = set()
    glue = Path(importlib.import_module(GLUE).__file__).parent
    names = [f"{GLUE}.{p.stem}" for p in glue.glob("*.py") if p.stem != "__init__"]
    for module_name in [*names, *ELSEWHERE]:
        module = importlib.import_module(module_name)
        for cls in vars(module).values():
            if not isinstance(cls, type) or cls.__module__ != module_name:
                continue
            bases = lightning_bases(cls)
            if not bases or issubclass(cls, L.LightningModule | L.LightningDataModule):
                continue
            ours = [c for c in cls.__mro__ if c.__module__.startswith("bdh_pl.")]
            defined = {n for c in ours for n, v in vars(c).items() if callable(callable_of(v))}
            for name in defined:
                if any(name in vars(b) and callable(callable_of(vars(b)[name])) for b in bases):
                    found.add((f"{module_name.rsplit('.', 1)[1]}.{cls.__name__}", name))
    return found


def test_the_table_lists_every_override():
    found = found_overrides()
    assert found - OVERRIDES.keys() == set(), (
        "new overrides of Lightning methods: add each to OVERRIDES (and a one-line comment on it "
        "saying which Lightning behaviour it changes and why)"
    )
    assert OVERRIDES.keys() - found == set(), "listed overrides no longer in the code: remove them"


@pytest.mark.parametrize("key", sorted(OVERRIDES), ids=lambda k: f"{k[0]}.{k[1]}")
def test_each_override_matches_lightning_s_own_method(key):
    qualified, name = key
    base_name, pinned = OVERRIDES[key]
    cls = glue_class(qualified)
    owners = [b for b in lightning_bases(cls) if name in vars(b)]
    assert owners, f"Lightning no longer defines {name} for {qualified}: the override is dead code"
    owner = owners[0]
    assert owner.__name__ == base_name, (
        f"{name} moved from Lightning's {base_name} to {owner.__name__}"
    )
    theirs = parameters(callable_of(vars(owner)[name]))
    assert spelled(theirs) == pinned, (
        f"Lightning's {base_name}.{name} is now ({spelled(theirs)}), was ({pinned}): check what "
        f"{qualified}.{name} relies on, then update OVERRIDES"
    )
    assert isinstance(vars(owner)[name], property) == isinstance(
        inspect.getattr_static(cls, name), property
    )
    if name != "__init__":  # a constructor is ours to shape; what it passes on is pinned above
        why = accepts_every_call(parameters(callable_of(inspect.getattr_static(cls, name))), theirs)
        assert not why, f"{qualified}.{name} {why}"


def test_the_cli_s_before_hooks_are_still_called_by_name():
    # before_fit / before_validate / before_test are looked up by name, not overridden
    source = inspect.getsource(LightningCLI._run_subcommand)
    assert 'getattr(self, f"before_{subcommand}"' in source


def test_the_benchmark_s_parse_only_cli_overrides_methods_lightning_still_has():
    # bench/resolve.py's ParseOnly(BDHLightningCLI), made inside a function: builds nothing
    for name in ("instantiate_classes", "_set_seed"):
        assert name in vars(LightningCLI), f"LightningCLI.{name} is gone: see bench/resolve.py"
        assert spelled(parameters(vars(LightningCLI)[name])) == ""


def test_the_signature_check_can_fail():
    def lightning_hook(self, trainer, pl_module, outputs, batch, batch_idx): ...

    def short(self, trainer, pl_module): ...

    def renamed(self, trainer, module, outputs, batch, batch_idx): ...

    def loose(self, trainer, *args, **kwargs): ...

    theirs = parameters(lightning_hook)
    assert "positional" in accepts_every_call(parameters(short), theirs)
    assert "pl_module" in accepts_every_call(parameters(renamed), theirs)
    assert accepts_every_call(parameters(loose), theirs) == ""


def test_every_glue_class_has_behavioural_tests_that_exist():
    classes = {qualified.rsplit(".", 1)[1] for qualified, _ in OVERRIDES}
    assert classes - BEHAVIOUR.keys() == set(), "name the tests that run these classes"
    missing = []
    for pointer in {p for tests in BEHAVIOUR.values() for p in tests}:
        file, test = pointer.split("::")
        sources = [p.read_text() for p in TESTS.rglob(file)]
        if not any(f"def {test}(" in source for source in sources):
            missing.append(pointer)
    assert not missing, f"renamed or gone: {missing}"


# --- the pause the fault tests inject into a real save, from outside the save path ----------


def fault_injection():
    """tests/fault_injection/sitecustomize.py as a module (not as this process's sitecustomize)."""
    path = TESTS / "fault_injection" / "sitecustomize.py"
    spec = importlib.util.spec_from_file_location("fault_injection", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def written(path) -> bool:
    """The file holds bytes (False once it is gone: renamed between the glob and the stat)."""
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def test_the_injected_pause_lands_between_the_temp_file_and_the_rename(tmp_path):
    # The module as a child process would import it with slow_saves' environment: found by
    # the hook, its code run, then paused (a copy, so this process's own stays as it is).
    injection = fault_injection()
    spec = injection.PauseOnImport(2.0).find_spec(injection.TARGET)  # a wide window under load
    checkpoint_io = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checkpoint_io)
    path = tmp_path / "last.ckpt"
    saving = threading.Thread(
        target=checkpoint_io.AtomicCheckpointIO().save_checkpoint, args=({"step": 7}, path)
    )
    saving.start()
    # The temp file appears empty before the body writes it: wait until it holds the bytes
    # (flushed before the pause), then the rename must not have happened yet.
    deadline = time.time() + 30
    while not [t for t in tmp_path.glob(".last.ckpt.*.tmp") if written(t)]:
        assert time.time() < deadline and saving.is_alive(), (
            "no written temp file before the rename"
        )
        time.sleep(0.01)
    (temp,) = tmp_path.glob(".last.ckpt.*.tmp")
    assert not path.exists()  # written, not yet renamed
    saving.join()
    assert path.is_file() and not temp.exists()


@pytest.mark.slow
def test_a_child_process_with_slow_saves_installs_the_hook():
    code = "import sys; print([type(f).__name__ for f in sys.meta_path])"
    for env, expected in ((slow_saves(1), True), ({}, False)):
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**{k: v for k, v in os.environ.items() if k != DELAY}, **env},
            timeout=60,
        )
        assert ("PauseOnImport" in result.stdout) is expected, result.stderr[-2000:]
