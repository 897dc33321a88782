import pytest

from bdh_pl.data.tokenizers import ByteTokenizer, get_tokenizer
from bdh_pl.errors import UserError

TRICKY = "Ünïcödé  words\t\tand\n\n  émoji 🐉 at the end \n".encode()


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
