"""`python -m bdh_pl merge`: two BDHs fine-tuned from one base, as one model (the paper's
Sec. 7.1: concatenate every neuron-dimension tensor, average the rest).

    python -m bdh_pl merge A.ckpt B.ckpt --out merged/      # -> a BDH folder, as `export` writes

A and B must share the base: the same architecture (BDHConfig), tokenizer and block size, so the
same tensors with the same shapes. The merged BDH holds both neuron sets side by side, each
head of each parent kept whole as a head of its own:

    encoder, encoder_v   (nh, D, N)   -> (2 nh, D, N)    A's heads, then B's
    decoder              (nh N, D)    -> (2 nh N, D)     rows of A's neurons, then B's
    everything else      (embed, lm_head, the RoPE frequencies of N)   -> (A + B) / 2

Why whole heads: a head's attention sums over its own neurons, and RoPE gives neuron i the
frequency of i among N (model.rope_freqs). Concatenating inside a head (N -> 2N) would add
the two parents' attention scores and move every neuron to another frequency; as separate
heads of N neurons, each parent neuron keeps its frequency and its head-mates. So n_head and
mlp_internal_dim_multiplier double (N = multiplier * D / n_head stays). A neuron whose weights
are zero contributes nothing (relu(0) = 0, LayerNorm of a zero vector is zero): merging a
model with a twin whose neuron weights are zero gives back that model.

Files are read through training/loading.py (no pickled code runs); the output is a BDH folder
that `test`, `generate`, `inspect` and the other tools take as --ckpt_path.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from bdh_pl.errors import UserError
from bdh_pl.tools.options import Reading, parse

if TYPE_CHECKING:
    import torch

    from bdh_pl.models.bdh import BDH, BDHConfig
    from bdh_pl.training.loading import LoadedModel

# Tensors with a neuron dimension: concatenated along dim 0 (heads for the encoders, the
# head-major neuron rows for the decoder). Every other tensor is averaged.
NEURON_TENSORS = ("encoder", "encoder_v", "decoder")


@dataclasses.dataclass(kw_only=True)
class Output:
    """The merged model

    Args:
        out: the BDH folder to write (new or empty)
    """

    out: str


def merged_config(config: BDHConfig) -> BDHConfig:
    """Twice the heads of N neurons each: multiplier * D / n_head stays N."""
    if config.n_embd % (2 * config.n_head) != 0:
        raise UserError(
            f"cannot merge: the merged model has {2 * config.n_head} heads, which must divide "
            f"n_embd ({config.n_embd}); merge models whose n_embd is divisible by 2 * n_head"
        )
    return dataclasses.replace(
        config,
        n_head=2 * config.n_head,
        mlp_internal_dim_multiplier=2 * config.mlp_internal_dim_multiplier,
    )


def merge_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict:
    """The rule on two state dicts of one architecture (checked by check_same_base)."""
    import torch

    return {
        name: torch.cat([a[name], b[name]]) if name in NEURON_TENSORS else (a[name] + b[name]) / 2
        for name in a
    }


def describe(loaded: LoadedModel) -> dict:
    """What two models of one base share: architecture, tokenizer, context length."""
    return {
        **dataclasses.asdict(loaded.model.network.config),
        "tokenizer": loaded.tokenizer,
        "block_size": loaded.model.block_size,
    }


def check_same_base(a: LoadedModel, b: LoadedModel, path_a: str, path_b: str) -> None:
    """One line naming the first difference, if A and B cannot come from one base."""
    from bdh_pl.models.bdh import BDH

    for path, loaded in ((path_a, a), (path_b, b)):
        if not isinstance(loaded.model.network, BDH):
            raise UserError(
                f"{path} holds a {type(loaded.model.network).__name__}, not BDH: merge takes "
                "two BDHs fine-tuned from one base"
            )
    da, db = describe(a), describe(b)
    differ = [k for k in da if k != "dropout" and da[k] != db[k]]
    if differ:
        k = differ[0]
        raise UserError(
            f"cannot merge {path_a} and {path_b}: {k} is {da[k]!r} in one and {db[k]!r} in the "
            "other; merge two models fine-tuned from the same base"
        )
    sa, sb = a.model.network.state_dict(), b.model.network.state_dict()
    for name in sa:
        if name not in sb or sa[name].shape != sb[name].shape:
            raise UserError(
                f"cannot merge {path_a} and {path_b}: their {name} tensors differ in shape; "
                "merge two models fine-tuned from the same base"
            )


def merge(path_a: str, path_b: str, n_layer: int | None = None) -> tuple[BDH, LoadedModel]:
    """The merged network, and A as loaded (its tokenizer and block size are the merged's)."""
    from bdh_pl.models.bdh import BDH
    from bdh_pl.training.loading import load_model

    a, b = load_model(path_a, n_layer), load_model(path_b, n_layer)
    check_same_base(a, b, path_a, path_b)
    network = BDH(merged_config(a.model.network.config))
    merged = merge_weights(a.model.network.state_dict(), b.model.network.state_dict())
    network.load_state_dict(merged, strict=True)
    return network.eval(), a


def merge_command(a: str, b: str, reading: Reading, output: Output) -> None:
    """Merge A and B into --out.

    Args:
        a: a BDH: bdh-pl checkpoint, plain weights or BDH folder
        b: a BDH fine-tuned from the same base
    """
    from bdh_pl.data.sources import resolve_data_dir
    from bdh_pl.data.tokenizers import get_tokenizer
    from bdh_pl.fileio import atomic_folder
    from bdh_pl.tools.export import check_out, save_bdh

    out = Path(output.out).expanduser()
    check_out(out)
    network, loaded = merge(a, b, reading.n_layer)
    tokenizer = get_tokenizer(
        loaded.tokenizer, resolve_data_dir(reading.data_dir or loaded.data_dir)
    )
    with atomic_folder(out, "(another --out)") as folder:  # whole or absent, never half
        save_bdh(network, folder, loaded.model.block_size, tokenizer.name, tokenizer.bos_id)
    C = network.config
    print(f"merged {a} and {b} into {out}: {C.n_head} heads of {C.n_neurons} neurons")


def main(argv: list[str]) -> None:
    merge_command(**parse(merge_command, argv, "merge"))
