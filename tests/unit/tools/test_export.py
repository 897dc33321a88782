"""`python -m bdh_pl export`: Hugging Face folders for the baselines, a BDH folder for BDH, both
reading back to the same logits; bad targets and checkpoints end in one error line."""

from __future__ import annotations

import json

import pytest
import torch

from bdh_pl.errors import UserError
from bdh_pl.tools.export import export
from bdh_pl.training.loading import load_bdh


def ids(vocab_size: int) -> torch.Tensor:
    return torch.randint(0, vocab_size, (2, 32), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_baselines_round_trip_through_auto_classes(tmp_path, kind, save_checkpoint):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    network = save_checkpoint(tmp_path / "m.ckpt", kind)
    out = export(str(tmp_path / "m.ckpt"), tmp_path / "hf")
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    hf = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=False).eval()
    x = ids(256)
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, network(x), rtol=0, atol=1e-6)
    tokenizer = AutoTokenizer.from_pretrained(out)
    text = "Zwölf Boxkämpfer\n jagen Viktor"
    assert tokenizer(text, add_special_tokens=False).input_ids == list(text.encode())
    assert tokenizer.decode(list(text.encode())) == text
    assert tokenizer.bos_token_id == ord("\n")  # bdh-pl's context for the first byte
    card = (out / "README.md").read_text()
    assert "Training steps**: 7" in card and "Parameters" in card


def test_bdh_round_trip(tmp_path, save_checkpoint):
    network = save_checkpoint(tmp_path / "m.ckpt", "bdh")
    out = export(str(tmp_path / "m.ckpt"), tmp_path / "bdh")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "bdh" and config["n_layer"] == 2 and config["block_size"] == 32
    loaded, _ = load_bdh(out)
    x = ids(256)
    with torch.no_grad():
        assert torch.equal(loaded(x), network(x))
    assert "BDH" in (out / "README.md").read_text()
    # a folder exported before the damped attention existed has no attn_decay: undamped
    assert config["attn_decay"] == "none"
    del config["attn_decay"]
    (out / "config.json").write_text(json.dumps(config))
    assert load_bdh(out)[0].config.attn_decay == "none"


def test_bdh_folder_works_with_generate(tmp_path, capsys, save_checkpoint):
    from bdh_pl.tools.generate import main

    network = save_checkpoint(tmp_path / "m.ckpt", "bdh")
    out = export(str(tmp_path / "m.ckpt"), tmp_path / "bdh")
    main(["--ckpt_path", str(out), "--prompt", "To be", "--max_new_tokens", "20", "--top_k", "1"])
    idx = torch.tensor([list(b"To be")])
    with torch.no_grad():
        for _ in range(20):
            idx = torch.cat([idx, network(idx)[:, -1:].argmax(-1)], dim=1)
    expected = "To be" + bytes(idx[0, 5:].tolist()).decode("utf-8", "replace")
    assert capsys.readouterr().out == expected + "\n"


def test_model_card_reports_the_test_run(tmp_path, save_checkpoint):
    runs = tmp_path / "logs"
    ckpt = runs / "version_0" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    save_checkpoint(ckpt, "bdh")
    record = {
        "metrics": {"test/bpb": 2.4921, "test/bytes": 55394.0},
        "checkpoint": str(ckpt),
        "dataset": "tinyshakespeare",
        "block_size": 32,
        "eval_stride": 32,
    }
    (runs / "version_1").mkdir()
    (runs / "version_1" / "test_metrics.json").write_text(json.dumps(record))
    card = (export(str(ckpt), tmp_path / "out") / "README.md").read_text()
    assert "Test bpb**: 2.4921 on `tinyshakespeare`" in card and "python -m bdh_pl test" in card


def test_bad_inputs(tmp_path, run_cli, save_checkpoint):
    save_checkpoint(tmp_path / "m.ckpt", "bdh")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    code, err = run_cli(
        ["export", "--ckpt_path", str(tmp_path / "m.ckpt"), "--out", str(tmp_path / "full")]
    )
    assert code == 2 and err.startswith("error: ") and "not an empty folder" in err
    assert err.count("\n") == 1 and (tmp_path / "full" / "x").read_text() == "keep me"

    checkpoint = torch.load(tmp_path / "m.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["_class_path"] = "somewhere.Else"
    torch.save(checkpoint, tmp_path / "odd.ckpt")
    code, err = run_cli(
        ["export", "--ckpt_path", str(tmp_path / "odd.ckpt"), "--out", str(tmp_path / "o")]
    )
    assert code == 2 and "not a bdh-pl model" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_load_bdh_refuses_other_folders(tmp_path):
    with pytest.raises(UserError, match="nor a .*folder written by"):
        load_bdh(tmp_path)


def test_out_under_a_regular_file_is_refused_before_any_work(tmp_path, run_cli, save_checkpoint):
    save_checkpoint(tmp_path / "m.ckpt", "bdh")
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "model"
    code, err = run_cli(["export", "--ckpt_path", str(tmp_path / "m.ckpt"), "--out", str(out)])
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err[-3000:]
    assert err.startswith("error: cannot write under") and "is not a writable folder" in err
    assert (tmp_path / "file").read_text() == "x"


def test_model_card_with_an_undefined_or_damaged_test_record(tmp_path, run_cli, save_checkpoint):
    runs = tmp_path / "logs"
    ckpt = runs / "version_0" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    save_checkpoint(ckpt, "bdh")
    (runs / "version_1").mkdir()
    record = {  # what write_json makes of a NaN: null, and a note
        "metrics": {"test/bpb": None, "test/bytes": 10.0},
        "checkpoint": str(ckpt),
        "undefined": {"note": "...", "values": {"metrics.test/bpb": "nan"}},
    }
    (runs / "version_1" / "test_metrics.json").write_text(json.dumps(record))
    (runs / "version_2").mkdir()
    (runs / "version_2" / "test_metrics.json").write_text('{"metrics": {"test/bpb": 1.')
    card = (export(str(ckpt), tmp_path / "out") / "README.md").read_text()
    assert "Test bpb**: undefined (not a finite number)" in card
    for given in ("version_2/test_metrics.json", "version_0/nothing.json"):
        code, err = run_cli(
            ["export", "--ckpt_path", str(ckpt), "--out", str(tmp_path / "o"),
             "--test_metrics", str(runs / given)]
        )  # fmt: skip
        assert code == 2 and err.count("\n") == 1 and "cannot be read" in err, err[-3000:]
        assert not (tmp_path / "o").exists()
