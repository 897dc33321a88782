"""`python -m bdh_pl mauve`: MAUVE (Pillutla et al. 2021) of a model's continuations of
test-split prompts against the true continuations.

    pip install -e ".[mauve]"
    python -m bdh_pl mauve --ckpt_path best.ckpt --featurizer gpt2-large --n_samples 500

The test split (of the checkpoint's dataset, or --text FILE) is cut into n_samples disjoint
pieces of prompt_tokens + max_new_tokens model tokens; the model samples max_new_tokens after
each prompt, and the true next max_new_tokens tokens are the reference. Both sets of texts are
featurized by a Hugging Face causal LM (the last layer's hidden state at the last token, as in
the MAUVE paper, whose default featurizer is gpt2-large) and compared with `mauve-text`'s
`compute_mauve`. Meaningful numbers need a real featurizer (gpt2-large, a hub name or a local
folder) and a few hundred samples; the tests use a tiny random one.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bdh_pl.errors import (
    COUNT,
    ArgumentParser,
    UserError,
    check_options,
    count,
    finite_positive,
)
from bdh_pl.fileio import check_output_file, write_json
from bdh_pl.tools.common import check_device, checkpoint_data
from bdh_pl.training.loading import load_model


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="python -m bdh_pl mauve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--ckpt_path", required=True, help="a bdh-pl checkpoint or a folder from `export`"
    )
    parser.add_argument(
        "--featurizer",
        default="gpt2-large",
        help="Hugging Face causal LM for the features: hub name or local folder",
    )
    parser.add_argument(
        "--text", default=None, help="test text file (default: the checkpoint's test split)"
    )
    parser.add_argument("--n_samples", type=int, default=100)
    parser.add_argument("--prompt_tokens", type=int, default=64, help="in the model's tokens")
    parser.add_argument("--max_new_tokens", type=int, default=256, help="in the model's tokens")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top_k", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data_dir", default=None, help="data root (default: the run's)")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    parser.add_argument(
        "--n_layer",
        type=int,
        default=None,
        help="layers of plain BDH weights (the official format does not record it); only for them",
    )
    args = parser.parse_args(argv)
    check_options(
        [
            ("--n_samples", args.n_samples, count(), COUNT),
            ("--prompt_tokens", args.prompt_tokens, count(), COUNT),
            ("--max_new_tokens", args.max_new_tokens, count(), COUNT),
            ("--temperature", args.temperature, finite_positive, "a finite number > 0"),
            ("--top_k", args.top_k, count(), COUNT),
            ("--seed", args.seed, lambda v: 0 <= v < 2**32, "in [0, 2**32)"),
            ("--n_layer", args.n_layer, count(), COUNT),
        ]
    )
    # Everything that can be checked before the model is loaded and sampled from (minutes).
    args.device = str(check_device(args.device))
    if args.out:
        check_output_file(Path(args.out), "--out")
    if args.text and not Path(args.text).is_file():
        raise UserError(f"--text {args.text!r} is not a file: give the text to prompt from")
    return args


# --- featurizer -----------------------------------------------------------------------------


def load_featurizer(name_or_path: str, device: str = "cpu"):
    """A causal LM and its tokenizer, never remote code; one error line for anything else."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    local = Path(name_or_path).expanduser()
    if name_or_path.startswith(("/", ".", "~")) and not local.is_dir():
        raise UserError(f"--featurizer {name_or_path!r} is not a folder")
    if not local.is_dir():
        from bdh_pl.hub import require_hub

        require_hub(
            f"--featurizer {name_or_path}", "give a local folder written by save_pretrained"
        )
    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, trust_remote_code=False, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=False)
    except pickle.UnpicklingError as err:  # transformers reads .bin with weights_only=True
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f"would import {found.group(1)}" if found else "holds objects other than tensors"
        raise UserError(
            f"--featurizer {name_or_path!r}: refused, its pytorch_model.bin is a pickle that "
            f"{what}, and bdh-pl loads weights only: give a folder with model.safetensors "
            "(save_pretrained of a model you trust)"
        ) from None
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        raise UserError(
            f"--featurizer {name_or_path!r}: cannot load a Hugging Face causal LM with a "
            f"tokenizer from it ({type(err).__name__}: {first}): give a reachable hub name such "
            "as gpt2-large or a folder written by save_pretrained"
        ) from None
    limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", 1024)
    return model.to(device).eval(), tokenizer, int(limit)


@torch.no_grad()
def featurize(texts: list[str], model, tokenizer, max_length: int) -> np.ndarray:
    """The last layer's hidden state at each text's last token (MAUVE's features)."""
    device = next(model.parameters()).device
    fallback = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    rows = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False).input_ids[:max_length] or [fallback]
        out = model(input_ids=torch.tensor([ids], device=device), output_hidden_states=True)
        rows.append(out.hidden_states[-1][0, -1].float().cpu())
    return torch.stack(rows).numpy()


def mauve_score(
    generations: list[str], references: list[str], featurizer, seed: int = 0
) -> dict[str, float]:
    import mauve

    model, tokenizer, limit = featurizer
    p = featurize(generations, model, tokenizer, limit)
    q = featurize(references, model, tokenizer, limit)
    out = mauve.compute_mauve(p_features=p, q_features=q, seed=seed, verbose=False)
    return {"mauve": float(out.mauve), "frontier_integral": float(out.frontier_integral)}


# --- prompts and continuations --------------------------------------------------------------


def test_tokens(args: argparse.Namespace, loaded) -> tuple[np.ndarray, str]:
    """Token ids of the test text: --text, else the checkpoint's dataset's test split."""
    data, source = checkpoint_data(loaded, args.ckpt_path, args.text, args.data_dir)
    return np.asarray(data.split_tokens("test")), source


def samples(tokens: np.ndarray, n: int, prompt: int, new: int) -> list[tuple[list[int], list[int]]]:
    """n disjoint (prompt, true continuation) pairs spread over the text."""
    piece = prompt + new
    if len(tokens) < n * piece:
        raise UserError(
            f"the test text has {len(tokens)} tokens, fewer than n_samples x (prompt_tokens + "
            f"max_new_tokens) = {n * piece}: lower --n_samples or the lengths"
        )
    starts = np.linspace(0, len(tokens) - piece, n).astype(int)
    return [
        (tokens[s : s + prompt].tolist(), tokens[s + prompt : s + piece].tolist()) for s in starts
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bdh_pl.data.sources import resolve_data_dir
    from bdh_pl.data.tokenizers import get_tokenizer

    try:
        import mauve  # noqa: F401
    except ImportError:
        raise UserError('mauve-text is not installed: pip install -e ".[mauve]"') from None
    loaded = load_model(args.ckpt_path, args.n_layer)
    tokenizer = get_tokenizer(loaded.tokenizer, resolve_data_dir(args.data_dir or loaded.data_dir))
    featurizer = load_featurizer(args.featurizer, args.device)  # fail before sampling
    tokens, source = test_tokens(args, loaded)
    pairs = samples(tokens, args.n_samples, args.prompt_tokens, args.max_new_tokens)
    model = loaded.model.to(args.device).eval()
    torch.manual_seed(args.seed)
    generations, references = [], []
    for prompt, truth in pairs:
        idx = torch.tensor([prompt], device=args.device)
        out = model.generate(idx, args.max_new_tokens, args.temperature, args.top_k)
        generations.append(tokenizer.decode(out[0, len(prompt) :].tolist()))
        references.append(tokenizer.decode(truth))
    scores = mauve_score(generations, references, featurizer, args.seed)
    return {
        **scores,
        "checkpoint": args.ckpt_path,
        "featurizer": args.featurizer,
        "text": source,
        "n_samples": args.n_samples,
        "prompt_tokens": args.prompt_tokens,
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "seed": args.seed,
        "example": {"prompt": tokenizer.decode(pairs[0][0]), "generation": generations[0]},
    }


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    result = run(args)
    if args.out:
        write_json(args.out, result)
    json.dump({k: result[k] for k in ("mauve", "frontier_integral", "n_samples")}, sys.stdout)
    sys.stdout.write("\n")
