"""Checkpoints are untrusted input: load them without running pickled code, check them against
the model before Lightning touches them, and accept plain BDH weights from the official code."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from bdh_pl.errors import UserError

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
PREFIXES = ("_orig_mod.", "module.")  # added by torch.compile and DistributedDataParallel


def load_untrusted(path: str | Path) -> dict[str, Any]:
    """torch.load with weights_only=True: tensors and plain containers only, no code runs."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} is not a file: check --ckpt_path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = f"it would import {found.group(1)}" if found else "it holds pickled objects"
        raise UserError(
            f"refused to load {str(path)!r}: {what} while unpickling, and bdh-pl loads only plain "
            "weights (torch.load weights_only=True); re-save the state_dict of a model you trust"
        ) from None
    except Exception as err:  # a damaged file fails in many ways, all meaning "unreadable"
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise UserError(
            f"cannot read checkpoint {str(path)!r}: truncated or not a PyTorch file ({first})"
        ) from None
    if not isinstance(obj, dict):
        raise UserError(f"checkpoint {str(path)!r} holds a {type(obj).__name__}, not a state dict")
    return obj


def is_lightning_checkpoint(obj: dict[str, Any]) -> bool:
    return "pytorch-lightning_version" in obj and "state_dict" in obj


def plain_state_dict(obj: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights of a plain PyTorch file: unwrap {"model": ...} / {"state_dict": ...} and
    strip the `_orig_mod.` (torch.compile) and `module.` (DDP) prefixes."""
    for key in WRAPPER_KEYS:
        if key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    state = {}
    for name, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        for prefix in PREFIXES:
            name = name.removeprefix(prefix)
        state[name] = value
    if not state:
        raise UserError("the checkpoint holds no tensors: expected a state_dict of a BDH model")
    return state


def infer_bdh_dims(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """Width, heads, multiplier and vocabulary from the tensor shapes of official BDH weights.
    n_layer cannot be inferred: the layers share one set of weights."""
    missing = [k for k in ("encoder", "decoder", "lm_head") if k not in state]
    if missing:
        raise UserError(
            f"the weights lack {', '.join(missing)}: not a BDH state_dict (expected the official "
            "names encoder, encoder_v, decoder, embed.weight, lm_head)"
        )
    n_head, n_embd, n_neurons = state["encoder"].shape
    return {
        "n_embd": n_embd,
        "n_head": n_head,
        "mlp_internal_dim_multiplier": n_neurons * n_head // n_embd,
        "vocab_size": state["lm_head"].shape[1],
    }


def check_matches(
    expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], path: str
) -> None:
    """One clear line when a checkpoint does not fit the configured model."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    if missing or unexpected:
        raise UserError(
            f"checkpoint {path!r} is for another model: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}; use the model config it was trained with (config.yaml beside it)"
        )
    for name, tensor in expected.items():
        if tuple(got[name].shape) != tuple(tensor.shape):
            raise UserError(
                f"checkpoint {path!r} does not match the model config: {name} is "
                f"{tuple(got[name].shape)} there but {tuple(tensor.shape)} here; use the model and "
                "tokenizer settings it was trained with (config.yaml beside it)"
            )
