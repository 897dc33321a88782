"""Lightning's DDP through Trainer flags only: 2 CPU processes (gloo) give the 1-process numbers."""

import json
from pathlib import Path

import pytest

from helpers import SMOKE, bdh_pl_process


def bdh_pl(*args: str) -> None:
    """`python -m bdh_pl SUBCOMMAND` with the CPU smoke configs, then the rest of args (so
    they override the configs)."""
    bdh_pl_process(args[0], *SMOKE, "--trainer.enable_progress_bar", "false", *args[1:])


def two_ranks_test(ckpt: Path, root: Path, *extra: str) -> dict:
    """`test` on 2 DDP ranks (real processes): its test_metrics.json."""
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    bdh_pl("test", "--ckpt_path", str(ckpt), *extra, *ddp, "--trainer.default_root_dir", str(root))
    return json.loads((root / "version_0" / "test_metrics.json").read_text())


def one_process_test(run_cli, ckpt: Path, root: Path, *extra: str) -> dict:
    """The 1-process reference: `test` in the test's own process (a process start less; the
    DDP side keeps its real processes), its test_metrics.json."""
    args = ["test", *SMOKE, "--trainer.enable_progress_bar", "false", "--ckpt_path", str(ckpt)]
    code, err = run_cli([*args, *extra, "--trainer.default_root_dir", str(root)])
    assert code == 0, err[-2000:]
    return json.loads((root / "version_0" / "test_metrics.json").read_text())


@pytest.mark.slow
def test_ddp_two_processes_match_one(data_dir, tmp_path, run_cli):
    bdh_pl(
        "fit",
        "--trainer.max_steps",
        "6",
        "--trainer.val_check_interval",
        "3",
        "--trainer.limit_val_batches",
        "1",  # validation is not what this test checks (the test split below is)
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--trainer.default_root_dir",
        str(tmp_path / "fit"),
    )
    ckpt = tmp_path / "fit" / "version_0" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), "DDP training wrote no checkpoint"

    results = {
        "1": one_process_test(run_cli, ckpt, tmp_path / "test1"),
        "2": two_ranks_test(ckpt, tmp_path / "test2"),
    }
    one, two = results["1"]["metrics"], results["2"]["metrics"]
    assert results["2"]["world_size"] == 2
    assert two["test/tokens"] == one["test/tokens"] == 55_770  # each token on exactly one rank
    assert two["test/bytes"] == one["test/bytes"] and two["test/words"] == one["test/words"]
    assert two["test/loss"] == pytest.approx(one["test/loss"], abs=1e-6)


@pytest.mark.slow
def test_ddp_streams_one_piece_per_rank_and_keeps_every_ranks_state(data_dir, tmp_path, run_cli):
    """Carried-state training under DDP saves each rank's lanes' state; stream evaluation gives
    each rank one contiguous piece and still scores every token once."""
    import torch

    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    bdh_pl(
        "fit", *ddp, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
        "--trainer.limit_val_batches", "1", "--data.init_args.train_mode", "stream",
        "--trainer.default_root_dir", str(tmp_path / "fit"),
    )  # fmt: skip
    ckpt = tmp_path / "fit" / "version_0" / "checkpoints" / "last.ckpt"
    carried = torch.load(ckpt, weights_only=True)["carried_state"]
    assert carried["kv"].shape[:4] == (2, 2, 2, 16)  # ranks, layers, heads, lanes per rank
    assert carried["pos"] == 2 * 64  # two windows of 64 into every lane
    assert not torch.equal(carried["kv"][0], carried["kv"][1])  # each rank its own lanes

    stream = ("--data.init_args.eval_mode", "stream")
    one = one_process_test(run_cli, ckpt, tmp_path / "test1", *stream)
    two = two_ranks_test(ckpt, tmp_path / "test2", *stream)
    assert one["eval_mode"] == two["eval_mode"] == "stream" and two["world_size"] == 2
    assert two["metrics"]["test/tokens"] == one["metrics"]["test/tokens"] == 55_770
    # the second piece starts without the first's context: close, not equal
    assert two["metrics"]["test/loss"] == pytest.approx(one["metrics"]["test/loss"], rel=0.02)
