"""`python -m bdh_pl generate`: greedy output equals a naive full re-run per token."""

import pytest
import torch

from bdh_pl.errors import UserError
from bdh_pl.tools.generate import main, model_class
from bdh_pl.training.lit_models import BDHLM

HPARAMS = {
    "n_layer": 2,
    "n_embd": 32,
    "n_head": 2,
    "mlp_internal_dim_multiplier": 8,
    "dropout": 0.0,
}


def naive_greedy(network, prompt: bytes, n: int) -> bytes:
    idx = torch.tensor(list(prompt))[None]
    with torch.no_grad():
        for _ in range(n):
            idx = torch.cat([idx, network(idx)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return bytes(idx[0, len(prompt) :].tolist())


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = BDHLM(**HPARAMS)
    path = tmp_path / "tiny.ckpt"
    torch.save(
        {
            "pytorch-lightning_version": "2.6.0",
            "state_dict": model.state_dict(),
            "hyper_parameters": {**HPARAMS, "_class_path": "bdh_pl.training.lit_models.BDHLM"},
            "datamodule_hyper_parameters": {"tokenizer": "byte"},
        },
        path,
    )
    torch.save(model.network.state_dict(), tmp_path / "official.pt")
    return path, model.network.eval()


@pytest.mark.parametrize("plain", [False, True])
def test_greedy_generation_matches_a_full_rerun(checkpoint, plain, capsys):
    path, network = checkpoint
    if plain:
        path = path.parent / "official.pt"
    main(
        [
            "--ckpt_path",
            str(path),
            "--prompt",
            "To be or ",
            "--max_new_tokens",
            "40",
            "--top_k",
            "1",
            "--n_layer",
            "2",
        ]
    )
    out = capsys.readouterr().out
    expected = "To be or " + naive_greedy(network, b"To be or ", 40).decode("utf-8", "replace")
    assert out == expected + "\n"


def test_sampling_is_seeded(checkpoint, capsys):
    path, _ = checkpoint
    args = [
        "--ckpt_path",
        str(path),
        "--max_new_tokens",
        "30",
        "--temperature",
        "0.8",
        "--top_k",
        "5",
    ]
    outputs = []
    for seed in ("1", "1", "2"):
        main([*args, "--seed", seed])
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] != outputs[2]


def test_a_checkpoint_cannot_name_a_foreign_class():
    with pytest.raises(UserError, match="not a bdh-pl model"):
        model_class("os.system")
    assert model_class("bdh_pl.training.lit_models.BDHLM") is BDHLM
