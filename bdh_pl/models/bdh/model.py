"""BDH-GPU, the "Baby Dragon Hatchling" language model (Kosowski et al. 2025, arXiv 2509.26507).

The model as the paper (BDH-GPU, eq. 8) and the official code (github.com/pathwaycom/bdh) write
it, with the official parameter names, so official checkpoints load with strict=True. One set
of weights serves every layer; per layer and head h, with x the residual stream (B, T, D):

    x_sparse = relu(x @ encoder[h])                               N neurons per head, sparse
    a_t      = LN(sum_{s<t} <rope(x_sparse_t), rope(x_sparse_s)> x_s)   linear attention
    y_sparse = relu(a @ encoder_v[h])
    x        = LN(x + LN(dropout(x_sparse * y_sparse) @ decoder))  all heads into one decoder

The attention has no softmax, so it is a running sum: S_t = sum_{s<t} rope(x_sparse_s)^T x_s
(N x D per head) gives a_t = rope(x_sparse_t) S_t, and a new token costs O(N * D) whatever its
position (prefill / step / generate).

Damped attention (BDHConfig.attn_decay, off by default): the paper's remedy for old context
(Sec. 6.1, an ALiBi-like decay). Head h weighs position s, seen from t, by gamma_h^(t-s), so
    a_t = LN(sum_{s<t} gamma_h^(t-s) <rope(x_sparse_t), rope(x_sparse_s)> x_s)
and the state decays: S_{t+1} = gamma_h (S_t + rope(x_sparse_t)^T x_t), still O(N * D) a token.
"alibi": ALiBi's fixed slopes as rates, gamma_h = exp(-2^(-8h/nh)), h = 1..nh (half-lives of
about 3 to 180 tokens with 4 heads); "learned": the same at first, then a trained rate per head.

This file is the reference: one plain forward (BDH.layer) in tensor math, and it knows nothing
of the fast path. kernels.py computes the same thing in fewer passes over memory and is applied
to a BDH from outside (kernels.BDHExecution, set as the model's `layer_runner`);
tests/{unit,integration}/models/test_bdh.py checks each of its switches equal to this forward, values and gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal, Protocol, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bdh_pl.models.sampling import sample_next

AttnDecay = Literal["none", "alibi", "learned"]
ATTN_DECAYS: tuple[str, ...] = get_args(AttnDecay)


@dataclass
class BDHConfig:
    """The architecture: what a checkpoint's tensors and an exported config.json describe."""

    n_layer: int = 6
    n_embd: int = 256  # D
    dropout: float = 0.1
    n_head: int = 4  # nh
    mlp_internal_dim_multiplier: int = 128  # N = multiplier * D / nh neurons per head
    vocab_size: int = 256
    attn_decay: AttnDecay = "none"  # damped attention: see the module docstring
    # The training windows' length (set from the data). RoPE needs no table of positions, so
    # no weight depends on it: a BDH reads any length; tools use it as the default context.
    block_size: int = 256

    def __post_init__(self) -> None:
        if self.attn_decay not in ATTN_DECAYS:
            raise ValueError(f"attn_decay must be one of {ATTN_DECAYS}, got {self.attn_decay!r}")
        sizes = ("n_layer", "n_embd", "n_head", "mlp_internal_dim_multiplier", "vocab_size")
        for name in (*sizes, "block_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_neurons % 2 != 0:
            raise ValueError(
                f"neurons per head (mlp_internal_dim_multiplier * n_embd / n_head = "
                f"{self.n_neurons}) must be even: RoPE rotates pairs"
            )

    @property
    def n_neurons(self) -> int:
        """N, the sparse neurons per head."""
        return self.mlp_internal_dim_multiplier * self.n_embd // self.n_head


@dataclass
class BDHState:
    """Recurrent inference state: what the attention of the next token needs to know."""

    kv: Tensor  # n_layer, nh, B, N, D (fp32): per layer the S above, summed over past positions
    # (damped: each term already weighed by gamma_h^(t-s) as the next token t will read it)
    pos: int  # absolute position of the next token (RoPE continues after the prompt)


def rope_freqs(n: int, theta: float = 2**16, device: torch.device | None = None) -> Tensor:
    """RoPE frequencies in turns per position, one per neuron, equal within (2i, 2i+1) pairs."""
    quantized = (torch.arange(0, n, 1, dtype=torch.float32, device=device) / 2).floor() * 2
    return 1.0 / (theta ** (quantized / n)) / (2 * math.pi)


def alibi_rates(n_head: int) -> Tensor:
    """ALiBi's per-head slopes 2^(-8h/nh), h = 1..nh (Press et al. 2022), as decay rates."""
    return 2.0 ** (-8.0 * torch.arange(1, n_head + 1, dtype=torch.float32) / n_head)


def decay_mask(log_decay: Tensor, T: int) -> Tensor:
    """nh, T, T: gamma_h^(t-s) where s < t, else 0; log_decay (nh,) holds log gamma_h."""
    pos = torch.arange(T, device=log_decay.device)
    distance = (pos.view(-1, 1) - pos.view(1, -1)).clamp(min=0)  # T, T: t - s, 0 above
    return (log_decay.view(-1, 1, 1) * distance).exp().tril(diagonal=-1)


def decay_weights(log_decay: Tensor, T: int) -> tuple[Tensor, Tensor, Tensor]:
    """For a block of T positions after a damped state: what position i reads of the state
    (gamma^i), what it writes into the state after the block (gamma^(T-i)), each nh, T, and
    what the state keeps (gamma^T, nh)."""
    pos = torch.arange(T + 1, device=log_decay.device)
    powers = (log_decay.view(-1, 1) * pos).exp()  # nh, T+1: gamma^0 .. gamma^T
    return powers[:, :T], powers[:, 1:].flip(-1), powers[:, T]


class Attention(nn.Module):
    """Causal linear attention without softmax over RoPE-rotated sparse activations."""

    def __init__(self, config: BDHConfig):
        super().__init__()
        N = config.n_neurons
        self.attn_decay, self.n_head = config.attn_decay, config.n_head
        if config.attn_decay == "learned":  # log of each head's rate, from ALiBi's
            self.decay_rate = nn.Parameter(alibi_rates(config.n_head).log())
        # The official buffer, kept for checkpoints. phases() reads an fp32 copy instead:
        # model.to(bfloat16) casts every float buffer, and bf16 frequencies would put the
        # angles of late positions off by a sizeable fraction of a turn.
        self.freqs = nn.Buffer(rope_freqs(N).view(1, 1, 1, N))
        self._freqs_fp32 = rope_freqs(N)  # not a buffer: no .to() casts it (moved in phases)

    def log_decay(self) -> Tensor | None:
        """log gamma_h (nh,) in fp32, or None: undamped."""
        if self.attn_decay == "alibi":
            return -alibi_rates(self.n_head).to(self.freqs.device)
        if self.attn_decay == "learned":
            return -self.decay_rate.float().exp()
        return None

    def phases(self, start: int, T: int) -> Tensor:
        """RoPE angles (T, N) in radians of positions start..start+T-1, in fp32."""
        freqs = self._freqs_fp32
        if freqs.device != self.freqs.device:  # once after the model moved
            freqs = self._freqs_fp32 = freqs.to(self.freqs.device)
        pos = torch.arange(start, start + T, dtype=torch.float32, device=freqs.device)
        return ((pos.view(-1, 1) * freqs) % 1) * (2 * math.pi)  # whole turns dropped first

    @staticmethod
    def rope(v: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Rotate the pairs (2i, 2i+1) of v (..., T, N) by the angles whose cos, sin are given."""
        v_rot = torch.stack((-v[..., 1::2], v[..., ::2]), dim=-1).view(*v.size())
        return (v * cos).to(v.dtype) + (v_rot * sin).to(v.dtype)

    def forward(
        self, q: Tensor, v: Tensor, cos: Tensor, sin: Tensor, kv: Tensor | None = None
    ) -> Tensor:
        """q: B, nh, T, N sparse activations (queries = keys); v: B, 1, T, D. -> B, nh, T, D.

        kv (nh, B, N, D): the state S of the positions before these; they are attended to as
        well, and these positions are added to it in place.
        """
        qr = self.rope(q, cos, sin)  # B, nh, T, N
        scores = (qr @ qr.mT).tril(diagonal=-1)  # B, nh, T, T: only s < t, no softmax
        log_decay = self.log_decay()  # nh, or None
        if log_decay is not None:  # damped: gamma_h^(t-s)
            scores = scores * decay_mask(log_decay, q.size(2)).to(scores.dtype)
        out = scores @ v  # B, nh, T, D
        if kv is not None:
            S = kv.transpose(0, 1)  # B, nh, N, D, a view: += writes the state
            # Under autograd (training with carried state) the read is a copy, so writing the
            # state does not change what backward needs, and the write carries no gradient into
            # the next window (truncated backpropagation through time).
            state = S.to(qr.dtype, copy=torch.is_grad_enabled())
            if log_decay is None:
                out = out + qr @ state
                S += (qr.mT @ v).detach()
            else:
                read, write, keep = decay_weights(log_decay, q.size(2))  # nh, T; nh, T; nh
                out = out + (qr @ state) * read.view(-1, q.size(2), 1)  # B, nh, T, D
                S *= keep.detach().view(-1, 1, 1)  # the old state damped over the T positions
                S += ((qr * write.view(-1, q.size(2), 1)).mT @ v).detach()
        return out


class LayerRunner(Protocol):
    """What runs BDH's layers in one forward: (model, phases (T, N), recurrent) -> a function
    (x, kv, sparsity, index) -> x computing BDH.layer."""

    def __call__(self, model: BDH, phases: Tensor, recurrent: bool) -> Callable[..., Tensor]: ...


def reference_layer(model: BDH, phases: Tensor, recurrent: bool) -> Callable[..., Tensor]:
    """BDH.layer itself, the RoPE angles bound once for all layers."""
    return partial(model.layer, phases.cos(), phases.sin())


class BDH(nn.Module):
    def __init__(self, config: BDHConfig):
        super().__init__()
        self.config = config
        # The reference layer; a fast path computing the same is set from outside
        # (kernels.BDHExecution.apply), so this file never imports it.
        self.layer_runner: LayerRunner = reference_layer
        nh, D, N = config.n_head, config.n_embd, config.n_neurons
        self.decoder = nn.Parameter(torch.zeros((nh * N, D)).normal_(std=0.02))
        self.encoder = nn.Parameter(torch.zeros((nh, D, N)).normal_(std=0.02))
        self.attn = Attention(config)
        self.ln = nn.LayerNorm(D, elementwise_affine=False, bias=False)
        self.embed = nn.Embedding(config.vocab_size, D)
        nn.init.normal_(self.embed.weight, mean=0.0, std=0.02)
        self.drop = nn.Dropout(config.dropout)
        self.encoder_v = nn.Parameter(torch.zeros((nh, D, N)).normal_(std=0.02))
        self.lm_head = nn.Parameter(torch.zeros((D, config.vocab_size)).normal_(std=0.02))

    def forward(self, idx: Tensor, sparsity: dict | None = None) -> Tensor:
        """idx: B, T token ids -> logits B, T, V.

        If sparsity is a dict, it receives the fraction of non-zero entries of x_sparse and
        y_sparse per layer as detached scalars, keys "x_l{i}" and "y_l{i}".
        """
        return self._run(idx, 0, None, sparsity)

    def _run(self, idx: Tensor, start: int, kv: Tensor | None, sparsity: dict | None) -> Tensor:
        """Logits for tokens idx at absolute positions start..; kv: per-layer recurrent states."""
        x = self.ln(self.embed(idx))  # B, T, D
        phases = self.attn.phases(start, idx.size(1))  # T, N: shared by the layers
        layer = self.layer_runner(self, phases, kv is not None)
        for i in range(self.config.n_layer):
            x = layer(x, None if kv is None else kv[i], sparsity, i)
        return x @ self.lm_head  # B, T, V

    def layer(
        self,
        cos: Tensor,
        sin: Tensor,
        x: Tensor,
        kv: Tensor | None = None,
        sparsity: dict | None = None,
        index: int = 0,
    ) -> Tensor:
        """One layer, the official loop body: x (B, T, D) -> (B, T, D). cos, sin: T, N."""
        B, T, D = x.shape
        nh, N = self.config.n_head, self.config.n_neurons
        x = x.unsqueeze(1)  # B, 1, T, D: the same input for every head
        x_latent = x @ self.encoder  # B, nh, T, N
        x_sparse = F.relu(x_latent)  # B, nh, T, N
        yKV = self.ln(self.attn(x_sparse, x, cos, sin, kv))  # B, nh, T, D
        y_latent = yKV @ self.encoder_v  # B, nh, T, N
        y_sparse = F.relu(y_latent)  # B, nh, T, N
        xy_sparse = self.drop(x_sparse * y_sparse)  # B, nh, T, N
        # heads side by side (B, T, nh*N), head-major like decoder's rows
        yMLP = xy_sparse.transpose(1, 2).reshape(B, 1, T, nh * N) @ self.decoder  # B, 1, T, D
        y = self.ln(yMLP)
        if sparsity is not None:
            sparsity[f"x_l{index}"] = (x_sparse.count_nonzero() / x_sparse.numel()).detach()
            sparsity[f"y_l{index}"] = ((y_latent > 0).sum() / y_latent.numel()).detach()
        return self.ln(x + y).view(B, T, D)

    def init_state(self, batch_size: int) -> BDHState:
        C = self.config
        kv = self.encoder.new_zeros(
            C.n_layer, C.n_head, batch_size, C.n_neurons, C.n_embd, dtype=torch.float32
        )
        return BDHState(kv=kv, pos=0)

    def forward_state(self, idx: Tensor, state: BDHState, sparsity: dict | None = None) -> Tensor:
        """Logits (B, T, V) of idx read after the positions the state holds; the state moves
        past them, in place. Windows of a stream fed in order score each token with all the
        text before it (chunked: the parallel form inside a window, the state across)."""
        logits = self._run(idx, state.pos, state.kv, sparsity)
        state.pos += idx.size(1)
        return logits

    @torch.no_grad()
    def prefill(self, idx: Tensor) -> tuple[Tensor, BDHState]:
        """Run the prompt idx (B, T): logits of its last position (B, V) and the state after it."""
        state = self.init_state(idx.size(0))
        return self.forward_state(idx, state)[:, -1], state

    @torch.no_grad()
    def step(self, token: Tensor, state: BDHState) -> tuple[Tensor, BDHState]:
        """Feed one token per sequence (B,): logits of the next one (B, V) and the state.

        Costs O(n_layer * nh * N * D) whatever the position. The state is updated in place.
        """
        return self.forward_state(token.view(-1, 1), state)[:, -1], state

    @torch.no_grad()
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> Tensor:
        """Sample max_new_tokens after idx (B, T), like the official generate, recurrently
        (no context limit); top_p adds nucleus sampling to the official top_k."""
        if max_new_tokens <= 0:
            return idx
        logits, state = self.prefill(idx)
        for i in range(max_new_tokens):
            idx_next = sample_next(logits, temperature, top_k, top_p)  # B, 1
            idx = torch.cat((idx, idx_next), dim=1)
            if i + 1 < max_new_tokens:
                logits, state = self.step(idx_next.view(-1), state)
        return idx
