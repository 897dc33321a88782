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
def test_ddp_two_processes_match_one_and_keep_every_ranks_state(data_dir, tmp_path, run_cli):
    """One DDP fit (2 real processes) with the state carried: each rank saves its own lanes'
    state. Then `test` on 2 ranks scores each token exactly once, in windows (the 1-process
    loss exactly) and in stream mode (one contiguous piece per rank: close, not equal)."""
    import torch

    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    bdh_pl(
        "fit", *ddp, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
        "--trainer.limit_val_batches", "1", "--data.init_args.train_mode", "stream",
        "--trainer.default_root_dir", str(tmp_path / "fit"),
    )  # fmt: skip
    ckpt = tmp_path / "fit" / "version_0" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), "DDP training wrote no checkpoint"
    carried = torch.load(ckpt, weights_only=True)["carried_state"]
    assert carried["kv"].shape[:4] == (2, 2, 2, 16)  # ranks, layers, heads, lanes per rank
    assert carried["pos"] == 2 * 64  # two windows of 64 into every lane
    assert not torch.equal(carried["kv"][0], carried["kv"][1])  # each rank its own lanes

    one = one_process_test(run_cli, ckpt, tmp_path / "test1")
    two = two_ranks_test(ckpt, tmp_path / "test2")
    assert two["world_size"] == 2
    m1, m2 = one["metrics"], two["metrics"]
    assert m2["test/tokens"] == m1["test/tokens"] == 55_770  # each token on exactly one rank
    assert m2["test/bytes"] == m1["test/bytes"] and m2["test/words"] == m1["test/words"]
    assert m2["test/loss"] == pytest.approx(m1["test/loss"], abs=1e-6)

    stream = ("--data.init_args.eval_mode", "stream")
    one = one_process_test(run_cli, ckpt, tmp_path / "stream1", *stream)
    two = two_ranks_test(ckpt, tmp_path / "stream2", *stream)
    assert one["eval_mode"] == two["eval_mode"] == "stream" and two["world_size"] == 2
    assert two["metrics"]["test/tokens"] == one["metrics"]["test/tokens"] == 55_770
    # the second piece starts without the first's context: close, not equal
    assert two["metrics"]["test/loss"] == pytest.approx(one["metrics"]["test/loss"], rel=0.02)
