"""Every tool reads model files through the one loader, with one rule each:

* plain BDH weights (the official format) do not record n_layer: every tool takes an explicit
  n_layer and then scores exactly what the checkpoint of the same weights scores, or refuses
  in one line without it (never a silent default);
* a damaged or foreign model folder or file is one `error:` line, exit 2, in every tool."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from bdh_pl.errors import UserError
from bdh_pl.tools.export import export

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 8


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A 2-layer BDH as a checkpoint, as plain weights (no n_layer), and as folders: exported
    whole, and damaged in the ways a copy or an edit damages them."""
    from conftest import _save_checkpoint  # the save_checkpoint fixture's, for a module fixture

    root = tmp_path_factory.mktemp("model-files")
    network = _save_checkpoint(root / "bdh.ckpt", "bdh")
    torch.save(network.state_dict(), root / "official.pt")
    _save_checkpoint(root / "gpt2.ckpt", "gpt2")
    (root / "text.txt").write_text(TEXT)
    found = {name: root / name for name in ("bdh.ckpt", "official.pt", "text.txt")}
    for name in ("folder", "truncated", "pickle", "no_n_layer", "wrong_n_embd"):
        found[name] = export(str(root / "bdh.ckpt"), root / name)
    weights = found["truncated"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    torch.save(network.state_dict(), found["pickle"] / "model.safetensors")  # a pickle instead
    for name, edit in (("no_n_layer", {"n_layer": None}), ("wrong_n_embd", {"n_embd": 64})):
        config_path = found[name] / "config.json"
        config = json.loads(config_path.read_text())
        config.update(edit)
        config_path.write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    for name in ("hf_no_weights", "hf_truncated"):
        found[name] = export(str(root / "gpt2.ckpt"), root / name)
    (found["hf_no_weights"] / "model.safetensors").unlink()
    weights = found["hf_truncated"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    return found


# --- plain weights: an explicit n_layer, or one refusal -------------------------------------


def tool_args(tool: str, path: Path, files: dict[str, Path], tmp_path: Path) -> list[str]:
    return {
        "generate": ["generate", "--ckpt_path", str(path), "--max_new_tokens", "2"],
        "mauve": ["mauve", "--ckpt_path", str(path), "--featurizer", str(tmp_path / "none")],
        "context-curve": [
            "context-curve",
            "--ckpt_path",
            str(path),
            "--text",
            str(files["text.txt"]),
            "--out",
            str(tmp_path / "curve"),
        ],  # fmt: skip
    }[tool]


@pytest.mark.parametrize("tool", ["generate", "mauve", "context-curve"])
def test_plain_weights_without_n_layer_are_refused(tool, files, tmp_path, run_cli):
    code, err = run_cli(tool_args(tool, files["official.pt"], files, tmp_path))
    assert code == 2 and err.count("\n") == 1, err[-3000:]
    assert "do not record n_layer" in err and "--n_layer N" in err


def test_mauve_takes_n_layer(files, tmp_path, run_cli):
    """With --n_layer the weights load; here the (missing) featurizer is what stops it."""
    pytest.importorskip("mauve")
    args = tool_args("mauve", files["official.pt"], files, tmp_path)
    code, err = run_cli([*args, "--n_layer", "2"])
    assert code == 2 and err.startswith("error: --featurizer"), err[-3000:]


def test_context_curve_of_plain_weights_equals_the_checkpoints(files, tmp_path, run_cli):
    rows = {}
    for name, extra in (("bdh.ckpt", []), ("official.pt", ["--n_layer", "2"])):
        args = tool_args("context-curve", files[name], files, tmp_path / name)
        code, err = run_cli([*args, *extra])
        assert code == 0, err[-3000:]
        rows[name] = json.loads((tmp_path / name / "curve" / "context_curve.json").read_text())
    checkpoint, weights = (rows[n]["runs"][0] for n in ("bdh.ckpt", "official.pt"))
    assert math.isfinite(checkpoint["bpb"])
    assert weights["bpb"] == pytest.approx(checkpoint["bpb"], abs=1e-6)


def test_lm_eval_takes_n_layer_and_scores_like_the_checkpoint(files):
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance

    from bdh_pl.tools.lm_eval_model import BDHPLM

    with pytest.raises(UserError, match=r"do not record n_layer.*\(n_layer=N\)"):
        BDHPLM(pretrained=str(files["official.pt"]))
    # Nor the window they were trained with: never a default that scores another window.
    with pytest.raises(UserError, match="do not record the window.*give max_length=N"):
        BDHPLM(pretrained=str(files["official.pt"]), n_layer=2)
    request = [Instance("loglikelihood_rolling", {}, (TEXT,), 0)]
    window = {"max_length": 32}  # the checkpoint's block size (plain weights do not say it)
    scores = [
        BDHPLM(pretrained=str(files["bdh.ckpt"]), **window).loglikelihood_rolling(request),
        BDHPLM(pretrained=str(files["official.pt"]), n_layer=2, **window).loglikelihood_rolling(
            request
        ),
    ]
    assert scores[1] == pytest.approx(scores[0], abs=1e-6)
    with pytest.raises(UserError, match="holds a model of 2 layers"):
        BDHPLM(pretrained=str(files["bdh.ckpt"]), n_layer=6)  # a checkpoint knows its own


# --- damaged and foreign files: one line in every tool --------------------------------------

DAMAGE = {
    "truncated": "truncated or not a safetensors file",
    "pickle": "truncated or not a safetensors file",
    "no_n_layer": "lacks n_layer",
    "wrong_n_embd": "config.json does not describe its weights",
    "hf_no_weights": "Hugging Face folder",
    "hf_truncated": "Hugging Face folder",
}
TEST_ARGS = [
    "test",
    *("--config", "configs/shakespeare.yaml", "--config", "configs/cpu.yaml"),
    *("--config", "configs/cpu/bdh.yaml", "--trainer.enable_progress_bar", "false"),
]


@pytest.mark.parametrize("tool", ["test", "generate", "mauve", "context-curve"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_or_foreign_model_is_one_line(damage, tool, files, tmp_path, run_cli):
    if tool == "test":
        args = [*TEST_ARGS, "--ckpt_path", str(files[damage])]
        args += ["--trainer.default_root_dir", str(tmp_path / "runs")]
    else:
        args = tool_args(tool, files[damage], files, tmp_path)
    code, err = run_cli(args)
    line = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err and line.startswith("error: "), err[-3000:]
    assert DAMAGE[damage] in line
    assert not list(tmp_path.glob("runs/version_*")), "a failed run left a folder"


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_lm_eval_refuses_a_damaged_model_in_one_line(damage, files):
    pytest.importorskip("lm_eval")
    from bdh_pl.tools.lm_eval_model import BDHPLM

    expected = {"hf_no_weights": "no file named", "hf_truncated": "cannot load the Hugging Face"}
    with pytest.raises(UserError, match=expected.get(damage, DAMAGE[damage])):
        BDHPLM(pretrained=str(files[damage]))


def test_a_checkpoint_of_another_model_under_the_bdh_config_tests_as_itself(
    tmp_path, run_cli, save_checkpoint, data_dir
):
    """A LLaMA checkpoint given to `test` with the BDH config: the checkpoint's class and
    hyperparameters build the model (was `error: 'n_query_groups'`); what it does not record
    takes the LLaMA class's defaults, not the BDH config's values."""
    save_checkpoint(tmp_path / "llama.ckpt", "llama")
    root = tmp_path / "runs"
    args = [*TEST_ARGS, "--ckpt_path", str(tmp_path / "llama.ckpt"), "--trainer.limit_test_batches"]
    code, err = run_cli([*args, "1", "--trainer.default_root_dir", str(root)])
    assert code == 0, err[-3000:]
    record = json.loads((root / "version_0" / "test_metrics.json").read_text())
    assert record["model"] == "LlamaLM" and math.isfinite(record["metrics"]["test/bpb"])


# --- hand-made files: one line in every tool, before anything reads them --------------------

HAND_MADE = {
    "state_dict is a number": (lambda c: c.update(state_dict=5), "its state_dict is a int"),
    "hyper_parameters a list": (lambda c: c.update(hyper_parameters=[1]), "hyper_parameters"),
    "a non-tensor weight": (
        lambda c: c["state_dict"].update({"network.embed.weight": "x"}),
        "holds non-tensors",
    ),
}


@pytest.mark.parametrize("tool", ["test", "generate"])
@pytest.mark.parametrize("case", [*HAND_MADE, "empty encoder dimension"])
def test_a_hand_made_model_file_is_one_line(case, tool, files, tmp_path, run_cli):
    """A checkpoint whose fields have other types than Lightning writes, plain weights with
    an empty dimension (the sizes read from them would divide by zero)."""
    if case == "empty encoder dimension":
        weights = torch.load(files["official.pt"], weights_only=True)
        weights["encoder"] = torch.zeros(2, 0, 512)
        path, expected = tmp_path / "empty.pt", "empty dimension"
        torch.save(weights, path)
    else:
        edit, expected = HAND_MADE[case]
        checkpoint = torch.load(files["bdh.ckpt"], weights_only=True)
        edit(checkpoint)
        path = tmp_path / "hand-made.ckpt"
        torch.save(checkpoint, path)
    if tool == "test":
        args = [*TEST_ARGS, "--ckpt_path", str(path)]
    else:
        args = [
            *tool_args(tool, path, files, tmp_path),
            *["--n_layer", "2"] * (path.suffix == ".pt"),
        ]
    code, err = run_cli(args)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err[-3000:]
    assert expected in err
