"""What a benchmark record reads from a run's logs."""

import csv

import pytest

from bdh_pl.bench.record import logged_seconds_before_resumes


def write_metrics(folder, times: list[tuple[int, float]]) -> None:
    with open(folder / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "step", "train/time", "val/loss"])
        for step, seconds in times:
            writer.writerow([0, step, seconds, ""])
        writer.writerow([0, times[-1][0], "", 1.5])  # a validation row, no time


def test_each_part_before_a_resume_counts_its_last_logged_time(tmp_path):
    # three parts: resumed at step 40 (after 30.0 s) and at step 80 (after 12.5 s)
    write_metrics(tmp_path, [(19, 10.0), (39, 30.0), (59, 6.0), (79, 12.5), (99, 4.0), (119, 9.0)])
    assert logged_seconds_before_resumes(tmp_path) == pytest.approx(42.5)


def test_a_fit_never_resumed_has_no_earlier_parts(tmp_path):
    write_metrics(tmp_path, [(19, 10.0), (39, 30.0), (59, 45.0)])
    assert logged_seconds_before_resumes(tmp_path) == 0
