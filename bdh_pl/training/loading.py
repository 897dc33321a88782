"""Reading a model from a path: the one place bdh-pl opens a model file. Every file is untrusted
input: tensors and plain values only (torch.load weights_only=True, safetensors), only bdh-pl's
own model classes, never remote code, and each failure one line naming the file and the fix.

What a path may hold (read_model_file tells them apart):

    checkpoint   a bdh-pl (Lightning) .ckpt: the model its saved hyperparameters describe
    weights      plain BDH weights, the official train.py's state_dict (perhaps wrapped or
                 prefixed by torch.compile / DDP): sizes from the tensor shapes, n_layer from
                 the caller, since the layers share one set of weights and the file cannot say
    bdh-folder   a BDH folder written by `export`: config.json (the architecture) + safetensors
    hf-folder    a Hugging Face folder written by `export` (GPT-2, LLaMA): transformers' loader

The CLI reads a file with read_model_file and sizes its configured model from it; the tools
call load_model (a LightningModule) or load_network (any network to score or sample).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch

from bdh_pl.errors import UserError
from bdh_pl.models.bdh import BDHConfig
from bdh_pl.training.file_checks import check_checkpoint_fields, infer_bdh_dims

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
PREFIXES = ("_orig_mod.", "module.")  # added by torch.compile and DistributedDataParallel
# Where the LightningModules lived before the training/ room: older checkpoints name it.
LEGACY_MODULE = "bdh_pl.lit_models"
# A BDH folder (written by tools/export.py): config.json says model_type "bdh".
BDH_MODEL_TYPE = "bdh"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CHECKPOINT_FIX = "use the model and tokenizer settings it was trained with (its run's config.yaml)"
FOLDER_FIX = f"the folder's {CONFIG} does not describe its weights: export the checkpoint again"
# What config.json holds: BDHConfig's fields (block_size among them).
ARCHITECTURE = tuple(f.name for f in dataclasses.fields(BDHConfig))
LATER_FIELDS = {"attn_decay": "none"}  # added after format 1; a file without them: undamped

Kind = Literal["checkpoint", "weights", "bdh-folder", "hf-folder"]


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
        raise UserError(
            f"cannot read checkpoint {str(path)!r}: truncated or not a PyTorch file "
            f"({first_line(err)})"
        ) from None
    if not isinstance(obj, dict):
        raise UserError(f"checkpoint {str(path)!r} holds a {type(obj).__name__}, not a state dict")
    return obj


def checkpoint_fields(path: str | Path) -> dict[str, Any] | None:
    """A checkpoint's dict memory-mapped, so reading its small fields (global_step, callbacks'
    states) does not load the weights; None when the file is unreadable (a full load of it
    reports why)."""
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    return obj if isinstance(obj, dict) else None


def first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else type(err).__name__


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


def check_matches(expected: dict, got: dict, path: str | Path, fix: str = CHECKPOINT_FIX) -> None:
    """One clear line when a checkpoint does not fit the configured model, ending in `fix`."""
    path = str(path)
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    if missing or unexpected:
        raise UserError(
            f"checkpoint {path!r} is for another model: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}; {fix}"
        )
    for name, tensor in expected.items():
        if tuple(got[name].shape) != tuple(tensor.shape):
            raise UserError(
                f"checkpoint {path!r} does not match the model config: {name} is "
                f"{tuple(got[name].shape)} there but {tuple(tensor.shape)} here; {fix}"
            )


# --- BDH folders ----------------------------------------------------------------------------


def is_bdh_folder(path: str | Path) -> bool:
    config = Path(path) / CONFIG
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == BDH_MODEL_TYPE
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return False


def read_bdh_config(path: str | Path) -> dict[str, Any]:
    """config.json of a BDH folder, with every architecture field (BDHConfig's) present."""
    path = Path(path)
    if not is_bdh_folder(path) or not (path / WEIGHTS).is_file():
        raise UserError(
            f"{str(path)!r} is not a file, nor a BDH folder written by `python -m bdh_pl export` "
            f"(with {CONFIG} of model_type 'bdh' and {WEIGHTS}): check --ckpt_path"
        )
    config = {**LATER_FIELDS, **json.loads((path / CONFIG).read_text())}
    missing = [name for name in ARCHITECTURE if name not in config]
    if missing:
        raise UserError(
            f"{str(path / CONFIG)!r} lacks {', '.join(missing)}: export the checkpoint again"
        )
    return config


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except Exception as err:  # truncated, a pickle in its place, ...: all unreadable
        raise UserError(
            f"cannot read {str(path)!r}: truncated or not a safetensors file ({first_line(err)}); "
            "export the checkpoint again"
        ) from None


def load_bdh(path: str | Path):
    """The network of a BDH folder (a `BDH`, in eval mode) and its config.json."""
    found = read_model_file(path)
    if found.kind != "bdh-folder":
        raise UserError(f"{str(path)!r} is not a BDH folder written by `python -m bdh_pl export`")
    return bdh_model(found).network.eval(), found.config


# --- what a path holds ----------------------------------------------------------------------


@dataclasses.dataclass
class ModelFile:
    """A path read and told apart, before any model is built."""

    path: str
    kind: Kind
    checkpoint: dict[str, Any] = dataclasses.field(default_factory=dict)  # a Lightning ckpt's
    weights: dict[str, torch.Tensor] | None = None  # the BDH network's (weights, bdh-folder)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)  # a folder's config.json

    def bdh_sizes(self) -> dict[str, Any]:
        """BDH's architecture as the file gives it: all of it for a folder; without n_layer,
        dropout and block_size for plain weights."""
        if self.kind == "bdh-folder":
            return {name: self.config[name] for name in ARCHITECTURE}
        return infer_bdh_dims(self.weights)


def read_model_file(path: str | Path) -> ModelFile:
    """Read and classify what `path` holds (see the module docstring)."""
    path = Path(path).expanduser()
    if path.is_dir():
        if is_bdh_folder(path):
            config = read_bdh_config(path)
            weights = read_safetensors(path / WEIGHTS)
            return ModelFile(str(path), "bdh-folder", weights=weights, config=config)
        if (path / CONFIG).is_file():
            return ModelFile(str(path), "hf-folder")
        raise UserError(
            f"{str(path)!r} is not a file, nor a folder written by `python -m bdh_pl export` "
            f"(no {CONFIG}): check --ckpt_path"
        )
    obj = load_untrusted(path)
    if "pytorch-lightning_version" in obj and "state_dict" in obj:
        check_checkpoint_fields(obj, str(path))
        return ModelFile(str(path), "checkpoint", checkpoint=obj)
    return ModelFile(str(path), "weights", weights=plain_state_dict(obj))


# --- bdh-pl checkpoints ---------------------------------------------------------------------


def model_class(class_path: str) -> type:
    """Only bdh-pl's own LightningModules: a checkpoint cannot make us import anything else.
    Checkpoints from before the training/ room name LEGACY_MODULE: the same classes."""
    from bdh_pl.training import lit_models
    from bdh_pl.training.language_model import LanguageModel

    module, _, name = class_path.rpartition(".")
    known = module in (lit_models.__name__, LEGACY_MODULE)
    cls = getattr(lit_models, name, None) if known else None
    if not (isinstance(cls, type) and issubclass(cls, LanguageModel)):
        raise UserError(f"checkpoint names model class {class_path!r}, which is not a bdh-pl model")
    return cls


def nest_flat_hparams(cls: type, hparams: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters in today's layout, {"config": {...}, "training": {...}, ...}: a
    checkpoint written before the configs were passed whole holds them flat ({"n_embd": 256,
    "learning_rate": 0.001, ...}); each goes to the one config of `cls` with a field of its
    name (a field an older file lacks keeps its default). A name no config has stays top-level
    (check_hparams refuses it)."""
    if "training" in hparams:  # today's layout
        return hparams
    owners = {
        f.name: name for name, kind in cls.config_types().items() for f in dataclasses.fields(kind)
    }
    nested: dict[str, Any] = {name: {} for name in cls.config_types()}
    for key, value in hparams.items():
        if key in owners:
            nested[owners[key]][key] = value
        else:
            nested[key] = value
    return nested


def check_hparams(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The model a Lightning checkpoint was saved from: {"_class": class or None, "config":
    {...}, "training": {...}, ...} (each of the class's configs as a dict), an older flat
    layout nested. A hyperparameter its class does not take (a file from another version) is
    refused."""
    from bdh_pl.training.lit_models import BDHLM

    hparams = dict(checkpoint.get("hyper_parameters") or {})
    class_path = hparams.pop("_class_path", None)
    cls = model_class(class_path) if class_path else None
    hparams = {k: v for k, v in hparams.items() if not k.startswith("_")}
    kinds = (cls or BDHLM).config_types()
    hparams = nest_flat_hparams(cls or BDHLM, hparams)
    unknown = sorted(k for k in hparams if k not in kinds)
    for name, kind in kinds.items():
        given = hparams.setdefault(name, {})
        taken = {f.name for f in dataclasses.fields(kind)}
        unknown += sorted(f"{name}.{k}" for k in given if k not in taken)
    if unknown:
        raise UserError(
            f"checkpoint {str(path)!r} has hyperparameters {unknown} that "
            f"{(cls or BDHLM).__name__} does not take: it was written by another version of bdh-pl"
        )
    return {"_class": cls, **hparams}


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | Path):
    """The LightningModule of a bdh-pl checkpoint, built from its saved hyperparameters and
    loaded with its weights, after the same checks `test` makes."""
    from bdh_pl.training.lit_models import BDHLM

    hparams = check_hparams(checkpoint, path)
    cls = hparams.pop("_class") or BDHLM
    model = build(cls, hparams, path)
    check_matches(model.state_dict(), checkpoint["state_dict"], path)
    model.load_state_dict(checkpoint["state_dict"])
    return model


def build(cls: type, hparams: dict[str, Any], path: str | Path):
    """`cls` built from hyperparameters in today's layout ({config name: {field: value}})."""
    try:
        return cls.from_hparams(hparams)
    except (TypeError, ValueError, KeyError, UserError) as err:
        raise UserError(f"{str(path)!r} describes no valid model: {err}") from None


# --- a model from any file ------------------------------------------------------------------


class LoadedModel(NamedTuple):
    """A model read from a checkpoint, plain weights or a BDH folder, and its training data."""

    model: Any  # a LanguageModel, in eval mode
    tokenizer: str  # data.tokenizer of the run: "byte", "gpt2" or a tokenizer folder
    data_dir: str | None  # the run's data root, if it had one
    checkpoint: dict  # the raw checkpoint (hyper_parameters, global_step, ...); {} otherwise


def check_n_layer(n_layer: int | None, path: str, how: str) -> int:
    if n_layer is None:
        raise UserError(
            f"{path!r} holds plain BDH weights, which do not record n_layer (the layers share "
            f"one set of weights): give the number of layers it was trained with ({how})"
        )
    if not isinstance(n_layer, int) or isinstance(n_layer, bool) or n_layer < 1:
        raise UserError(f"n_layer must be a positive integer, got {n_layer!r}")
    return n_layer


def load_model(path: str | Path, n_layer: int | None = None, how: str = "--n_layer N"):
    """The LightningModule in `path` (eval mode) with its tokenizer and data root.

    n_layer: the layers of plain BDH weights, which cannot tell it (refused without it; `how`
    says in the refusal how the user gives it); for any other file it must be the file's."""
    found = read_model_file(path)
    if found.kind == "hf-folder":
        raise UserError(
            f"{found.path!r} is a Hugging Face folder: this tool takes a bdh-pl checkpoint, plain "
            "BDH weights or a BDH folder (lm-eval takes Hugging Face folders)"
        )
    if found.kind == "checkpoint":
        model = model_from_checkpoint(found.checkpoint, found.path)
        data = found.checkpoint.get("datamodule_hyper_parameters") or {}
        tokenizer, data_dir = data.get("tokenizer", "byte"), data.get("data_dir")
    else:
        model = bdh_model(found, n_layer, how)
        tokenizer, data_dir = found.config.get("tokenizer", "byte"), None
    layers = getattr(model.config, "n_layer", None)
    if n_layer is not None and found.kind != "weights" and n_layer != layers:
        raise UserError(
            f"n_layer {n_layer} was given, but {found.path!r} holds a model of {layers} layers: "
            "drop n_layer (only plain weights need it)"
        )
    return LoadedModel(model.eval(), tokenizer, data_dir, found.checkpoint)


def bdh_model(found: ModelFile, n_layer: int | None = None, how: str = "--n_layer N"):
    """The BDHLM of plain weights or a BDH folder, sized from the file, with its weights."""
    from bdh_pl.training.lit_models import BDHLM

    sizes = found.bdh_sizes()
    if found.kind == "weights":
        sizes["n_layer"] = check_n_layer(n_layer, found.path, how)
    model = build(BDHLM, {"config": sizes}, found.path)
    fix = FOLDER_FIX if found.kind == "bdh-folder" else CHECKPOINT_FIX
    check_matches(model.network.state_dict(), found.weights, found.path, fix)
    model.network.load_state_dict(found.weights, strict=True)
    return model


class EvalModel(NamedTuple):
    """A network (ids -> logits; BDH with prefill/step), its tokenizer and context length."""

    network: torch.nn.Module
    tokenizer: Any  # a bdh_pl.data.tokenizers.Tokenizer
    block_size: int | None  # None: plain BDH weights, which do not record it


def load_network(
    path: str | Path, data_dir: str | None = None, n_layer: int | None = None
) -> EvalModel:
    """Whatever bdh-pl can score or sample from: load_model's files, or a Hugging Face folder
    written by `export` (GPT-2 or LLaMA, byte or GPT-2 BPE tokens)."""
    from bdh_pl.data.sources import resolve_data_dir
    from bdh_pl.data.tokenizers import ByteTokenizer, get_tokenizer

    path = Path(path).expanduser()
    if path.is_dir() and not is_bdh_folder(path) and (path / CONFIG).is_file():
        from bdh_pl.models.hf import causal_lm_from_folder

        network, block_size = causal_lm_from_folder(path)
        vocab = network.hf.config.vocab_size
        tokenizer = ByteTokenizer() if vocab == 256 else get_tokenizer(str(path))
        return EvalModel(network, tokenizer, block_size)
    loaded = load_model(path, n_layer, how="n_layer=N")
    tokenizer = get_tokenizer(loaded.tokenizer, resolve_data_dir(data_dir or loaded.data_dir))
    plain = n_layer is not None and not loaded.checkpoint and not is_bdh_folder(path)
    block_size = None if plain else loaded.model.block_size  # plain: not recorded
    return EvalModel(loaded.model.network, tokenizer, block_size)
