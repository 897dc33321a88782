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
import os
import sys
from pathlib import Path

import torch

from bdh_pl.data.sources import resolve_data_dir
from bdh_pl.data.tokenizers import get_tokenizer
from bdh_pl.errors import (
    COUNT,
    MAX_COUNT,
    ArgumentParser,
    UserError,
    check_options,
    count,
    finite_positive,
)
from bdh_pl.tools.common import check_device
from bdh_pl.training.loading import load_model

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
    parser.add_argument(
        "--n_layer",
        type=int,
        default=None,
        help="layers of plain BDH weights (the official format does not record it); only for them",
    )
    args = parser.parse_args(argv)
    check_options(
        [
            ("--num_samples", args.num_samples, count(), COUNT),
            ("--max_new_tokens", args.max_new_tokens, count(0), f"in [0, {MAX_COUNT}]"),
            ("--temperature", args.temperature, finite_positive, "a finite number > 0"),
            ("--top_k", args.top_k, count(), COUNT),
            ("--top_p", args.top_p, lambda v: 0 < v <= 1, "in (0, 1]"),  # NaN too
            ("--seed", args.seed, lambda v: 0 <= v < 2**63, "in [0, 2**63)"),  # torch's range
            ("--n_layer", args.n_layer, count(), COUNT),
        ]
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


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    loaded = load_model(args.ckpt_path, args.n_layer)
    tokenizer = get_tokenizer(loaded.tokenizer, resolve_data_dir(args.data_dir or loaded.data_dir))
    model = loaded.model.to(args.device)
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
