"""`inspect`: a planted digit neuron found first, the whole report written, one-line errors."""

from __future__ import annotations

import json

import torch

from bdh_pl.charts import figure_problems
from bdh_pl.models.bdh import BDH, BDHConfig
from bdh_pl.tools.inspect.command import default_labels, init_twin
from bdh_pl.tools.inspect.report import figures
from bdh_pl.training.lit_models import BDHLM
from bdh_pl.training.training_config import TrainingConfig

from helpers import digit_text

PLANTED = (1, 5)  # head, neuron: "L0 h1 n5"


def digit_file(path):
    path.write_bytes(digit_text())
    return path


def planted_bdh_weights(path) -> None:
    """Plain BDH weights (the official format) with one neuron that fires on digits only:
    every byte's embedding has a first coordinate of +1.5 (digits) or -1.5 (the rest), the
    planted neuron's encoder column reads that coordinate alone."""
    torch.manual_seed(0)
    config = BDHConfig(n_layer=1, n_embd=16, n_head=2, mlp_internal_dim_multiplier=8, dropout=0.0)
    model = BDH(config)  # N = 64 neurons per head
    with torch.no_grad():
        model.embed.weight.normal_()
        digits = torch.zeros(256, dtype=torch.bool)
        digits[48:58] = True
        model.embed.weight[:, 0] = torch.where(digits, 1.5, -1.5)
        model.encoder.normal_()
        head, neuron = PLANTED
        model.encoder[head, :, neuron] = 0.0
        model.encoder[head, 0, neuron] = 5.0
    torch.save(model.state_dict(), path)


def test_inspect_finds_a_planted_digit_neuron_and_writes_the_report(
    tmp_path, save_checkpoint, run_cli
):
    planted_bdh_weights(tmp_path / "bdh.pt")
    save_checkpoint(tmp_path / "llama.ckpt", "llama")
    text, out = digit_file(tmp_path / "text.txt"), tmp_path / "out"
    code, err = run_cli(
        ["inspect", "--ckpt_path", str(tmp_path / "bdh.pt"), "--n_layer", "1",
         "--text", str(text), "--control", str(tmp_path / "llama.ckpt"),
         "--control_label", "llama", "--graph_density", "0.05", "--selectivity_tokens", "1024",
         "--out", str(out)]
    )  # fmt: skip
    assert code == 0, err[-3000:]
    report = json.loads((out / "inspect.json").read_text())
    models = report["selectivity"]["models"]
    assert list(models) == ["bdh", "bdh (init)", "llama"]
    digit = models["bdh"]["per_class"]["digit"]
    assert digit["name"] == "L0 h1 n5" and digit["best"] == 1.0
    first = models["bdh"]["top"][0]  # the list starts with the digit class's best neuron
    assert (first["name"], first["class"], first["nap"]) == ("L0 h1 n5", "digit", 1.0)
    assert all(c["token"].isdigit() for c in first["contexts"])
    assert all(t["token"].isdigit() for t in first["top_tokens"]) and len(first["top_tokens"]) == 6
    assert models["llama"]["signed"] and not models["bdh"]["signed"]
    assert models["llama"]["neurons"] == 2 * 64  # 2 layers of SwiGLU 64
    assert models["bdh"]["neurons"] == 128 and report["text"]["tokens"] == 2816  # 11 x 256

    sparsity = report["sparsity"]["trained"]["x"]
    assert 0 < sparsity["active_fraction"] < 1 and len(sparsity["by_layer_head"][0]) == 2
    assert report["sparsity"]["over_training"] == {}  # plain weights: no run folder
    heads = report["graph"]["heads"]  # at the paper's 5.72 edges per neuron
    variants = {"trained", "init", "erdos-renyi", "low-rank", "factors shuffled"}
    assert len(heads) == 2 and set(heads[0]) == variants
    assert all(v["edges"] == round(46_820 / 8_192 * 64) for v in heads[0].values())
    sweep = [p["mean_degree"] for p in report["graph"]["sweep"]]  # --graph_density's point too
    assert sweep == sorted([1.0, 2.0, 46_820 / 8_192, 2 * 46_820 / 8_192, round(0.05 * 63, 4)])
    claims = {c["claim"].split(" (")[0]: c for c in report["claims"]}
    assert set(claims) == {
        "sparse activations",
        "monosemantic neurons",
        "heavy-tailed",
        "high modularity of the neuron graph",
    }
    charts = sorted(p.name for p in (out / "charts").iterdir())
    assert charts == [
        "degrees.png",
        "frequency.png",
        "modularity.png",
        "selectivity.png",
        "sparsity.png",
        "top_neurons.png",
    ]
    for name, fig in figures(report).items():  # the house style, checked on the rendering
        assert figure_problems(fig) == [], name
    readme = (out / "README.md").read_text()
    assert "| monosemantic neurons" in readme and "L0 h1 n5  digit  nAP 1.00" in readme
    assert report["command"].startswith("python -m bdh_pl inspect --ckpt_path ")

    for png in (out / "charts").iterdir():
        png.unlink()
    (out / "README.md").unlink()
    code, err = run_cli(["inspect", "--replot", "--out", str(out)])  # nothing measured again
    assert code == 0, err[-2000:]
    assert len(list((out / "charts").iterdir())) == 6 and (out / "README.md").read_text() == readme


def test_a_transformer_alone_gets_selectivity_and_a_one_line_error_for_the_rest(
    tmp_path, save_checkpoint, run_cli
):
    save_checkpoint(tmp_path / "gpt2.ckpt", "gpt2")
    text, out = digit_file(tmp_path / "text.txt"), tmp_path / "out"
    base = ["inspect", "--ckpt_path", str(tmp_path / "gpt2.ckpt"), "--text", str(text),
            "--selectivity_tokens", "512", "--out", str(out)]  # fmt: skip
    code, err = run_cli(base)
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: ")
    assert (
        "not BDH" in err and "--measures selectivity" in err and len(err.strip().splitlines()) == 1
    )
    code, err = run_cli([*base, "--measures", "selectivity"])
    assert code == 0, err[-3000:]
    report = json.loads((out / "inspect.json").read_text())
    assert report["selectivity"]["models"][report["label"]]["neurons"] == 2 * 128  # 4 x 32 wide
    assert "sparsity" not in report and "graph" not in report


def test_a_bdh_control_and_bad_options_are_one_line_errors(tmp_path, save_checkpoint, run_cli):
    save_checkpoint(tmp_path / "bdh.ckpt", "bdh")
    text = digit_file(tmp_path / "text.txt")
    base = [
        "inspect",
        "--ckpt_path",
        str(tmp_path / "bdh.ckpt"),
        "--text",
        str(text),
        "--out",
        str(tmp_path / "o"),
    ]
    ckpt = str(tmp_path / "bdh.ckpt")
    for extra, words in (
        (["--control", ckpt], "needs a transformer"),
        (["--graph_density", "1.5"], "--graph_density"),
        (["--graph_density", "1e-9"], "fewer than one per neuron"),  # before any measuring
        (["--label", "x", "--control", ckpt, "--control_label", "x"], "two models would be"),
        (["--control", ckpt, "--control_label", "bdh (init)"], "named 'bdh (init)'"),
        (["--control", str(tmp_path / "missing.ckpt")], "no such file"),
        (["--max_tokens", "10"], "fewer than one window"),  # the block is 32
    ):
        code, err = run_cli([*base, *extra])
        assert code == 2 and err.strip().splitlines()[-1].startswith("error: "), err[-2000:]
        assert words in err


def test_controls_named_alike_get_their_run_folders_in_their_names():
    paths = ["runs/llama/checkpoints/last.ckpt", "runs/gpt2/checkpoints/last.ckpt"]
    assert default_labels(paths, ("bdh", "bdh (init)")) == [
        "llama/checkpoints/last",
        "gpt2/checkpoints/last",
    ]
    assert default_labels(["a/bdh.ckpt"], ("bdh", "bdh (init)")) == ["a/bdh"]


def test_replot_of_a_malformed_report_is_one_line(tmp_path, run_cli):
    for text in ("{}", "[1]", '{"claims": 5}', "not json"):
        (tmp_path / "inspect.json").write_text(text)
        code, err = run_cli(["inspect", "--replot", "--out", str(tmp_path)])
        assert code == 2 and len(err.strip().splitlines()) == 1, (text, err[-2000:])
        assert err.startswith("error: --replot: ") and "inspect" in err


def test_the_init_control_is_the_constructor_under_the_run_s_seed():
    torch.manual_seed(1234)
    config = BDHConfig(n_layer=1, n_embd=16, n_head=2, mlp_internal_dim_multiplier=4)
    trained = BDHLM(config, training=TrainingConfig(seed=7))
    with torch.no_grad():
        trained.network.encoder.add_(1.0)  # "training"
    torch.manual_seed(7)  # what seed_everything(7) does to torch before the CLI builds the model
    fresh = BDHLM(config, training=TrainingConfig(seed=7))
    twin = init_twin(trained)
    for name, value in fresh.state_dict().items():
        assert torch.equal(twin.state_dict()[name], value), name
