"""BDH-GPU, the "Baby Dragon Hatchling" language model (arXiv 2509.26507), in plain PyTorch.

Numerically the published architecture (github.com/pathwaycom/bdh) with the same parameter names,
so official checkpoints load with ``strict=True``. On top of it:

- recurrent inference: the attention is linear, so each layer and head keeps a state
  S = sum_{s<t} rope(q_s)^T x_s (N x D) and a new token costs O(N*D) instead of O(t*N),
- chunked attention for long contexts (quadratic inside a chunk, the running state across chunks),
- per-layer activation checkpointing,
- cheaper elementwise work: the RoPE rotation is one complex multiply, its cos/sin are computed
  once per forward, and activations are laid out heads-first (nh, B, T, N) so no transpose copies.
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


def rotate(q: Tensor, rot: Tensor) -> Tensor:
    """Rotate the interleaved pairs (2i, 2i+1) of q (..., T, N) by unit complex numbers rot (T, N/2).

    A pair is one complex number, so the rotation is a single complex multiply: no stack/concat
    copies, and autograd's backward is one multiply by conj(rot). The math runs in fp32.
    """
    qc = torch.view_as_complex(q.float().unflatten(-1, (-1, 2)))  # ..., T, N/2
    return torch.view_as_real(qc * rot).flatten(-2).to(q.dtype)


def attention_quadratic(q: Tensor, v: Tensor) -> Tensor:
    """out_t = sum_{s<t} (q_t . q_s) v_s, with q: nh, B, T, N (queries = keys) and v: B, T, D."""
    scores = (q @ q.mT).tril(diagonal=-1)  # nh, B, T, T; no softmax, token t sees only s < t
    return scores @ v  # nh, B, T, D


def attention_chunked(q: Tensor, v: Tensor, chunk_size: int) -> Tensor:
    """Same as attention_quadratic in O(T * (C * N + N * D)) rather than O(T^2 * N).

    Inside a chunk the quadratic form; earlier chunks enter through their summed state
    S_c = sum_{s in chunks < c} q_s^T v_s, kept in fp32 because it sums many terms.
    """
    nh, B, T, N = q.shape
    D = v.size(-1)
    pad = -T % chunk_size
    if pad:  # zero queries/values at the end change nothing before them
        q, v = F.pad(q, (0, 0, 0, pad)), F.pad(v, (0, 0, 0, pad))
    nc = (T + pad) // chunk_size
    qc = q.unflatten(2, (nc, chunk_size))  # nh, B, nc, C, N
    vc = v.unflatten(1, (nc, chunk_size))  # B, nc, C, D
    out = (qc @ qc.mT).tril(diagonal=-1) @ vc  # nh, B, nc, C, D
    kv = qc.mT @ vc  # nh, B, nc, N, D
    state = kv[:, :, :-1].cumsum(2, dtype=torch.float32)  # state before chunks 1..nc-1
    out[:, :, 1:] += qc[:, :, 1:] @ state.to(qc.dtype)
    return out.view(nh, B, nc * chunk_size, D)[:, :, :T]


class Attention(nn.Module):
    """Causal linear attention without softmax over RoPE-rotated sparse activations."""

    def __init__(self, config: BDHConfig):
        super().__init__()
        self.mode = config.attention
        self.chunk_size = config.chunk_size
        N = config.n_neurons
        self.freqs = nn.Buffer(rope_freqs(N).view(1, 1, 1, N))
        # measured break-even of chunked vs quadratic (fwd+bwd), see benchmarks/bdh_speed.py
        self.auto_min_len = 4 * config.chunk_size

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
        if T == 1:
            out = q.new_zeros(*q.shape[:-1], v.size(-1))
        elif self.mode == "chunked" or (self.mode == "auto" and self.auto_min_len <= T):
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
        self.drop = nn.Dropout(config.dropout)
        self.encoder_v = nn.Parameter(torch.zeros((nh, D, N)).normal_(std=0.02))
        self.lm_head = nn.Parameter(torch.zeros((D, config.vocab_size)).normal_(std=0.02))

    def _weights(self) -> tuple[Tensor, Tensor, Tensor]:
        """encoder, encoder_v (nh, D, N) and decoder as (nh, N, D), cast once per forward."""
        C = self.config
        weights = (self.encoder, self.encoder_v, self.decoder.view(C.n_head, C.n_neurons, -1))
        device = self.encoder.device.type
        if torch.is_autocast_enabled(device):
            # autocast would re-cast the decoder view in every layer (only leaves are cached)
            dtype = torch.get_autocast_dtype(device)
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
    ) -> Tensor:
        enc, enc_v, dec = weights
        B, T, D = x.shape
        nh, N = enc.size(0), enc.size(-1)
        x_sparse = F.relu(x.view(1, B * T, D) @ enc)  # nh, B*T, N
        q = rotate(x_sparse.view(nh, B, T, N), rot)  # nh, B, T, N
        a = self.ln(self.attn(q, x, kv))  # nh, B, T, D
        y_sparse = F.relu(a.view(nh, B * T, D) @ enc_v)  # nh, B*T, N
        xy_sparse = self.drop(x_sparse * y_sparse)  # nh, B*T, N
        # sum over heads of the per-head decoders == the official (B, T, nh*N) @ (nh*N, D)
        y = self.ln((xy_sparse @ dec).sum(0))  # B*T, D
        if sparsity is not None:
            sparsity[f"x_l{index}"] = (x_sparse.count_nonzero() / x_sparse.numel()).detach()
            sparsity[f"y_l{index}"] = (y_sparse.count_nonzero() / y_sparse.numel()).detach()
        return self.ln(x + y.view(B, T, D))

    def _run(self, idx: Tensor, start: int, sparsity: dict | None, kv: Tensor | None) -> Tensor:
        """Logits for tokens idx at absolute positions start..; kv: per-layer recurrent states."""
        C = self.config
        T = idx.size(1)
        x = self.ln(self.embed(idx))  # B, T, D
        pos = torch.arange(start, start + T, device=idx.device, dtype=torch.float32)
        rot = self.attn.rotation(pos)  # once per forward, shared by the layers
        weights = self._weights()
        for i in range(C.n_layer):
            kv_i = None if kv is None else kv[i]
            if C.activation_checkpointing and torch.is_grad_enabled():
                x = checkpoint(self._layer, x, rot, weights, sparsity, i, kv_i, use_reentrant=False)
            else:
                x = self._layer(x, rot, weights, sparsity, i, kv_i)
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
