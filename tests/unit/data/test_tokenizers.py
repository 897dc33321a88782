import re

import numpy as np
import pytest

from bdh_pl.data.tokenizers import ByteTokenizer, count_bytes_and_words, get_tokenizer
from bdh_pl.errors import UserError

TRICKY = "Ünïcödé  words\t\tand\n\n  émoji 🐉 at the end \n".encode()


def words_in(data: bytes) -> int:
    return len(re.findall(rb"[^ \t\n\r\x0b\x0c]+", data))


def test_byte_tokenizer_round_trips_any_utf8():
    tok = ByteTokenizer()
    ids = tok.encode(TRICKY)
    assert ids.tolist() == list(TRICKY)
    assert tok.decode(ids.tolist()) == TRICKY.decode()


def test_byte_tokenizer_accepts_invalid_utf8():
    data = bytes(range(256))
    assert ByteTokenizer().encode(data).tolist() == list(range(256))


def test_gpt2_tokenizer_from_local_folder(data_dir):
    tok = get_tokenizer("gpt2", data_dir)
    assert tok.encode(b"Hello world").tolist() == [15496, 995]
    assert tok.vocab_size == 50257 and tok.bos_id == 50256
    assert tok.decode(tok.encode(TRICKY).tolist()) == TRICKY.decode()


def test_gpt2_tokenizer_rejects_invalid_utf8(data_dir):
    with pytest.raises(UserError, match="not valid UTF-8 at byte 3"):
        get_tokenizer("gpt2", data_dir).encode(b"abc\xff")


def test_unknown_tokenizer_is_a_clear_error():
    with pytest.raises(UserError, match="unknown tokenizer 'sentencepiece'"):
        get_tokenizer("sentencepiece")


@pytest.mark.parametrize("name", ["byte", "gpt2"])
def test_byte_and_word_counts_match_the_text(name, data_dir):
    tok = get_tokenizer(name, data_dir)
    wiki = (data_dir / "wikitext-2-raw" / "wiki.test.raw").read_bytes()[:50_000]
    for text in (TRICKY, wiki, b"   leading spaces", b"x"):
        n_bytes, n_words = count_bytes_and_words(tok, tok.encode(text))
        assert n_bytes.sum() == len(text)
        assert n_words.sum() == words_in(text)
        assert np.all(n_bytes >= 0) and np.all(n_words >= 0)
