"""What a model file must hold before bdh-pl reads it (training/loading.py opens it), and
the BDH sizes plain weights imply: a hand-made or damaged file is one line naming the
problem, never a TypeError or a division by zero deep inside."""

from __future__ import annotations

from typing import Any

import torch

from bdh_pl.errors import UserError

# The fields of a Lightning checkpoint bdh-pl reads, as Lightning writes them.
CHECKPOINT_DICTS = ("state_dict", "hyper_parameters", "datamodule_hyper_parameters")


def check_checkpoint_fields(checkpoint: dict[str, Any], path: str) -> None:
    """Each of CHECKPOINT_DICTS a dict (or absent), the state_dict all tensors."""
    for name in CHECKPOINT_DICTS:
        value = checkpoint.get(name)
        if value is not None and not isinstance(value, dict):
            what = f"its {name} is a {type(value).__name__}, not a dict"
            raise UserError(f"checkpoint {path!r} is damaged: {what}; use one bdh-pl wrote")
    state = checkpoint.get("state_dict") or {}
    bad = [name for name, value in state.items() if not isinstance(value, torch.Tensor)]
    if bad:
        what = f"its state_dict holds non-tensors ({bad[:3]})"
        raise UserError(f"checkpoint {path!r} is damaged: {what}; use one bdh-pl wrote")


def check_bdh_shapes(state: dict[str, torch.Tensor]) -> None:
    """Official BDH weights' encoder (n_head, n_embd, N) and lm_head (n_embd, vocab), no
    dimension empty (the sizes are read from them: a zero would divide by zero)."""
    shapes = {name: tuple(state[name].shape) for name in ("encoder", "lm_head")}
    if len(shapes["encoder"]) != 3 or len(shapes["lm_head"]) != 2:
        raise UserError(f"the weights' encoder or lm_head has the wrong rank {shapes}: not BDH")
    if any(0 in shape for shape in shapes.values()):
        raise UserError(f"the weights have an empty dimension {shapes}: not a usable BDH model")


def infer_bdh_dims(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """Width, heads, multiplier and vocabulary from the tensor shapes of official BDH weights.
    n_layer cannot be inferred: the layers share one set of weights."""
    missing = [k for k in ("encoder", "decoder", "lm_head") if k not in state]
    if missing:
        raise UserError(
            f"the weights lack {', '.join(missing)}: not a BDH state_dict (expected the official "
            "names encoder, encoder_v, decoder, embed.weight, lm_head)"
        )
    check_bdh_shapes(state)
    n_head, n_embd, n_neurons = state["encoder"].shape
    return {
        "n_embd": n_embd,
        "n_head": n_head,
        "mlp_internal_dim_multiplier": n_neurons * n_head // n_embd,
        "vocab_size": state["lm_head"].shape[1],
        **({"attn_decay": "learned"} if "attn.decay_rate" in state else {}),  # alibi: no trace
    }
