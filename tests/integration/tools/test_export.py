"""The integration half of tests/unit/tools/test_export.py: its tests that fit, compile, read
more than a slice of real data or spend seconds of CPU (the unit tier has a minute)."""

from __future__ import annotations

import json

import pytest
import torch
from unit.tools.test_export import ids

from bdh_pl.tools.export import export

from helpers import SMOKE


def test_gpt2_bpe_tokenizer_knows_its_bos_and_eos(tmp_path, data_dir, save_checkpoint):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    network = save_checkpoint(tmp_path / "m.ckpt", "gpt2", tokenizer="gpt2", vocab_size=50257)
    out = export(str(tmp_path / "m.ckpt"), tmp_path / "hf")
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert type(tokenizer).__name__.startswith("GPT2Tokenizer")
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == 50256
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    assert hf.config.eos_token_id == 50256
    x = ids(50257)
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, network(x), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_bdh_folder_tests_like_its_checkpoint(tmp_path, data_dir, run_cli, save_checkpoint):
    save_checkpoint(tmp_path / "m.ckpt", "bdh")
    out = export(str(tmp_path / "m.ckpt"), tmp_path / "bdh")
    results = []
    for i, ckpt in enumerate([tmp_path / "m.ckpt", out]):
        root = tmp_path / f"runs{i}"
        args = ["test", *SMOKE]
        args += ["--trainer.default_root_dir", str(root), "--data.init_args.block_size", "32"]
        args += ["--model.init_args.config.n_layer", "2", "--model.init_args.config.n_embd", "32"]
        args += [
            "--model.init_args.config.n_head",
            "2",
            "--model.init_args.config.mlp_internal_dim_multiplier",
        ]
        args += ["8", "--ckpt_path", str(ckpt)]
        code, err = run_cli(args)
        assert code == 0, err
        record = json.loads(next(root.glob("version_*/test_metrics.json")).read_text())
        results.append(record["metrics"]["test/bpb"])
    assert results[0] == pytest.approx(results[1], abs=1e-6)


@pytest.mark.parametrize("kind", ["bdh", "gpt2"])
def test_a_real_full_disk_leaves_nothing_and_a_retry_works(
    kind, tmp_path, run_cli, save_checkpoint, small_disk
):
    """safetensors reports ENOSPC as its own error; the folder must not stay half-written
    (a retry would refuse it as not empty)."""
    save_checkpoint(tmp_path / "m.ckpt", kind)
    disk = small_disk(64)  # the weights alone are about 150 KB
    out = disk / "models" / "tiny"
    args = ["export", "--ckpt_path", str(tmp_path / "m.ckpt"), "--out", str(out)]
    code, err = run_cli(args)
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err[-3000:]
    assert err.startswith(f"error: no space left on the device of '{out.parent}'")
    assert list(out.parent.iterdir()) == [], "a half-written folder or temp folder was left"
    small_disk.grow(disk, 4096)
    code, err = run_cli(args)
    assert code == 0, err[-3000:]
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    assert [p.name for p in out.parent.iterdir()] == ["tiny"]
