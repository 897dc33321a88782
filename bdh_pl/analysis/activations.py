"""Reading a network's neurons on a text: BDH's sparse activations, a transformer's MLP neurons.

    with NeuronRecorder(network, layers=[0, 1]) as rec:
        network(idx)                  # B, T token ids
    rec.x[0]                          # B, T, nh * N: x_sparse of layer 0 (head-major neurons)

For BDH the recorder hooks the attention module, whose input is x_sparse (B, nh, T, N) and
whose output, through the layer's LayerNorm and encoder_v, gives y_sparse; the network runs its
reference layer (model.py's BDH.layer) while recorded, because the fused kernels call no module. For a
`transformers` GPT-2 or LLaMA it hooks the input of each MLP's output projection (c_proj,
down_proj): GELU(x W_fc) and SiLU(x W_gate) * (x W_up), the MLP's neurons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bdh_pl.models.bdh.model import reference_layer

# The module whose input is a transformer layer's MLP neurons, by its name in `transformers`.
MLP_OUTPUT = re.compile(r"\.(\d+)\.mlp\.(c_proj|down_proj)$")


def is_bdh(network: nn.Module) -> bool:
    return (
        hasattr(network, "encoder") and hasattr(network, "encoder_v") and hasattr(network, "attn")
    )


def mlp_output_modules(network: nn.Module) -> list[nn.Module]:
    """Each layer's MLP output projection, in layer order; [] when the network has none."""
    found = {}
    for name, module in network.named_modules():
        match = MLP_OUTPUT.search(name)
        if match:
            found[int(match.group(1))] = module
    return [found[i] for i in sorted(found)]


def n_layers(network: nn.Module) -> int:
    return network.config.n_layer if is_bdh(network) else len(mlp_output_modules(network))


def neurons_per_layer(network: nn.Module) -> int:
    if is_bdh(network):
        return network.config.n_head * network.config.n_neurons
    first = mlp_output_modules(network)[0]
    weight = first.weight  # Linear: (out, in); GPT-2's Conv1D: (in, out)
    return weight.shape[1] if isinstance(first, nn.Linear) else weight.shape[0]


class NeuronRecorder:
    """Records the neurons of the given layers during forwards inside the `with` block.

    x[layer]: B, T, M activations (BDH: x_sparse, M = nh * N, head-major; transformers: the MLP
    neurons); y[layer] (BDH only): y_sparse, same shape. Each forward replaces the previous one.
    """

    def __init__(self, network: nn.Module, layers: Iterable[int] | None = None, y: bool = False):
        self.network = network
        self.layers = set(range(n_layers(network)) if layers is None else layers)
        self.want_y = y
        self.x: dict[int, Tensor] = {}
        self.y: dict[int, Tensor] = {}
        self._handles: list = []
        self._calls = 0

    def __enter__(self) -> NeuronRecorder:
        net = self.network
        if is_bdh(net):
            self._runner, net.layer_runner = net.layer_runner, reference_layer
            self._handles += [
                net.attn.register_forward_pre_hook(self._bdh_x),
                net.attn.register_forward_hook(self._bdh_y),
                net.register_forward_pre_hook(self._restart),
            ]
        else:
            modules = mlp_output_modules(net)
            if not modules:
                raise ValueError(f"{type(net).__name__} has no MLP output projections to read")
            for layer, module in enumerate(modules):
                if layer in self.layers:
                    self._handles.append(module.register_forward_pre_hook(self._mlp(layer)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if is_bdh(self.network):
            self.network.layer_runner = self._runner

    def _restart(self, module, args) -> None:
        self._calls = 0  # attention calls are counted per forward: the count is the layer

    def _bdh_x(self, module, args) -> None:
        if self._calls in self.layers:
            q = args[0]  # B, nh, T, N: x_sparse
            self.x[self._calls] = q.transpose(1, 2).flatten(2).detach()  # B, T, nh * N

    def _bdh_y(self, module, args, out) -> None:
        layer = self._calls
        self._calls += 1
        if self.want_y and layer in self.layers:
            net = self.network
            y_sparse = F.relu(net.ln(out) @ net.encoder_v)  # B, nh, T, N, as BDH.layer
            self.y[layer] = y_sparse.transpose(1, 2).flatten(2).detach()

    def _mlp(self, layer: int):
        def hook(module, args) -> None:
            self.x[layer] = args[0].detach()  # B, T, M

        return hook


def windows(tokens: np.ndarray, block_size: int, max_tokens: int | None = None) -> Tensor:
    """Disjoint windows (n, block_size) of the first max_tokens tokens (a short last one is
    dropped: every position is read with the same amount of context at most)."""
    tokens = tokens[:max_tokens] if max_tokens else tokens
    n = len(tokens) // block_size
    if n == 0:
        raise ValueError(f"the text has {len(tokens)} tokens, fewer than one window ({block_size})")
    return torch.as_tensor(np.asarray(tokens[: n * block_size], dtype=np.int64)).view(n, block_size)


def batches(idx: Tensor, batch_size: int) -> Iterator[Tensor]:
    for start in range(0, idx.size(0), batch_size):
        yield idx[start : start + batch_size]
