"""`context-curve`: bits per byte by context, checked against `test` and a hand count."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bdh_pl.tools.context_curve import bucket_table, paired_gain


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


def test_the_stream_gain_is_the_saving_on_the_same_bytes_with_a_band_over_articles():
    """Three articles of 100 one-byte tokens; reading as a stream saves 0.1, 0.2, 0.3 nats a
    token in the article's second half (context >= 50) and nothing in its first half."""
    article = np.repeat([0, 1, 2], 100)
    context = np.tile(np.arange(100), 3)
    stream = np.random.default_rng(1).uniform(1, 3, 300)
    saving = np.where(context >= 50, np.repeat([0.1, 0.2, 0.3], 100), 0.0)
    rows = paired_gain(stream + saving, stream, context, np.ones(300, np.int64), article, [0, 50])
    assert [r["bytes"] for r in rows] == [150, 150]
    assert rows[0]["gain_bpb"] == pytest.approx(0.0, abs=1e-12)
    assert rows[0]["band"] == pytest.approx([0.0, 0.0], abs=1e-12)
    assert rows[1]["gain_bpb"] == pytest.approx(0.2 / math.log(2))  # the mean over bytes
    lo, hi = rows[1]["band"]  # resampled articles: between the smallest and largest saving
    assert 0.1 / math.log(2) <= lo < 0.2 / math.log(2) < hi <= 0.3 / math.log(2)
    long_one = paired_gain(stream + saving, stream, context + 100 * (article == 2),
                           np.ones(300, np.int64), article, [0, 50, 150])  # fmt: skip
    assert long_one[2]["bytes"] == 50 and long_one[2]["band"] is None  # one article's bytes


def test_one_stream_has_a_gain_but_no_band():
    rows = paired_gain(np.full(10, 2.0), np.ones(10), np.arange(10), np.ones(10, np.int64),
                       np.zeros(10, np.int64), [0])  # fmt: skip
    assert rows[0]["gain_bpb"] == pytest.approx(1 / math.log(2)) and rows[0]["band"] is None


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
