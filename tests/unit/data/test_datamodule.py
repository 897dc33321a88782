import numpy as np
import pytest

from bdh_pl.data import TinyShakespeare, WikiText2
from bdh_pl.data.tokenizers import ByteTokenizer
from bdh_pl.errors import UserError


def test_shakespeare_splits_are_90_5_5_and_contiguous(data_dir, tmp_path):
    dm = TinyShakespeare(cache_dir=str(tmp_path), block_size=64)
    raw = (data_dir / "tinyshakespeare" / "input.txt").read_bytes()
    parts = [bytes(np.asarray(dm.split_tokens(s))) for s in ("train", "val", "test")]
    assert [len(p) for p in parts] == [1_003_854, 55_770, 55_770]
    assert b"".join(parts) == raw


def test_second_setup_reads_the_cache(data_dir, tmp_path, monkeypatch):
    TinyShakespeare(cache_dir=str(tmp_path)).split_tokens("val")

    def fail(self, data):
        raise AssertionError("re-tokenized although the cache was warm")

    monkeypatch.setattr(ByteTokenizer, "encode", fail)
    tokens = TinyShakespeare(cache_dir=str(tmp_path)).split_tokens("val")
    assert len(tokens) == 55_770


def test_setup_for_test_does_not_need_the_train_split(data_dir):
    dm = WikiText2(variant="raw")  # the offline raw data has no train split
    dm.setup("test")
    assert len(dm.test_dataloader()) > 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: TinyShakespeare(data_dir=str(tmp / "nope")), "does not exist"),
        (lambda tmp: TinyShakespeare(data_dir=str(tmp)).split_tokens("train"), "not found"),
        (
            lambda tmp: WikiText2(variant="raw").split_tokens("train"),
            "no raw WikiText-2 train split",
        ),
        (lambda tmp: WikiText2(variant="xml"), "unknown data.variant 'xml'"),
        (lambda tmp: TinyShakespeare(block_size=0), "block_size must be a positive"),
        (lambda tmp: TinyShakespeare(batch_size=-2), "batch_size must be a positive"),
        (lambda tmp: TinyShakespeare(block_size=8, eval_stride=9), "eval_stride"),
        (lambda tmp: TinyShakespeare(block_size=1_100_000).split_tokens("train"), "fewer than"),
    ],
)
def test_bad_data_settings_are_clear_errors(make, message, data_dir, tmp_path):
    with pytest.raises(UserError, match=message):
        make(tmp_path)


def test_empty_file_is_a_clear_error(tmp_path):
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_bytes(b"")
    with pytest.raises(UserError, match="is empty"):
        TinyShakespeare(data_dir=str(tmp_path)).split_tokens("train")
