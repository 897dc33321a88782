import numpy as np
import pytest

from bdh_pl.data import cache
from bdh_pl.data.tokenizers import get_tokenizer


@pytest.mark.parametrize("name", ["byte", "gpt2"])
def test_chunked_tokenization_equals_whole_text(name, data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "CHUNK_BYTES", 4096)  # many chunk boundaries
    tok = get_tokenizer(name, data_dir)
    raw = (data_dir / "wikitext-2-raw" / "wiki.valid.raw").read_bytes()[:200_000]
    data = np.frombuffer(raw, dtype=np.uint8)
    assert len(list(cache._chunks(data))) > 40
    tokens = cache.cached_tokens(data, tok, tmp_path)
    assert np.array_equal(np.asarray(tokens), tok.encode(raw))
    assert tokens.dtype == (np.uint8 if name == "byte" else np.uint16)


# --- a damaged or unusable cache: detected, rebuilt with one warning, or one error ----------

TEXT = np.frombuffer(b"To be, or not to be, that is the question. " * 50, dtype=np.uint8)


def entry(tmp_path):
    tok = get_tokenizer("byte", None)
    tokens = cache.cached_tokens(TEXT, tok, tmp_path)
    assert np.array_equal(np.asarray(tokens), TEXT)
    (bin_path,) = tmp_path.glob("*.bin")
    return tok, bin_path, bin_path.with_suffix(".json")


DAMAGE = {
    "truncated .bin": (lambda b, m: b.write_bytes(b.read_bytes()[:100]), "has 100 bytes"),
    "missing .bin": (lambda b, m: b.unlink(), "is missing"),
    "corrupt .json": (lambda b, m: m.write_text('{"n_tok'), "unreadable .json"),
    "missing .json": (lambda b, m: m.unlink(), "no .json record"),
    "zeros of the same size": (
        lambda b, m: b.write_bytes(bytes(b.stat().st_size)),
        "does not match its recorded checksum",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_entry_is_rebuilt_with_one_warning(case, tmp_path, capsys):
    tok, bin_path, meta_path = entry(tmp_path)
    capsys.readouterr()
    damage, expected = DAMAGE[case]
    damage(bin_path, meta_path)
    tokens = cache.cached_tokens(TEXT, tok, tmp_path)
    assert np.array_equal(np.asarray(tokens), TEXT)  # the real tokens, not the damage
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: token cache") and expected in lines[0]
    cache.cached_tokens(TEXT, tok, tmp_path)
    assert not capsys.readouterr().err, "the rebuilt entry is good"


def test_a_cache_path_that_is_a_file_is_one_error(tmp_path):
    (tmp_path / "cache").write_text("not a folder")
    with pytest.raises(cache.UserError, match="is a file, not a folder"):
        cache.cached_tokens(TEXT, get_tokenizer("byte", None), tmp_path / "cache")


def test_a_read_only_cache_folder_is_one_error(tmp_path, monkeypatch):
    import errno
    import os
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # what a read-only mount answers
    with pytest.raises(cache.UserError, match="cannot write in .*Read-only file system"):
        cache.cached_tokens(TEXT, get_tokenizer("byte", None), tmp_path)


def test_an_empty_cache_variable_means_the_default(tmp_path):
    default = cache.default_cache_dir({})
    assert cache.default_cache_dir({"BDH_PL_CACHE_DIR": ""}) == default
    assert default.name == "bdh_pl" and default.is_absolute()
    assert cache.default_cache_dir({"BDH_PL_CACHE_DIR": str(tmp_path)}) == tmp_path


def test_a_large_text_prints_its_size_and_rate_while_it_is_tokenized(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cache.Progress, "MIN_BYTES", 1000)  # TEXT counts as large
    monkeypatch.setattr(cache.Progress, "EVERY_S", 0.0)  # a line per chunk
    monkeypatch.setattr(cache, "CHUNK_BYTES", 512)
    tokens = cache.cached_tokens(TEXT, get_tokenizer("byte", None), tmp_path)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == f"tokenizing {len(TEXT) / 2**20:.1f} MB (byte): started"
    assert any(line.endswith(" MB/s") and "%" in line for line in lines[1:-1])
    assert lines[-1].endswith(f"{len(tokens):,} tokens") and " done in " in lines[-1]


def test_a_small_text_is_tokenized_quietly(tmp_path, capsys):
    cache.cached_tokens(TEXT, get_tokenizer("byte", None), tmp_path)
    assert capsys.readouterr().err == ""
