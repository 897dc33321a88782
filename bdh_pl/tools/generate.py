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

import dataclasses
import os
import sys
from pathlib import Path

from bdh_pl.errors import COUNT, UserError, check_options, count
from bdh_pl.tools.options import Checkpoint, Sampling, parse

SEPARATOR = "---------------\n"  # between samples, as nanoGPT's sample.py prints them


@dataclasses.dataclass(kw_only=True)
class Prompt:
    """The prompt

    Args:
        prompt: text to continue, or FILE:path to read it from a file
        num_samples: samples drawn (one batch)
    """

    prompt: str = "\n"
    num_samples: int = 1

    def __post_init__(self) -> None:
        check_options([("--num_samples", self.num_samples, count(), COUNT)])
        self.bytes = prompt_bytes(self.prompt)


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


def generate(checkpoint: Checkpoint, sampling: Sampling, prompt: Prompt) -> None:
    """Sample `prompt.num_samples` continuations of the prompt, printed between separators."""
    import torch

    from bdh_pl.data.sources import resolve_data_dir
    from bdh_pl.data.tokenizers import get_tokenizer
    from bdh_pl.training.loading import load_model

    loaded = load_model(checkpoint.ckpt_path, checkpoint.n_layer)
    data_dir = resolve_data_dir(checkpoint.data_dir or loaded.data_dir)
    tokenizer = get_tokenizer(loaded.tokenizer, data_dir)
    model = loaded.model.to(checkpoint.device)
    ids = tokenizer.encode(prompt.bytes)
    if len(ids) == 0:
        raise UserError("the prompt is empty after tokenization: give --prompt some text")
    idx = torch.tensor(ids, dtype=torch.long, device=checkpoint.device)[None]
    idx = idx.repeat(prompt.num_samples, 1)  # one batch of the same prompt
    torch.manual_seed(sampling.seed)
    out = sampling.sample(model, idx)
    head = prompt.bytes.decode("utf-8", "replace")
    samples = [head + tokenizer.decode(row[idx.size(1) :].tolist()) + "\n" for row in out]
    sys.stdout.write(SEPARATOR.join(samples))


def main(argv: list[str]) -> None:
    generate(**parse(generate, argv, "generate"))
