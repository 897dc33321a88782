"""The integration half of tests/unit/tools/test_mauve.py: its tests that fit, compile, read
more than a slice of real data or spend seconds of CPU (the unit tier has a minute)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mauve")

from bdh_pl.tools.mauve import load_featurizer, mauve_score  # noqa: E402


def test_mauve_ranks_degenerate_text_below_real_text(featurizer_dir, data_dir):
    text = (data_dir / "tinyshakespeare" / "input.txt").read_text()
    references = [text[i * 500 : i * 500 + 120] for i in range(40)]
    similar = [text[60_000 + i * 500 : 60_000 + i * 500 + 120] for i in range(40)]
    degenerate = ["the " * 30] * 40  # what a looping sampler produces
    featurizer = load_featurizer(str(featurizer_dir))
    assert mauve_score(references, references, featurizer)["mauve"] == pytest.approx(1.0)
    assert mauve_score(degenerate, references, featurizer)["mauve"] < 0.2
    assert mauve_score(similar, references, featurizer)["mauve"] > 0.5


@pytest.mark.slow
def test_cli_on_a_checkpoint(featurizer_dir, data_dir, tmp_path, run_cli, save_checkpoint):
    save_checkpoint(tmp_path / "m.ckpt", "bdh")
    out = tmp_path / "mauve.json"
    args = ["mauve", "--ckpt_path", str(tmp_path / "m.ckpt"), "--featurizer", str(featurizer_dir)]
    args += ["--n_samples", "20", "--prompt_tokens", "16", "--max_new_tokens", "32"]
    code, err = run_cli([*args, "--out", str(out)])
    assert code == 0, err
    result = json.loads(out.read_text())
    assert 0 < result["mauve"] <= 1 and result["n_samples"] == 20
    assert result["text"] == "bdh_pl.data.TinyShakespeare"
