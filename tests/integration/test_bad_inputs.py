"""Every bad input: one clear line naming the problem, exit code 2, nothing written."""

import math
from pathlib import Path

import pytest

from bdh_pl.cli import main

from helpers import REPO, SMOKE, tiny_gpt2_folder


@pytest.fixture(scope="module")
def good_ckpt(tmp_path_factory, data_dir) -> Path:
    root = tmp_path_factory.mktemp("good")
    main(
        [
            "fit",
            *SMOKE,
            "--trainer.max_steps",
            "2",
            "--trainer.val_check_interval",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.default_root_dir",
            str(root),
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    return root / "version_0" / "checkpoints" / "last.ckpt"


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def text_file(tmp: Path, data: bytes) -> list[str]:
    path = write(tmp / "data" / "my.txt", data)
    return ["--data", "bdh_pl.data.TextFile", "--data.init_args.path", str(path)]


def derived(tmp: Path, ckpt: Path, edit) -> str:
    """A copy of the good checkpoint changed by `edit(dict)`."""
    import torch

    obj = torch.load(ckpt, weights_only=True)
    edit(obj)
    torch.save(obj, tmp / "derived.ckpt")
    return str(tmp / "derived.ckpt")


def yaml_file(tmp: Path, text: str) -> str:
    return str(write(tmp / "overlay.yaml", text.encode()))


CASES = {
    "data dir missing": (
        lambda t, c: ["fit", "--data.init_args.data_dir", str(t / "nope")],
        "does not exist",
    ),
    "data file missing": (lambda t, c: ["fit", "--data.init_args.data_dir", str(t)], "not found"),
    "empty file": (lambda t, c: ["fit", *text_file(t, b"")], "is empty"),
    "shorter than a block": (
        lambda t, c: ["fit", *text_file(t, b"To be or not to be. " * 3)],
        "fewer than the 65",
    ),
    "non-UTF-8 for BPE": (
        lambda t, c: [
            "fit",
            *text_file(t, b"caf\xe9 " * 500),
            "--data.init_args.tokenizer",
            "gpt2",
            *("--model", "bdh_pl.training.lit_models.LlamaLM"),  # BDH reads bytes only
        ],
        "not valid UTF-8",
    ),
    "BPE data for BDH": (
        lambda t, c: ["fit", "--data.init_args.tokenizer", "gpt2"],
        "does not match the model: BDHLM reads byte tokens, data.tokenizer gives gpt2",
    ),
    "unknown dataset": (lambda t, c: ["fit", "--data", "bdh_pl.data.PennTreebank"], "PennTreebank"),
    "unknown tokenizer": (
        lambda t, c: ["fit", "--data.init_args.tokenizer", "spm"],
        "unknown tokenizer 'spm'",
    ),
    "unknown model": (lambda t, c: ["fit", "--model", "bdh_pl.training.lit_models.Mamba"], "Mamba"),
    "unknown variant": (
        lambda t, c: ["fit", "--data", "bdh_pl.data.WikiText2", "--data.init_args.variant", "xml"],
        "Literal['raw', 'tokens']. Got value: xml",  # the choices, from the type
    ),
    "checkpoint is a folder": (lambda t, c: ["test", "--ckpt_path", str(t)], "is not a file"),
    "checkpoint truncated": (
        lambda t, c: ["test", "--ckpt_path", str(write(t / "cut.ckpt", c.read_bytes()[:4000]))],
        "truncated or not a PyTorch file",
    ),
    "checkpoint for another vocabulary": (
        lambda t, c: ["test", "--ckpt_path", str(c), "--data.init_args.tokenizer", "gpt2"],
        "does not match the model config",
    ),
    "fit resumes with a mismatched config": (
        lambda t, c: ["fit", "--ckpt_path", str(c), "--model.init_args.config.n_embd", "32"],
        "does not match the model config",
    ),
    "no best checkpoint to test": (lambda t, c: ["test", "--ckpt_path", "best"], "no best.ckpt"),
    "zero batch size": (
        lambda t, c: ["fit", "--data.init_args.batch_size", "0"],
        "batch_size must be a positive",
    ),
    "negative block size": (
        lambda t, c: ["fit", "--data.init_args.block_size=-8"],
        "block_size must be a positive",
    ),
    "stride above block": (
        lambda t, c: ["fit", "--data.init_args.eval_stride", "65"],
        "eval_stride",
    ),
    "zero steps": (lambda t, c: ["fit", "--trainer.max_steps", "0"], "max_steps must be positive"),
    "zero decay steps": (
        lambda t, c: ["fit", "--model.init_args.training.lr_decay_steps", "0"],
        "model.training.lr_decay_steps must be >= 1",
    ),
    "zero validation interval": (
        lambda t, c: ["fit", "--trainer.val_check_interval", "0"],
        "trainer.val_check_interval must be a whole number of steps >= 1",
    ),
    "NaN gradient clip in YAML": (
        lambda t, c: ["fit", "--config", yaml_file(t, "trainer:\n  gradient_clip_val: .nan\n")],
        "trainer.gradient_clip_val must be a finite number >= 0",
    ),
    "negative learning rate": (
        lambda t, c: ["fit", "--model.init_args.training.learning_rate=-1e-3"],
        "learning_rate > 0",
    ),
    "negative weight decay": (
        lambda t, c: ["fit", "--model.init_args.training.weight_decay=-0.1"],
        "weight_decay",
    ),
    "dropout of one": (
        lambda t, c: ["fit", "--model.init_args.config.dropout", "1.0"],
        "dropout must be in [0, 1)",
    ),
    "heads do not divide width": (
        lambda t, c: ["fit", "--model.init_args.config.n_head", "3"],
        "divisible by n_head",
    ),
    "option typo": (
        lambda t, c: ["fit", "--model.init_args.n_layr", "2"],
        "Option 'n_layr' is not accepted",
    ),
    "YAML key typo": (
        lambda t, c: [
            "fit",
            "--config",
            str(write(t / "typo.yaml", b"data:\n  init_args:\n    batch_sise: 4\n")),
        ],
        "batch_sise",
    ),
    "trainer typo": (lambda t, c: ["fit", "--trainer.max_stpes", "3"], "max_stpes"),
    "unwritable output root": (
        lambda t, c: ["fit", "--trainer.default_root_dir", str(write(t / "a_file", b"x") / "runs")],
        "not a writable folder",
    ),
    "CUDA where there is none": (
        lambda t, c: ["fit", "--trainer.accelerator", "cuda", "--trainer.devices", "1"],
        "CUDA",
    ),
    "block size over pretrained positions": (
        lambda t, c: [
            "test",
            "--model",
            "bdh_pl.training.lit_models.PretrainedGPT2LM",
            "--model.init_args.config.name_or_path",
            str(tiny_gpt2_folder(t / "gpt2")),
            "--data.init_args.tokenizer",
            "gpt2",
            "--data.init_args.block_size",
            "128",
        ],
        "exceeds the 64 positions",
    ),
    "checkpoint from another model class": (
        lambda t, c: [
            "test",
            "--ckpt_path",
            str(c),
            "--model",
            "bdh_pl.training.lit_models.GPT2LM",
        ],
        "is for another model",
    ),
    # --- issue 10: values that passed the CLI and failed deep inside ---------------------
    "abbreviated option": (lambda t, c: ["fit", "--trainer.max_step", "5"], "max_step"),
    "learning rate NaN in YAML": (
        lambda t, c: [
            "fit",
            "--config",
            yaml_file(t, "model:\n  init_args:\n    training:\n      learning_rate: .nan\n"),
        ],
        "learning_rate > 0",
    ),
    "beta above one": (
        lambda t, c: ["fit", "--model.init_args.training.betas", "[0.9, 1.5]"],
        "betas must be two numbers in [0, 1)",
    ),
    "negative data seed": (lambda t, c: ["fit", "--data.init_args.seed=-1"], "data.seed"),
    "weights-only checkpoint to resume": (
        lambda t, c: ["fit", "--ckpt_path", derived(t, c, lambda o: o.pop("optimizer_states"))],
        "holds weights only",
    ),
    # --- issue 10.5: the checkpoint's hyperparameters are the model ------------------------
    "n_layer on the command line differs from the checkpoint": (
        lambda t, c: ["test", "--ckpt_path", str(c), "--model.init_args.config.n_layer", "4"],
        "trained with config.n_layer=2, the command line asks for 4",
    ),
    "resume with another n_layer": (
        lambda t, c: ["fit", "--ckpt_path", str(c), "--model.init_args.config.n_layer=6"],
        "trained with config.n_layer=2",
    ),
    "checkpoint with an unknown hyperparameter": (
        lambda t, c: [
            "validate",
            "--ckpt_path",
            derived(t, c, lambda o: o["hyper_parameters"].update(n_experts=4)),
        ],
        "['n_experts'] that BDHLM does not take",
    ),
    # --- issue 10.6: an unusable token cache ----------------------------------------------
    "token cache path is a file": (
        lambda t, c: ["fit", "--data.init_args.cache_dir", str(write(t / "cache", b"x"))],
        "is a file, not a folder",
    ),
    # --- issue 10.9: no predict ------------------------------------------------------------
    "predict": (lambda t, c: ["predict"], "`predict` is not supported"),
    "malicious checkpoint": (
        lambda t, c: ["test", "--ckpt_path", str(t / "evil.ckpt")],
        "refused to load",
    ),
    # --- issue 12.6: no --optimizer that silently replaces the recipe; one seed ------------
    "stream eval of a transformer": (
        lambda t, c: [
            "test",
            "--model",
            "bdh_pl.training.lit_models.LlamaLM",
            "--data.init_args.eval_mode",
            "stream",
        ],
        "needs a model with a recurrent state",
    ),
    "carried state with accumulation": (
        lambda t, c: [
            "fit",
            "--data.init_args.train_mode",
            "stream",
            "--trainer.accumulate_grad_batches",
            "2",
        ],
        "accumulate_grad_batches 1",
    ),
    "stream eval with a stride": (
        lambda t, c: [
            "fit",
            "--data.init_args.eval_mode",
            "stream",
            "--data.init_args.eval_stride",
            "8",
        ],
        "drop data.eval_stride",
    ),
    "carried state with lanes too short": (
        lambda t, c: [
            "fit",
            *text_file(t, b"To be, or not to be. " * 30),
            "--data.init_args.train_mode",
            "stream",
        ],
        "lower data.batch_size or data.block_size",
    ),
    "optimizer option": (lambda t, c: ["fit", "--optimizer", "SGD"], "--optimizer"),
    "lr_scheduler option": (lambda t, c: ["fit", "--lr_scheduler", "StepLR"], "--lr_scheduler"),
    "two seeds": (
        lambda t, c: ["fit", "--seed_everything", "7", "--data.init_args.seed", "8"],
        "disagree",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_line(case, good_ckpt, data_dir, tmp_path, run_cli):
    if case == "malicious checkpoint":
        import torch

        torch.save({"x": print}, tmp_path / "evil.ckpt")  # unpickling would import builtins.print
    make_args, expected = CASES[case]
    args = make_args(tmp_path, good_ckpt)
    root = tmp_path / "runs"
    if "--trainer.default_root_dir" not in args:
        args += ["--trainer.default_root_dir", str(root)]
    code, err = run_cli([args[0], *SMOKE, *args[1:]])
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, err[-2000:]
    assert lines and lines[-1].startswith("error: "), err[-2000:]
    assert expected in lines[-1]
    assert "Traceback" not in err
    assert not list(root.glob("version_*")), "a failed run left outputs behind"


def test_the_checkpoints_hyperparameters_define_the_model(good_ckpt, data_dir, tmp_path, run_cli):
    """A 2-layer BDH checkpoint evaluated under a config that says 4 layers (in a file, not on
    the command line) is evaluated as the 2-layer model it is, and says so; a config for
    another dataset and model size (WikiText-2, 6 layers of 256) evaluates it too."""
    import json

    def test_bpb(extra: list[str], root: Path) -> tuple[float, str]:
        code, err = run_cli(
            ["test", *extra, "--ckpt_path", str(good_ckpt), "--trainer.limit_test_batches", "2"]
            + ["--trainer.default_root_dir", str(root)]
        )
        assert code == 0, err[-2000:]
        record = json.loads((root / "version_0" / "test_metrics.json").read_text())
        return record["metrics"]["test/bpb"], err

    four = yaml_file(tmp_path, "model:\n  init_args:\n    config:\n      n_layer: 4\n")
    expected, _ = test_bpb(SMOKE, tmp_path / "as-trained")
    got, err = test_bpb([*SMOKE, "--config", four], tmp_path / "config-says-4")
    assert got == pytest.approx(expected, abs=1e-6)
    assert "n_layer=2 (config: 4)" in err
    _, err = test_bpb(["--config", str(REPO / "configs/wikitext2.yaml")], tmp_path / "wikitext")
    assert "n_embd=64 (config: 256)" in err
    # How, not what: the command line may evaluate it with other execution switches.
    switches = [
        "--model.init_args.execution.fused",
        "false",
        "--model.init_args.execution.chunk_size",
        "8",
    ]
    got, _ = test_bpb([*SMOKE, *switches], tmp_path / "reference-layer")
    assert got == pytest.approx(expected, abs=1e-5)


def tiny_fit(tmp: Path) -> list[str]:
    return [
        "fit",
        *SMOKE,
        *text_file(tmp, b"To be, or not to be, that is the question. " * 100),
        "--data.init_args.block_size",
        "16",
        "--data.init_args.batch_size",
        "2",
        "--trainer.max_steps",
        "1",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.num_sanity_val_steps",
        "0",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(tmp / "runs"),
    ]


@pytest.mark.parametrize(
    "error",
    [
        "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total capacity)",
        "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
        "you tried to allocate 26843545600 bytes.",
    ],
)
def test_out_of_memory_is_one_line_with_the_size_and_the_knob(
    error, tmp_path, monkeypatch, run_cli
):
    import torch

    from bdh_pl.training.language_model import LanguageModel

    def forward(self, input_ids):
        raise torch.OutOfMemoryError(error) if "CUDA" in error else RuntimeError(error)

    monkeypatch.setattr(LanguageModel, "forward", forward)
    code, err = run_cli(tiny_fit(tmp_path))
    line = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert line.startswith("error: out of memory: allocating ")
    assert ("2.00 GiB" if "CUDA" in error else "26843545600 bytes") in line
    assert "--data.init_args.batch_size" in line and "now batch_size 2, block_size 16" in line
    assert not list((tmp_path / "runs").glob("version_*")), "a failed run left outputs behind"


def test_a_config_too_big_for_free_memory_is_refused_in_one_line_before_training(
    tmp_path, monkeypatch, run_cli
):
    from bdh_pl.training import memory

    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: 2**10)
    code, err = run_cli(tiny_fit(tmp_path))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: this run does not fit in memory")
    assert "0.0 GiB free" in lines[0] and "configs/cpu.yaml" in lines[0]
    assert not list((tmp_path / "runs").glob("version_*"))


def test_the_activation_estimate_scales_with_batch_and_block():
    from bdh_pl.models.bdh import BDHConfig
    from bdh_pl.training.lit_models import BDHLM
    from bdh_pl.training.memory import activation_bytes

    sizes = {"n_layer": 2, "n_embd": 32, "n_head": 2, "mlp_internal_dim_multiplier": 8}
    model = BDHLM(BDHConfig(**sizes, block_size=128))
    one = activation_bytes(model, 1, 64)
    assert one > 0
    assert activation_bytes(model, 4, 128) == pytest.approx(8 * one)


@pytest.mark.parametrize("writer", ["csv", "tensorboard"])
def test_a_full_disk_under_the_loggers_is_one_line_naming_the_folder(
    writer, tmp_path, monkeypatch, run_cli
):
    import errno
    import os

    from lightning.fabric.loggers.csv_logs import _ExperimentWriter
    from torch.utils.tensorboard import SummaryWriter

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if writer == "csv":
        monkeypatch.setattr(_ExperimentWriter, "save", full)
    else:
        monkeypatch.setattr(SummaryWriter, "flush", full)
    code, err = run_cli(tiny_fit(tmp_path))
    line = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert line == (
        f"error: no space left on the device of '{tmp_path / 'runs' / 'version_0'}' (No space "
        "left on device); the previous files there are intact: free space, or write elsewhere "
        "(--trainer.default_root_dir, $BDH_PL_CACHE_DIR)"
    )


# --- every numeric option of every tool: 0, negative, NaN, inf, huge -------------------------

HUGE = 10**30
EXTREMES = [0, -1, math.nan, math.inf, HUGE]

# option -> the extremes it takes (any other is one error line). Huge counts are refused (a
# batch of 10**30 samples overflows torch's sizes); a seed of 0, 0 new tokens and a huge (but
# finite) temperature mean what they say.
TOOL_OPTIONS = {
    "generate": {
        "--num_samples": [],
        "--max_new_tokens": [0],
        "--temperature": [HUGE],  # finite: sampling near uniform
        "--top_k": [],
        "--top_p": [],
        "--seed": [0],
        "--n_layer": [],
    },
    "mauve": {
        "--n_samples": [],
        "--prompt_tokens": [],
        "--max_new_tokens": [],
        "--temperature": [HUGE],  # finite: sampling near uniform
        "--top_k": [],
        "--seed": [0],
        "--n_layer": [],
    },
    "context-curve": {"--batch_size": [], "--stride": [], "--max_tokens": [], "--n_layer": []},
}


def tool_parser(tool: str, tmp_path: Path):
    """The tool's own argument parsing and checking (what runs before any model is read),
    with the required options given."""
    from bdh_pl.tools import context_curve, generate, mauve
    from bdh_pl.tools.options import parse

    ckpt = write(tmp_path / "m.ckpt", b"not read by the option checks")
    required = ["--ckpt_path", str(ckpt)]
    if tool == "context-curve":
        required += ["--out", str(tmp_path / "out")]
    command = {
        "generate": generate.generate,
        "mauve": mauve.run,
        "context-curve": context_curve.context_curve,
    }[tool]
    return lambda option, value: parse(command, [*required, option, str(value)], tool)


@pytest.mark.parametrize("tool", list(TOOL_OPTIONS))
def test_every_numeric_option_of_every_tool_is_checked_up_front(tool, tmp_path):
    from bdh_pl.errors import UserError

    parse = tool_parser(tool, tmp_path)
    for option, takes in TOOL_OPTIONS[tool].items():
        for value in EXTREMES:
            if value in takes:
                parse(option, value)
                continue
            with pytest.raises(UserError) as refused:
                parse(option, value)
            line = str(refused.value)
            assert "\n" not in line and option.lstrip("-") in line, (option, value, line)


TRAINER_TAKES = {  # of EXTREMES, -0.5, 1.5 and True, as Python values (what YAML or a flag gives)
    "max_steps": [-1, HUGE],  # -1: until early stopping
    "min_steps": [0, HUGE],
    "max_epochs": [0, -1, HUGE],
    "min_epochs": [0, HUGE],
    "val_check_interval": [HUGE],
    "check_val_every_n_epoch": [HUGE],
    "log_every_n_steps": [HUGE],
    "accumulate_grad_batches": [HUGE],
    "num_sanity_val_steps": [0, -1, HUGE],
    "gradient_clip_val": [0, 1.5, HUGE],
    "limit_train_batches": [0, HUGE],
    "limit_val_batches": [0, HUGE],
    "limit_test_batches": [0, HUGE],
    "limit_predict_batches": [0, HUGE],
    "overfit_batches": [0, HUGE],
    "reload_dataloaders_every_n_epochs": [0, HUGE],
}


def test_every_numeric_trainer_option_is_checked_before_the_run():
    from bdh_pl.errors import UserError
    from bdh_pl.training.trainer_options import RULES, check_trainer_options

    assert set(TRAINER_TAKES) == set(RULES), "an option without its row here"
    for option, takes in TRAINER_TAKES.items():
        for value in [*EXTREMES, -0.5, 1.5, True]:
            if value in takes and value is not True:
                check_trainer_options({option: value})
                continue
            with pytest.raises(UserError, match=f"^trainer.{option} must be "):
                check_trainer_options({option: value})
    check_trainer_options({"val_check_interval": 0.25, "limit_val_batches": 0.5})  # shares


def test_lm_eval_model_args_are_checked_up_front():
    pytest.importorskip("lm_eval")
    from bdh_pl.errors import UserError
    from bdh_pl.tools.lm_eval_model import check_model_args

    for name in ("max_length", "batch_size", "max_batch_size", "n_layer"):
        for value in EXTREMES:
            with pytest.raises(UserError, match=f"--model_args {name}="):
                check_model_args({"pretrained": "m.ckpt", name: str(value)})
        check_model_args({"pretrained": "m.ckpt", name: "7"})
