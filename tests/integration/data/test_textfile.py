"""The integration half of tests/unit/data/test_textfile.py: its tests that fit, compile, read
more than a slice of real data or spend seconds of CPU (the unit tier has a minute)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bdh_pl.data import TextFile, WikiText2

from helpers import SMOKE


def test_a_test_file_alone_scores_like_the_dataset(data_dir, tmp_path):
    dm = TextFile(
        test=str(data_dir / "wikitext-2-raw" / "wiki.test.raw"),
        tokenizer="gpt2",
        cache_dir=str(tmp_path),
    )
    dm.setup("test")  # needs nothing but the test file
    ours = dm.eval_windows("test")
    theirs = WikiText2(variant="raw", tokenizer="gpt2", cache_dir=str(tmp_path)).eval_windows(
        "test"
    )
    assert np.array_equal(ours.tokens, theirs.tokens)
    assert ours.window_bytes.sum() == theirs.window_bytes.sum() == 1_290_590


@pytest.mark.slow
def test_cli_test_scores_a_whole_file_and_fit_needs_its_files(data_dir, tmp_path, run_cli):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = (data_dir / "tinyshakespeare" / "input.txt").read_bytes()
    (corpus / "train.txt").write_bytes(text[:200_000])
    (corpus / "val.txt").write_bytes(text[200_000:210_000])
    (corpus / "test.txt").write_bytes(text[210_000:222_345])
    common = [*SMOKE]
    common += ["--data", "bdh_pl.data.TextFile", "--trainer.default_root_dir", str(tmp_path / "r")]
    fit = ["fit", *common, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2"]
    fit += ["--data.init_args.train", str(corpus / "train.txt")]
    code, err = run_cli(fit)
    lines = [line for line in err.splitlines() if line.strip()]  # Lightning may warn first
    assert code == 2 and lines[-1].startswith("error: no val file") and "Traceback" not in err
    code, err = run_cli([*fit, "--data.init_args.val", str(corpus / "val.txt")])
    assert code == 0, err
    ckpt = next((tmp_path / "r").glob("version_*/checkpoints/last.ckpt"))
    test = ["test", *common, "--data.init_args.test", str(corpus / "test.txt")]
    code, err = run_cli([*test, "--ckpt_path", str(ckpt)])
    assert code == 0, err
    record = json.loads(next((tmp_path / "r").glob("version_1/test_metrics.json")).read_text())
    assert record["metrics"]["test/bytes"] == 12_345 and record["dataset"] == "textfile"
