"""`python -m bdh_pl mauve` with a tiny local featurizer (numbers need a real one, gpt2-large)."""

from __future__ import annotations

import importlib.util

import pytest

from bdh_pl.tools.mauve import load_featurizer

# Skipped without the mauve extra, found without importing it (its scikit-learn costs seconds).
pytestmark = pytest.mark.skipif(importlib.util.find_spec("mauve") is None, reason="needs mauve")


def test_featurizer_that_is_not_a_causal_lm(tmp_path, run_cli, save_checkpoint):
    save_checkpoint(tmp_path / "m.ckpt", "bdh")
    (tmp_path / "not-lm").mkdir()
    (tmp_path / "not-lm" / "config.json").write_text('{"model_type": "bdh"}')
    args = ["mauve", "--ckpt_path", str(tmp_path / "m.ckpt"), "--featurizer"]
    code, err = run_cli([*args, str(tmp_path / "not-lm")])
    assert code == 2 and err.startswith("error: --featurizer") and "causal LM" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("option", "named"),
    [
        (["--temperature", "nan"], "--temperature nan: must be a finite number"),
        (["--temperature", "inf"], "--temperature inf: must be a finite number"),
        (["--top_k", "0"], "--top_k 0: must be a whole number in [1, "),
        (["--seed", "-1"], "seed"),
        (["--device", "cuda:7"], "--device cuda:7"),
        (["--device", "foo"], "--device 'foo' is not a device"),
        (["--out", "FILE/result.json"], "is not a writable folder"),
        (["--out", "."], "is a folder"),
        (["--text", "no-such.txt"], "--text 'no-such.txt' is not a file"),
    ],
)
def test_options_are_checked_before_any_work(option, named, tmp_path, run_cli):
    """Checked before the checkpoint is even opened (here it does not exist): a bad value
    costs no sampling, and says what is wrong with it."""
    (tmp_path / "FILE").write_text("a regular file")
    option = [str(tmp_path / o) if o.startswith("FILE") else o for o in option]
    code, err = run_cli(["mauve", "--ckpt_path", str(tmp_path / "none.ckpt"), *option])
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err[-2000:]
    assert named in err


class Payload:
    """Unpickling it would call os.system."""

    def __reduce__(self):
        import os

        return (os.system, ("echo unpickled",))


def test_a_featurizer_with_pickled_code_is_refused_in_one_line(featurizer_dir):
    """Its only weights a pytorch_model.bin whose pickle would import os.system: refused
    (transformers reads .bin weights_only), in one line that says why, not a 35-line
    traceback of the unpickler."""
    import torch

    from bdh_pl.errors import UserError

    for weights in featurizer_dir.glob("*.safetensors"):
        weights.unlink()
    torch.save({"transformer.wte.weight": Payload()}, featurizer_dir / "pytorch_model.bin")
    with pytest.raises(UserError) as refused:
        load_featurizer(str(featurizer_dir))
    line = str(refused.value)
    assert "\n" not in line and "refused" in line and "would import posix.system" in line
    assert "model.safetensors" in line  # the fix
