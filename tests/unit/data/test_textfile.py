"""TextFile: one file split by fractions, or separate train/val/test files (each split whole)."""

from __future__ import annotations

import numpy as np
import pytest

from bdh_pl.data import TextFile
from bdh_pl.errors import UserError


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


def test_one_file_still_splits_by_fraction(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"abcdefghij" * 100)
    dm = TextFile(path=str(path), fractions=(0.8, 0.1, 0.1), cache_dir=str(tmp_path), block_size=8)
    assert [len(dm.split_tokens(s)) for s in ("train", "val", "test")] == [800, 100, 100]


def test_path_and_split_files_together_are_refused(tmp_path):
    with pytest.raises(UserError, match="either data.path"):
        TextFile(path="a.txt", test="b.txt")


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
