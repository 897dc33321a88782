"""BDH in two layers: model.py, the model as the paper writes it (the reference), and
kernels.py + linear_attention.py, the same math in fewer passes, selected by BDHConfig's switches."""

from bdh_pl.models.bdh.model import (
    ATTENTION_MODES,
    BDH,
    Attention,
    AttentionMode,
    BDHConfig,
    BDHState,
    rope_freqs,
)

__all__ = [
    "ATTENTION_MODES",
    "BDH",
    "Attention",
    "AttentionMode",
    "BDHConfig",
    "BDHState",
    "rope_freqs",
]
