import dataclasses
import inspect
import math

import pytest
import torch

from bdh_pl.errors import UserError
from bdh_pl.models.bdh import BDHConfig, BDHExecution
from bdh_pl.training.lit_models import BDHLM
from bdh_pl.training.metrics import LanguageModelingMetric, count_parameters
from bdh_pl.training.training_config import TrainingConfig

TRAINING = TrainingConfig()
TINY = BDHConfig(n_layer=1, n_embd=32, n_head=2, mlp_internal_dim_multiplier=4)


def test_bdhlm_takes_its_configs_whole_and_each_reaches_the_network():
    """BDHLM takes a BDHConfig (architecture), a BDHExecution (how it runs) and a
    TrainingConfig, whole: each is what the network and the optimiser get, unchanged, and what
    the checkpoint's hyperparameters save (plain dicts, loadable with weights_only)."""
    params = inspect.signature(BDHLM.__init__).parameters
    assert list(params) == ["self", "config", "execution", "training"]
    assert params["config"].default == BDHConfig() and params["training"].default == TRAINING
    config = BDHConfig(n_layer=1, n_embd=32, n_head=2, mlp_internal_dim_multiplier=4)
    training = TrainingConfig(learning_rate=2e-3, min_learning_rate=2e-4, betas=(0.8, 0.9))
    model = BDHLM(config, BDHExecution(chunk_size=8), training)
    assert model.network.config is config and model.config is config
    assert model.network.layer_runner == BDHExecution(chunk_size=8)
    optimizer = model.configure_optimizers()["optimizer"]
    assert optimizer.defaults["lr"] == 2e-3 and optimizer.defaults["betas"] == (0.8, 0.9)
    assert model.hparams["config"] == dataclasses.asdict(config)
    assert model.hparams["execution"]["chunk_size"] == 8
    assert model.hparams["training"]["learning_rate"] == 2e-3
    assert BDHLM.from_hparams(model.hparams).config == config
    assert BDHLM.config_types() == {
        "config": BDHConfig,
        "execution": BDHExecution,
        "training": TrainingConfig,
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"learning_rate": 0.0}, "learning_rate > 0"),
        ({"learning_rate": math.nan}, "learning_rate > 0"),
        ({"min_learning_rate": 1.0}, "min_learning_rate <= learning_rate"),
        ({"warmup_steps": -1}, "warmup_steps and weight_decay must be >= 0"),
        ({"lr_decay_steps": 0}, "lr_decay_steps must be >= 1"),
        ({"betas": (0.9, 1.0)}, "betas must be two numbers in"),
    ],
)
def test_a_bad_training_config_is_one_line_naming_its_field(fields, message):
    with pytest.raises(UserError, match=message) as err:
        TrainingConfig(**fields)
    assert "model.training." in str(err.value) and "\n" not in str(err.value)


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
    model = _bdh(weight_decay=0.1)
    optimizer = model.configure_optimizers()["optimizer"]
    decay, no_decay = optimizer.param_groups
    names = {id(p): n for n, p in model.network.named_parameters()}
    assert {names[id(p)] for p in decay["params"]} == {"encoder", "encoder_v", "decoder", "lm_head"}
    assert {names[id(p)] for p in no_decay["params"]} == {"embed.weight"}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


def test_learning_rate_warms_up_then_decays_to_the_floor():
    model = _bdh(learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=10, lr_decay_steps=110)
    factors = [model._lr_factor(s) for s in range(200)]
    assert factors[0] < factors[5] < factors[9] <= 1.0
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert factors[110] == pytest.approx(0.1) and factors[199] == pytest.approx(0.1)


def test_non_embedding_parameter_count():
    model = _bdh()
    total, non_embedding = count_parameters(model.network)
    assert total == sum(p.numel() for p in model.network.parameters())
    assert total - non_embedding == 256 * 32


def _bdh(**schedule):
    return BDHLM(TINY, training=TrainingConfig(**schedule))


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
