"""BDH's linear attention, fast: custom autograd ops on RoPE-rotated sparse activations, heads
first (nh, B, T, N), in a quadratic form ((G + G^T) q for the symmetric scores) or chunk by chunk
through a running state; `attention` picks one (the `attention` switch) and serves recurrent
inference. Each form is tested equal to model.Attention (tests/{unit,integration}/models/test_bdh.py), damped
(log_decay, per head: model.py's attn_decay) or not.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from bdh_pl.models.bdh.model import decay_mask, decay_weights

AttentionMode = Literal["auto", "quadratic", "chunked"]
ATTENTION_MODES: tuple[str, ...] = get_args(AttentionMode)


def _plus_transpose(g: Tensor) -> Tensor:
    """g + g^T over the last two dims (..., T, T)."""
    T = g.size(-1)
    if T < 1024:
        return g + g.mT
    # a batched transposed read misses the cache; per matrix, copy_ uses a blocked transpose
    flat, out = g.reshape(-1, T, T), torch.empty_like(g)
    for src, dst in zip(flat, out.view(-1, T, T), strict=True):
        dst.copy_(src.t())
    return out.add_(g)


class CausalLinearAttention(torch.autograd.Function):
    """out_t = sum_{s<t} m_ts (q_t . q_s) v_s with a cheaper backward; m (nh, 1, T, T) is the
    decay mask (model.decay_mask) or None: all ones.

    scores = q q^T is symmetric in its two uses of q, so dL/dq = (G + G^T) q: one (T, T) @ (T, N)
    product instead of two plus a sum of two (nh, B, T, N) gradients (G masked alike).
    """

    @staticmethod
    def forward(ctx, q: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        v_q = v.to(q.dtype)  # what autocast would do, explicit so backward needs no autocast
        scores = (q @ q.mT).tril_(diagonal=-1)  # nh, B, T, T
        if mask is not None:
            scores.mul_(mask.to(q.dtype))
        ctx.save_for_backward(q, v_q, scores, mask)
        ctx.v_dtype = v.dtype
        return scores @ v_q  # nh, B, T, D

    @staticmethod
    def backward(ctx, g: Tensor):
        q, v_q, scores, mask = ctx.saved_tensors
        g = g.to(q.dtype)
        g_scores = (g @ v_q.mT).tril_(diagonal=-1)  # nh, B, T, T
        g_v = (scores.mT @ g).sum(0)  # B, T, D
        g_mask = None
        if mask is not None:
            if ctx.needs_input_grad[2]:  # a learned decay: q q^T again rather than kept
                g_mask = (g_scores * (q @ q.mT)).sum(1, keepdim=True).to(mask.dtype)
            g_scores.mul_(mask.to(q.dtype))
        g_q = _plus_transpose(g_scores) @ q  # nh, B, T, N
        return g_q, g_v.to(ctx.v_dtype), g_mask


class ChunkedLinearAttention(torch.autograd.Function):
    """CausalLinearAttention in O(T * (C * N + N * D)) rather than O(T^2 * N), for long T.

    Inside a chunk of C positions the quadratic form; earlier chunks enter through the state
    S_c = sum_{s in chunks < c} q_s^T v_s (N x D per head). The states are as large as the
    activations, so their prefix sums over chunks are one (nc, nc) @ (nc, N*D) matmul per head:
    one pass, fp32 accumulation, no cumsum/flip copies.
    """

    @staticmethod
    def forward(ctx, q: Tensor, v: Tensor, chunk_size: int) -> Tensor:
        nh, B, T, N = q.shape
        D = v.size(-1)
        C = chunk_size
        pad = -T % C
        nc = (T + pad) // C
        v_q = v.to(q.dtype)
        if pad:  # zero queries/values at the end change nothing before them
            q, v_q = F.pad(q, (0, 0, 0, pad)), F.pad(v_q, (0, 0, 0, pad))
        qc = q.reshape(-1, C, N)  # nh*B*nc, C, N
        vc = v_q.view(1, B * nc, C, D).expand(nh, -1, -1, -1).reshape(-1, C, D)
        scores = (qc @ qc.mT).tril_(diagonal=-1)  # nh*B*nc, C, C
        kv = (qc.mT @ vc).view(nh * B, nc, N * D)  # what each chunk adds to the state
        earlier = torch.ones(nc, nc, dtype=q.dtype, device=q.device).tril_(diagonal=-1)
        states = (earlier @ kv).view(-1, N, D)  # the state before each chunk
        out = (scores @ vc).baddbmm_(qc, states)  # intra + inter, nh*B*nc, C, D
        ctx.save_for_backward(qc, vc, scores, states, earlier)
        ctx.shape, ctx.v_dtype = (nh, B, T, N, D, nc), v.dtype
        return out.view(nh, B, nc * C, D)[:, :, :T]

    @staticmethod
    def backward(ctx, g: Tensor):
        qc, vc, scores, states, earlier = ctx.saved_tensors
        nh, B, T, N, D, nc = ctx.shape
        C = qc.size(1)
        g = F.pad(g.to(qc.dtype), (0, 0, 0, nc * C - T)).reshape(-1, C, D)
        g_scores = (g @ vc.mT).tril_(diagonal=-1)
        g_q = (_plus_transpose(g_scores) @ qc).baddbmm_(g, states.mT)  # intra + inter
        g_v = scores.mT @ g
        g_states = (qc.mT @ g).view(nh * B, nc, N * D)
        g_kv = (earlier.mT @ g_states).view(-1, N, D)  # a chunk's kv is in all later states
        g_q.baddbmm_(vc, g_kv.mT)
        g_v.baddbmm_(qc, g_kv)
        g_q = g_q.view(nh, B, nc * C, N)[:, :, :T]
        g_v = g_v.view(nh, B, nc * C, D)[:, :, :T].sum(0)
        return g_q, g_v.to(ctx.v_dtype), None


def attention_quadratic(q: Tensor, v: Tensor, log_decay: Tensor | None = None) -> Tensor:
    """out_t = sum_{s<t} gamma_h^(t-s) (q_t . q_s) v_s, with q: nh, B, T, N (queries = keys),
    v: B, T, D and log_decay: log gamma_h (nh,), or None (gamma = 1)."""
    if log_decay is None:
        return CausalLinearAttention.apply(q, v)
    mask = decay_mask(log_decay, q.size(2)).unsqueeze(1)  # nh, 1, T, T
    return CausalLinearAttention.apply(q, v, mask)


def attention_chunked(
    q: Tensor, v: Tensor, chunk_size: int, log_decay: Tensor | None = None
) -> Tensor:
    """attention_quadratic computed chunk by chunk through a running state."""
    if log_decay is None:
        return ChunkedLinearAttention.apply(q, v, chunk_size)
    return chunked_damped(q, v, chunk_size, log_decay)


def chunked_damped(q: Tensor, v: Tensor, chunk_size: int, log_decay: Tensor) -> Tensor:
    """ChunkedLinearAttention with each head's state damped, in plain autograd ops.

    Chunk c's own positions in the quadratic form (masked); the earlier ones through the
    state at its start, S_c = sum_{c' < c} gamma^(C (c - c' - 1)) K_c', where K_c' is what chunk
    c' adds (each position weighed gamma^(C - i) from its place i to the chunk's end), and
    position i of chunk c reads gamma^i S_c.
    """
    nh, B, T, N = q.shape
    D, C = v.size(-1), chunk_size
    pad = -T % C
    nc = (T + pad) // C
    v_q = v.to(q.dtype)
    if pad:  # zero queries/values at the end change nothing before them
        q, v_q = F.pad(q, (0, 0, 0, pad)), F.pad(v_q, (0, 0, 0, pad))
    qc = q.view(nh, B, nc, C, N)
    vc = v_q.view(1, B, nc, C, D)
    read, write, _ = (w.to(q.dtype) for w in decay_weights(log_decay, C))  # nh, C; nh, C
    inside = decay_mask(log_decay, C).to(q.dtype).view(nh, 1, 1, C, C)
    out = ((qc @ qc.mT) * inside) @ vc  # nh, B, nc, C, D: within the chunk
    adds = (qc * write.view(nh, 1, 1, C, 1)).mT @ vc  # nh, B, nc, N, D
    c = torch.arange(nc, device=q.device)
    gap = (c.view(-1, 1) - c.view(1, -1) - 1).clamp(min=0)  # nc, nc: chunks between
    earlier = (log_decay.view(-1, 1, 1) * C * gap).exp().tril(diagonal=-1).to(q.dtype)
    states = (earlier.unsqueeze(1) @ adds.flatten(-2)).view(nh, B, nc, N, D)  # at each start
    out = out + (qc @ states) * read.view(nh, 1, 1, C, 1)
    return out.view(nh, B, nc * C, D)[:, :, :T]


def chunked_from(n_neurons: int, n_embd: int, chunk_size: int, dtype: torch.dtype) -> int:
    """Sequence length from which attention="auto" uses the chunked form.

    Per token, fwd+bwd, the quadratic form costs ~T * (2N + 3D) multiply-adds and the chunked
    one ~C * (2N + 3D) + 6 * N * D, in skinnier (slower) matmuls. Measured on a CPU
    (benchmarks/bdh_speed.py), chunked wins from ~1.1-1.8x the break-even length in fp32 and
    ~1.3-2.8x in bf16, where the quadratic form's big matmuls are relatively cheaper.
    """
    N, D = n_neurons, n_embd
    break_even = chunk_size + 6 * N * D / (2 * N + 3 * D)
    return math.ceil((1.5 if dtype in (torch.float32, torch.float64) else 2.5) * break_even)


def attention(
    q: Tensor,
    v: Tensor,
    kv: Tensor | None,
    mode: AttentionMode = "auto",
    chunk_size: int = 256,
    log_decay: Tensor | None = None,
) -> Tensor:
    """model.Attention on rotated q (nh, B, T, N) and v (B, T, D): nh, B, T, D; damped by
    log_decay (nh,: log gamma_h) unless it is None.

    With kv (nh, B, N, D), the state of the positions before these, attend to them too and
    add these positions to kv in place (recurrent inference).
    """
    T = q.size(2)
    if T == 1 and kv is not None:  # one recurrent step: all of its attention is in kv
        nh, B, _, N = q.shape
        out = q @ kv.to(q.dtype)
        v = v.to(kv.dtype).expand(nh, -1, -1, -1).reshape(nh * B, 1, -1)
        kv.view(nh * B, N, -1).baddbmm_(q.to(kv.dtype).view(nh * B, N, 1), v)  # in place
        if log_decay is not None:  # S_{t+1} = gamma (S_t + q_t^T v_t)
            kv.mul_(log_decay.detach().exp().view(nh, 1, 1, 1))
        return out
    if T == 1:
        out = q.new_zeros(*q.shape[:-1], v.size(-1))
    elif mode == "chunked" or (
        mode == "auto" and chunked_from(q.size(-1), v.size(-1), chunk_size, q.dtype) <= T
    ):
        out = attention_chunked(q, v, chunk_size, log_decay)
    else:
        out = attention_quadratic(q, v, log_decay)
    if kv is not None:
        # a copy under autograd: the write below must not change what backward reads, and it
        # carries no gradient into the next window (truncated backpropagation through time)
        state = q @ kv.to(q.dtype, copy=torch.is_grad_enabled())
        if log_decay is None:
            out = out + state
            kv += (q.mT @ v).detach()  # nh, B, N, D
        else:
            read, write, keep = decay_weights(log_decay, T)  # nh, T; nh, T; nh
            out = out + state * read.to(q.dtype).view(-1, 1, T, 1)
            kv *= keep.detach().view(-1, 1, 1, 1)
            kv += ((q * write.to(q.dtype).view(-1, 1, T, 1)).mT @ v.to(q.dtype)).detach()
    return out
