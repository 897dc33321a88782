"""Efficiency figures of a network: parameters and FLOPs per token.

FLOPs are counted, not estimated: Lightning's `measure_flops` (torch's FlopCounterMode) records
the matmuls and attention kernels the network actually runs on one (1, block_size) window. That
covers BDH's sparse layers and the baselines with one method; `transformer_flops_per_token` is
the textbook count for a GPT-2 block, kept to check the counter against (tests/{unit,integration}/training/test_flops.py).
Counting runs on a meta-device copy when the network allows it, so it costs no real compute.
The device's peak FLOP/s and MFU are Lightning's (`get_available_flops`, `ThroughputMonitor`:
training/glue/callbacks.py).

The benchmark's one rule (`training_flops_per_token`): training FLOPs = 3 x the forward FLOPs
per token, the forward counted on the model's reference computation (BDH's plain BDH.layer,
the transformers' plain math attention), whatever kernels the run uses. A fused backward that
saves a matmul, or one that recomputes scores, changes the measured count, not the rule's: the
FLOPs axis compares models, not implementations.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from functools import partial

import torch
import torch.nn.functional as F
from lightning.fabric.utilities.throughput import measure_flops
from torch import nn
from torch.utils.flop_counter import (
    flop_registry,
    register_flop_formula,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from bdh_pl.training.metrics import count_parameters

_aten = torch.ops.aten


def _cpu_flash_sdpa(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)  # shapes: register_flop_formula passes those


def _cpu_flash_sdpa_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# torch counts the CUDA attention kernels but not the CPU flash kernel that
# F.scaled_dot_product_attention picks without a mask (Hugging Face models on CPU): same formula,
# registered in torch's table so that every FlopCounterMode, measure_flops' included, counts it.
for _op, _formula in [
    (_aten._scaled_dot_product_flash_attention_for_cpu, _cpu_flash_sdpa),
    (_aten._scaled_dot_product_flash_attention_for_cpu_backward, _cpu_flash_sdpa_backward),
]:
    if _op not in flop_registry:  # a torch that knows the kernel keeps its own formula
        register_flop_formula(_op)(_formula)


def parameter_counts(network: nn.Module) -> dict[str, int]:
    total, non_embedding = count_parameters(network)
    return {"params": total, "non_embedding_params": non_embedding}


def _logits(output) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output  # Hugging Face or plain


def count_flops(network: nn.Module, input_ids: torch.Tensor) -> dict[str, int]:
    """FLOPs of one forward (`forward`) and one training step without the optimizer
    (`forward_backward`) on `input_ids`, run where they are; gradients are cleared after."""

    def loss(output) -> torch.Tensor:
        return F.cross_entropy(_logits(output).flatten(0, 1).float(), input_ids.flatten())

    with torch.no_grad():
        forward = measure_flops(network, lambda: network(input_ids))
    counts = {
        "forward": forward,
        "forward_backward": measure_flops(network, lambda: network(input_ids), loss),
    }
    network.zero_grad(set_to_none=True)
    return counts


def _meta_copy(network: nn.Module) -> nn.Module:
    """The network with its tensors on the meta device, without copying their data first."""
    memo: dict[int, object] = {}
    for t in [*network.parameters(), *network.buffers()]:
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(network, memo)


def flops_per_token(network: nn.Module, block_size: int) -> dict[str, float]:
    """`count_flops` per token of one full window of `block_size` tokens. Attention is counted
    as computed, over the whole block (kernels do not skip the causal half).

    Counts on a meta-device copy (no memory, no compute) when the network allows it; networks
    with data-dependent Python (`.item()`, as in Hugging Face models) run for real, on one
    window of zeros (the counts do not depend on the ids), the random state (dropout)
    restored after.
    """
    try:
        meta_ids = torch.zeros(1, block_size, dtype=torch.long, device="meta")
        counts = count_flops(_meta_copy(network), meta_ids)
    except (NotImplementedError, RuntimeError):
        device = next(network.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            counts = count_flops(
                network, torch.zeros(1, block_size, dtype=torch.long, device=device)
            )
    return {k: v / block_size for k, v in counts.items()}


@contextlib.contextmanager
def reference_computation(network: nn.Module) -> Iterator[nn.Module]:
    """The network computing its reference forward for the duration: every BDH inside it on
    BDH.layer (no fused kernels, chunking or compilation), every Hugging Face model on its
    plain math ("eager") attention. The switches are put back after."""
    from transformers import PreTrainedModel

    from bdh_pl.models.bdh.model import BDH, reference_layer

    undo = []
    for module in network.modules():
        if isinstance(module, BDH):
            undo.append(partial(setattr, module, "layer_runner", module.layer_runner))
            module.layer_runner = reference_layer
        elif isinstance(module, PreTrainedModel):
            was = module.config._attn_implementation
            if was != "eager":
                undo.append(partial(module.set_attn_implementation, was))
                module.set_attn_implementation("eager")
    try:
        yield network
    finally:
        for restore in reversed(undo):
            restore()


def training_flops_per_token(network: nn.Module, block_size: int) -> dict[str, float]:
    """The rule's counts per token of a full window: `forward` on the reference computation,
    `train` = 3 x that (the backward computes gradients for inputs and for weights, each a
    forward's worth)."""
    with reference_computation(network):
        forward = flops_per_token(network, block_size)["forward"]
    return {"forward": forward, "train": 3 * forward}


def transformer_flops_per_token(
    n_layer: int, n_embd: int, block_size: int, vocab_size: int, mlp_ratio: int = 4
) -> float:
    """Forward matmul FLOPs per token of a GPT-2 style decoder (2 FLOPs per multiply-add):
    per layer QKV + output projection 8d^2, MLP 4*mlp_ratio*d^2, attention scores and values
    4*T*d (the full block); plus the 2*d*V of the LM head. Training is about 3x this."""
    d = n_embd
    per_layer = 8 * d * d + 4 * mlp_ratio * d * d + 4 * block_size * d
    return float(n_layer * per_layer + 2 * d * vocab_size)
