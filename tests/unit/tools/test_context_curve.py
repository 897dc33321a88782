"""`context-curve`: bits per byte by context, checked against `test` and a hand count."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bdh_pl.tools.context_curve import bucket_table, figure_note


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


def test_per_article_reads_each_article_as_its_own_stream(tmp_path, save_checkpoint, run_cli):
    """--per_article: each article (` = Title = `) a stream from an empty state, its context
    counted from its heading; the total equals a full-prefix loop over each article alone."""
    rng = np.random.default_rng(5)
    articles = [b" = T%d = \n" % i + bytes(rng.integers(97, 123, size=n).tolist()) + b"\n"
                for i, n in enumerate([50, 12, 40])]  # fmt: skip
    text = tmp_path / "text.txt"
    text.write_bytes(b"".join(articles))
    bdh = save_checkpoint(tmp_path / "bdh.ckpt", "bdh", block_size=16)
    out = tmp_path / "curve"
    code, err = run_cli(
        ["context-curve", "--ckpt_path", str(tmp_path / "bdh.ckpt"), "--text", str(text),
         "--per_article", "--windows", "--out", str(out), "--buckets", "0", "16", "48"]
    )  # fmt: skip
    assert code == 0, err[-2000:]
    stream, windows = json.loads((out / "context_curve.json").read_text())["runs"]
    nll = []
    with torch.no_grad():
        for article in articles:
            ids = torch.tensor([10, *article])  # bos, then the article's bytes
            nll += [F.cross_entropy(bdh(ids[None, : t + 1])[0, -1:], ids[t + 1 : t + 2])
                    for t in range(len(article))]  # fmt: skip
    n = sum(len(a) for a in articles)
    assert stream["articles"] == 3 and stream["bytes"] == n
    assert stream["bpb"] == pytest.approx(float(sum(nll)) / math.log(2) / n, abs=1e-5)
    counts = [sum(min(len(a), hi) - lo for a in articles if len(a) > lo)
              for lo, hi in [(0, 16), (16, 48), (48, 10**9)]]  # fmt: skip
    assert [b["bytes"] for b in stream["buckets"]] == counts  # context = place in the article
    # windows of 16 inside each article: a context of 16 only at the end of a later window
    full_later_windows = sum(max(len(a) // 16 - 1, 0) for a in articles)
    assert [b["bytes"] for b in windows["buckets"]][1:] == [full_later_windows, 0]
    assert "Each of the 3 articles" in figure_note([stream])


def test_replot_redraws_the_chart_from_the_json(tmp_path, run_cli):
    runs = [
        {"label": "bdh", "mode": "stream", "block_size": 64, "stride": 64, "tokens": 500,
         "bytes": 500, "split_bytes": 2000,
         "buckets": [{"from": 0, "to": 64, "bytes": 64, "tokens": 64, "bpb": 2.0},
                     {"from": 64, "to": None, "bytes": 436, "tokens": 436, "bpb": 2.5}]}
    ]  # fmt: skip
    (tmp_path / "context_curve.json").write_text(json.dumps({"buckets": [0, 64], "runs": runs}))
    code, err = run_cli(["context-curve", "--replot", str(tmp_path)])
    assert code == 0, err
    assert (tmp_path / "context_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert figure_note(runs) == "Only the first 500 of the test split's 2,000 bytes were scored."


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
