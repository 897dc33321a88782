"""Checkpoints are untrusted input: load them without running pickled code, check them against
the model before Lightning touches them, and accept plain BDH weights from the official code."""

from __future__ import annotations

import importlib
import inspect
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


# Where the LightningModules lived before the training/ room: older checkpoints name it.
LEGACY_MODULE = "bdh_pl.lit_models"


def model_class(class_path: str) -> type:
    """Only bdh-pl's own LightningModules: a checkpoint cannot make us import anything else."""
    from bdh_pl.training import lit_models
    from bdh_pl.training.language_model import LanguageModel

    module, _, name = class_path.rpartition(".")
    known = module in (lit_models.__name__, LEGACY_MODULE)
    cls = getattr(lit_models, name, None) if known else None
    if not (isinstance(cls, type) and issubclass(cls, LanguageModel)):
        raise UserError(f"checkpoint names model class {class_path!r}, which is not a bdh-pl model")
    return cls


def init_arguments(cls: type) -> set[str]:
    """The keyword arguments `cls(...)` accepts, through the `**kwargs` of its bases."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names.update(
            p.name for p in params if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD
        )
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    names.discard("self")
    return names


def check_hparams(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The model a Lightning checkpoint was saved from: {"_class": class or None, arg: value}.
    A hyperparameter its class does not take (a file from another version) is refused."""
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    class_path = hparams.pop("_class_path", None)
    cls = model_class(class_path) if class_path else None
    hparams = {k: v for k, v in hparams.items() if not k.startswith("_")}
    if cls is not None:
        unknown = sorted(set(hparams) - init_arguments(cls))
        if unknown:
            raise UserError(
                f"checkpoint {str(path)!r} has hyperparameters {unknown} that {cls.__name__} does "
                "not take: it was written by another version of bdh-pl"
            )
    return {"_class": cls, **hparams}


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | Path):
    """The LightningModule of a bdh-pl checkpoint, built from its saved hyperparameters and
    loaded with its weights, after the same checks `test` makes."""
    from bdh_pl.training import lit_models

    hparams = check_hparams(checkpoint, path)
    cls = hparams.pop("_class") or lit_models.BDHLM
    try:
        model = cls(**hparams)
    except (TypeError, ValueError) as err:
        raise UserError(f"checkpoint {str(path)!r} has unusable hyperparameters: {err}") from None
    check_matches(model.state_dict(), checkpoint["state_dict"], str(path))
    model.load_state_dict(checkpoint["state_dict"])
    return model


def best_score(path: str | Path) -> tuple[float, str] | None:
    """(score, mode) that the monitored ModelCheckpoint stored in a best checkpoint it wrote,
    read memory-mapped (the weights are not loaded); None when the file does not say."""
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    for key, state in (obj.get("callbacks") or {}).items() if isinstance(obj, dict) else ():
        if not (isinstance(state, dict) and state.get("monitor")):
            continue
        score = state.get("best_model_score")
        if score is None or Path(str(state.get("best_model_path", ""))).name != Path(path).name:
            continue
        mode = "max" if "'mode': 'max'" in str(key) else "min"
        return float(score), mode
    return None


def explicit_options(argv: list[str]) -> set[str]:
    """`group.name` of every option set on the command line itself (not in a --config file),
    e.g. {"model.n_layer", "data.tokenizer", "model"}."""
    found = set()
    for arg in argv:
        match = re.match(r"--(model|data)(?:\.init_args)?(?:\.([A-Za-z_]\w*))?(?:=|$)", arg)
        if not match:
            continue
        group, name = match.groups()
        found.add(group if name in (None, "class_path") else f"{group}.{name}")
    return found


def import_class(class_path: str) -> type | None:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def plain_value(value: Any) -> Any:
    """Compare YAML lists with checkpoint tuples (betas)."""
    if isinstance(value, list | tuple):
        return [plain_value(v) for v in value]
    return value
