import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from bdh_pl import charts
from bdh_pl.bench import budget, matrix, report, resolve, run_queue, spec, stats
from bdh_pl.charts.benchmark import COMPARISON_CHARTS, CURVE_CHARTS, SWEEP_CHART, chart_names
from bdh_pl.errors import UserError
from bdh_pl.step_tokens import tokens_per_step

REPO = Path(__file__).resolve().parents[2]
REQUIRED = [
    "model", "params", "non_embedding_params", "dataset", "tokenizer", "train_tokens",
    "test_loss", "test_ppl", "test_bpb", "test_word_ppl", "train_tokens_per_sec",
    "eval_tokens_per_sec", "flops_per_token", "peak_memory_mb", "memory_kind", "device",
    "precision", "checkpoint", "git_commit", "torch_version",
]  # fmt: skip
NUMBERS = [
    "params", "non_embedding_params", "train_tokens", "test_loss", "test_ppl", "test_bpb",
    "test_word_ppl", "train_tokens_per_sec", "eval_tokens_per_sec", "flops_per_token",
    "train_flops_per_token", "peak_memory_mb",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # config paths are relative to the repository, as for a user


def write(tmp_path, config: dict) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def base(**changes) -> dict:
    config = {
        "experiment": "t",
        "dataset": "configs/shakespeare.yaml",
        "budget": {"tokens": 1000},
        "models": [{"name": "a", "config": "bdh"}],
    }
    return {**config, **changes}


def test_budgets_names_and_zero_shot(tmp_path):
    models = [
        {"config": "bdh"},
        {"name": "b", "config": "configs/model/bdh.yaml", "budget": {"steps": 7}},
        {"name": "c", "config": ["bdh"], "budget": {"zero_shot": True}},
    ]
    config = base(models=models, env={"OMP_NUM_THREADS": 1}, trainer={"precision": "32-true"})
    bench = spec.load_spec(write(tmp_path, config))
    assert bench.env == {"OMP_NUM_THREADS": "1"}
    a, b, c = bench.models
    assert (a.name, a.configs, a.budget.tokens, a.budget.steps) == (
        "bdh",
        ["bdh_pl/configs/model/bdh.yaml"],  # the registry's own file (configs/model links to it)
        1000,
        None,
    )
    assert (b.budget.steps, b.budget.tokens, b.budget.trains) == (7, None, True)
    assert not c.budget.trains and c.budget.kind == "zero_shot"  # test only
    assert a.budget.max_steps(512) == 2  # ceil(1000 / 512)
    assert b.budget.max_steps(512) == 7
    (tmp_path / "again.yaml").write_text(spec.as_yaml(bench))
    again = spec.load_spec(tmp_path / "again.yaml")
    assert again == bench  # the resolved config runs the same matrix


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"budget": {"tokens": 0}}, "tokens is 0.*zero_shot: true"),
        ({"budget": {"flops": 0}}, "flops is 0"),
        ({"budget": {}}, "give one of tokens, steps, flops, seconds"),
        ({"budget": {"epochs": 3}}, "epochs"),
        ({"budget": {"tokens": 10, "steps": 10}}, "give one of"),
        ({"budget": {"zero_shot": True, "tokens": 10}}, "zero_shot trains nothing"),
        ({"budget": {"seconds": -1.0}}, "seconds"),
        ({"budget": {"seconds": math.inf}}, r"budget.seconds is inf: .* finite number"),
        ({"budget": {"flops": math.inf}}, r"budget.flops is inf: .* finite number"),
        ({"models": [{"config": "bdh", "budget": {"seconds": math.inf}}]}, "finite number"),
        ({"seeds": [-1]}, r"seeds: each must be in \[0, 2\*\*32\)"),
        ({"sweep": {"lr": [1, "x"]}}, 'key "sweep".*"lr".*could not convert'),
        ({"sweep": {"lr": []}}, "sweep.lr: give distinct numbers"),
        ({"sweep": {"dropout": [0.1, 1.5]}}, "dropout: values must be in"),
        ({"models": [{"config": "bdh", "sweep": {"weight_decay": ["a"]}}]}, '"weight_decay"'),
        ({"seeds": []}, "seeds: give distinct seeds"),
        ({"seeds": [1, 1]}, "seeds: give distinct seeds"),
        ({"seeds": ["x"]}, "seeds"),
        ({"budget": {"tokens": -5}}, "v>=0"),
        ({"models": [{"config": "bdh", "budget": {"steps": 1.5}}]}, "not an integer"),
        ({"models": [{"config": "no-such-model"}]}, "no-such-model"),
        ({"models": [{"config": "configs/model/missing.yaml"}]}, "not found"),
        ({"models": [{"config": "bdh"}, {"config": "bdh"}]}, "unique"),
        ({"models": []}, "must not be empty"),
        ({"experiment": "../x"}, "plain name"),
        ({"dataset": "configs/nope.yaml"}, "not found"),
        ({"epochs": 3}, "epochs"),
        ({"env": ["OMP_NUM_THREADS=1"]}, "env"),
        ({"models": [{"config": "bdh", "init_args": {"n_layer": 1}}]}, "init_args"),
    ],
)
def test_bad_benchmark_configs_are_user_errors(tmp_path, changes, message):
    config = base(**changes)
    with pytest.raises(UserError, match=message) as err:
        spec.load_spec(write(tmp_path, config))
    assert "\n" not in str(err.value)  # one `error:` line


def test_a_model_without_budget_is_a_user_error(tmp_path):
    config = base()
    del config["budget"]
    with pytest.raises(UserError, match="needs a budget"):
        spec.load_spec(write(tmp_path, config))


def test_broken_yaml_and_unwritable_output_are_one_line_errors(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("experiment: t\nmodels: [{config: bdh\n")
    with pytest.raises(UserError) as err:
        spec.load_spec(broken)
    assert "\n" not in str(err.value)
    blocker = tmp_path / "file"
    blocker.write_text("")
    bench = spec.load_spec(write(tmp_path, base(output_dir=str(blocker / "results"))))
    with pytest.raises(UserError, match="cannot write under"):
        matrix.run_benchmark(bench, "cmd")
    assert blocker.read_text() == ""  # nothing written


def test_layers_dataset_then_model_then_shared_then_init_args(tmp_path):
    config = base(
        trainer={"precision": "32-true", "accumulate_grad_batches": 2},
        data={"init_args": {"block_size": 32, "batch_size": 3}},
        model={"init_args": {"training": {"learning_rate": 0.005}, "config": {"n_layer": 3}}},
        models=[{"name": "a", "config": "bdh", "model_args": {"n_layer": 1}}],
    )
    bench = spec.load_spec(write(tmp_path, config))
    resolved = resolve.lightning_config(bench, bench.models[0])
    model = resolved["model"]
    assert model["class_path"] == "bdh_pl.training.lit_models.BDHLM"
    assert model["init_args"]["config"]["n_layer"] == 1  # the entry's model_args win
    assert model["init_args"]["config"]["n_embd"] == 256  # from the model YAML
    assert model["init_args"]["training"]["learning_rate"] == 0.005  # the shared recipe
    assert resolved["data"]["init_args"]["block_size"] == 32  # shared data settings win
    assert resolved["trainer"]["precision"] == "32-true"
    assert tokens_per_step(resolved) == 3 * 32 * 2


def test_invalid_lightning_config_names_the_problem(tmp_path):
    config = base(models=[{"name": "a", "config": "bdh", "model_args": {"no_such_arg": 1}}])
    bench = spec.load_spec(write(tmp_path, config))
    with pytest.raises(UserError, match="no_such_arg"):
        resolve.lightning_config(bench, bench.models[0])


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "benchmark").glob("*.yaml")))
def test_committed_benchmark_configs_resolve(path):
    bench = spec.load_spec(path)
    for entry in bench.models:
        resolved = resolve.lightning_config(bench, entry)
        assert tokens_per_step(resolved) > 0


def test_budget_conversion_tokens_flops_steps():
    per_step, per_token = 512, 30_000.0  # tokens per step, training FLOPs per token
    assert budget.Budget(tokens=1000).max_steps(per_step) == 2  # ceil(1000 / 512)
    assert budget.Budget(tokens=5120).max_steps(per_step) == 10
    assert budget.Budget(steps=7).max_steps(per_step, per_token) == 7
    # 10 steps = 5120 tokens = 5120 x 30k = 153.6M FLOPs, and back
    assert budget.Budget(flops=153_600_000.0).max_steps(per_step, per_token) == 10
    # 6e9 FLOPs = 200,000 tokens = 390.6 steps: the budget is reached, ceil
    assert budget.Budget(flops=6e9).max_steps(per_step, per_token) == 391
    # equal FLOPs: a model with 4.5x the FLOPs per token gets 1/4.5 of the steps
    assert budget.Budget(flops=4.5 * 153_600_000.0).max_steps(per_step, per_token * 4.5) == 10
    assert budget.Budget(seconds=100.0).max_steps(per_step, seconds_per_step=0.3) == 333
    assert budget.Budget(seconds=0.1).max_steps(per_step, seconds_per_step=0.3) == 1
    with pytest.raises(UserError, match="FLOPs per token"):
        budget.Budget(flops=1e9).max_steps(per_step, None)
    with pytest.raises(UserError, match="zero-shot"):
        budget.Budget(zero_shot=True).max_steps(per_step)
    assert [budget.Budget(**{k: 1}).kind for k in budget.BUDGET_KINDS] == list(budget.BUDGET_KINDS)


def test_seconds_schedule_counts_validation_at_its_share(monkeypatch):
    """seconds per step = train step + one validation pass / val_check_interval."""
    import torch
    from torch import nn

    timings = iter([0.2, 0.05])  # a training step, an evaluation batch
    monkeypatch.setattr(resolve, "_timed", lambda fn, repeats, device: next(timings))
    monkeypatch.setattr(resolve, "validation_batches", lambda datamodule, trainer: 10)
    model = SimpleNamespace(network=nn.Sequential(nn.Embedding(8, 4), nn.Linear(4, 8)))
    data = SimpleNamespace(vocab_size=8, block_size=4, eval_batch_size=2)
    config = {
        "trainer": {"val_check_interval": 20, "accelerator": "cpu", "precision": "32-true"},
        "data": {"init_args": {"batch_size": 2}},
    }
    threads = torch.get_num_threads()
    assert resolve.seconds_per_step(model, data, config, threads=1) == pytest.approx(0.225)
    assert torch.get_num_threads() == threads  # restored


def test_apply_setting_scales_the_schedule_and_sets_the_seed(tmp_path):
    shared = {"init_args": {"training": {"learning_rate": 0.002}}}
    bench = spec.load_spec(write(tmp_path, base(model=shared)))
    config = resolve.lightning_config(bench, bench.models[0])
    lr, floor = 0.002, config["model"]["init_args"]["training"]["min_learning_rate"]
    setting = budget.Setting(lr_scale=4.0, dropout=0.2, weight_decay=0.0)
    changed = resolve.apply_setting(config, setting, seed=7)
    training = changed["model"]["init_args"]["training"]
    assert (training["learning_rate"], training["min_learning_rate"]) == (
        4 * lr,
        pytest.approx(4 * floor),
    )
    dropout = changed["model"]["init_args"]["config"]["dropout"]
    assert (dropout, training["weight_decay"]) == (0.2, 0.0)
    assert changed["seed_everything"] == 7 and changed["data"]["init_args"]["seed"] == 7
    assert resolve.run_seed(changed) == 7
    assert config["model"]["init_args"]["training"]["learning_rate"] == lr  # input unchanged
    assert setting.label == "lr4x_do0.2_wd0"
    assert resolve.apply_setting(config, budget.Setting(), None) == config  # the recipe as is
    del config["model"]["init_args"]["config"]["dropout"]
    with pytest.raises(UserError, match="no config.dropout to sweep"):
        resolve.apply_setting(config, budget.Setting(dropout=0.1), None)


def test_sweep_settings_are_every_combination():
    sweep = budget.Sweep(lr=[0.5, 1], dropout=[0.0, 0.1])
    assert [s.label for s in sweep.settings()] == [
        "lr0.5x_do0", "lr0.5x_do0.1", "lr1x_do0", "lr1x_do0.1",
    ]  # fmt: skip
    assert [s.label for s in budget.Sweep().settings()] == ["lr1x"]


def run(model, val, test=None, status="ok", **more) -> dict:
    return {"model": model, "status": status, "best_val_loss": val, "test_bpb": test, **more}


def test_the_best_run_is_chosen_by_validation_loss_only():
    runs = [
        run("a", 1.50, test=2.0),  # the best test score: not what chooses
        run("a", 1.40),
        run("a", 1.20, status="failed"),  # failed: left out whatever its loss
        run("a", math.nan),
        run("a", 1.40),  # equal to [1]: the first wins
    ]
    assert stats.select_best(runs) == 1
    assert stats.select_best([run("a", None), run("a", 1.0, status="failed")]) is None


def test_aggregation_over_seeds_and_the_gap_against_the_spread():
    records = [
        run("a", 1.1, selected=False, seed=1, setting="lr1x"),  # a sweep run that lost
        run("a", 1.0, test=2.0, selected=True, seed=1, setting="lr2x", train_tokens_per_sec=10),
        run("a", 1.0, test=2.2, selected=True, seed=2, setting="lr2x", train_tokens_per_sec=30),
        run("b", 1.3, test=2.5, selected=True, seed=1),
        run("b", 1.3, test=2.7, selected=True, seed=2),
        run("b", 1.3, test=None, status="failed", selected=True, seed=3),
        run("c", 1.3, test=2.6, selected=True, seed=1),
        run("c", 1.3, test=2.9, selected=True, seed=2),
        run("old", 1.9, test=3.0),  # a record from before sweeps and seeds
    ]
    a, b, c, old = stats.aggregate(records)
    assert (a["model"], a["setting"], a["test_bpb_n"], a["seeds"]) == ("a", "lr2x", 2, [1, 2])
    assert a["test_bpb"] == pytest.approx(2.1)
    assert a["test_bpb_std"] == pytest.approx(math.sqrt(0.02))  # (0.1^2 + 0.1^2) / (2 - 1)
    assert (a["test_bpb_min"], a["test_bpb_max"]) == (2.0, 2.2)
    assert a["train_tokens_per_sec"] == pytest.approx(20)
    assert (b["test_bpb"], b["test_bpb_n"]) == (pytest.approx(2.6), 2)  # the failed seed: out
    assert (old["test_bpb"], old["test_bpb_n"], old["test_bpb_std"]) == (3.0, 1, None)
    lines = stats.compare([a, b, c, old])
    assert lines[0] == (
        "`a` ahead of `b` by 0.500 bpb (2.100 vs 2.600): larger than the seed spread (seed "
        "ranges 2.000-2.200 over 2 seeds and 2.500-2.700 over 2 do not overlap)."
    )
    assert lines[1].startswith("`b` ahead of `c` by 0.150 bpb") and "overlap)." in lines[1]
    assert "within the seed spread" in lines[1]
    assert "one seed: the seed spread is not measured" in lines[2]
    assert len(lines) == 3


@pytest.mark.parametrize("experiment", ["smoke", "shakespeare-cpu"])
def test_results_from_before_sweeps_still_report(experiment, tmp_path):
    """Committed results lack the new fields: one row per model, charts drawn."""
    result = json.loads((REPO / "results" / experiment / "metrics.json").read_text())
    summary = report.summary_markdown(experiment, result["records"], result["command"])
    rows = [line for line in summary.splitlines() if line.startswith("| ")][1:]
    assert [r.split(" | ")[0] for r in rows] == [f"| {r['model']}" for r in result["records"]]
    assert "Sweep" not in summary and "one seed" in summary
    paths = report.write_charts(tmp_path, experiment, result["records"])
    names = chart_names(report.chart_records(experiment, result["records"]))
    assert sorted(p.stem for p in paths) == sorted(names) and "test_bpb" in names


@pytest.mark.slow
def test_smoke_benchmark_end_to_end(data_dir, tmp_path, capsys):
    """The committed smoke matrix, shrunk to a few steps and eval batches and to its first
    model, plus a model that cannot be built, through the real fit and test subprocesses:
    all files, one record per run, the failure recorded and the matrix finished."""
    smoke = yaml.safe_load((REPO / "configs" / "benchmark" / "smoke.yaml").read_text())
    smoke["output_dir"] = str(tmp_path / "results")
    smoke["trainer"].update(
        val_check_interval=2, log_every_n_steps=1, limit_val_batches=2, limit_test_batches=2,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    smoke["data"]["init_args"].update(block_size=32, batch_size=4, eval_batch_size=16)
    first = {**smoke["models"][0], "budget": {"tokens": 512}}  # 4 steps of 4 x 32
    broken = {"name": "broken", "config": "bdh", "model_args": {"n_embd": 30, "n_head": 4}}
    smoke["models"] = [first, broken]
    records = matrix.run_benchmark(spec.load_spec(write(tmp_path, smoke)), "cmd")

    out = tmp_path / "results" / smoke["experiment"]
    result = json.loads((out / "metrics.json").read_text())
    assert result["records"] == json.loads(json.dumps(records))
    ok, failed = result["records"]
    assert ok["model"] == first["name"] and ok["status"] == "ok", ok["error"]
    for key in REQUIRED:
        assert ok[key] is not None, key
    for key in NUMBERS:
        assert isinstance(ok[key], int | float) and math.isfinite(ok[key]), key
    assert (ok["train_steps"], ok["train_tokens"]) == (4, 512)
    assert ok["test_tokens"] == 2 * 16 * 32  # limit_test_batches x eval batch x block
    assert ok["memory_kind"] == "cpu_rss" and ok["tokenizer"] == "byte"
    assert ok["train_flops_per_token"] > 2 * ok["flops_per_token"] > 0
    assert ok["device"].endswith("1 threads)")  # the config's env reached the runs
    curves = charts.read_metrics(ok["fit_run"])  # Lightning's ThroughputMonitor was on
    tokens, seconds = curves["train/lengths"][-1][1], curves["train/time"][-1][1]
    assert ok["train_tokens_per_sec"] == pytest.approx(tokens / seconds)
    assert Path(ok["checkpoint"]).name == "best.ckpt"
    assert (failed["status"], failed["failed_stage"]) == ("failed", "build")
    assert "n_embd" in failed["error"]

    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == [first["name"], "broken"]
    assert float(rows[0]["test_bpb"]) == pytest.approx(ok["test_bpb"])
    summary = (out / "summary.md").read_text()
    assert f"| {first['name']} |" in summary and "`broken` lr1x seed 1337 in build" in summary
    assert yaml.safe_load((out / "benchmark.yaml").read_text())["experiment"] == "smoke"
    assert Path(ok["config"]) == out / "configs" / first["name"] / "lr1x-seed1337.yaml"
    assert Path(ok["fit_run"]).parent == out / "runs" / first["name"] / "lr1x-seed1337"
    for chart in CURVE_CHARTS:  # one model tested: no comparison charts
        assert (out / "charts" / f"{chart}.png").read_bytes()[:4] == b"\x89PNG", chart
    progress = capsys.readouterr().out
    assert f"[1/2] {first['name']} lr1x seed 1337: done" in progress
    assert "[2/2] broken lr1x seed 1337: FAILED" in progress


def in_process_stage(stage, config_path, root, extra=(), env=None, echo=True, cwd=None) -> Path:
    """runner.run_stage without the subprocess (the same CLI, in this process): ten stages
    would spend a minute importing torch and Lightning ten times."""
    from bdh_pl.bench.runner import StageFailed
    from bdh_pl.cli import main

    before = set(root.glob("version_*"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        main([stage, "--config", str(config_path), *extra])
    except SystemExit as exit_:
        if exit_.code:
            raise StageFailed(f"{stage} exit code {exit_.code}") from None
    (new,) = set(root.glob("version_*")) - before
    return new


@pytest.mark.slow
def test_sweep_and_seeds_at_equal_flops_end_to_end(data_dir, tmp_path, capsys, monkeypatch):
    """The committed smoke matrix shrunk to a few steps: two models at the same training
    FLOPs, two learning rates on the first seed (fit only), the winner by validation loss
    tested and repeated on a second seed; plus a model that cannot be built, recorded as
    failed while the matrix goes on. Stages run in this process (the subprocess path is the
    test above)."""
    import torch

    monkeypatch.setattr(run_queue, "run_stage", in_process_stage)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what the config's env gives the subprocesses
    smoke = yaml.safe_load((REPO / "configs" / "benchmark" / "smoke.yaml").read_text())
    smoke["output_dir"] = str(tmp_path / "results")
    smoke["trainer"].update(
        val_check_interval=2, log_every_n_steps=1, limit_val_batches=2, limit_test_batches=2,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    smoke["data"]["init_args"].update(block_size=32, batch_size=4, eval_batch_size=16)
    smoke["budget"] = {"flops": 1.5e9}  # ~4 steps of 4 x 32 for the BDH, ~8 for the LLaMA
    smoke["sweep"] = {"lr": [1, 2]}
    smoke["seeds"] = [11, 12]
    bdh, _, llama = smoke["models"]
    broken = {"name": "broken", "config": "bdh", "model_args": {"n_embd": 30, "n_head": 4}}
    smoke["models"] = [bdh, llama, broken]
    try:
        records = matrix.run_benchmark(spec.load_spec(write(tmp_path, smoke)), "cmd")
    finally:
        torch.set_num_threads(threads)

    out = tmp_path / "results" / smoke["experiment"]
    result = json.loads((out / "metrics.json").read_text())
    assert result["records"] == json.loads(json.dumps(records))
    by_model = {}
    for r in records:
        by_model.setdefault(r["model"], []).append(r)
    assert list(by_model) == [bdh["name"], llama["name"], "broken"]
    for name in (bdh["name"], llama["name"]):
        first, second, repeat = by_model[name]
        assert [r["status"] for r in (first, second, repeat)] == ["ok"] * 3, first["error"]
        assert [(r["setting"], r["seed"]) for r in (first, second, repeat)][:2] == [
            ("lr1x", 11),
            ("lr2x", 11),
        ]
        assert second["learning_rate"] == pytest.approx(2 * first["learning_rate"])
        winner, loser = sorted((first, second), key=lambda r: r["best_val_loss"])
        assert (winner["selected"], loser["selected"]) == (True, False)
        assert winner["test_bpb"] > 0 and loser["test_bpb"] is None  # only the winner tested
        assert (repeat["setting"], repeat["seed"], repeat["selected"]) == (
            winner["setting"],
            12,
            True,
        )
        repeat_config = yaml.safe_load(Path(repeat["config"]).read_text())
        assert repeat_config["seed_everything"] == 12
        assert repeat_config["data"]["init_args"]["seed"] == 12
        for r in (first, second, repeat):
            per_step = r["tokens_per_step"]
            steps = math.ceil(1.5e9 / (r["train_flops_per_token"] * per_step))
            assert (r["train_steps"], r["train_tokens"]) == (steps, steps * per_step)
            assert r["train_flops"] == pytest.approx(steps * per_step * r["train_flops_per_token"])
            assert r["budget"] == "flops 1.5e+09"
            assert r["load_avg_start"] is not None and r["load_avg_end"] is not None
        for key in REQUIRED:
            assert repeat[key] is not None, key
        for key in NUMBERS:
            assert isinstance(repeat[key], int | float) and math.isfinite(repeat[key]), key
        assert repeat["test_tokens"] == 2 * 16 * 32  # limit_test_batches x eval batch x block
        assert Path(repeat["checkpoint"]).name == "best.ckpt"
        curves = charts.read_metrics(repeat["fit_run"])  # Lightning's ThroughputMonitor
        tokens, seconds = curves["train/lengths"][-1][1], curves["train/time"][-1][1]
        assert repeat["train_tokens_per_sec"] == pytest.approx(tokens / seconds)
    bdh_steps, llama_steps = (by_model[m][0]["train_steps"] for m in (bdh["name"], llama["name"]))
    assert bdh_steps < llama_steps  # same FLOPs: the BDH spends more per token
    assert [(r["status"], r["failed_stage"]) for r in by_model["broken"]] == [
        ("failed", "build")
    ] * 2
    assert "n_embd" in by_model["broken"][0]["error"]

    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(records) == 8
    summary = (out / "summary.md").read_text()
    table = {}  # the first table's rows (the sweep table follows)
    for line in summary.splitlines():
        if line.startswith("| "):
            table.setdefault(line.split(" | ")[0][2:], line)
    for name in (bdh["name"], llama["name"]):
        cells = table[name].split(" | ")
        assert cells[3] == "2"  # seeds
        tested = [r["test_bpb"] for r in by_model[name] if r["test_bpb"] is not None]
        assert cells[12] == f"{sum(tested) / 2:.3f}"  # mean test bpb
        assert cells[14] == f"{min(tested):.3f}-{max(tested):.3f}"
    assert "ahead of" in summary and "seed spread" in summary and "Sweep (first seed" in summary
    assert "`broken` lr1x seed 11 in build" in summary
    assert yaml.safe_load((out / "benchmark.yaml").read_text())["seeds"] == [11, 12]
    for chart in [*CURVE_CHARTS, *COMPARISON_CHARTS, SWEEP_CHART]:
        assert (out / "charts" / f"{chart}.png").read_bytes()[:4] == b"\x89PNG", chart
    progress = capsys.readouterr().out
    assert f"{bdh['name']}: chosen" in progress and "broken lr2x seed 11: FAILED" in progress


def test_the_summary_header_names_every_commit_its_runs_ran_on():
    records = [
        {"git_commit": "a" * 40, "git_dirty": False},
        {"git_commit": "b" * 40, "git_dirty": True},
        {"git_commit": "a" * 40, "git_dirty": False},
    ]
    assert report.commits_line(records) == (
        f"git {'a' * 12} (2 runs), {'b' * 12} with uncommitted changes (1 run)"
    )
    folder = REPO / "results" / "shakespeare-overfit"  # runs on two commits, one dirty
    overfit = json.loads((folder / "metrics.json").read_text())
    assert "with uncommitted changes (1 run)" in report.commits_line(overfit["records"])
    assert report.commits_line(overfit["records"]) in (folder / "summary.md").read_text()
