"""BDH-GPU, the "Baby Dragon Hatchling" language model (arXiv 2509.26507), in plain PyTorch.

Numerically the published architecture (github.com/pathwaycom/bdh) with the same parameter names,
so official checkpoints load with ``strict=True``. On top of it:

- recurrent inference: the attention is linear, so each layer and head keeps a state
  S = sum_{s<t} rope(q_s)^T x_s (N x D) and a new token costs O(N*D) instead of O(t*N)
  (prefill / step / generate),
- chunked attention for long contexts (quadratic inside a chunk, the running state across
  chunks), picked by attention="auto" from a measured break-even length,
- per-layer activation checkpointing,
- less elementwise work per step, which dominated it: activations laid out heads-first
  (nh, B, T, N) so no transpose copies; RoPE cos/sin once per forward and the rotation as one
  complex multiply; custom autograd functions whose backwards need fewer passes (no gradient
  sums, (G + G^T) q for the symmetric scores); dropout masks from 16-bit random words instead
  of bernoulli_; optionally (compile_elementwise) the elementwise chains fused by torch.compile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

ATTENTION_MODES = ("auto", "quadratic", "chunked")


@dataclass
class BDHConfig:
    n_layer: int = 6
    n_embd: int = 256
    dropout: float = 0.1
    n_head: int = 4
    mlp_internal_dim_multiplier: int = 128
    vocab_size: int = 256
    # execution switches: they change speed/memory, never the parameters or (beyond fp rounding)
    # the results
    attention: str = "auto"  # "quadratic" | "chunked" | "auto" (chunked for long sequences)
    chunk_size: int = 256
    activation_checkpointing: bool = False
    # torch.compile the fused elementwise kernels (relu+RoPE, relu*gate*dropout and their
    # backwards): faster steps after a compile warm-up of tens of seconds
    compile_elementwise: bool = False

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_embd", "n_head", "mlp_internal_dim_multiplier"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.vocab_size <= 0 or self.chunk_size <= 0:
            raise ValueError(
                f"vocab_size and chunk_size must be positive, got {self.vocab_size}, "
                f"{self.chunk_size}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_neurons % 2 != 0:
            raise ValueError(
                f"neurons per head (mlp_internal_dim_multiplier * n_embd / n_head = "
                f"{self.n_neurons}) must be even: RoPE rotates pairs"
            )
        if self.attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {self.attention!r}")

    @property
    def n_neurons(self) -> int:
        """N, the sparse neurons per head."""
        return self.mlp_internal_dim_multiplier * self.n_embd // self.n_head


@dataclass
class BDHState:
    """Recurrent inference state: what the attention of the next token needs to know."""

    kv: Tensor  # n_layer, nh, B, N, D: sum over past positions s of rope(x_sparse_s)^T x_s
    pos: int  # absolute position of the next token (RoPE continues after the prompt)


def rope_freqs(n: int, theta: float = 2**16) -> Tensor:
    """RoPE frequencies in turns per position, one per neuron, equal within (2i, 2i+1) pairs."""
    quantized = (torch.arange(0, n, 1, dtype=torch.float32) / 2).floor() * 2
    return 1.0 / (theta ** (quantized / n)) / (2 * math.pi)


def _acc_dtype(t: Tensor) -> torch.dtype:
    return torch.promote_types(t.dtype, torch.float32)  # sums in fp32 at least


def rotate(q: Tensor, rot: Tensor) -> Tensor:
    """Rotate the interleaved pairs (2i, 2i+1) of q (..., T, N) by unit complex numbers rot (T, N/2).

    A pair is one complex number, so the rotation is a single complex multiply: no stack/concat
    copies, and autograd's backward is one multiply by conj(rot). The math runs in fp32.
    """
    real = q.to(_acc_dtype(q))  # fp32 math (fp64 stays fp64)
    qc = torch.view_as_complex(real.unflatten(-1, (-1, 2)))  # ..., T, N/2
    return torch.view_as_real(qc * rot).flatten(-2).to(q.dtype)


def dropout_bits(shape: tuple[int, ...], device: torch.device) -> Tensor:
    """Uniform random int16 words for dropout masks: one 64-bit draw per 4 elements.

    bernoulli_ costs one draw (and a double) per element and dominated the elementwise work.
    """
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-(2**63), 2**63 - 1)  # the full range: all four 16-bit words uniform
    return words.view(torch.int16)[:n].view(shape)


def dropout_keep(bits: Tensor, p: float) -> Tensor:
    """Dropout keep mask from dropout_bits: P(drop) = round(p * 2**16) / 2**16 (within 1e-5 of p).

    Computed eagerly (one int16 -> bool pass) and handed to the kernels as bool: inductor does
    not vectorize int16, and mixing bytes with bf16 costs it partial-vector loads.
    """
    return bits >= round(p * 2**16) - 2**15


def _relu_rope_fwd(x_latent: Tensor, rot: Tensor) -> tuple[Tensor, Tensor]:
    x_sparse = F.relu(x_latent)
    return x_sparse, rotate(x_sparse, rot)


def _relu_rope_bwd(x_sparse: Tensor, g_sparse: Tensor, g_q: Tensor, rot: Tensor) -> Tensor:
    # the rotation's transpose is the rotation by -angle
    g = rotate(g_q, rot.conj()) + g_sparse
    return torch.ops.aten.threshold_backward(g, x_sparse, 0)


# The compiled kernels see the neurons of a head in "halves" order: pair (2i, 2i+1) of the
# official layout at (i, N/2 + i), so a rotation reads two contiguous blocks (vectorizes; the
# interleaved pairs make inductor gather). BDH._weights permutes the weights to match.


def _relu_rope_fwd_halves(x_latent: Tensor, cos_sin: Tensor) -> tuple[Tensor, Tensor]:
    cos, sin = cos_sin.unbind(0)  # T, N/2 each
    x_sparse = F.relu(x_latent)
    a, b = x_sparse.float().chunk(2, dim=-1)
    dt = x_sparse.dtype  # cast each half before the cat, or inductor stages it in fp32
    return x_sparse, torch.cat(((a * cos - b * sin).to(dt), (b * cos + a * sin).to(dt)), -1)


def _relu_rope_bwd_halves(
    x_sparse: Tensor, g_sparse: Tensor, g_q: Tensor, cos_sin: Tensor
) -> Tensor:
    cos, sin = cos_sin.unbind(0)
    ga, gb = g_q.float().chunk(2, dim=-1)
    sa, sb = g_sparse.float().chunk(2, dim=-1)
    xa, xb = x_sparse.chunk(2, dim=-1)
    dt = x_sparse.dtype
    return torch.cat(
        (
            torch.where(xa > 0, ga * cos + gb * sin + sa, 0.0).to(dt),
            torch.where(xb > 0, gb * cos - ga * sin + sb, 0.0).to(dt),
        ),
        dim=-1,
    )


def to_halves(w: Tensor, dim: int, dtype: torch.dtype | None = None) -> Tensor:
    """Reorder the neuron axis dim of w from interleaved pairs to halves (one copy, + cast)."""
    dim = dim % w.dim()
    view = w.unflatten(dim, (-1, 2)).transpose(dim, dim + 1)
    out = torch.empty(view.shape, dtype=dtype or w.dtype, device=w.device)
    return out.copy_(view).flatten(dim, dim + 1)


def _gate_fwd(y_latent: Tensor, x_sparse: Tensor, keep: Tensor | None, p: float) -> Tensor:
    xy = F.relu(y_latent) * x_sparse
    if keep is None:
        return xy
    return torch.where(keep, xy * (1.0 / (1.0 - p)), 0.0)


def _gate_bwd(
    g: Tensor, y_latent: Tensor, x_sparse: Tensor, keep: Tensor | None, p: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Grads of y_latent and x_sparse, and the forward's xy again (cheaper than keeping it)."""
    y_sparse = F.relu(y_latent)
    xy = y_sparse * x_sparse
    if keep is not None:
        g = torch.where(keep, g * (1.0 / (1.0 - p)), 0.0)
        xy = torch.where(keep, xy * (1.0 / (1.0 - p)), 0.0)
    g_y = torch.where(y_latent > 0, g * x_sparse, 0.0)
    return g_y, g * y_sparse, xy


_compiled: dict = {}


def _kernel(fn, compiled: bool):
    if not compiled:
        return fn
    if fn not in _compiled:
        _compiled[fn] = torch.compile(fn, fullgraph=True)
    return _compiled[fn]


class SparseRope(torch.autograd.Function):
    """x_sparse = relu(x_latent), q = rope(x_sparse), with a one-pass backward (no grad sum)."""

    @staticmethod
    def forward(ctx, x_latent: Tensor, rot: Tensor, compiled: bool) -> tuple[Tensor, Tensor]:
        if compiled:  # rot: cos and sin (2, T, N/2), activations in halves order
            out = _kernel(_relu_rope_fwd_halves, True)(x_latent, rot)
        else:
            out = _relu_rope_fwd(x_latent, rot)
        ctx.compiled = compiled
        ctx.save_for_backward(out[0], rot)
        return out

    @staticmethod
    def backward(ctx, g_sparse: Tensor, g_q: Tensor):
        x_sparse, rot = ctx.saved_tensors
        if ctx.compiled:
            bwd = _kernel(_relu_rope_bwd_halves, True)
            return bwd(x_sparse, g_sparse, g_q, rot), None, None
        return _relu_rope_bwd(x_sparse, g_sparse, g_q, rot), None, None


class GateDecode(torch.autograd.Function):
    """sum over heads of dropout(relu(y_latent) * x_sparse) @ decoder, dropout by a keep mask.

    y_latent, x_sparse: nh, B*T, N; keep: bool like them, or None; decoder: nh, N, D; returns
    B*T, D. The compiled path keeps no (nh, B*T, N) product for backward: its backward kernel
    recomputes it in the same pass.
    """

    @staticmethod
    def forward(ctx, y_latent, x_sparse, keep, decoder, p: float, compiled: bool) -> Tensor:
        ctx.p, ctx.compiled = p, compiled
        if compiled:
            xy = _kernel(_gate_fwd, True)(y_latent, x_sparse, keep, p)
            ctx.save_for_backward(y_latent, x_sparse, keep, decoder)
        else:  # eager: few passes, in place where the tensor is ours
            y_sparse = F.relu(y_latent)
            xy = x_sparse * y_sparse
            if keep is not None:
                xy.mul_(keep).mul_(1.0 / (1.0 - p))
            ctx.save_for_backward(y_sparse, x_sparse, keep, decoder, xy)
        # per-head decoders summed == the official (B, T, nh*N) @ (nh*N, D)
        return (xy @ decoder).sum(0)

    @staticmethod
    def backward(ctx, g: Tensor):
        saved = ctx.saved_tensors  # unpack once (activation checkpointing allows no more)
        decoder = saved[3]
        g = g.to(decoder.dtype).expand(decoder.size(0), -1, -1)  # nh, B*T, D
        g_xy = g @ decoder.mT  # nh, B*T, N
        if ctx.compiled:
            y_latent, x_sparse, keep, _ = saved
            g_y, g_x, xy = _kernel(_gate_bwd, True)(g_xy, y_latent, x_sparse, keep, ctx.p)
        else:
            y_sparse, x_sparse, keep, _, xy = saved
            if keep is not None:
                g_xy.mul_(keep).mul_(1.0 / (1.0 - ctx.p))
            g_y = torch.ops.aten.threshold_backward(g_xy * x_sparse, y_sparse, 0)
            g_x = g_xy * y_sparse
        return g_y, g_x, None, xy.mT @ g, None, None


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
    """attention_quadratic with a cheaper backward.

    scores = q q^T is symmetric in its two uses of q, so dL/dq = (G + G^T) q: one (T, T) @ (T, N)
    product instead of two plus a sum of two (nh, B, T, N) gradients.
    """

    @staticmethod
    def forward(ctx, q: Tensor, v: Tensor) -> Tensor:
        v_q = v.to(q.dtype)  # what autocast would do, explicit so backward needs no autocast
        scores = (q @ q.mT).tril_(diagonal=-1)  # nh, B, T, T
        ctx.save_for_backward(q, v_q, scores)
        ctx.v_dtype = v.dtype
        return scores @ v_q  # nh, B, T, D

    @staticmethod
    def backward(ctx, g: Tensor):
        q, v_q, scores = ctx.saved_tensors
        g = g.to(q.dtype)
        g_scores = (g @ v_q.mT).tril_(diagonal=-1)  # nh, B, T, T
        g_v = (scores.mT @ g).sum(0)  # B, T, D
        g_q = _plus_transpose(g_scores) @ q  # nh, B, T, N
        return g_q, g_v.to(ctx.v_dtype)


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


def attention_quadratic(q: Tensor, v: Tensor) -> Tensor:
    """out_t = sum_{s<t} (q_t . q_s) v_s, with q: nh, B, T, N (queries = keys) and v: B, T, D."""
    return CausalLinearAttention.apply(q, v)


def attention_chunked(q: Tensor, v: Tensor, chunk_size: int) -> Tensor:
    """attention_quadratic computed chunk by chunk through a running state."""
    return ChunkedLinearAttention.apply(q, v, chunk_size)


class Attention(nn.Module):
    """Causal linear attention without softmax over RoPE-rotated sparse activations."""

    def __init__(self, config: BDHConfig):
        super().__init__()
        self.mode = config.attention
        self.chunk_size = config.chunk_size
        N = config.n_neurons
        self.freqs = nn.Buffer(rope_freqs(N).view(1, 1, 1, N))
        # Per token, fwd+bwd, the quadratic form costs ~T * (2N + 3D) multiply-adds and the
        # chunked one ~C * (2N + 3D) + 6 * N * D, in skinnier (slower) matmuls. Measured on
        # this CPU (benchmarks/bdh_speed.py), chunked wins from ~1.1-1.8x this length in fp32
        # and ~1.3-2.8x in bf16, where the quadratic form's big matmuls are relatively cheaper.
        D = config.n_embd
        self.break_even = config.chunk_size + 6 * N * D / (2 * N + 3 * D)

    def _apply(self, fn, recurse=True):
        # keep the RoPE frequencies fp32 through model.to(bfloat16) / .half(), like the phases
        super()._apply(fn, recurse)
        if self.freqs.dtype != torch.float32:
            N = self.freqs.size(-1)
            self.freqs = rope_freqs(N).to(self.freqs.device).view(1, 1, 1, N)
        return self

    def chunked_from(self, dtype: torch.dtype) -> int:
        """Sequence length from which attention="auto" uses the chunked form."""
        return math.ceil(
            (1.5 if dtype in (torch.float32, torch.float64) else 2.5) * self.break_even
        )

    def rotation(self, pos: Tensor) -> Tensor:
        """Unit complex numbers (T, N/2) rotating neuron pairs at positions pos (T,)."""
        # fp32 like the official code: phase = t * freq in fp32, reduced mod 1 turn, then radians
        phases = pos.float().view(-1, 1) * self.freqs.float().view(1, -1)[:, ::2]  # T, N/2
        phases = (phases % 1) * (2 * math.pi)
        return torch.complex(torch.cos(phases), torch.sin(phases))

    def forward(self, q: Tensor, v: Tensor, kv: Tensor | None = None) -> Tensor:
        """q: nh, B, T, N rotated sparse activations; v: B, T, D. Returns nh, B, T, D.

        With kv (nh, B, N, D), the state of the positions before these, attend to them too and
        add these positions to kv in place (recurrent inference).
        """
        T = q.size(2)
        if T == 1 and kv is not None:  # one recurrent step: all of its attention is in kv
            nh, B, _, N = q.shape
            out = q @ kv.to(q.dtype)
            v = v.to(kv.dtype).expand(nh, -1, -1, -1).reshape(nh * B, 1, -1)
            kv.view(nh * B, N, -1).baddbmm_(q.to(kv.dtype).view(nh * B, N, 1), v)  # in place
            return out
        if T == 1:
            out = q.new_zeros(*q.shape[:-1], v.size(-1))
        elif self.mode == "chunked" or (self.mode == "auto" and self.chunked_from(q.dtype) <= T):
            out = attention_chunked(q, v, self.chunk_size)
        else:
            out = attention_quadratic(q, v)
        if kv is not None:
            out = out + q @ kv.to(q.dtype)
            kv += q.mT @ v  # nh, B, N, D
        return out


class BDH(nn.Module):
    def __init__(self, config: BDHConfig):
        super().__init__()
        self.config = config
        nh, D, N = config.n_head, config.n_embd, config.n_neurons
        # one set of weights shared by all layers, as in the paper
        self.decoder = nn.Parameter(torch.zeros((nh * N, D)).normal_(std=0.02))
        self.encoder = nn.Parameter(torch.zeros((nh, D, N)).normal_(std=0.02))
        self.attn = Attention(config)
        self.ln = nn.LayerNorm(D, elementwise_affine=False, bias=False)
        self.embed = nn.Embedding(config.vocab_size, D)
        nn.init.normal_(self.embed.weight, mean=0.0, std=0.02)
        self.encoder_v = nn.Parameter(torch.zeros((nh, D, N)).normal_(std=0.02))
        self.lm_head = nn.Parameter(torch.zeros((D, config.vocab_size)).normal_(std=0.02))

    def _weights(self, halves: bool) -> tuple[Tensor, Tensor, Tensor]:
        """encoder, encoder_v (nh, D, N) and decoder as (nh, N, D), cast once per forward.

        halves: neurons reordered for the compiled kernels (see to_halves).
        """
        C = self.config
        weights = (self.encoder, self.encoder_v, self.decoder.view(C.n_head, C.n_neurons, -1))
        device = self.encoder.device.type
        # autocast would re-cast the decoder view in every layer (it caches only leaves)
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        if halves:
            return tuple(
                to_halves(w, dim, dtype) for w, dim in zip(weights, (-1, -1, 1), strict=True)
            )
        if dtype is not None:
            weights = tuple(w.to(dtype) for w in weights)
        return weights

    def _layer(
        self,
        x: Tensor,
        rot: Tensor,
        weights: tuple[Tensor, Tensor, Tensor],
        sparsity: dict | None = None,
        index: int = 0,
        kv: Tensor | None = None,
        compiled: bool = False,
    ) -> Tensor:
        enc, enc_v, dec = weights
        C = self.config
        B, T, D = x.shape
        nh, N = enc.size(0), enc.size(-1)
        # explicit bmm: a broadcasting matmul would copy the (nh, B*T, N) result and its grad
        x_latent = torch.bmm(x.view(1, B * T, D).expand(nh, -1, -1), enc).view(nh, B, T, N)
        grad = torch.is_grad_enabled()  # without it, skip the autograd.Function overhead
        if grad:
            x_sparse, q = SparseRope.apply(x_latent, rot, compiled)  # nh, B, T, N each
        else:
            x_sparse, q = _relu_rope_fwd(x_latent, rot)
        a = self.ln(self.attn(q, x, kv))  # nh, B, T, D
        y_latent = a.view(nh, B * T, D) @ enc_v  # nh, B*T, N
        x_sparse = x_sparse.view(nh, B * T, N)
        keep = None
        if self.training and C.dropout > 0:
            keep = dropout_keep(dropout_bits(x_sparse.shape, x_sparse.device), C.dropout)
        if grad:
            y = GateDecode.apply(y_latent, x_sparse, keep, dec, C.dropout, compiled)  # B*T, D
        else:
            y = (_gate_fwd(y_latent, x_sparse, keep, C.dropout) @ dec).sum(0)
        y = self.ln(y)
        if sparsity is not None:
            sparsity[f"x_l{index}"] = (x_sparse.count_nonzero() / x_sparse.numel()).detach()
            sparsity[f"y_l{index}"] = ((y_latent > 0).sum() / y_latent.numel()).detach()
        return self.ln(x + y.view(B, T, D))

    def _run(self, idx: Tensor, start: int, sparsity: dict | None, kv: Tensor | None) -> Tensor:
        """Logits for tokens idx at absolute positions start..; kv: per-layer recurrent states."""
        C = self.config
        T = idx.size(1)
        x = self.ln(self.embed(idx))  # B, T, D
        pos = torch.arange(start, start + T, device=idx.device, dtype=torch.float32)
        rot = self.attn.rotation(pos)  # once per forward, shared by the layers
        # the compiled kernels pay off in training; inference keeps the eager path
        compiled = C.compile_elementwise and torch.is_grad_enabled()
        if compiled:
            rot = torch.stack((rot.real, rot.imag))  # 2, T, N/2
        weights = self._weights(halves=compiled)
        for i in range(C.n_layer):
            args = (x, rot, weights, sparsity, i, None if kv is None else kv[i], compiled)
            if C.activation_checkpointing and torch.is_grad_enabled():
                x = checkpoint(self._layer, *args, use_reentrant=False)
            else:
                x = self._layer(*args)
        return x @ self.lm_head  # B, T, V

    def forward(self, idx: Tensor, sparsity: dict | None = None) -> Tensor:
        """idx: B, T token ids -> logits B, T, V.

        If sparsity is a dict, it receives the fraction of non-zero entries of x_sparse and
        y_sparse per layer as detached scalars, keys "x_l{i}" and "y_l{i}".
        """
        return self._run(idx, 0, sparsity, None)

    def init_state(self, batch_size: int) -> BDHState:
        C = self.config
        kv = self.encoder.new_zeros(
            C.n_layer, C.n_head, batch_size, C.n_neurons, C.n_embd, dtype=torch.float32
        )
        return BDHState(kv=kv, pos=0)

    @torch.no_grad()
    def prefill(self, idx: Tensor) -> tuple[Tensor, BDHState]:
        """Run the prompt idx (B, T): logits of its last position (B, V) and the state after it."""
        state = self.init_state(idx.size(0))
        logits = self._run(idx, 0, None, state.kv)
        state.pos = idx.size(1)
        return logits[:, -1], state

    @torch.no_grad()
    def step(self, token: Tensor, state: BDHState) -> tuple[Tensor, BDHState]:
        """Feed one token per sequence (B,): logits of the next one (B, V) and the state.

        Costs O(n_layer * nh * N * D) whatever the position. The state is updated in place.
        """
        logits = self._run(token.view(-1, 1), state.pos, None, state.kv)
        state.pos += 1
        return logits[:, -1], state

    @torch.no_grad()
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
    ) -> Tensor:
        """Sample max_new_tokens after idx (B, T), like the official generate, recurrently."""
        if max_new_tokens <= 0:
            return idx
        logits, state = self.prefill(idx)
        for i in range(max_new_tokens):
            logits = logits / temperature
            if top_k is not None:
                values, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < values[:, [-1]]] = float("-inf")
            probs = F.softmax(logits, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1)  # B, 1
            idx = torch.cat((idx, idx_next), dim=1)
            if i + 1 < max_new_tokens:
                logits, state = self.step(idx_next.view(-1), state)
        return idx
