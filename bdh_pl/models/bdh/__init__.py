"""BDH in two layers: model.py, the model as the paper writes it (the reference, importing no
fast path), and kernels.py + linear_attention.py, the same math in fewer passes, applied to a
model from outside: `BDHExecution(fused=True, ...).apply(BDH(BDHConfig(...)))`."""

from bdh_pl.models.bdh.kernels import BDHExecution
from bdh_pl.models.bdh.linear_attention import ATTENTION_MODES, AttentionMode
from bdh_pl.models.bdh.model import (
    ATTN_DECAYS,
    BDH,
    Attention,
    AttnDecay,
    BDHConfig,
    BDHState,
    rope_freqs,
)

__all__ = [
    "ATTENTION_MODES",
    "ATTN_DECAYS",
    "BDH",
    "Attention",
    "AttentionMode",
    "AttnDecay",
    "BDHConfig",
    "BDHExecution",
    "BDHState",
    "rope_freqs",
]
