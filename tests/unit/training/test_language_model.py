import dataclasses
import inspect
import math

import pytest
import torch

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
