import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from bdh_pl import benchmark
from bdh_pl.errors import UserError
from bdh_pl.tools import plot as plotting

REPO = Path(__file__).resolve().parents[1]
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
        "max_tokens": 1000,
        "models": [{"name": "a", "config": "bdh"}],
    }
    return {**config, **changes}


def test_budgets_names_and_zero_shot(tmp_path):
    models = [
        "bdh",
        {"name": "b", "config": "configs/model/bdh.yaml", "max_steps": 7},
        {"name": "c", "config": ["bdh"], "max_tokens": "none"},
    ]
    config = base(models=models, env={"OMP_NUM_THREADS": 1}, trainer={"precision": "32-true"})
    bench = benchmark.load_benchmark(write(tmp_path, config))
    assert bench.env == {"OMP_NUM_THREADS": "1"}
    a, b, c = bench.models
    assert (a.name, a.configs, a.max_tokens, a.max_steps) == (
        "bdh",
        ["configs/model/bdh.yaml"],
        1000,
        None,
    )
    assert (b.max_steps, b.max_tokens, b.trains) == (7, None, True)
    assert not c.trains  # zero-shot: test only
    assert benchmark.max_steps_for(a, per_step=512) == 2  # ceil(1000 / 512)
    assert benchmark.max_steps_for(b, per_step=512) == 7
    again = benchmark.load_benchmark(write(tmp_path, benchmark.resolved_benchmark(bench)))
    assert again.models == bench.models  # the resolved config runs the same matrix
    assert again.shared == bench.shared and again.env == bench.env


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_tokens": None, "models": ["bdh"]}, "zero-shot"),  # top-level none is allowed
        ({"max_tokens": 10, "max_steps": 10}, "not both"),
        ({"max_tokens": -5}, "positive integer"),
        ({"models": [{"config": "bdh", "max_steps": 1.5}]}, "positive integer"),
        ({"models": [{"config": "no-such-model"}]}, "no-such-model"),
        ({"models": [{"config": "configs/model/missing.yaml"}]}, "not found"),
        ({"models": ["bdh", "bdh"]}, "unique"),
        ({"models": []}, "non-empty"),
        ({"experiment": "../x"}, "plain name"),
        ({"dataset": "configs/nope.yaml"}, "not found"),
        ({"epochs": 3}, "unknown keys"),
        ({"env": ["OMP_NUM_THREADS=1"]}, "env must map"),
    ],
)
def test_bad_benchmark_configs_are_user_errors(tmp_path, changes, message):
    config = base(**changes)
    if message == "zero-shot":
        assert not benchmark.load_benchmark(write(tmp_path, config)).models[0].trains
        return
    with pytest.raises(UserError, match=message):
        benchmark.load_benchmark(write(tmp_path, config))


def test_a_model_without_budget_is_a_user_error(tmp_path):
    config = base()
    del config["max_tokens"]
    with pytest.raises(UserError, match="needs a budget"):
        benchmark.load_benchmark(write(tmp_path, config))


def test_layers_dataset_then_model_then_shared_then_init_args(tmp_path):
    config = base(
        trainer={"precision": "32-true", "accumulate_grad_batches": 2},
        data={"init_args": {"block_size": 32, "batch_size": 3}},
        model={"init_args": {"learning_rate": 0.005, "n_layer": 3}},
        models=[{"name": "a", "config": "bdh", "init_args": {"n_layer": 1}}],
    )
    bench = benchmark.load_benchmark(write(tmp_path, config))
    resolved = benchmark.lightning_config(bench, bench.models[0])
    model = resolved["model"]
    assert model["class_path"] == "bdh_pl.training.lit_models.BDHLM"
    assert model["init_args"]["n_layer"] == 1  # the entry's init_args win
    assert model["init_args"]["n_embd"] == 256  # from the model YAML
    assert model["init_args"]["learning_rate"] == 0.005  # the shared recipe
    assert resolved["data"]["init_args"]["block_size"] == 32  # shared data settings win
    assert resolved["trainer"]["precision"] == "32-true"
    assert benchmark.tokens_per_step(resolved) == 3 * 32 * 2


def test_invalid_lightning_config_names_the_problem(tmp_path):
    config = base(models=[{"name": "a", "config": "bdh", "init_args": {"no_such_arg": 1}}])
    bench = benchmark.load_benchmark(write(tmp_path, config))
    with pytest.raises(UserError, match="no_such_arg"):
        benchmark.lightning_config(bench, bench.models[0])


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "benchmark").glob("*.yaml")))
def test_committed_benchmark_configs_resolve(path):
    bench = benchmark.load_benchmark(path)
    for entry in bench.models:
        resolved = benchmark.lightning_config(bench, entry)
        assert benchmark.tokens_per_step(resolved) > 0


@pytest.mark.slow
def test_smoke_benchmark_end_to_end(data_dir, tmp_path, capsys):
    """The committed smoke matrix, shrunk to a few steps and eval batches and to its first
    model, plus a model that cannot be built: all files, one record per model, the failure
    recorded and the matrix finished."""
    smoke = yaml.safe_load((REPO / "configs" / "benchmark" / "smoke.yaml").read_text())
    smoke["output_dir"] = str(tmp_path / "results")
    smoke["trainer"].update(
        val_check_interval=2, log_every_n_steps=1, limit_val_batches=2, limit_test_batches=2,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    smoke["data"]["init_args"].update(block_size=32, batch_size=4, eval_batch_size=16)
    first = {**smoke["models"][0], "max_tokens": 512}  # 4 steps of 4 x 32
    broken = {"name": "broken", "config": "bdh", "init_args": {"n_embd": 30, "n_head": 4}}
    smoke["models"] = [first, broken]
    records = benchmark.run_benchmark(write(tmp_path, smoke))

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
    curves = plotting.read_metrics(ok["fit_run"])  # Lightning's ThroughputMonitor was on
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
    assert f"| {first['name']} |" in summary and "`broken` in build" in summary
    assert yaml.safe_load((out / "benchmark.yaml").read_text())["experiment"] == "smoke"
    assert (out / "configs" / f"{first['name']}.yaml").is_file()
    for chart in plotting.BENCHMARK_CHARTS:
        assert (out / "charts" / f"{chart}.png").read_bytes()[:4] == b"\x89PNG", chart
    progress = capsys.readouterr().out
    assert f"[1/2] {first['name']}: done" in progress and "[2/2] broken: FAILED" in progress
