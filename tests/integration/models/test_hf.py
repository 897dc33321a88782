"""The integration half of tests/unit/models/test_hf.py: its tests that fit, compile, read
more than a slice of real data or spend seconds of CPU (the unit tier has a minute)."""

from __future__ import annotations

from transformers import GPT2TokenizerFast
from unit.models.test_hf import scratch

from bdh_pl.data.tokenizers import get_tokenizer
from bdh_pl.training.lit_models import GPT2LM, LlamaLM


def test_gpt2_tokenizer_from_shared_folder(data_dir):
    ours = get_tokenizer("gpt2", data_dir)
    assert ours.encode(b"Hello world").tolist() == [15496, 995]
    folder = data_dir / "gpt2-tokenizer"
    for tok in (
        GPT2TokenizerFast.from_pretrained(folder),
        # transformers 5 ignores vocab_file=/merges_file= and builds an empty tokenizer.
        GPT2TokenizerFast(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt")),
    ):
        assert tok("Hello world")["input_ids"] == [15496, 995]


def test_default_sizes_match_bdh():
    # The paper's BDH has 25.3M parameters; the scratch baselines are built to match it.
    for lit_class in (GPT2LM, LlamaLM):
        total, non_embedding = scratch(lit_class, vocab_size=256, block_size=512).parameter_counts
        assert 25.0e6 < non_embedding <= total < 26.0e6
