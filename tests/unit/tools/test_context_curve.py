"""`context-curve`: bits per byte by context, checked against `test` and a hand count."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bdh_pl.tools.context_curve import bucket_table


def test_buckets_split_the_total_by_context():
    nll = np.array([1.0, 2.0, 3.0, 4.0])
    context = np.array([0, 10, 70, 300])
    token_bytes = np.array([1, 1, 2, 1])
    rows = bucket_table(nll, context, token_bytes, [0, 64, 256])
    assert [r["tokens"] for r in rows] == [2, 1, 1]
    assert rows[0]["bpb"] == pytest.approx(3.0 / math.log(2) / 2)
    assert rows[1]["bpb"] == pytest.approx(3.0 / math.log(2) / 2)
    assert rows[2]["to"] is None and rows[2]["bytes"] == 1
    assert rows[0]["mean_context"] == 5.0 and rows[1]["mean_context"] == 70.0  # byte-weighted


def test_a_missing_checkpoint_is_one_line(tmp_path, run_cli):
    code, err = run_cli(["context-curve", "--ckpt_path", str(tmp_path / "no.ckpt"), "--out", "x"])
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: ")
    assert "no such file" in err


@pytest.mark.parametrize(
    ("option", "named"),
    [
        (["--out", "FILE/curves"], "is not a writable folder"),
        (["--device", "foo"], "--device 'foo' is not a device"),
        (["--device", "cuda:7"], "--device cuda:7"),
        (["--text", "no-such.txt"], "--text 'no-such.txt' is not a file"),
    ],
)
def test_options_are_checked_before_any_work(option, named, tmp_path, run_cli):
    """Before any checkpoint is read (here none exists): an --out under a regular file used
    to fail only after every model was scored."""
    (tmp_path / "FILE").write_text("a regular file")
    option = [str(tmp_path / o) if o.startswith("FILE") else o for o in option]
    if "--out" not in option:
        option += ["--out", str(tmp_path / "curves")]
    code, err = run_cli(["context-curve", "--ckpt_path", str(tmp_path / "none.ckpt"), *option])
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err[-2000:]
    assert named in err
