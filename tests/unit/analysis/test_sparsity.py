"""Sparsity of BDH's activations: equal to a hand count, and to the model's own logged count."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bdh_pl.analysis.activations import NeuronRecorder
from bdh_pl.analysis.sparsity import SparsityCounter, training_curves
from bdh_pl.models.bdh.kernels import BDHExecution


def count(model, idx: torch.Tensor) -> SparsityCounter:
    C = model.config
    counter = SparsityCounter(C.n_layer, C.n_head, C.n_neurons)
    with torch.no_grad(), NeuronRecorder(model, y=True) as rec:
        for row in idx:
            model(row[None])
            counter.add(rec.x, rec.y)
    return counter


def test_sparsity_equals_a_hand_count_on_a_tiny_model(tiny_bdh):
    """Layer 0's x_sparse is relu(LN(embed(byte)) @ encoder): counted by hand, per head."""
    model = tiny_bdh()
    with torch.no_grad():
        model.encoder[1, :, 3] = 0.0  # a neuron that never fires
    idx = torch.randint(0, 256, (3, 10), generator=torch.Generator().manual_seed(1))
    counter = count(model, idx)
    summary = counter.summary()
    with torch.no_grad():
        x = F.layer_norm(model.embed(idx), (8,))  # B, T, D
        hand = [int((x @ model.encoder[h] > 0).sum()) for h in range(2)]  # of 30 x 8 per head
    assert summary["positions"] == 30
    assert counter.x_active[0].view(2, 8).sum(1).tolist() == hand
    assert summary["x"]["by_layer_head"][0] == pytest.approx([n / 240 for n in hand], abs=1e-12)
    assert summary["x"]["active_fraction"] == pytest.approx(sum(hand) / 480, abs=1e-12)
    assert summary["x"]["dead_neurons"] == 1 and summary["x"]["dead_by_layer"] == [1]


def test_sparsity_of_every_layer_equals_the_fused_forward_s_own_count(tiny_bdh):
    """The recorder reads the reference forward; the fused kernels count x and y themselves."""
    model = BDHExecution(fused=True).apply(tiny_bdh(n_layer=3, seed=2))
    idx = torch.randint(0, 256, (1, 16), generator=torch.Generator().manual_seed(3))
    summary = count(model, idx).summary()
    logged: dict = {}
    with torch.no_grad():
        model(idx, sparsity=logged)
    assert isinstance(model.layer_runner, BDHExecution)  # the recorder put the runner back
    for layer in range(3):
        assert summary["x"]["by_layer"][layer] == pytest.approx(float(logged[f"x_l{layer}"]))
        assert summary["y"]["by_layer"][layer] == pytest.approx(float(logged[f"y_l{layer}"]))


def test_training_curves_take_the_logged_active_fraction_by_layer():
    curves = {
        "val/loss": [(9, 2.0)],
        "val/active_fraction_x": [(9, 0.3)],  # the mean over layers: not a layer
        "val/active_fraction_x_l0": [(9, 0.25), (19, 0.2)],
        "val/active_fraction_y_l1": [(9, 0.4)],
    }
    assert training_curves(curves) == {"x_l0": [[9, 0.25], [19, 0.2]], "y_l1": [[9, 0.4]]}
    older = {"val/sparsity_x_l0": [(9, 0.25)], "val/sparsity_y": [(9, 0.4)]}  # the old key
    assert training_curves(older) == {"x_l0": [[9, 0.25]]}
