"""`python -m bdh_pl generate`: greedy output equals a naive full re-run per token."""

import pytest
import torch

from bdh_pl.errors import UserError
from bdh_pl.models.bdh import BDHConfig
from bdh_pl.tools.generate import main
from bdh_pl.training.lit_models import BDHLM
from bdh_pl.training.loading import model_class

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
    model = BDHLM(BDHConfig(**HPARAMS))
    path = tmp_path / "tiny.ckpt"
    torch.save(
        {
            "pytorch-lightning_version": "2.6.0",
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
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


def edited(checkpoint, tmp_path, edit) -> str:
    obj = torch.load(checkpoint[0], weights_only=True)
    edit(obj)
    torch.save(obj, tmp_path / "edited.ckpt")
    return str(tmp_path / "edited.ckpt")


def drop_a_key(obj):
    obj["state_dict"].pop(next(iter(obj["state_dict"])))


BAD = {
    "cuda on a CPU machine": (["--device", "cuda"], "no CUDA GPU"),
    "not a device": (["--device", "foo"], "is not a device"),
    "temperature NaN": (["--temperature", "nan"], "--temperature nan: must be a finite number"),
    "not a number": (["--max_new_tokens", "ten"], "--max_new_tokens ten: must be a whole number"),
    "abbreviated option": (["--temp", "0.5"], "unrecognized arguments: --temp"),
    "missing key": (lambda c, t: ["--ckpt_path", edited(c, t, drop_a_key)], "is for another model"),
    "extra key": (
        lambda c, t: [
            "--ckpt_path",
            edited(c, t, lambda o: o["state_dict"].update(extra=torch.zeros(1))),
        ],
        "is for another model",
    ),
    "unknown hyperparameter": (
        lambda c, t: [
            "--ckpt_path",
            edited(c, t, lambda o: o["hyper_parameters"].update(n_experts=4)),
        ],
        "['n_experts'] that BDHLM does not take",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_error_line(case, checkpoint, tmp_path, run_cli):
    if case == "cuda on a CPU machine" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    args, expected = BAD[case]
    args = (
        args(checkpoint, tmp_path) if callable(args) else ["--ckpt_path", str(checkpoint[0]), *args]
    )
    code, err = run_cli(["generate", *args])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0]


def test_a_prompt_that_is_not_utf8_is_sampled_from_its_bytes(checkpoint, run_cli, capsys):
    prompt = b"caf\xe9 ".decode("utf-8", "surrogateescape")  # what the shell hands over
    code, err = run_cli(["generate", "--ckpt_path", str(checkpoint[0]), "--prompt", prompt])
    assert code == 0, err


# --- issue 12: num_samples, top_p, FILE: prompts, baselines past their block size -----------


def naive_cropped_greedy(network, idx: torch.Tensor, n: int, block: int) -> torch.Tensor:
    """nanoGPT's loop: each next token from the last `block` tokens, a full forward each."""
    with torch.no_grad():
        for _ in range(n):
            idx = torch.cat([idx, network(idx[:, -block:])[:, -1].argmax(-1, keepdim=True)], 1)
    return idx


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_baselines_continue_past_their_block_size(kind, save_checkpoint, tmp_path, capsys):
    network = save_checkpoint(tmp_path / f"{kind}.ckpt", kind, block_size=16)
    prompt = b"To be or not"  # 12 tokens: 4 fit the KV-cached part, 36 more need cropping
    main(
        ["--ckpt_path", str(tmp_path / f"{kind}.ckpt"), "--prompt", prompt.decode()]
        + ["--max_new_tokens", "40", "--top_p", "1e-9"]
    )
    out = capsys.readouterr().out
    expected = naive_cropped_greedy(network, torch.tensor(list(prompt))[None], 40, 16)
    assert out.encode("utf-8", "surrogateescape") == (
        bytes(expected[0].tolist()).decode("utf-8", "replace") + "\n"
    ).encode("utf-8", "surrogateescape")


def test_a_tiny_top_p_is_greedy(checkpoint, capsys):
    path, network = checkpoint
    main(
        ["--ckpt_path", str(path), "--prompt", "To be or ", "--max_new_tokens", "30"]
        + ["--top_p", "1e-9", "--seed", "3"]
    )
    expected = "To be or " + naive_greedy(network, b"To be or ", 30).decode("utf-8", "replace")
    assert capsys.readouterr().out == expected + "\n"


def test_num_samples_draws_one_batch_of_distinct_samples(checkpoint, capsys, monkeypatch):
    path, _ = checkpoint
    shapes = []
    original = BDHLM.generate

    def spy(self, idx, *args, **kwargs):
        shapes.append(tuple(idx.shape))
        return original(self, idx, *args, **kwargs)

    monkeypatch.setattr(BDHLM, "generate", spy)
    main(
        ["--ckpt_path", str(path), "--prompt", "To be", "--max_new_tokens", "20"]
        + ["--num_samples", "3", "--temperature", "2.0"]
    )
    samples = capsys.readouterr().out.split("---------------\n")
    assert shapes == [(3, 5)]
    assert len(samples) == 3 and all(s.startswith("To be") for s in samples)
    assert len(set(samples)) == 3


def test_a_prompt_from_a_file(checkpoint, tmp_path, capsys):
    path, network = checkpoint
    (tmp_path / "prompt.txt").write_bytes(b"ROMEO:\nTo be")
    main(
        ["--ckpt_path", str(path), "--prompt", f"FILE:{tmp_path / 'prompt.txt'}"]
        + ["--max_new_tokens", "10", "--top_k", "1"]
    )
    expected = "ROMEO:\nTo be" + naive_greedy(network, b"ROMEO:\nTo be", 10).decode(
        "utf-8", "replace"
    )
    assert capsys.readouterr().out == expected + "\n"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--prompt", "FILE:/nonexistent/prompt.txt"], "cannot read"),
        (["--top_p", "0"], "--top_p 0.0: must be in (0, 1]"),
        (["--num_samples", "0"], "--num_samples 0: must be a whole number in [1, "),
        (["--seed", str(2**70)], "must be in [0, 2**32)"),
    ],
)
def test_bad_sampling_options_are_one_error_line(args, expected, checkpoint, run_cli):
    code, err = run_cli(["generate", "--ckpt_path", str(checkpoint[0]), *args])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0]


def test_out_of_memory_names_the_tools_own_knobs(checkpoint, run_cli, monkeypatch):
    from bdh_pl.training.language_model import LanguageModel

    def too_big(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 8 bytes.")

    monkeypatch.setattr(LanguageModel, "generate", too_big)
    code, err = run_cli(["generate", "--ckpt_path", str(checkpoint[0]), "--num_samples", "9"])
    assert code == 2 and err.count("\n") == 1, err[-2000:]
    assert "ask `generate` for less at once" in err and "--data.init_args" not in err
