"""The integration half of tests/unit/data/test_datamodule.py: its tests that fit, compile, read
more than a slice of real data or spend seconds of CPU (the unit tier has a minute)."""

from bdh_pl.data import WikiText2


def test_wikitext2_uses_the_official_files(data_dir):
    dm = WikiText2(variant="raw", tokenizer="gpt2", block_size=128)
    assert len(dm.split_tokens("test")) == 286_221  # the number shared/data/README states
    assert dm.vocab_size == 50257
    tokens = WikiText2(variant="tokens").split_tokens("val")
    assert len(tokens) == (data_dir / "wikitext-2" / "wiki.valid.tokens").stat().st_size


def test_caches_are_per_tokenizer(data_dir, tmp_path):
    WikiText2(variant="raw", cache_dir=str(tmp_path)).split_tokens("test")
    WikiText2(variant="raw", tokenizer="gpt2", cache_dir=str(tmp_path)).split_tokens("test")
    assert sorted(p.name.split("-")[1] for p in tmp_path.glob("*.bin")) == ["byte.bin", "gpt2.bin"]
