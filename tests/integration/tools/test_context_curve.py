"""The integration half of tests/unit/tools/test_context_curve.py: its tests that fit, compile, read
more than a slice of real data or spend seconds of CPU (the unit tier has a minute)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bdh_pl.tools.context_curve import figure_note


def corpus(tmp_path, n: int = 1500):
    rng = np.random.default_rng(3)
    path = tmp_path / "text.txt"
    path.write_bytes(bytes(rng.integers(97, 123, size=n).tolist()))
    return path


def test_stream_and_sliding_curves_score_like_hand_loops(tmp_path, save_checkpoint, run_cli):
    """BDH: a stream; its total equals a full-prefix loop and every byte is scored once with
    its whole past as context. LLaMA: sliding windows; its total equals a hand loop."""
    text = corpus(tmp_path, 200)
    bdh = save_checkpoint(tmp_path / "bdh.ckpt", "bdh", block_size=32)
    llama = save_checkpoint(tmp_path / "llama.ckpt", "llama", block_size=32)
    out = tmp_path / "curve"
    code, err = run_cli(
        ["context-curve", "--ckpt_path", str(tmp_path / "bdh.ckpt"), str(tmp_path / "llama.ckpt"),
         "--label", "bdh", "llama", "--text", str(text), "--windows", "--out", str(out),
         "--buckets", "0", "16", "64"]
    )  # fmt: skip
    assert code == 0, err[-2000:]
    table = json.loads((out / "context_curve.json").read_text())
    assert (out / "context_curve.png").stat().st_size > 0
    rows = {(r["label"], r["mode"]): r for r in table["runs"]}
    assert set(rows) == {
        ("bdh", "stream"), ("bdh", "windows"), ("llama", "sliding"), ("llama", "windows")
    }  # fmt: skip

    stream = torch.tensor([10, *text.read_bytes()])  # byte tokenizer: bos, then the bytes
    with torch.no_grad():
        prefix = [F.cross_entropy(bdh(stream[None, : t + 1])[0, -1:], stream[t + 1 : t + 2])
                  for t in range(200)]  # fmt: skip
        windows = []  # llama: windows of 32 every 16 tokens; token t in the first that ends after it
        disjoint = []  # llama --windows: windows of 32 every 32 tokens
        for t in range(200):
            start = 0 if t < 32 else (t - 16) // 16 * 16
            logits = llama(stream[None, start : t + 1])[0, -1:]
            windows.append(F.cross_entropy(logits, stream[t + 1 : t + 2]))
            logits = llama(stream[None, t // 32 * 32 : t + 1])[0, -1:]
            disjoint.append(F.cross_entropy(logits, stream[t + 1 : t + 2]))
    total = rows["bdh", "stream"]
    assert total["bpb"] == pytest.approx(float(sum(prefix)) / math.log(2) / 200, abs=1e-5)
    assert [b["bytes"] for b in total["buckets"]] == [16, 48, 136]  # context = position
    assert rows["bdh", "windows"]["buckets"][2]["bytes"] == 0  # never more than a block
    assert [b["mean_context"] for b in total["buckets"]] == [7.5, 39.5, 131.5]  # positions
    assert total["split_bytes"] == 200 and "Only the first" not in str(table)
    assert rows["llama", "sliding"]["bpb"] == pytest.approx(
        float(sum(windows)) / math.log(2) / 200, abs=1e-5
    )
    assert rows["llama", "windows"]["bpb"] == pytest.approx(
        float(sum(disjoint)) / math.log(2) / 200, abs=1e-5
    )
    # the same disjoint windows as BDH's (same block): the same bytes in every bucket
    assert [b["bytes"] for b in rows["llama", "windows"]["buckets"]] == [
        b["bytes"] for b in rows["bdh", "windows"]["buckets"]
    ]


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

    # each stream bucket's bytes as disjoint windows of 16 read them (a hand loop), bucketed by
    # their place in the article: the same bytes both ways
    by_bucket = [[], [], []]
    with torch.no_grad():
        for article in articles:
            ids = torch.tensor([10, *article])
            for t in range(len(article)):
                start = t // 16 * 16
                nll_t = F.cross_entropy(bdh(ids[None, start : t + 1])[0, -1:], ids[t + 1 : t + 2])
                by_bucket[(t >= 16) + (t >= 48)].append(float(nll_t))
    same = stream["windows_same_bytes"]
    assert [b["bytes"] for b in same] == counts
    for row, hand in zip(same, by_bucket, strict=True):
        assert row["bpb"] == pytest.approx(sum(hand) / math.log(2) / len(hand), abs=1e-5)
    assert same[0]["bpb"] == pytest.approx(stream["buckets"][0]["bpb"], abs=1e-5)  # one read
    gain = stream["stream_gain"]
    for row, same_row, stream_row in zip(gain, same, stream["buckets"], strict=True):
        assert row["gain_bpb"] == pytest.approx(same_row["bpb"] - stream_row["bpb"], abs=1e-5)
    assert gain[0]["gain_bpb"] == pytest.approx(0, abs=1e-5)


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
