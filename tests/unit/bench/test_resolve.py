"""A benchmark times a config at the precision its fit will run: a bf16 request on a CPU
without bf16 arithmetic is timed in fp32, as the fit runs it, not in emulated bf16."""

import contextlib
from types import SimpleNamespace

import pytest
import torch

from bdh_pl.bench.resolve import seconds_per_step
from bdh_pl.training import trainer_options
from bdh_pl.training.trainer_options import FORCE_BF16_ENV


@pytest.mark.parametrize(
    ("flags", "timed_in"),
    [({"avx2"}, None), ({"avx2", "avx512_bf16"}, torch.bfloat16)],
)
def test_seconds_per_step_times_the_precision_the_fit_runs(flags, timed_in, bigram_lm, monkeypatch):
    """CPU flags faked, so the test is the same on any CPU: without bf16 no autocast at all
    (fp32, as the fit's fallback), with it bf16 autocast."""
    monkeypatch.setattr(trainer_options, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.delenv(FORCE_BF16_ENV, raising=False)
    autocasts = []

    def recording(device_type, dtype=None, **kwargs):
        autocasts.append(dtype)
        return contextlib.nullcontext()

    monkeypatch.setattr(torch, "autocast", recording)
    model = bigram_lm(16, 8)
    data = SimpleNamespace(vocab_size=16, block_size=8, eval_batch_size=2)
    config = {
        "trainer": {"accelerator": "cpu", "precision": "bf16-mixed"},
        "data": {"init_args": {"batch_size": 2}},
    }
    assert seconds_per_step(model, data, config, threads=1, steps=1) > 0
    assert autocasts == ([] if timed_in is None else [timed_in])
