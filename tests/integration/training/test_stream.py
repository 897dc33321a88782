"""The integration half of tests/unit/training/test_stream.py: its tests that fit, compile, read
more than a slice of real data or spend seconds of CPU (the unit tier has a minute)."""

from __future__ import annotations


def test_resuming_a_stream_run_with_another_batch_size_is_one_line(tmp_path, run_cli):
    """The lanes (batch size x devices) decide which text each row of the carried state has
    read: another batch size is refused before the run folder is touched."""
    data = tmp_path / "text.txt"
    data.write_bytes(bytes(range(32, 127)) * 60)
    root = tmp_path / "runs"
    args = [
        "fit",
        *("--config", "configs/shakespeare.yaml", "--config", "configs/cpu.yaml"),
        *("--config", "configs/cpu/bdh.yaml"),
        *("--data", "bdh_pl.data.TextFile", "--data.init_args.path", str(data)),
        *("--data.init_args.train_mode", "stream", "--data.init_args.block_size", "16"),
        *(
            "--model.init_args.config.n_embd",
            "32",
            "--model.init_args.config.mlp_internal_dim_multiplier",
            "4",
        ),
        *("--trainer.max_steps", "4", "--trainer.val_check_interval", "2"),
        *("--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0"),
        *("--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root)),
    ]
    code, err = run_cli([*args, "--data.init_args.batch_size", "4", "--trainer.max_steps", "2"])
    assert code == 0, err[-3000:]
    run = root / "version_0"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, err = run_cli([*args, "--data.init_args.batch_size", "2", "--ckpt_path", "last"])
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err, err[-3000:]
    assert lines[-1].startswith("error: ") and "carries the state of 4 stream lanes" in lines[-1]
    assert "--data.init_args.batch_size 4" in lines[-1]
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert [p.name for p in root.iterdir()] == ["version_0"]
