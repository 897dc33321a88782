"""How sparse are BDH's activations: per layer and head, per neuron, and over training.

    counter = SparsityCounter(n_layer, n_head, n_neurons)
    counter.add(recorder.x, recorder.y)      # after each recorded forward
    counter.summary()                        # fractions, dead neurons, frequency quantiles

A neuron is active at a position when its activation is > 0 (x_sparse and y_sparse are ReLU
outputs). Its activation frequency is the share of positions where it is active, per layer
(BDH shares one set of weights across layers, so neuron n of head h is the same parameter
column in every layer, read on a different input). A neuron is dead when it is never active,
in any layer, on the whole text.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

FREQUENCY_QUANTILES = (0.01, 0.1, 0.5, 0.9, 0.99)


class SparsityCounter:
    """Counts of active neurons over recorded forwards (B, T, nh * N per layer, head-major)."""

    def __init__(self, n_layer: int, n_head: int, n_neurons: int) -> None:
        self.n_head, self.n_neurons = n_head, n_neurons
        self.positions = 0
        self.x_active = torch.zeros(n_layer, n_head * n_neurons, dtype=torch.int64)
        self.y_active = torch.zeros(n_layer, n_head * n_neurons, dtype=torch.int64)

    def add(self, x: dict[int, Tensor], y: dict[int, Tensor]) -> None:
        first = next(iter(x.values()))
        self.positions += first.shape[0] * first.shape[1]
        for counts, acts in ((self.x_active, x), (self.y_active, y)):
            for layer, a in acts.items():
                counts[layer] += (a > 0).flatten(0, 1).sum(0)

    def frequency(self, which: str = "x") -> np.ndarray:
        """n_layer, nh * N: share of positions at which each neuron is active."""
        counts = self.x_active if which == "x" else self.y_active
        return (counts.double() / max(self.positions, 1)).numpy()

    def summary(self) -> dict:
        out: dict = {"positions": self.positions}
        for which in ("x", "y"):
            freq = self.frequency(which)  # L, nh * N
            by_head = freq.reshape(freq.shape[0], self.n_head, self.n_neurons).mean(-1)  # L, nh
            dead_in_layer = (freq == 0).sum(1)
            dead = int((freq == 0).all(0).sum())
            out[which] = {
                "active_fraction": float(freq.mean()),
                "by_layer": [float(v) for v in freq.mean(1)],
                "by_layer_head": by_head.tolist(),
                "dead_neurons": dead,
                "dead_fraction": dead / freq.shape[1],
                "dead_by_layer": [int(v) for v in dead_in_layer],
                "frequency_quantiles": {
                    str(q): float(v)
                    for q, v in zip(
                        FREQUENCY_QUANTILES,
                        np.quantile(freq.mean(0), FREQUENCY_QUANTILES),
                        strict=True,
                    )
                },
            }
        return out


# what runs log per layer at each validation (val/active_fraction_x_l0, ...); runs before the
# key was named for what it is logged val/sparsity_x_l0
LOGGED_PREFIXES = ("val/active_fraction_", "val/sparsity_")


def training_curves(curves: dict[str, list[tuple[int, float]]]) -> dict[str, list]:
    """The run's logged active fraction by layer (LOGGED_PREFIXES):
    {"x_l0": [[step, fraction], ...], ...}; {} when the run logged none."""
    out = {}
    for key, points in sorted(curves.items()):
        for prefix in LOGGED_PREFIXES:
            name = key[len(prefix) :] if key.startswith(prefix) else ""
            if name[:1] in ("x", "y") and "_l" in name:
                out[name] = [[int(step), float(value)] for step, value in points]
    return out
