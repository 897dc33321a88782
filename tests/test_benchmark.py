import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from bdh_pl.bench import matrix, resolve, spec
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
        "budget": {"tokens": 1000},
        "models": [{"name": "a", "config": "bdh"}],
    }
    return {**config, **changes}


def test_budgets_names_and_zero_shot(tmp_path):
    models = [
        {"config": "bdh"},
        {"name": "b", "config": "configs/model/bdh.yaml", "budget": {"steps": 7}},
        {"name": "c", "config": ["bdh"], "budget": {"tokens": 0}},
    ]
    config = base(models=models, env={"OMP_NUM_THREADS": 1}, trainer={"precision": "32-true"})
    bench = spec.load_spec(write(tmp_path, config))
    assert bench.env == {"OMP_NUM_THREADS": "1"}
    a, b, c = bench.models
    assert (a.name, a.configs, a.budget.tokens, a.budget.steps) == (
        "bdh",
        ["configs/model/bdh.yaml"],
        1000,
        None,
    )
    assert (b.budget.steps, b.budget.tokens, b.budget.trains) == (7, None, True)
    assert not c.budget.trains  # zero-shot: test only
    assert a.budget.max_steps(512) == 2  # ceil(1000 / 512)
    assert b.budget.max_steps(512) == 7
    (tmp_path / "again.yaml").write_text(spec.as_yaml(bench))
    again = spec.load_spec(tmp_path / "again.yaml")
    assert again == bench  # the resolved config runs the same matrix


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"budget": {"tokens": 0}, "models": [{"config": "bdh"}]}, "zero-shot"),
        ({"budget": {"tokens": 10, "steps": 10}}, "not both"),
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
    if message == "zero-shot":
        assert not spec.load_spec(write(tmp_path, config)).models[0].budget.trains
        return
    with pytest.raises(UserError, match=message):
        spec.load_spec(write(tmp_path, config))


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
    with pytest.raises(UserError, match="cannot write results"):
        matrix.run_benchmark(bench, "cmd")
    assert blocker.read_text() == ""  # nothing written


def test_layers_dataset_then_model_then_shared_then_init_args(tmp_path):
    config = base(
        trainer={"precision": "32-true", "accumulate_grad_batches": 2},
        data={"init_args": {"block_size": 32, "batch_size": 3}},
        model={"init_args": {"learning_rate": 0.005, "n_layer": 3}},
        models=[{"name": "a", "config": "bdh", "model_args": {"n_layer": 1}}],
    )
    bench = spec.load_spec(write(tmp_path, config))
    resolved = resolve.lightning_config(bench, bench.models[0])
    model = resolved["model"]
    assert model["class_path"] == "bdh_pl.training.lit_models.BDHLM"
    assert model["init_args"]["n_layer"] == 1  # the entry's init_args win
    assert model["init_args"]["n_embd"] == 256  # from the model YAML
    assert model["init_args"]["learning_rate"] == 0.005  # the shared recipe
    assert resolved["data"]["init_args"]["block_size"] == 32  # shared data settings win
    assert resolved["trainer"]["precision"] == "32-true"
    assert resolve.tokens_per_step(resolved) == 3 * 32 * 2


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
        assert resolve.tokens_per_step(resolved) > 0


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
