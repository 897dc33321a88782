"""`python -m bdh_pl generate`: sample text from a checkpoint.

    python -m bdh_pl generate --ckpt_path lightning_logs/version_0/checkpoints/best.ckpt \\
        --prompt "To be or " --max_new_tokens 200 --temperature 0.8 --top_k 5 --seed 0

BDH generates from its recurrent state (O(1) per new token); the baselines use transformers'
own `generate` with its KV cache. Plain BDH weights from the official code work too (sizes from
the tensors, `--n_layer` from the command line).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

import torch

from bdh_pl.data.sources import resolve_data_dir
from bdh_pl.data.tokenizers import get_tokenizer
from bdh_pl.errors import UserError
from bdh_pl.training import lit_models
from bdh_pl.training.checkpoints import (
    infer_bdh_dims,
    is_lightning_checkpoint,
    load_untrusted,
    plain_state_dict,
)
from bdh_pl.training.language_model import LanguageModel


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bdh_pl generate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--ckpt_path",
        required=True,
        help="a bdh-pl checkpoint, plain BDH weights or a BDH folder written by `export`",
    )
    parser.add_argument("--prompt", default="\n", help="text to continue")
    parser.add_argument("--max_new_tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument(
        "--top_k", type=int, default=None, help="sample among the k likeliest (1: greedy)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--data_dir",
        default=None,
        help="data root holding gpt2-tokenizer/ (default $BDH_PL_DATA_DIR)",
    )
    parser.add_argument("--n_layer", type=int, default=6, help="layers, for plain BDH weights only")
    args = parser.parse_args(argv)
    if (
        args.max_new_tokens < 0
        or args.temperature <= 0
        or (args.top_k is not None and args.top_k < 1)
    ):
        parser.error("need max_new_tokens >= 0, temperature > 0 and top_k >= 1")
    return args


class LoadedModel(NamedTuple):
    """A model read from a checkpoint or an export folder, with what it was trained on."""

    model: LanguageModel
    tokenizer: str  # data.tokenizer of the run: "byte", "gpt2" or a tokenizer folder
    data_dir: str | None  # the run's data root, if it had one
    checkpoint: dict  # the raw checkpoint (hyper_parameters, global_step, ...); {} for folders


def load_checkpoint_model(path: str, n_layer: int = 6) -> LoadedModel:
    """Any model file bdh-pl reads: a bdh-pl checkpoint, plain BDH weights (official train.py;
    `n_layer` is not in the tensors) or a BDH folder written by `export`."""
    if Path(path).is_dir():
        from bdh_pl.tools.export import load_bdh_model

        model, tokenizer = load_bdh_model(path)
        return LoadedModel(model, tokenizer, None, {})
    checkpoint = load_untrusted(path)
    if not is_lightning_checkpoint(checkpoint):  # official BDH weights: byte level
        weights = plain_state_dict(checkpoint)
        dims = infer_bdh_dims(weights)
        model = lit_models.BDHLM(n_layer=n_layer, **dims)
        model.network.load_state_dict(weights)
        return LoadedModel(model, "byte", None, checkpoint)
    hparams = dict(checkpoint.get("hyper_parameters", {}))
    cls = model_class(hparams.pop("_class_path", "bdh_pl.training.lit_models.BDHLM"))
    model = cls(**{k: v for k, v in hparams.items() if not k.startswith("_")})
    model.load_state_dict(checkpoint["state_dict"])
    data = checkpoint.get("datamodule_hyper_parameters", {})
    return LoadedModel(model, data.get("tokenizer", "byte"), data.get("data_dir"), checkpoint)


def load_model(args: argparse.Namespace) -> tuple[LanguageModel, str, str | None]:
    """The model, its tokenizer name and the data root it was trained with."""
    loaded = load_checkpoint_model(args.ckpt_path, args.n_layer)
    return loaded.model, loaded.tokenizer, loaded.data_dir


# Where the LightningModules lived before the training/ room: older checkpoints name it.
LEGACY_MODULE = "bdh_pl.lit_models"


def model_class(class_path: str) -> type[LanguageModel]:
    """Only bdh-pl's own LightningModules: a checkpoint cannot make us import anything else."""
    module, _, name = class_path.rpartition(".")
    known = module in (lit_models.__name__, LEGACY_MODULE)
    cls = getattr(lit_models, name, None) if known else None
    if not (isinstance(cls, type) and issubclass(cls, LanguageModel)):
        raise UserError(f"checkpoint names model class {class_path!r}, which is not a bdh-pl model")
    return cls


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    model, tokenizer_name, data_dir = load_model(args)
    tokenizer = get_tokenizer(tokenizer_name, resolve_data_dir(args.data_dir or data_dir))
    model = model.to(args.device).eval()
    prompt = tokenizer.encode(args.prompt.encode("utf-8"))
    if len(prompt) == 0:
        raise UserError("the prompt is empty after tokenization: give --prompt some text")
    idx = torch.tensor(prompt, dtype=torch.long, device=args.device)[None]
    torch.manual_seed(args.seed)
    out = model.generate(idx, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k)
    sys.stdout.write(args.prompt + tokenizer.decode(out[0, idx.size(1) :].tolist()) + "\n")
