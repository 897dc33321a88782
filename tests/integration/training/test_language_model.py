"""The integration half of tests/unit/training/test_language_model.py: its tests that fit, compile, read
more than a slice of real data or spend seconds of CPU (the unit tier has a minute)."""

import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bdh_pl.data import TinyShakespeare, WikiText2
from bdh_pl.data.sources import SplitText


def run_test(model, datamodule) -> dict[str, float]:
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.test(model, datamodule=datamodule, verbose=False)
    return metrics


def hand_nll(model, tokens: np.ndarray, bos: int) -> float:
    """Sum of -log p(next | previous) over the whole split, with bos before the first token."""
    prev = torch.from_numpy(np.concatenate([[bos], tokens[:-1]]).astype(np.int64))
    nxt = torch.from_numpy(np.asarray(tokens, dtype=np.int64))
    with torch.no_grad():
        logp = F.log_softmax(model.network(prev).double(), dim=-1)
    return float(-logp.gather(1, nxt[:, None]).sum())


class WikiSlice(WikiText2):
    """The first 30 kB of raw WikiText-2 test: BPE logits are large, keep the test fast."""

    def split_text(self, split):
        text = super().split_text(split)
        return SplitText(text.data[:30_000], text.origin)


@pytest.mark.parametrize(("block_size", "batch_size"), [(64, 3), (1000, 16), (4096, 1)])
def test_test_loss_is_the_mean_nll_over_the_whole_split(
    bigram_lm, block_size, batch_size, data_dir
):
    dm = TinyShakespeare(block_size=block_size, eval_batch_size=batch_size)
    model = bigram_lm(256, block_size)
    metrics = run_test(model, dm)
    tokens = np.asarray(dm.split_tokens("test"))
    total = hand_nll(model, tokens, dm.tokenizer.bos_id)
    assert metrics["test/tokens"] == len(tokens) == 55_770
    assert metrics["test/loss"] == pytest.approx(total / len(tokens), rel=1e-6)
    assert metrics["test/ppl"] == pytest.approx(math.exp(metrics["test/loss"]), rel=1e-6)
    assert metrics["test/bpb"] == pytest.approx(total / (math.log(2) * len(tokens)), rel=1e-6)
    assert metrics["test/bytes"] == len(tokens)


def test_word_perplexity_and_bpb_on_bpe_tokens(bigram_lm, data_dir):
    dm = WikiSlice(variant="raw", tokenizer="gpt2", block_size=256, eval_batch_size=8)
    model = bigram_lm(dm.vocab_size, 256)
    metrics = run_test(model, dm)
    text = (data_dir / "wikitext-2-raw" / "wiki.test.raw").read_bytes()[:30_000]
    total = hand_nll(model, np.asarray(dm.split_tokens("test")), dm.tokenizer.bos_id)
    assert metrics["test/bytes"] == len(text)
    assert metrics["test/words"] == len(text.split())
    assert metrics["test/bpb"] == pytest.approx(total / (math.log(2) * len(text)), rel=1e-6)
    assert metrics["test/word_ppl"] == pytest.approx(math.exp(total / len(text.split())), rel=1e-6)
    assert metrics["test/byte_ppl"] == pytest.approx(2 ** metrics["test/bpb"], rel=1e-6)
