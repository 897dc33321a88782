"""The integration half of tests/unit/data/test_tokenizers.py: its tests that fit, compile, read
more than a slice of real data or spend seconds of CPU (the unit tier has a minute)."""

import re

import numpy as np
import pytest
from unit.data.test_tokenizers import TRICKY

from bdh_pl.data.tokenizers import count_bytes_and_words, get_tokenizer


def words_in(data: bytes) -> int:
    return len(re.findall(rb"[^ \t\n\r\x0b\x0c]+", data))


@pytest.mark.parametrize("name", ["byte", "gpt2"])
def test_byte_and_word_counts_match_the_text(name, data_dir):
    tok = get_tokenizer(name, data_dir)
    wiki = (data_dir / "wikitext-2-raw" / "wiki.test.raw").read_bytes()[:50_000]
    for text in (TRICKY, wiki, b"   leading spaces", b"x"):
        n_bytes, n_words = count_bytes_and_words(tok, tok.encode(text))
        assert n_bytes.sum() == len(text)
        assert n_words.sum() == words_in(text)
        assert np.all(n_bytes >= 0) and np.all(n_words >= 0)
