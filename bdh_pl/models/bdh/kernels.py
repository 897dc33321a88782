"""The fast path of BDH: model.py's layer in fewer passes over memory, applied to a BDH from
outside (like torchtitan's parallelize_llama): `BDHExecution(...).apply(model)`. The switches
change speed and memory, never the parameters or (beyond fp rounding) the results; each is
tested equal to BDH.layer, values and gradients (tests/{unit,integration}/models/test_bdh.py):

- fused (default): FusedLayer. Activations heads-first (nh, B, T, N), so no transpose copies;
  weights cast once per forward; custom autograd ops whose backwards need fewer passes
  (relu+RoPE in one, (G + G^T) q for the symmetric scores, no gradient sums); RoPE as one
  complex multiply; dropout masks from 16-bit random words instead of bernoulli_.
- attention: "quadratic", "chunked" (quadratic inside a chunk, a running state across chunks)
  or "auto" (chunked from a measured break-even length, chunked_from).
- compile_elementwise: the elementwise chains compiled by torch.compile, on neurons in the
  "halves" layout (see to_halves).
- activation_checkpointing: either layer recomputed in backward.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from bdh_pl.models.bdh.linear_attention import ATTENTION_MODES, AttentionMode, attention
from bdh_pl.models.bdh.model import BDH, reference_layer


@dataclass(frozen=True)
class BDHExecution:
    """How a BDH's layers run (its `layer_runner`): the same function, other speed and memory."""

    fused: bool = True  # FusedLayer instead of BDH.layer (False: the reference)
    attention: AttentionMode = "auto"  # fused only; "auto": chunked for long sequences
    chunk_size: int = 256  # positions per chunk of the chunked attention
    activation_checkpointing: bool = False  # recompute each layer in backward
    # fused only: the elementwise chains (relu+RoPE, relu*gate*dropout and their backwards)
    # compiled by torch.compile; faster steps after a compile warm-up of tens of seconds
    compile_elementwise: bool = False

    def __post_init__(self) -> None:
        if self.chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {self.chunk_size}")
        if self.attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {self.attention!r}")
        if not self.fused and (self.attention == "chunked" or self.compile_elementwise):
            raise ValueError("attention='chunked' and compile_elementwise need fused=True")

    def apply(self, model: BDH) -> BDH:
        """Run `model`'s layers this way from now on (in place; parameters untouched)."""
        model.layer_runner = self
        return model

    def __call__(self, model: BDH, phases: Tensor, recurrent: bool) -> Callable[..., Tensor]:
        if self.fused:
            layer = FusedLayer(model, phases, recurrent, self)
        else:
            layer = reference_layer(model, phases, recurrent)
        if self.activation_checkpointing and torch.is_grad_enabled():
            return partial(checkpoint, layer, use_reentrant=False)
        return layer


def _acc_dtype(t: Tensor) -> torch.dtype:
    return torch.promote_types(t.dtype, torch.float32)  # fp32 math at least (fp64 stays)


_compiled: dict = {}


def _kernel(fn, compiled: bool):
    """fn itself, or fn compiled by torch.compile (once per process)."""
    if not compiled:
        return fn
    if fn not in _compiled:
        _compiled[fn] = torch.compile(fn, fullgraph=True)
    return _compiled[fn]


# ---------------------------------------------------------------- dropout


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


# ---------------------------------------------------------------- neuron layouts and RoPE
# The official layout pairs neurons (2i, 2i+1) for RoPE ("interleaved"). The compiled kernels
# use "halves": pair i at (i, N/2 + i), so a rotation reads two contiguous blocks (inductor
# vectorizes them; interleaved pairs make it gather). Halves is a permutation of the neuron
# axis: to_halves applies it to the weights once per forward, then every activation of the
# layer is permuted alike, and the sums over neurons (decoder, scores) do not see it. The
# recurrent state is kept in the official layout, so halves is for training forwards only.


def to_halves(w: Tensor, dim: int, dtype: torch.dtype | None = None) -> Tensor:
    """Reorder the neuron axis dim of w from interleaved pairs to halves (one copy, + cast)."""
    dim = dim % w.dim()
    view = w.unflatten(dim, (-1, 2)).transpose(dim, dim + 1)
    out = torch.empty(view.shape, dtype=dtype or w.dtype, device=w.device)
    return out.copy_(view).flatten(dim, dim + 1)


def rotation(phases: Tensor, halves: bool) -> Tensor:
    """The RoPE rotation of each neuron pair from model.py's phases (T, N, equal within a pair).

    Interleaved: unit complex numbers (T, N/2). Halves: cos and sin stacked, (2, T, N/2).
    """
    angles = phases[:, ::2]
    if halves:
        return torch.stack((angles.cos(), angles.sin()))
    return torch.complex(angles.cos(), angles.sin())


def rotate(
    x: Tensor, rot: Tensor, then: Callable[..., Tensor] | None = None, *others: Tensor
) -> Tensor:
    """Rotate the neuron pairs of x (..., T, N) by rot (from rotation), in fp32.

    then(rotated, *others), if given, runs elementwise on the result (cast back to x's dtype)
    with others laid out like x: in halves it runs on each half before the cat, so that
    inductor fuses it into the rotation's kernel (after the cat it stages the cat in memory).
    """
    dt = x.dtype
    x = x.to(_acc_dtype(x))
    if rot.is_complex():  # a pair is one complex number: one multiply, no stack/cat copies
        xc = torch.view_as_complex(x.unflatten(-1, (-1, 2)))  # ..., T, N/2
        out = torch.view_as_real(xc * rot).flatten(-2).to(dt)
        return out if then is None else then(out, *others)
    cos, sin = rot.unbind(0)
    a, b = x.chunk(2, dim=-1)
    # cast each half before the cat, or inductor stages the result in fp32
    halves = [(a * cos - b * sin).to(dt), (b * cos + a * sin).to(dt)]
    if then is not None:
        parts = zip(*(o.chunk(2, dim=-1) for o in others), strict=True)
        halves = [then(h, *part) for h, part in zip(halves, parts, strict=True)]
    return torch.cat(halves, dim=-1)


def inverse(rot: Tensor) -> Tensor:
    """The rotation by minus the angles: the transpose of rotate, for its backward."""
    return rot.conj() if rot.is_complex() else torch.stack((rot[0], -rot[1]))


def relu_rope(x_latent: Tensor, rot: Tensor) -> tuple[Tensor, Tensor]:
    """x_sparse = relu(x_latent) and q = rope(x_sparse)."""
    x_sparse = F.relu(x_latent)
    return x_sparse, rotate(x_sparse, rot)


def relu_rope_backward(x_sparse: Tensor, g_sparse: Tensor, g_q: Tensor, rot: Tensor) -> Tensor:
    """Grad of x_latent from the grads of both outputs of relu_rope."""
    return rotate(g_q, inverse(rot), _add_relu_backward, g_sparse, x_sparse)


def _add_relu_backward(g: Tensor, g_sparse: Tensor, x_sparse: Tensor) -> Tensor:
    return torch.ops.aten.threshold_backward(g + g_sparse, x_sparse, 0)


class SparseRope(torch.autograd.Function):
    """relu_rope with a one-pass backward (no sum of two gradients of x_sparse)."""

    @staticmethod
    def forward(ctx, x_latent: Tensor, rot: Tensor, compiled: bool) -> tuple[Tensor, Tensor]:
        x_sparse, q = _kernel(relu_rope, compiled)(x_latent, rot)
        ctx.compiled = compiled
        ctx.save_for_backward(x_sparse, rot)
        return x_sparse, q

    @staticmethod
    def backward(ctx, g_sparse: Tensor, g_q: Tensor):
        x_sparse, rot = ctx.saved_tensors
        g = _kernel(relu_rope_backward, ctx.compiled)(x_sparse, g_sparse, g_q, rot)
        return g, None, None


def sparse_rope(x_latent: Tensor, rot: Tensor, compiled: bool = False) -> tuple[Tensor, Tensor]:
    """relu_rope; without grad a plain call (an autograd.Function costs per-call overhead)."""
    if torch.is_grad_enabled():
        return SparseRope.apply(x_latent, rot, compiled)
    return relu_rope(x_latent, rot)


# ---------------------------------------------------------------- gate and decoder


def gate(y_sparse: Tensor, x_sparse: Tensor, keep: Tensor | None) -> Tensor:
    """y_sparse * x_sparse, zero where keep (bool) is False.

    Dropout without its 1 / (1 - p): GateDecode scales the (B*T, D) output instead, a tensor
    nh * N / D times smaller. In place on the product: eagerly, no second buffer.
    """
    xy = y_sparse * x_sparse
    return xy if keep is None else xy.mul_(keep)


def gate_backward(
    g: Tensor, y_sparse: Tensor, x_sparse: Tensor, keep: Tensor | None, xy: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Grads of y_latent and x_sparse from the grad g of gate's output, and that output.

    Without xy it is recomputed: inside one compiled kernel cheaper than keeping it.
    """
    if xy is None:
        xy = gate(y_sparse, x_sparse, keep)
    if keep is not None:
        g = g * keep  # not in place: compiled, that would write g back to memory
    g_y = torch.ops.aten.threshold_backward(g * x_sparse, y_sparse, 0)  # relu's mask == y's
    return g_y, g * y_sparse, xy


# Compiled, the gate kernels take y_latent and apply the relu themselves (free in the kernel),
# so y_sparse is never written to memory; eagerly, relu(y_latent) is kept for backward instead
# of y_latent (same memory, one pass fewer).


def gate_latent(y_latent: Tensor, x_sparse: Tensor, keep: Tensor | None) -> Tensor:
    return gate(F.relu(y_latent), x_sparse, keep)


def gate_backward_latent(
    g: Tensor, y_latent: Tensor, x_sparse: Tensor, keep: Tensor | None, xy: None = None
) -> tuple[Tensor, Tensor, Tensor]:
    return gate_backward(g, F.relu(y_latent), x_sparse, keep)


def _dropout_scale(t: Tensor, keep: Tensor | None, p: float) -> Tensor:
    """t * 1 / (1 - p) if there is dropout: gate's scale, on a (B*T, D) output or its grad."""
    return t if keep is None else t * (1.0 / (1.0 - p))


class GateDecode(torch.autograd.Function):
    """Sum over heads of dropout(relu(y_latent) * x_sparse) @ decoder[h]; backward without
    gradient sums.

    y_latent, x_sparse: nh, B*T, N; keep: bool like them, or None; decoder: nh, N, D; returns
    B*T, D. Compiled, it keeps no (nh, B*T, N) product for backward: the backward kernel
    recomputes it in the same pass.
    """

    @staticmethod
    def forward(ctx, y_latent, x_sparse, keep, decoder, p: float, compiled: bool) -> Tensor:
        if compiled:
            y = y_latent
            xy = _kernel(gate_latent, True)(y_latent, x_sparse, keep)
        else:
            y = F.relu(y_latent)
            xy = gate(y, x_sparse, keep)
        ctx.p, ctx.compiled = p, compiled
        ctx.save_for_backward(y, x_sparse, keep, decoder, None if compiled else xy)
        # per-head decoders summed == the official (B, T, nh*N) @ (nh*N, D)
        return _dropout_scale((xy @ decoder).sum(0), keep, p)

    @staticmethod
    def backward(ctx, g: Tensor):
        y, x_sparse, keep, decoder, xy = ctx.saved_tensors  # once: checkpointing
        g = _dropout_scale(g.to(decoder.dtype), keep, ctx.p)
        g = g.expand(decoder.size(0), -1, -1)  # nh, B*T, D
        g_xy = g @ decoder.mT  # nh, B*T, N
        bwd = _kernel(gate_backward_latent, True) if ctx.compiled else gate_backward
        g_y, g_x, xy = bwd(g_xy, y, x_sparse, keep, xy)
        return g_y, g_x, None, xy.mT @ g, None, None


def gate_decode(
    y_latent: Tensor,
    x_sparse: Tensor,
    keep: Tensor | None,
    decoder: Tensor,
    p: float,
    compiled: bool = False,
) -> Tensor:
    """GateDecode; without grad a plain call."""
    if torch.is_grad_enabled():
        return GateDecode.apply(y_latent, x_sparse, keep, decoder, p, compiled)
    return _dropout_scale((gate_latent(y_latent, x_sparse, keep) @ decoder).sum(0), keep, p)


class FusedLayer:
    """BDH.layer with the ops above, for one forward: weights and rotation prepared once."""

    def __init__(self, model: BDH, phases: Tensor, recurrent: bool, execution: BDHExecution):
        C = model.config
        self.ln = model.ln
        self.attention, self.chunk_size = execution.attention, execution.chunk_size
        self.p = C.dropout if model.training else 0.0
        self.log_decay = model.attn.log_decay()  # nh (damped attention), or None
        # the halves layout pays off in compiled training steps; the state is interleaved
        self.compiled = execution.compile_elementwise and torch.is_grad_enabled() and not recurrent
        self.rot = rotation(phases, halves=self.compiled)
        nh, N = C.n_head, C.n_neurons
        weights = (model.encoder, model.encoder_v, model.decoder.view(nh, N, -1))
        device = model.encoder.device.type
        # autocast would re-cast the decoder view in every layer (it caches only leaves)
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        if self.compiled:
            weights = [to_halves(w, d, dtype) for w, d in zip(weights, (-1, -1, 1), strict=True)]
        elif dtype is not None:
            weights = [w.to(dtype) for w in weights]
        self.encoder, self.encoder_v, self.decoder = weights  # nh, D, N; nh, D, N; nh, N, D

    def __call__(
        self, x: Tensor, kv: Tensor | None = None, sparsity: dict | None = None, index: int = 0
    ) -> Tensor:
        B, T, D = x.shape
        nh, N = self.encoder.size(0), self.encoder.size(-1)
        # explicit bmm: a broadcasting matmul would copy the (nh, B*T, N) result and its grad
        x_in = x.view(1, B * T, D).expand(nh, -1, -1)
        x_latent = torch.bmm(x_in, self.encoder).view(nh, B, T, N)
        x_sparse, q = sparse_rope(x_latent, self.rot, self.compiled)  # nh, B, T, N each
        yKV = attention(q, x, kv, self.attention, self.chunk_size, self.log_decay)
        yKV = self.ln(yKV)  # nh, B, T, D
        y_latent = yKV.view(nh, B * T, D) @ self.encoder_v  # nh, B*T, N
        x_sparse = x_sparse.view(nh, B * T, N)
        keep = None
        if self.p > 0:
            keep = dropout_keep(dropout_bits(x_sparse.shape, x_sparse.device), self.p)
        y = gate_decode(y_latent, x_sparse, keep, self.decoder, self.p, self.compiled)  # B*T, D
        y = self.ln(y)
        if sparsity is not None:
            sparsity[f"x_l{index}"] = (x_sparse.count_nonzero() / x_sparse.numel()).detach()
            sparsity[f"y_l{index}"] = ((y_latent > 0).sum() / y_latent.numel()).detach()
        return self.ln(x + y.view(B, T, D))
