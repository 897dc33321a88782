"""End to end through `python -m bdh_pl` on the real tiny Shakespeare file."""

import csv
import json
import re
from pathlib import Path

import pytest

from helpers import REPO, SMOKE
from helpers import bdh_pl_process as bdh_pl


@pytest.fixture(scope="module")
def smoke_fit(tmp_path_factory, data_dir) -> tuple[Path, str]:
    """The smoke fit, a real process: its run folder and all it printed."""
    root = tmp_path_factory.mktemp("smoke")
    # One validation batch, not cpu.yaml's 8: the tests read that validations happened and
    # improved, not their size; 7 batches more at each were most of the run's CPU.
    run = bdh_pl("fit", *SMOKE, "--trainer.max_steps", "30", "--trainer.limit_val_batches", "1",
                 "--trainer.default_root_dir", str(root))  # fmt: skip
    return root / "version_0", run.stdout + run.stderr


@pytest.fixture(scope="module")
def smoke_run(smoke_fit) -> Path:
    return smoke_fit[0]


@pytest.mark.slow
def test_fit_keeps_best_and_last_checkpoints_and_a_csv_log(smoke_run):
    assert (smoke_run / "checkpoints" / "best.ckpt").is_file()
    assert (smoke_run / "checkpoints" / "last.ckpt").is_file()
    assert list(smoke_run.glob("events.out.tfevents.*")), "no TensorBoard log"
    with open(smoke_run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    train = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    val = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    assert len(train) >= 5 and len(val) >= 3  # validation every 10 steps
    assert val[-1] < val[0]


@pytest.mark.slow
def test_the_logs_hold_one_lr_curve_grad_norm_tokens_and_hparams_but_no_constants(smoke_run):
    with open(smoke_run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0])
    assert not {"val/tokens", "val/bytes", "val/words"} & columns
    assert [c for c in columns if "lr" in re.split("[/-]", c)] == ["train/lr"]
    train = [r for r in rows if r.get("train/tokens")]
    tokens = [int(float(r["train/tokens"])) for r in train]
    steps = [int(r["step"]) for r in train]
    assert tokens == [(s + 1) * 16 * 64 for s in steps]  # cpu.yaml: 16 windows of 64 bytes
    norms = [float(r["train/grad_norm"]) for r in rows if r.get("train/grad_norm")]
    assert len(norms) >= 2 and all(0 < n < 1e3 for n in norms)
    lrs = [float(r["train/lr"]) for r in train]
    assert lrs[0] < lrs[1]  # warming up: one schedule, seen once
    events = b"".join(p.read_bytes() for p in smoke_run.glob("events.out.tfevents.*"))
    assert b"_hparams_/session_start_info" in events and b"val/bpb" in events


@pytest.mark.slow
def test_test_writes_metrics_json_and_beats_a_uniform_byte_model(smoke_run, data_dir, tmp_path):
    ckpt = smoke_run / "checkpoints" / "best.ckpt"
    bdh_pl("test", *SMOKE, "--ckpt_path", str(ckpt), "--trainer.default_root_dir", str(tmp_path))
    record = json.loads((tmp_path / "version_0" / "test_metrics.json").read_text())
    metrics = record["metrics"]
    assert metrics["test/bpb"] < 8.0  # a uniform distribution over bytes scores 8 bits/byte
    assert metrics["test/tokens"] == metrics["test/bytes"] == 55_770
    assert record["checkpoint"] == str(ckpt)
    assert record["dataset"] == "tinyshakespeare" and record["tokenizer"] == "byte"
    assert record["params"] > 0 and record["memory_kind"] == "cpu_rss"
    for key in (
        "test/loss",
        "test/ppl",
        "test/word_ppl",
        "test/tokens_per_sec",
        "test/peak_memory_mb",
    ):
        assert metrics[key] > 0


@pytest.mark.slow
def test_print_config_round_trips(tmp_path, capsys, monkeypatch):
    """In this process (the same `main`; the runs above are the real processes)."""
    from bdh_pl.cli import main

    monkeypatch.chdir(REPO)

    def print_config(*args: str) -> str:
        with pytest.raises(SystemExit) as exit_:
            main(["fit", *args, "--print_config"])
        assert exit_.value.code in (0, None)
        return capsys.readouterr().out

    printed = print_config(*SMOKE)
    (tmp_path / "config.yaml").write_text(printed)
    again = print_config("--config", str(tmp_path / "config.yaml"))
    assert again == printed
    assert "bdh_pl.training.lit_models.BDHLM" in printed


@pytest.mark.slow
def test_config_typo_is_one_clear_line(run_cli):
    code, err = run_cli(["fit", *SMOKE, "--model.init_args.config.n_layr", "3"])
    assert code != 0
    assert "n_layr" in err


@pytest.mark.parametrize("seed", [7, 1337])
def test_seed_everything_sets_the_data_and_dropout_seed(seed, tmp_path, monkeypatch):
    from bdh_pl.data.datamodule import TextDataModule
    from bdh_pl.training.glue.cli import BDHLightningCLI
    from bdh_pl.training.language_model import LanguageModel

    monkeypatch.chdir(REPO)
    cli = BDHLightningCLI(
        LanguageModel,
        TextDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        run=False,
        args=[*SMOKE, "--seed_everything", str(seed), "--trainer.default_root_dir", str(tmp_path)],
    )
    assert cli.datamodule.seed == seed and cli.model.training_config.seed == seed


@pytest.mark.parametrize("prefix", ["--model.init_args.", "--model."])
def test_a_config_field_set_on_the_command_line_reaches_the_network(prefix, tmp_path, monkeypatch):
    """`--model.init_args.config.n_embd` and its short form `--model.config.n_embd` set the
    BDHConfig the network is built from; the data's sizes are linked into the same object."""
    from bdh_pl.data.datamodule import TextDataModule
    from bdh_pl.training.glue.cli import BDHLightningCLI
    from bdh_pl.training.language_model import LanguageModel

    monkeypatch.chdir(REPO)
    cli = BDHLightningCLI(
        LanguageModel,
        TextDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        run=False,
        args=[*SMOKE, f"{prefix}config.n_embd", "48", f"{prefix}training.learning_rate", "0.01"]
        + ["--data.init_args.block_size", "24", "--trainer.default_root_dir", str(tmp_path)],
    )
    model = cli.model
    assert model.network.config is model.config and model.config.n_embd == 48
    assert tuple(model.network.embed.weight.shape) == (256, 48)  # vocab from the data, width
    assert model.config.block_size == 24 and model.config.n_layer == 2  # configs/cpu/bdh.yaml
    assert model.configure_optimizers()["optimizer"].defaults["lr"] == 0.01


def test_a_class_swap_drops_the_fields_the_new_config_lacks():
    """After BDH's sizes (configs/cpu/bdh.yaml), `--model LlamaLM` keeps the fields LLaMA's
    config has (n_layer 2, n_embd 64) and drops BDH's own (mlp_internal_dim_multiplier), as
    jsonargparse drops a top-level init arg the new class does not take."""
    from bdh_pl.bench.resolve import parse_lightning

    cli = parse_lightning([*SMOKE, "--model", "bdh_pl.training.lit_models.LlamaLM"])
    init_args = cli.config.model.init_args
    assert cli.config.model.class_path == "bdh_pl.training.lit_models.LlamaLM"
    assert (init_args.config.n_layer, init_args.config.n_embd) == (2, 64)
    assert "mlp_internal_dim_multiplier" not in init_args.config and "execution" not in init_args
    assert init_args.config.intermediate_size == 1376  # LlamaSize's default
    assert init_args.training.learning_rate == 0.003  # configs/cpu/bdh.yaml's recipe, kept


def test_top_level_help_lists_every_subcommand_under_the_program_name(capsys, monkeypatch):
    from bdh_pl.cli import TOOLS, main
    from bdh_pl.training.glue.cli import BDHLightningCLI

    monkeypatch.chdir(REPO)
    main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m bdh_pl ")
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("  ")}
    assert listed == set(TOOLS) | set(BDHLightningCLI.subcommands())
    for name in ("fit", "generate", "download-data"):
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        usage = capsys.readouterr().out.replace("[options] ", "")
        assert exit_.value.code == 0 and f"usage: python -m bdh_pl {name}" in usage


@pytest.mark.slow
def test_a_run_prints_no_lightning_noise(smoke_fit):
    _, output = smoke_fit  # the smoke fit's process, not one more
    for noise in ("LitLogger", "LeafSpec"):
        assert noise not in output
