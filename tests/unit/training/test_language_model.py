import dataclasses
import inspect
import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bdh_pl.data import TinyShakespeare, WikiText2
from bdh_pl.data.sources import SplitText
from bdh_pl.errors import UserError
from bdh_pl.models.bdh import BDHConfig, BDHExecution
from bdh_pl.training.lit_models import BDHLM
from bdh_pl.training.metrics import LanguageModelingMetric, count_parameters


def test_bdhlm_takes_every_bdh_field_with_its_default():
    """BDHLM's arguments are BDHConfig's (architecture) and BDHExecution's (how it runs), with
    their defaults, each one reaching the network: a field added there is a CLI option here."""
    params = inspect.signature(BDHLM.__init__).parameters
    for cls in (BDHConfig, BDHExecution):
        for field in dataclasses.fields(cls):
            assert params[field.name].default == field.default, field.name
    model = BDHLM(n_layer=1, n_embd=32, n_head=2, mlp_internal_dim_multiplier=4, chunk_size=8)
    assert model.network.config == BDHConfig(1, 32, 0.1, 2, 4, 256)
    assert model.network.layer_runner == BDHExecution(chunk_size=8)
    assert BDHLM.execution_options >= {f.name for f in dataclasses.fields(BDHExecution)}


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


@pytest.mark.parametrize(("block_size", "batch_size"), [(64, 3), (1000, 16), (4096, 1)])
def test_test_loss_is_the_mean_nll_over_the_whole_split(
    bigram_lm, block_size, batch_size, data_dir
):
    dm = TinyShakespeare(block_size=block_size, eval_batch_size=batch_size)
    model = bigram_lm(vocab_size=256, block_size=block_size)
    metrics = run_test(model, dm)
    tokens = np.asarray(dm.split_tokens("test"))
    total = hand_nll(model, tokens, dm.tokenizer.bos_id)
    assert metrics["test/tokens"] == len(tokens) == 55_770
    assert metrics["test/loss"] == pytest.approx(total / len(tokens), rel=1e-6)
    assert metrics["test/ppl"] == pytest.approx(math.exp(metrics["test/loss"]), rel=1e-6)
    assert metrics["test/bpb"] == pytest.approx(total / (math.log(2) * len(tokens)), rel=1e-6)
    assert metrics["test/bytes"] == len(tokens)


class WikiSlice(WikiText2):
    """The first 30 kB of raw WikiText-2 test: BPE logits are large, keep the test fast."""

    def split_text(self, split):
        text = super().split_text(split)
        return SplitText(text.data[:30_000], text.origin)


def test_word_perplexity_and_bpb_on_bpe_tokens(bigram_lm, data_dir):
    dm = WikiSlice(variant="raw", tokenizer="gpt2", block_size=256, eval_batch_size=8)
    model = bigram_lm(vocab_size=dm.vocab_size, block_size=256)
    metrics = run_test(model, dm)
    text = (data_dir / "wikitext-2-raw" / "wiki.test.raw").read_bytes()[:30_000]
    total = hand_nll(model, np.asarray(dm.split_tokens("test")), dm.tokenizer.bos_id)
    assert metrics["test/bytes"] == len(text)
    assert metrics["test/words"] == len(text.split())
    assert metrics["test/bpb"] == pytest.approx(total / (math.log(2) * len(text)), rel=1e-6)
    assert metrics["test/word_ppl"] == pytest.approx(math.exp(total / len(text.split())), rel=1e-6)
    assert metrics["test/byte_ppl"] == pytest.approx(2 ** metrics["test/bpb"], rel=1e-6)


def test_metric_formulas():
    metric = LanguageModelingMetric()
    metric.update(torch.tensor(10.0), torch.tensor(4), torch.tensor(8), torch.tensor(2))
    metric.update(torch.tensor(2.0), torch.tensor(2), torch.tensor(4), torch.tensor(1))
    out = metric.compute()
    assert out["loss"] == pytest.approx(2.0)
    assert out["ppl"] == pytest.approx(math.exp(2.0))
    assert out["bpb"] == pytest.approx(12 / (math.log(2) * 12))
    assert out["word_ppl"] == pytest.approx(math.exp(12 / 3))


def test_weight_decay_skips_embeddings_norms_and_vectors():
    model = BDHLM(n_layer=1, n_embd=32, n_head=2, mlp_internal_dim_multiplier=4, weight_decay=0.1)
    optimizer = model.configure_optimizers()["optimizer"]
    decay, no_decay = optimizer.param_groups
    names = {id(p): n for n, p in model.network.named_parameters()}
    assert {names[id(p)] for p in decay["params"]} == {"encoder", "encoder_v", "decoder", "lm_head"}
    assert {names[id(p)] for p in no_decay["params"]} == {"embed.weight"}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


def test_learning_rate_warms_up_then_decays_to_the_floor():
    model = BDHLM(
        n_layer=1,
        n_embd=32,
        n_head=2,
        mlp_internal_dim_multiplier=4,
        learning_rate=1e-3,
        min_learning_rate=1e-4,
        warmup_steps=10,
        lr_decay_steps=110,
    )
    factors = [model._lr_factor(s) for s in range(200)]
    assert factors[0] < factors[5] < factors[9] <= 1.0
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert factors[110] == pytest.approx(0.1) and factors[199] == pytest.approx(0.1)


def test_non_embedding_parameter_count():
    model = BDHLM(n_layer=1, n_embd=32, n_head=2, mlp_internal_dim_multiplier=4)
    total, non_embedding = count_parameters(model.network)
    assert total == sum(p.numel() for p in model.network.parameters())
    assert total - non_embedding == 256 * 32


def _bdh(**schedule):
    return BDHLM(n_layer=1, n_embd=32, n_head=2, mlp_internal_dim_multiplier=4, **schedule)


@pytest.mark.parametrize("steps", [51, 210, 2000])
def test_warmup_fraction_is_the_same_share_of_runs_of_any_length(steps):
    model = _bdh(warmup_steps=20, warmup_fraction=0.1, lr_decay_steps=steps)
    factors = [model._lr_factor(s) for s in range(steps)]
    # Rising while warming up, the peak at the first step after it, then decaying.
    warmup = next(i for i, f in enumerate(factors) if f == 1.0)
    assert warmup == round(0.1 * steps)  # not the 20 steps of warmup_steps
    assert all(a < b for a, b in zip(factors[:warmup], factors[1 : warmup + 1], strict=False))
    assert all(a >= b for a, b in zip(factors[warmup:], factors[warmup + 1 :], strict=False))


def test_warmup_fraction_needs_a_run_length_and_a_share():
    with pytest.raises(UserError, match=r"warmup_fraction is a share .* in \[0, 1\)"):
        _bdh(warmup_fraction=1.5)
    model = _bdh(warmup_fraction=0.1)  # no lr_decay_steps, no trainer: no length known
    with pytest.raises(UserError, match="needs the run's length: set trainer.max_steps"):
        model._lr_factor(0)
