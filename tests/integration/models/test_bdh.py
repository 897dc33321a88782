"""The integration half of tests/unit/models/test_bdh.py: its tests that fit, compile, read
more than a slice of real data or spend seconds of CPU (the unit tier has a minute)."""

import torch
from unit.models.test_bdh import PLAIN, logits_and_grads

from bdh_pl.models.bdh.kernels import (
    GateDecode,
    dropout_bits,
    dropout_keep,
)


def test_compiled_gate_with_dropout_matches_eager():
    """The compiled dropout gate against the eager one, same mask."""
    torch.manual_seed(0)
    y = torch.randn(2, 48, 64, requires_grad=True)
    xs = torch.randn(2, 48, 64).relu().requires_grad_()
    dec = torch.randn(2, 64, 8, requires_grad=True)
    keep = dropout_keep(dropout_bits((2, 48, 64), torch.device("cpu")), 0.25)
    outs = []
    for compiled in (False, True):
        out = GateDecode.apply(y, xs, keep, dec, 0.25, compiled)
        outs.append((out, *torch.autograd.grad(out.square().sum(), (y, xs, dec))))
    for e, c in zip(*outs, strict=True):
        torch.testing.assert_close(c, e, atol=1e-5, rtol=1e-5)


def test_compiled_switch_matches_plain_model_values_and_grads():
    """compile_elementwise against the plain model, as the unit tier checks every other switch."""
    idx = torch.randint(0, 64, (2, 45), generator=torch.Generator().manual_seed(1))
    ref_logits, ref_grads = logits_and_grads(PLAIN, idx)
    logits, grads = logits_and_grads(dict(compile_elementwise=True), idx)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)
