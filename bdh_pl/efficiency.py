"""Efficiency figures of a network: parameters, FLOPs per token, model FLOPs utilisation.

FLOPs are counted, not estimated: torch.utils.flop_counter.FlopCounterMode records the matmuls
and attention kernels the network actually runs on one (1, block_size) window. That covers
BDH's sparse layers and the baselines with one method; `transformer_flops_per_token` is the
textbook count for a GPT-2 block, kept to check the counter against (tests/test_efficiency.py).
Counting runs on the meta device when the network allows it, so it costs no real compute.
Pure torch: no Lightning here.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from bdh_pl.training.metrics import count_parameters

# Dense peak TFLOPS from NVIDIA's datasheets (no sparsity): (16-bit tensor core, TF32, FP32).
# Matched in order against torch.cuda.get_device_name(), so specific names come first.
GPU_PEAK_TFLOPS: list[tuple[str, tuple[float, float, float]]] = [
    ("H200", (989.4, 494.7, 66.9)),
    ("H100 PCIe", (756.5, 378.0, 51.2)),
    ("H100", (989.4, 494.7, 66.9)),  # SXM
    ("A100", (312.0, 156.0, 19.5)),
    ("L40S", (362.0, 183.0, 91.6)),
    ("L4", (121.0, 60.0, 30.3)),
    ("A10", (125.0, 62.5, 31.2)),
    ("RTX 4090", (165.2, 82.6, 82.6)),
    ("RTX 3090", (71.0, 35.6, 35.6)),
    ("V100", (125.0, 15.7, 15.7)),  # fp16 only, no TF32
    ("T4", (65.0, 8.1, 8.1)),
]


def parameter_counts(network: nn.Module) -> dict[str, int]:
    total, non_embedding = count_parameters(network)
    return {"params": total, "non_embedding_params": non_embedding}


def _logits(output) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output  # Hugging Face or plain


def _cpu_flash_sdpa(query, key, value, *args, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_flash_sdpa_backward(grad_out, query, key, value, *args, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# torch counts the CUDA attention kernels but not the CPU flash kernel that
# F.scaled_dot_product_attention picks without a mask (Hugging Face models on CPU): same formula.
_aten = torch.ops.aten
CPU_ATTENTION_FLOPS = {
    _aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_sdpa,
    _aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_sdpa_backward,
}


def _count(network: nn.Module, input_ids: torch.Tensor, backward: bool) -> int:
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        if backward:
            logits = _logits(network(input_ids))
            loss = F.cross_entropy(logits.flatten(0, 1).float(), input_ids.flatten())
            loss.backward()
        else:
            with torch.no_grad():
                network(input_ids)
    return counter.get_total_flops()


def count_flops(network: nn.Module, input_ids: torch.Tensor) -> dict[str, int]:
    """FLOPs of one forward (`forward`) and one training step without the optimizer
    (`forward_backward`) on `input_ids`, run where they are; gradients are cleared after."""
    counts = {"forward": _count(network, input_ids, False)}
    counts["forward_backward"] = _count(network, input_ids, True)
    network.zero_grad(set_to_none=True)
    return counts


def flops_per_token(network: nn.Module, block_size: int, vocab_size: int) -> dict[str, float]:
    """`count_flops` per token of one full window of `block_size` tokens. Attention is counted
    as computed, over the whole block (kernels do not skip the causal half).

    Counts on a meta-device copy (no memory, no compute) when the network allows it; networks
    with data-dependent Python (`.item()`, as in Hugging Face models) run for real.
    """
    try:
        meta = copy.deepcopy(network).to("meta")
        counts = count_flops(meta, torch.randint(0, vocab_size, (1, block_size), device="meta"))
    except (NotImplementedError, RuntimeError):
        device = next(network.parameters()).device
        counts = count_flops(network, torch.randint(0, vocab_size, (1, block_size), device=device))
    return {k: v / block_size for k, v in counts.items()}


def transformer_flops_per_token(
    n_layer: int, n_embd: int, block_size: int, vocab_size: int, mlp_ratio: int = 4
) -> float:
    """Forward matmul FLOPs per token of a GPT-2 style decoder (2 FLOPs per multiply-add):
    per layer QKV + output projection 8d^2, MLP 4*mlp_ratio*d^2, attention scores and values
    4*T*d (the full block); plus the 2*d*V of the LM head. Training is about 3x this."""
    d = n_embd
    per_layer = 8 * d * d + 4 * mlp_ratio * d * d + 4 * block_size * d
    return float(n_layer * per_layer + 2 * d * vocab_size)


def peak_flops(device_name: str, precision: str) -> float | None:
    """Dense peak FLOP/s of a known GPU at a Lightning precision ("bf16-mixed", "32-true", ...);
    None for CPUs and unknown GPUs. 32-bit uses TF32 when torch allows it for matmuls."""
    for key, (half, tf32, fp32) in GPU_PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            if "16" in precision:
                tflops = half
            else:
                tflops = tf32 if torch.get_float32_matmul_precision() != "highest" else fp32
            return tflops * 1e12
    return None


def mfu(
    train_flops_per_token: float, tokens_per_sec: float, device_name: str, precision: str
) -> float | None:
    """Model FLOPs utilisation: achieved training FLOP/s over the device's peak (PaLM, App. B)."""
    peak = peak_flops(device_name, precision)
    if peak is None or not tokens_per_sec:
        return None
    return train_flops_per_token * tokens_per_sec / peak
