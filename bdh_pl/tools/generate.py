"""`python -m bdh_pl generate`: sample text from a checkpoint.

    python -m bdh_pl generate --ckpt_path lightning_logs/version_0/checkpoints/best.ckpt \\
        --prompt "To be or " --max_new_tokens 200 --temperature 0.8 --top_k 5 --seed 0
    python -m bdh_pl generate --ckpt_path best.ckpt --prompt FILE:prompt.txt \\
        --num_samples 3 --top_p 0.9

BDH generates from its recurrent state (O(1) per new token, no context limit); the baselines
use transformers' own `generate` with its KV cache and, past their block size, predict from the
last block_size tokens (like nanoGPT). The samples are drawn as one batch. Plain BDH weights
from the official code work too (sizes from the tensors, `--n_layer` from the command line).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import NamedTuple

import torch

import bdh_pl.data
from bdh_pl.data import TextDataModule, TextFile
from bdh_pl.data.sources import resolve_data_dir
from bdh_pl.data.tokenizers import get_tokenizer
from bdh_pl.errors import ArgumentParser, UserError
from bdh_pl.training import lit_models
from bdh_pl.training.checkpoints import (
    check_matches,
    infer_bdh_dims,
    is_lightning_checkpoint,
    load_untrusted,
    model_class,
    model_from_checkpoint,
    plain_state_dict,
)
from bdh_pl.training.language_model import LanguageModel

__all__ = ["main", "model_class"]

SEPARATOR = "---------------\n"  # between samples, as nanoGPT's sample.py prints them


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="python -m bdh_pl generate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--ckpt_path",
        required=True,
        help="a bdh-pl checkpoint, plain BDH weights or a BDH folder written by `export`",
    )
    parser.add_argument(
        "--prompt", default="\n", help="text to continue, or FILE:path to read it from a file"
    )
    parser.add_argument("--num_samples", type=int, default=1, help="samples drawn (one batch)")
    parser.add_argument("--max_new_tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument(
        "--top_k", type=int, default=None, help="sample among the k likeliest (1: greedy)"
    )
    parser.add_argument(
        "--top_p",
        type=float,
        default=None,
        help="nucleus sampling: among the likeliest tokens holding probability p (after top_k)",
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
        or not 0 < args.temperature < math.inf  # NaN too
        or (args.top_k is not None and args.top_k < 1)
        or (args.top_p is not None and not 0 < args.top_p <= 1)  # NaN too
        or args.n_layer < 1
        or args.num_samples < 1
        or not 0 <= args.seed < 2**63  # torch.manual_seed's range
    ):
        parser.error(
            "need max_new_tokens >= 0, a finite temperature > 0, top_k >= 1, 0 < top_p <= 1, "
            "n_layer >= 1, num_samples >= 1, 0 <= seed < 2**63"
        )
    args.device = check_device(args.device)
    args.prompt_bytes = prompt_bytes(args.prompt)
    return args


def prompt_bytes(prompt: str) -> bytes:
    """The prompt's bytes: the text itself, or a file's contents for FILE:path (nanoGPT's
    convention)."""
    if prompt.startswith("FILE:"):
        path = Path(prompt[len("FILE:") :]).expanduser()
        try:
            return path.read_bytes()
        except OSError as err:
            raise UserError(
                f"--prompt {prompt}: cannot read {str(path)!r} ({err.strerror or err}): give an "
                "existing text file"
            ) from None
    try:  # the shell hands undecodable bytes over as surrogates
        return prompt.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(prompt)


def check_device(name: str, option: str = "--device") -> torch.device:
    """The device `name` means, if this machine has it; else one error line naming `option`."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"{option} {name!r} is not a device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{option} {name}: this machine has no CUDA GPU; use cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"{option} {name}: there are {torch.cuda.device_count()} CUDA devices")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"{option} {name!r}: bdh-pl's tools run on cpu or cuda")
    return device


class LoadedModel(NamedTuple):
    """A model read from a checkpoint or an export folder, with what it was trained on."""

    model: LanguageModel
    tokenizer: str  # data.tokenizer of the run: "byte", "gpt2" or a tokenizer folder
    data_dir: str | None  # the run's data root, if it had one
    checkpoint: dict  # the raw checkpoint (hyper_parameters, global_step, ...); {} for folders


def load_checkpoint_model(path: str, n_layer: int = 6) -> LoadedModel:
    """Any model file bdh-pl reads: a bdh-pl checkpoint (with the checks `test` makes), plain
    BDH weights (official train.py; `n_layer` is not in the tensors) or a BDH folder written
    by `export`."""
    if Path(path).is_dir():
        from bdh_pl.tools.export import load_bdh_model

        model, tokenizer = load_bdh_model(path)
        return LoadedModel(model, tokenizer, None, {})
    checkpoint = load_untrusted(path)
    if not is_lightning_checkpoint(checkpoint):  # official BDH weights: byte level
        weights = plain_state_dict(checkpoint)
        dims = infer_bdh_dims(weights)
        model = lit_models.BDHLM(n_layer=n_layer, **dims)
        check_matches(model.network.state_dict(), weights, path)
        model.network.load_state_dict(weights)
        return LoadedModel(model, "byte", None, checkpoint)
    model = model_from_checkpoint(checkpoint, path)
    data = checkpoint.get("datamodule_hyper_parameters", {})
    return LoadedModel(model, data.get("tokenizer", "byte"), data.get("data_dir"), checkpoint)


def checkpoint_data(
    loaded: LoadedModel,
    ckpt_path: str,
    text: str | None = None,
    data_dir: str | None = None,
) -> tuple[TextDataModule, str]:
    """The checkpoint's dataset (its class and arguments), or the file `text` as the test split
    with the checkpoint's tokenizer; and where the text comes from."""
    if text:
        return TextFile(test=text, tokenizer=loaded.tokenizer, data_dir=data_dir), text
    hparams = dict(loaded.checkpoint.get("datamodule_hyper_parameters", {}))
    class_path = hparams.pop("_class_path", "")
    module, _, name = class_path.rpartition(".")
    cls = getattr(bdh_pl.data, name, None) if module == "bdh_pl.data" else None
    if cls is None:
        raise UserError(
            f"{ckpt_path} does not name a bdh-pl dataset ({class_path or 'none'}): give the "
            "test text with --text FILE"
        )
    init = {k: v for k, v in hparams.items() if not k.startswith("_")}
    if data_dir:
        init["data_dir"] = data_dir
    return cls(**init), class_path


def load_model(args: argparse.Namespace) -> tuple[LanguageModel, str, str | None]:
    """The model, its tokenizer name and the data root it was trained with."""
    loaded = load_checkpoint_model(args.ckpt_path, args.n_layer)
    return loaded.model, loaded.tokenizer, loaded.data_dir


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    model, tokenizer_name, data_dir = load_model(args)
    tokenizer = get_tokenizer(tokenizer_name, resolve_data_dir(args.data_dir or data_dir))
    model = model.to(args.device).eval()
    prompt = tokenizer.encode(args.prompt_bytes)
    if len(prompt) == 0:
        raise UserError("the prompt is empty after tokenization: give --prompt some text")
    idx = torch.tensor(prompt, dtype=torch.long, device=args.device)[None]
    idx = idx.repeat(args.num_samples, 1)  # one batch of the same prompt
    torch.manual_seed(args.seed)
    out = model.generate(
        idx, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p
    )
    head = args.prompt_bytes.decode("utf-8", "replace")
    samples = [head + tokenizer.decode(row[idx.size(1) :].tolist()) + "\n" for row in out]
    sys.stdout.write(SEPARATOR.join(samples))
