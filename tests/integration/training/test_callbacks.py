import csv

SMOKE = [
    *("--config", "configs/shakespeare.yaml"),
    *("--config", "configs/cpu.yaml", "--config", "configs/cpu/bdh.yaml"),
]


def test_the_last_step_is_validated_when_the_interval_does_not_divide_the_run(
    data_dir, tmp_path, run_cli
):
    code, err = run_cli(
        [
            "fit", *SMOKE, "--trainer.default_root_dir", str(tmp_path),
            "--trainer.max_steps", "7", "--trainer.val_check_interval", "5",
            "--trainer.limit_val_batches", "1", "--data.init_args.batch_size", "2",
        ]
    )  # fmt: skip
    assert code == 0, err
    with open(tmp_path / "version_0" / "metrics.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("val/loss")]
    assert steps == [4, 6]  # after steps 5 and 7 (the CSV counts from 0), not only 5
