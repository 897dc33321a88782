"""The `bdh-pl` lm-evaluation-harness model: on a local task over a slice of wiki.test.raw,
lm-eval's bits_per_byte equals bdh-pl's own test/bpb (same text, same window length)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from bdh_pl.data import TextFile
from bdh_pl.tools.export import export
from bdh_pl.training.loading import load_model

pytest.importorskip("lm_eval")

from bdh_pl.tools.lm_eval_cli import main  # noqa: E402  (needs lm_eval)

TASKS = Path(__file__).parent / "lm_eval_tasks"
BLOCK = 64
SLICE_BYTES = 12_000


def project_test_bpb(ckpt: Path, text_file: Path, tokenizer: str) -> float:
    """bdh-pl's own `test` of the checkpoint on the file, scored whole."""
    model = load_model(str(ckpt)).model
    data = TextFile(test=str(text_file), tokenizer=tokenizer, block_size=BLOCK, eval_batch_size=16)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return trainer.test(model, datamodule=data, verbose=False)[0]["test/bpb"]


def lm_eval_results(tmp_path: Path, pretrained: Path, monkeypatch, cli: bool) -> dict:
    """lm-eval's results for the local task: through `python -m bdh_pl lm-eval`, or through
    lm_eval.simple_evaluate without indexing lm-eval's thousands of built-in tasks (~30 s)."""
    monkeypatch.chdir(tmp_path)  # the task reads wikitext_slice.json from here
    if not cli:
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager

        results = simple_evaluate(
            model="bdh-pl",
            model_args=f"pretrained={pretrained},device=cpu",
            tasks=["bdh_pl_wikitext_slice"],
            batch_size=4,
            task_manager=TaskManager(include_path=str(TASKS), include_defaults=False),
        )
        return results["results"]["bdh_pl_wikitext_slice"]
    out = tmp_path / f"results-{pretrained.name}"
    main(
        [
            "--model",
            "bdh-pl",
            "--model_args",
            f"pretrained={pretrained},device=cpu",
            "--include_path",
            str(TASKS),
            "--tasks",
            "bdh_pl_wikitext_slice",
            "--batch_size",
            "4",
            "--output_path",
            str(out),
        ]
    )
    (found,) = out.rglob("results_*.json")
    return json.loads(found.read_text())["results"]["bdh_pl_wikitext_slice"]


@pytest.fixture
def wiki_slice(data_dir, tmp_path) -> Path:
    raw = (data_dir / "wikitext-2-raw" / "wiki.test.raw").read_bytes()[:SLICE_BYTES]
    text = raw.decode("utf-8", errors="ignore")  # a cut inside a character drops it
    (tmp_path / "wikitext_slice.json").write_text(json.dumps({"text": text}) + "\n")
    path = tmp_path / "slice.txt"
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "tokenizer", "vocab"), [("bdh", "byte", 256), ("gpt2", "gpt2", 50257)]
)
def test_bits_per_byte_equals_test_bpb(
    kind, tokenizer, vocab, wiki_slice, tmp_path, monkeypatch, save_checkpoint
):
    ckpt = tmp_path / f"{kind}.ckpt"
    save_checkpoint(ckpt, kind, tokenizer=tokenizer, vocab_size=vocab, block_size=BLOCK)
    expected = project_test_bpb(ckpt, wiki_slice, tokenizer)
    assert 2 < expected < 20  # untrained: near uniform (8 bits a byte; 15.6 a BPE token)
    got = lm_eval_results(tmp_path, ckpt, monkeypatch, cli=kind == "bdh")
    assert got["bits_per_byte,none"] == pytest.approx(expected, abs=1e-4)
    if kind == "bdh":  # the exported folder scores the same
        folder = export(str(ckpt), tmp_path / "bdh-folder")
        again = lm_eval_results(tmp_path, folder, monkeypatch, cli=False)
        assert again["bits_per_byte,none"] == pytest.approx(expected, abs=1e-4)


def test_generate_until_stops_and_matches_greedy(tmp_path, save_checkpoint):
    from lm_eval.api.instance import Instance

    from bdh_pl.tools.lm_eval_model import BDHPLM

    network = save_checkpoint(tmp_path / "m.ckpt", "bdh")
    lm = BDHPLM(pretrained=str(tmp_path / "m.ckpt"))
    idx = torch.tensor([list(b"The ")])
    with torch.no_grad():
        for _ in range(12):
            idx = torch.cat([idx, network(idx)[:, -1:].argmax(-1)], dim=1)
    greedy = bytes(idx[0, 4:].tolist()).decode("utf-8", "replace")
    requests = [
        Instance("generate_until", {}, ("The ", {"until": [], "max_gen_toks": 12}), 0),
        Instance("generate_until", {}, ("The ", {"until": [greedy[5:7]], "max_gen_toks": 12}), 0),
    ]
    full, cut = lm.generate_until(requests)
    assert full == greedy
    assert cut == greedy[: greedy.index(greedy[5:7])]


def test_model_args_typo_is_one_error_line(tmp_path, run_cli, save_checkpoint):
    save_checkpoint(tmp_path / "m.ckpt", "bdh")
    args = ["lm-eval", "--model", "bdh-pl", "--model_args", f"pretraind={tmp_path / 'm.ckpt'}"]
    code, err = run_cli([*args, "--tasks", "wikitext"])
    assert code == 2 and err.startswith("error: unknown --model_args pretraind")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--model_args", "pretrained=m.ckpt,max_length=abc"], "max_length='abc'"),
        (["--model_args", "pretrained=m.ckpt,max_length=-3"], "max_length=-3"),
        (["--model_args", "pretrained=m.ckpt,batch_size=0"], "batch_size=0"),
        (["--model_args", "pretrained=m.ckpt,device=foo"], "device 'foo' is not a device"),
        (["--model_args", "pretrained=m.ckpt,device=cuda:7"], "device cuda:7"),
        (["--model_args", "pretrained=m.ckpt", "--device", "foo"], "--device 'foo'"),
        (["--model_args", "pretrained=m.ckpt", "--output_path", "FILE/out"], "not a writable"),
        (["-a", "pretrained=m.ckpt,max_length=0"], "max_length=0:"),  # lm-eval's own alias
        (["-apretrained=m.ckpt,batch_size=0"], "batch_size=0:"),
        (["--model_args=pretrained=m.ckpt,n_layer=nan"], "n_layer=nan:"),
    ],
)
def test_options_are_checked_before_lm_eval_starts(options, named, tmp_path, run_cli):
    (tmp_path / "FILE").write_text("a regular file")
    options = [str(tmp_path / o) if o.startswith("FILE") else o for o in options]
    code, err = run_cli(["lm-eval", "--model", "bdh-pl", *options, "--tasks", "wikitext"])
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err[-2000:]
    assert named in err


@pytest.mark.slow
def test_an_unknown_task_is_one_line(tmp_path, run_cli, save_checkpoint):
    """lm-eval's own check (after indexing its tasks, before loading the model)."""
    save_checkpoint(tmp_path / "m.ckpt", "bdh")
    args = ["lm-eval", "--model", "bdh-pl", "--model_args", f"pretrained={tmp_path / 'm.ckpt'}"]
    code, err = run_cli([*args, "--tasks", "no_such_task"])
    assert code == 2 and err.count("\n") == 1, err[-2000:]
    assert err.startswith("error: lm-eval: Tasks not found: no_such_task")


def test_a_local_task_without_its_data_file_is_one_line_before_the_model_loads(
    tmp_path, run_cli, monkeypatch
):
    """The task's data file (dataset_kwargs.data_files, read from the working directory)
    missing: one line naming it, before the model is read (here it does not even exist)."""
    monkeypatch.chdir(tmp_path)  # where wikitext_slice.json is not
    args = ["lm-eval", "--model", "bdh-pl", "--model_args", "pretrained=none.ckpt"]
    args += ["--include_path", str(TASKS), "--tasks", "bdh_pl_wikitext_slice"]
    code, err = run_cli(args)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err[-2000:]
    assert "bdh_pl_wikitext_slice" in err and "'wikitext_slice.json', which does not exist" in err
