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
