"""TextFile: one file split by fractions, or separate train/val/test files (each split whole)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bdh_pl.data import TextFile, WikiText2
from bdh_pl.errors import UserError

from helpers import SMOKE


def test_separate_files_are_the_splits(data_dir, tmp_path):
    raw = data_dir / "wikitext-2-raw"
    dm = TextFile(
        train=str(data_dir / "tinyshakespeare" / "input.txt"),
        val=str(raw / "wiki.valid.raw"),
        test=str(raw / "wiki.test.raw"),
        cache_dir=str(tmp_path),
    )
    for split, path in [
        ("train", data_dir / "tinyshakespeare" / "input.txt"),
        ("val", raw / "wiki.valid.raw"),
        ("test", raw / "wiki.test.raw"),
    ]:
        assert bytes(np.asarray(dm.split_tokens(split))) == path.read_bytes()


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


def test_one_file_still_splits_by_fraction(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"abcdefghij" * 100)
    dm = TextFile(path=str(path), fractions=(0.8, 0.1, 0.1), cache_dir=str(tmp_path), block_size=8)
    assert [len(dm.split_tokens(s)) for s in ("train", "val", "test")] == [800, 100, 100]


def test_path_and_split_files_together_are_refused(tmp_path):
    with pytest.raises(UserError, match="either data.path"):
        TextFile(path="a.txt", test="b.txt")


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


def test_train_fraction_keeps_the_first_share_of_train_only(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(bytes(range(32, 127)) * 20)  # 1,900 bytes
    whole = TextFile(path=str(path), cache_dir=str(tmp_path), block_size=8)
    part = TextFile(path=str(path), cache_dir=str(tmp_path), block_size=8, train_fraction=0.25)
    train = whole.split_tokens("train")
    assert np.array_equal(part.split_tokens("train"), train[: len(train) // 4])
    for split in ("val", "test"):
        assert np.array_equal(part.split_tokens(split), whole.split_tokens(split))


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_train_fraction_outside_zero_one_is_one_error(tmp_path, fraction):
    with pytest.raises(UserError, match="data.train_fraction must be in"):
        TextFile(path="x", cache_dir=str(tmp_path), train_fraction=fraction)
