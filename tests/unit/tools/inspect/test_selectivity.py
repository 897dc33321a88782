"""inspect's selectivity report: an always-on neuron is never listed as a detector, a planted
one is; BDH's columns of one weight vector in several layers are one vector."""

from __future__ import annotations

import numpy as np
import torch

from bdh_pl.models.bdh import BDH, BDHConfig
from bdh_pl.tools.inspect.selectivity import Unit, selectivity_report, weight_vectors

from helpers import digit_text

BYTES = [bytes([i]) for i in range(256)]


def test_the_listed_detectors_leave_out_an_always_on_neuron():
    torch.manual_seed(0)
    network = BDH(BDHConfig(n_layer=2, n_embd=16, n_head=2, mlp_internal_dim_multiplier=4))
    tokens = np.frombuffer(digit_text(2000), dtype=np.uint8)
    acts = torch.relu(torch.randn(len(tokens), 2 * 64) - 1)  # 2 layers x 2 heads x 32
    acts[:, 5] = torch.as_tensor((tokens >= 48) & (tokens <= 57)).float()  # L0 h0 n5: digits
    acts[:, 7] = 1.0 + 0.5 * torch.as_tensor(tokens == 32).float()  # L0 h0 n7: on everywhere
    unit = Unit("bdh", network, tokens, BYTES, acts.half(), False)
    report = selectivity_report([unit], per_class=3, n_contexts=1)["models"]["bdh"]
    listed = {entry["name"] for entry in report["top"]}
    assert "L0 h0 n5" in listed and "L0 h0 n7" not in listed
    assert all(entry["active_share"] <= 0.5 for entry in report["top"])
    assert report["per_class"]["space"]["name"] != "L0 h0 n7" and report["dense"]["neurons"] == 1
    assert report["weight_vectors"] == 64 and report["neurons"] == 128
    assert weight_vectors(network, 128).tolist() == [*range(64), *range(64)]
