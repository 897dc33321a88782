"""Every bad input: one clear line naming the problem, exit code 2, nothing written."""

from pathlib import Path

import pytest

from bdh_pl.cli import main

REPO = Path(__file__).resolve().parents[1]
SMOKE = [
    "--config",
    str(REPO / "configs/shakespeare.yaml"),
    "--config",
    str(REPO / "configs/cpu.yaml"),
    "--config",
    str(REPO / "configs/cpu/bdh.yaml"),
]


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


def tiny_gpt2(tmp: Path) -> str:
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=64)).save_pretrained(
        tmp / "gpt2"
    )
    return str(tmp / "gpt2")


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
        ],
        "not valid UTF-8",
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
        lambda t, c: ["fit", "--ckpt_path", str(c), "--model.init_args.n_embd", "32"],
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
    "negative learning rate": (
        lambda t, c: ["fit", "--model.init_args.learning_rate=-1e-3"],
        "learning_rate > 0",
    ),
    "negative weight decay": (
        lambda t, c: ["fit", "--model.init_args.weight_decay=-0.1"],
        "weight_decay",
    ),
    "dropout of one": (
        lambda t, c: ["fit", "--model.init_args.dropout", "1.0"],
        "dropout must be in [0, 1)",
    ),
    "heads do not divide width": (
        lambda t, c: ["fit", "--model.init_args.n_head", "3"],
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
            "--model.init_args.name_or_path",
            tiny_gpt2(t),
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
    "malicious checkpoint": (
        lambda t, c: ["test", "--ckpt_path", str(t / "evil.ckpt")],
        "refused to load",
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
