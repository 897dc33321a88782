"""The compute frontier's plan, run with a stand-in for the fit and test subprocesses (each
writes what a real run writes, its loss a known function of the model's size and steps):
which runs are made, in which order of choices, and that a killed matrix resumes."""

import copy
import csv
import json
import math
import os
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from bdh_pl.bench import budget, matrix, resolve, run_queue, scaling, spec
from bdh_pl.errors import UserError

REPO = Path(__file__).resolve().parents[3]
SIZES = [16, 24, 32, 48, 64]  # n_embd of the ladder
BUDGETS = [2e9, 6e9, 2e10]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


_ONCE: dict = {}


def _once(function, key):
    """`function` computed once per key (and folder) in this module, a copy returned each time."""

    def memoized(*args):
        found = (function.__name__, os.getcwd(), key(*args))
        if found not in _ONCE:
            _ONCE[found] = function(*args)
        return copy.deepcopy(_ONCE[found])

    return memoized


@pytest.fixture(autouse=True)
def _resolve_once(monkeypatch):
    """A model entry's config resolved by LightningCLI's parser, and an architecture's FLOPs
    counted, once for this module: both are functions of their inputs alone, and doing them
    again for every run of every matrix here was most of this file's CPU. What these tests
    check (the plan, the resume, the records) is unchanged."""
    layers = lambda bench, entry: tuple(resolve.layers(bench, entry))  # noqa: E731
    shape = lambda model, data: (type(model).__name__, repr(model.config), data.block_size)  # noqa: E731
    monkeypatch.setattr(resolve, "lightning_config", _once(resolve.lightning_config, layers))
    monkeypatch.setattr(resolve, "static_figures", _once(resolve.static_figures, shape))


def frontier_spec(tmp_path, **changes) -> spec.BenchmarkSpec:
    ladder = [{"name": f"bdh-{d}", "model_args": {"n_embd": d, "n_head": 2}} for d in SIZES]
    config = {
        "experiment": "frontier",
        "output_dir": str(tmp_path / "results"),
        "dataset": "configs/shakespeare.yaml",
        "trainer": {"precision": "32-true"},
        "data": {"init_args": {"block_size": 32, "batch_size": 4}},
        "model": {"init_args": {"training": {"warmup_fraction": 0.1},
                                "config": {"n_layer": 1, "mlp_internal_dim_multiplier": 4}}},
        "budgets": [{"flops": b} for b in BUDGETS],
        "sweep": {"lr": [0.5, 1, 2]},
        "seeds": [1, 2],
        "validations": 4,
        "models": [{"name": "bdh", "config": "bdh", "sizes": ladder, "sizes_per_budget": 3}],
        **changes,
    }  # fmt: skip
    path = tmp_path / "frontier.yaml"
    path.write_text(yaml.safe_dump(config))
    return spec.load_spec(path)


def fake_loss(config: dict) -> float:
    """Lower for more steps and, up to a point, for wider models; best at lr x1 (2e-3 here is
    the base: configs/model/bdh.yaml's 1e-3)."""
    model = config["model"]["init_args"]
    steps = config["trainer"]["max_steps"]
    width = model["config"]["n_embd"]
    lr_penalty = abs(math.log2(model["training"]["learning_rate"] / 1e-3)) * 0.05
    return 1.0 + 30 / steps**0.5 + abs(width - 0.05 * steps**0.9) / 50 + lr_penalty


class FakeStages:
    """runner.run_stage's stand-in: writes the version folder a real stage writes."""

    def __init__(self, kill_after: int | None = None, loss=None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.kill_after = kill_after
        self.loss = loss or fake_loss
        self.lock = threading.Lock()

    def __call__(self, stage, config_path, root, extra=(), env=None, echo=True, cwd=None) -> Path:
        with self.lock:
            if self.kill_after is not None and len(self.calls) >= self.kill_after:
                raise KeyboardInterrupt  # the matrix killed mid-way
            self.calls.append((stage, str(config_path)))
            base = Path(cwd) if cwd is not None else Path.cwd()  # as runner.run_stage
            where = root if root.is_absolute() else base / root
            where.mkdir(parents=True, exist_ok=True)
            version = where / f"version_{len(list(where.glob('version_*')))}"
            version.mkdir()
        time.sleep(0.01)  # a stage takes time: other threads go on meanwhile
        config = yaml.safe_load((base / config_path).read_text())
        loss = self.loss(config)
        steps = config["trainer"]["max_steps"]
        if stage == "fit":
            with open(version / "metrics.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["step", "train/loss", "val/loss", "val/bpb"])
                writer.writerow([steps - 1, loss, loss, loss / math.log(2)])
            (version / "checkpoints").mkdir()
            torch.save(
                {"global_step": steps, "callbacks": {}}, version / "checkpoints" / "last.ckpt"
            )
        else:
            metrics = {
                "test/loss": loss,
                "test/bpb": loss / math.log(2),
                "test/ppl": math.exp(loss),
            }
            (version / "test_metrics.json").write_text(json.dumps({"metrics": metrics}))
        return root / version.name


def test_budgets_and_ladders_expand_to_the_right_runs(tmp_path):
    bench = frontier_spec(tmp_path)
    (bdh,) = bench.models
    assert bdh.sweep_size == "bdh-24"  # the middle of the smallest budget's window
    windows = [
        [bdh.sizes[j].name for j in budget.ladder_window(len(SIZES), 3, 3, i)] for i in range(3)
    ]
    assert windows == [
        ["bdh-16", "bdh-24", "bdh-32"], ["bdh-24", "bdh-32", "bdh-48"], ["bdh-32", "bdh-48", "bdh-64"]
    ]  # fmt: skip
    again = tmp_path / "again.yaml"
    again.write_text(spec.as_yaml(bench))
    assert spec.load_spec(again) == bench  # the resolved spec runs the same frontier


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"budget": {"flops": 1e9}}, "`budget` .* or `budgets` .*, not both"),
        ({"budgets": [{"flops": 2e9}, {"tokens": 5}]}, "one kind in ascending order"),
        ({"budgets": [{"flops": 2e9}, {"flops": 1e9}]}, "one kind in ascending order"),
        ({"budgets": [{"zero_shot": True}]}, "a frontier trains"),
        ({"seeds": [-1]}, r"seeds: each must be in \[0, 2\*\*32\)"),
        # issue 32: sizes named like their family were silently dropped (one run for two)
        (
            {
                "models": [
                    {
                        "name": "bdh",
                        "config": "bdh",
                        "sizes": [
                            {"name": "bdh", "model_args": {"n_embd": 32}},
                            {"name": "bdh", "model_args": {"n_embd": 48}},
                        ],
                    }
                ]
            },
            r"unique across the benchmark, \['bdh'\] repeats",
        ),
        (
            {
                "models": [
                    {"name": "a", "config": "bdh", "sizes": [{"name": "s"}, {"name": "a-1"}]},
                    {"name": "b", "config": "bdh", "sizes": [{"name": "s"}, {"name": "a"}]},
                ]
            },
            r"\['a', 's'\] repeats",
        ),
    ],
)
def test_bad_frontier_specs_are_one_line_errors(tmp_path, changes, message):
    with pytest.raises(UserError, match=message):
        frontier_spec(tmp_path, **changes)


def test_named_windows_replace_the_even_ones(data_dir, tmp_path, monkeypatch):
    windows = [["bdh-16", "bdh-24", "bdh-32"], ["bdh-16", "bdh-24", "bdh-32", "bdh-48"],
               ["bdh-24", "bdh-32", "bdh-64"]]  # fmt: skip
    bench = frontier_spec(tmp_path, models=[_family(windows=windows)], seeds=[1])
    (bdh,) = bench.models
    got = budget.budget_windows(bdh.sizes, bdh.sizes_per_budget, bdh.windows, len(BUDGETS))
    assert [[s.name for s in w] for w in got] == windows
    monkeypatch.setattr(run_queue, "run_stage", FakeStages())
    records = matrix.run_benchmark(bench, "cmd")
    trained = {(r["model"], r["budget_flops"]) for r in records if r["setting"] == "lr1x"}
    expected = {(name, b) for b, window in zip(BUDGETS, windows, strict=True) for name in window}
    assert trained >= expected  # and the next sizes where a best was at an edge
    with pytest.raises(
        UserError, match="windows: give one non-empty list of size names per budget"
    ):
        frontier_spec(tmp_path, models=[_family(windows=windows[:2])])
    with pytest.raises(UserError, match=r"windows: no size named \['bdh-7'\]"):
        frontier_spec(tmp_path, models=[_family(windows=[["bdh-7"], ["bdh-16"], ["bdh-16"]])])
    with pytest.raises(UserError, match=r"at least 3 sizes .* budgets \[2\] train fewer"):
        frontier_spec(tmp_path, models=[_family(windows=[*windows[:2], ["bdh-16", "bdh-24"]])])


def _family(**changes) -> dict:
    ladder = [{"name": f"bdh-{d}", "model_args": {"n_embd": d, "n_head": 2}} for d in SIZES]
    return {"name": "bdh", "config": "bdh", "sizes": ladder, "sizes_per_budget": 3, **changes}


def test_a_ladder_needs_budgets_and_a_sweep_size_of_the_smallest_budget(tmp_path):
    bench = frontier_spec(tmp_path)
    entry = {"name": "bdh", "config": "bdh", "sizes": [{"name": "x"}]}
    config = {**yaml.safe_load(spec.as_yaml(bench)), "budgets": None, "budget": {"flops": 1e9}}
    config["models"] = [entry]
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(UserError, match="sizes belong to a compute frontier"):
        spec.load_spec(tmp_path / "b.yaml")
    with pytest.raises(UserError, match="sweep_size 'bdh-48'.*smallest budget"):
        frontier_spec(tmp_path, models=[{**yaml.safe_load(spec.as_yaml(bench))["models"][0],
                                          "sweep_size": "bdh-48"}])  # fmt: skip


def _runs(records):
    return [(r["model"], r["budget"], r["setting"], r["seed"]) for r in records]


def test_the_frontier_plan_sweeps_trains_the_windows_and_repeats_the_best(
    data_dir, tmp_path, monkeypatch
):
    jobs = 2  # runs at once (the resume test below runs them one at a time)
    stages = FakeStages()
    monkeypatch.setattr(run_queue, "run_stage", stages)
    records = matrix.run_benchmark(frontier_spec(tmp_path, jobs=jobs), "cmd")
    assert all(r["status"] == "ok" for r in records), [r["error"] for r in records]
    by_run = {(r["model"], r["budget"], r["setting"], r["seed"]): r for r in records}
    assert len(by_run) == len(records)  # no run twice
    small, middle, large = (budget.budget_text(budget.Budget(flops=b)) for b in BUDGETS)
    # The sweep: three learning rates on the sweep size at the smallest budget, lr1x wins.
    sweep = [
        r for r in records if r["model"] == "bdh-24" and r["budget"] == small and r["seed"] == 1
    ]
    assert sorted(r["setting"] for r in sweep) == ["lr0.5x", "lr1x", "lr2x"]
    assert [r["setting"] for r in sweep if r["selected"]] == ["lr1x"]
    # Every (budget, size) of the windows with the chosen setting, on the first seed; where
    # the best was the smallest tried, the next smaller size too (the fake loss favours small
    # sizes): 6e9's window starts at bdh-24, 2e10's at bdh-32.
    first_seed = {
        (r["model"], r["budget"]) for r in records if r["setting"] == "lr1x" and r["seed"] == 1
    }
    assert first_seed == {
        ("bdh-16", small), ("bdh-24", small), ("bdh-32", small),
        ("bdh-16", middle), ("bdh-24", middle), ("bdh-32", middle), ("bdh-48", middle),
        ("bdh-16", large), ("bdh-24", large), ("bdh-32", large), ("bdh-48", large),
        ("bdh-64", large),
    }  # fmt: skip
    names = [f"bdh-{d}" for d in SIZES]
    for text in (small, middle, large):  # each point interior, or the ladder ends there
        tried = {r["model"]: r["best_val_loss"] for r in records
                 if r["budget"] == text and r["setting"] == "lr1x" and r["seed"] == 1}  # fmt: skip
        best = min(tried, key=tried.get)
        point = next(r for r in records if r["budget"] == text and r["frontier_point"])
        i = names.index(best)
        if 0 < i < len(names) - 1:
            assert {names[i - 1], names[i + 1]} <= set(tried) and point["ladder_edge"] is None
        else:
            assert point["ladder_edge"] == f"the ladder has no smaller size than {best}"
    # At each budget the lowest validation loss is the frontier point, tested on both seeds.
    for text in (small, middle, large):
        cell = [r for r in records if r["budget"] == text and r["setting"] == "lr1x"]
        best = min((r for r in cell if r["seed"] == 1), key=lambda r: r["best_val_loss"])
        points = [r for r in cell if r["frontier_point"]]
        assert {(r["model"], r["seed"]) for r in points} == {(best["model"], 1), (best["model"], 2)}
        assert all(r["test_bpb"] is not None for r in points)
        assert all(r["test_bpb"] is None for r in cell if not r["frontier_point"])
        for r in cell:
            assert r["family"] == "bdh" and r["budget_flops"] == float(text.split()[1])
            assert r["warmup_steps"] == round(0.1 * r["train_steps"])
            config = yaml.safe_load(Path(r["config"]).read_text())
            assert config["trainer"]["val_check_interval"] == r["train_steps"] // 4
    # Each run's fit ran once, tests only for the frontier points.
    fits = [c for s, c in stages.calls if s == "fit"]
    assert len(fits) == len(set(fits)) == 3 + 11 + 3  # sweep, the other cells, seed 2
    assert sum(s == "test" for s, _ in stages.calls) == 6


def test_a_killed_frontier_resumes_without_running_finished_runs_again(
    data_dir, tmp_path, monkeypatch
):
    bench = frontier_spec(tmp_path)
    monkeypatch.setattr(run_queue, "run_stage", FakeStages(kill_after=5))
    with pytest.raises(KeyboardInterrupt):
        matrix.run_benchmark(bench, "cmd")
    done = json.loads((bench.out_dir / "metrics.json").read_text())["records"]
    finished = {r["config_hash"] for r in done if r["train_steps"] is not None}
    assert len(finished) == 5  # the three sweep fits and two more (the 6th call was killed)
    # A run that had not ended says so (a reader of metrics.json mid-run, or after a kill).
    assert not [r for r in done if r["status"] == "ok" and r["train_steps"] is None]
    assert "running" in {r["status"] for r in done}
    assert "Failed" not in (bench.out_dir / "summary.md").read_text()

    again = FakeStages()
    monkeypatch.setattr(run_queue, "run_stage", again)
    records = matrix.run_benchmark(bench, "cmd")
    refit = {
        r["config_hash"]
        for r in records
        if any(r["config"] == c for s, c in again.calls if s == "fit")
    }
    assert not refit & finished  # nothing that had finished ran again
    assert len([c for s, c in again.calls if s == "fit"]) == 17 - 5

    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    monkeypatch.setattr(run_queue, "run_stage", FakeStages())
    uninterrupted = matrix.run_benchmark(frontier_spec(fresh_dir), "cmd")
    assert sorted(_runs(records)) == sorted(_runs(uninterrupted))
    same = {k: r["best_val_loss"] for r in uninterrupted for k in [_runs([r])[0]]}
    assert {_runs([r])[0]: r["best_val_loss"] for r in records} == same


def test_a_second_benchmark_into_the_same_folder_is_refused(tmp_path, monkeypatch):
    bench = frontier_spec(tmp_path)
    bench.out_dir.mkdir(parents=True)
    from bdh_pl.fileio import lock_folder

    held = lock_folder(bench.out_dir)
    try:
        with pytest.raises(UserError, match="another benchmark is writing to .*another experiment"):
            matrix.run_benchmark(bench, "cmd")
    finally:
        import os

        os.close(held)


def test_runs_in_flight_keep_their_folder_while_a_config_is_parsed(data_dir, tmp_path, monkeypatch):
    """jsonargparse moves the process into a config's folder while it parses it; runs in the
    other threads must not follow it (their logs, configs and results stay where they are)."""
    from bdh_pl.bench import resolve

    parse = resolve.lightning_config
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def parse_moving(bench, entry):
        here = os.getcwd()
        os.chdir(elsewhere)  # what change_to_path_dir does, for a moment
        try:
            time.sleep(0.05)
            os.chdir(here)
            return parse(bench, entry)
        finally:
            os.chdir(here)

    monkeypatch.setattr(resolve, "lightning_config", parse_moving)
    monkeypatch.setattr(run_queue, "run_stage", FakeStages())
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # the benchmark's folder: its paths are relative to it
    dataset = str(REPO / "configs" / "shakespeare.yaml")
    bench = frontier_spec(tmp_path, output_dir="results", dataset=dataset, jobs=2)
    records = matrix.run_benchmark(bench, "cmd")
    assert all(r["status"] == "ok" for r in records), [r["error"] for r in records]
    assert not any(elsewhere.iterdir())  # nothing landed in the folder of the moment
    assert (work / "results" / "frontier" / "frontier.json").is_file()
    assert all((work / r["fit_run"]).is_dir() for r in records)
    results = json.loads((work / "results" / "frontier" / "metrics.json").read_text())
    assert results["config"] == "results/frontier/benchmark.yaml"  # as named, not absolute


def one_budget_spec(tmp_path, sizes=SIZES, **changes) -> spec.BenchmarkSpec:
    """One budget, the first three sizes of the ladder, one rate, one seed: a few runs."""
    ladder = [{"name": f"bdh-{d}", "model_args": {"n_embd": d, "n_head": 2}} for d in sizes]
    family = {
        "name": "bdh",
        "config": "bdh",
        "sizes": ladder,
        "sizes_per_budget": min(3, len(sizes)),
    }
    defaults = {"budgets": [{"flops": 2e9}], "sweep": {"lr": [1]}, "seeds": [1]}
    return frontier_spec(tmp_path, **{"models": [family], **defaults, **changes})


def wider_is_better(config: dict) -> float:
    return 3.0 - config["model"]["init_args"]["config"]["n_embd"] / 100


def test_an_edge_optimum_adds_the_next_size_until_the_ladder_ends(data_dir, tmp_path, monkeypatch):
    stages = FakeStages(loss=wider_is_better)
    monkeypatch.setattr(run_queue, "run_stage", stages)
    records = matrix.run_benchmark(one_budget_spec(tmp_path), "cmd")
    # The window is bdh-16, -24, -32; its best (-32, the largest) adds -48, then -64.
    order = [r["model"] for r in records]
    assert order == ["bdh-24", "bdh-16", "bdh-32", "bdh-48", "bdh-64"]
    (point,) = [r for r in records if r["frontier_point"]]
    assert point["model"] == "bdh-64"
    assert point["ladder_edge"] == "the ladder has no larger size than bdh-64"
    assert all(0 < r["epochs"] < 1 for r in records)
    assert all(r["epochs"] == r["train_tokens"] / r["train_split_tokens"] for r in records)


def test_the_epoch_cap_marks_a_run_bound_and_never_runs_it(data_dir, tmp_path, monkeypatch):
    stages = FakeStages(loss=lambda c: 2.0 + c["model"]["init_args"]["config"]["n_embd"] / 100)
    monkeypatch.setattr(run_queue, "run_stage", stages)
    # The smallest size reads the most tokens: at this cap bdh-16 would exceed it.
    bench = one_budget_spec(tmp_path, max_epochs_of_data=0.025)
    records = matrix.run_benchmark(bench, "cmd")
    by_model = {r["model"]: r for r in records}
    small = by_model["bdh-16"]
    assert small["status"] == "bound" and small["train_steps"] is None
    assert small["epochs"] > 0.025 and small["bound"].startswith(f"needs {small['epochs']:.2f}")
    assert not [c for _, c in stages.calls if "/bdh-16/" in c]  # never run
    assert all(r["bound"] is None and r["epochs"] <= 0.025 for r in records if r is not small)
    (point,) = [r for r in records if r["frontier_point"]]
    assert point["model"] == "bdh-24"  # the best usable size, at the edge because of the cap
    assert point["ladder_edge"] == f"the next smaller size bdh-16 {small['bound']}"


def lr_depends_on_budget(config: dict) -> float:
    """Best multiplier x4 at the smallest budget (2e9), x1 from 2e10 on: x2 steps apart."""
    model, steps = config["model"]["init_args"], config["trainer"]["max_steps"]
    best = 4e-3 if steps < 1000 else 1e-3  # 2e9: 148 steps of bdh-24, 2e10: 1475
    return 2.0 + abs(math.log2(model["training"]["learning_rate"] / best)) * 0.1 + 10 / steps


def test_lr_sweeps_widen_until_interior_and_rates_follow_the_sweeps_around_them(
    data_dir, tmp_path, monkeypatch
):
    """Issue 27 (4): a sweep at the smallest budget and at each of `lr_sweeps`, each widened
    until its best is interior; a budget between two sweeps takes the line between those two
    (here the largest sweep finds the trend of the first two broken: no extrapolation)."""
    monkeypatch.setattr(run_queue, "run_stage", FakeStages(loss=lr_depends_on_budget))
    budgets = [2e9, 6e9, 2e10, 6e10, 2e11]
    bench = one_budget_spec(
        tmp_path, sizes=[24], budgets=[{"flops": c} for c in budgets], sweep={"lr": [1, 2]},
        lr_sweeps=[{"budget": 2e10}, {"budget": 2e11, "lr": [0.25, 0.5], "relative": True}],
    )  # fmt: skip
    records = matrix.run_benchmark(bench, "cmd")
    sweeps = {}
    for r in records:
        if r["sweep"]:
            sweeps.setdefault(r["sweep"], {})[r["setting"]] = r["selected"]
    # x1, x2 at 2e9: x2 best, at the edge: x4 added (best), then x8 (worse): interior.
    assert sweeps["lr@2e9"] == {"lr1x": False, "lr2x": False, "lr4x": True, "lr8x": False}
    # x1, x2 at 2e10: x1 best, at the edge: x0.5 added (worse): interior.
    assert sweeps["lr@2e10"] == {"lr1x": True, "lr2x": False, "lr0.5x": False}
    # its own rates at 2e11 (relative to 2e10's x1, not 2e9's x4): x0.25, x0.5; x0.5 at the
    # edge: x1 (best), then x2 (worse).
    assert sweeps["lr@2e11"] == {"lr0.25x": False, "lr0.5x": False, "lr1x": True, "lr2x": False}
    (middle,) = [r for r in records if r["budget_flops"] == 6e9]
    # log-linear in log budget: x4 at 2e9, x1 at 2e10, so x4^(1 - log 3 / log 10) at 6e9
    scale = 4 ** (1 - math.log(3) / math.log(10))
    assert middle["learning_rate"] == pytest.approx(1e-3 * scale, rel=1e-3)  # 1e-3: bdh.yaml
    assert middle["learning_rate_source"] == (
        "interpolated log-linear in log budget between sweeps at 2e9 and 2e10"
    )
    # between the sweeps at 2e10 and 2e11 (x1 both): x1, where the first two's line gives less
    (upper,) = [r for r in records if r["budget_flops"] == 6e10]
    assert upper["learning_rate"] == pytest.approx(1e-3)
    assert upper["learning_rate_source"] == (
        "interpolated log-linear in log budget between sweeps at 2e10 and 2e11"
    )
    sources = {r["learning_rate_source"] for r in records if r["sweep"]}
    assert sources == {"sweep@2e9", "sweep@2e10", "sweep@2e11"}


def test_lr_sweeps_at_the_smallest_budget_or_out_of_order_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match=r"lr_sweeps: budgets \['2e\+09'\]: each later sweep"):
        one_budget_spec(tmp_path, budgets=[{"flops": 2e9}, {"flops": 6e9}],
                        lr_sweeps=[{"budget": 2e9}])  # fmt: skip
    with pytest.raises(UserError, match="ascending, once"):
        one_budget_spec(tmp_path, budgets=[{"flops": c} for c in BUDGETS],
                        lr_sweeps=[{"budget": 2e10}, {"budget": 6e9}])  # fmt: skip
    with pytest.raises(UserError, match=r"lr_sweeps\[0\].lr: give distinct numbers"):
        one_budget_spec(tmp_path, budgets=[{"flops": c} for c in BUDGETS],
                        lr_sweeps=[{"budget": 6e9, "lr": [1, 1]}])  # fmt: skip


def shape_matters(config: dict) -> float:
    """One layer beats two; each depth has its own best rate (1e-3 and 2e-3)."""
    layers, lr = (
        config["model"]["init_args"]["config"]["n_layer"],
        config["model"]["init_args"]["training"]["learning_rate"],
    )
    best = 1e-3 * layers
    return 2.0 + abs(math.log2(lr / best)) * 0.1 + 0.3 * (layers - 1)


def test_shapes_are_compared_each_at_its_own_rate_and_the_best_is_used(
    data_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(run_queue, "run_stage", FakeStages(loss=shape_matters))
    shapes = [
        {"name": "l1", "model_args": {"n_layer": 1}},
        {"name": "l2", "model_args": {"n_layer": 2}, "published": True},
    ]
    family = {"name": "bdh", "config": "bdh", "shapes": shapes, "shape_sweep": {"lr": [0.5, 1, 2]},
              "sizes": [{"name": "bdh-24", "model_args": {"n_embd": 24, "n_head": 2}}]}  # fmt: skip
    records = matrix.run_benchmark(one_budget_spec(tmp_path, models=[family]), "cmd")
    tried = {(r["model"], r["setting"]): r for r in records}
    assert {r["shape"] for r in records} == {"l1", "l2"}
    assert all(r["sweep"] == "shape@2e9" for r in records)
    # Each shape at its own best rate: l2's best (x2) was the sweep's largest, so x4 was added.
    chosen = {m for m, r in tried.items() if r["selected"]}
    assert chosen == {("bdh-24-l1", "lr1x"), ("bdh-24-l2", "lr2x")}
    assert ("bdh-24-l2", "lr4x") in tried
    (point,) = [r for r in records if r["frontier_point"]]
    assert (point["model"], point["setting"]) == ("bdh-24-l1", "lr1x")  # the best shape
    assert (
        yaml.safe_load(Path(point["config"]).read_text())["model"]["init_args"]["config"]["n_layer"]
        == 1
    )


def test_plan_counts_runs_flops_and_hours_without_running(tmp_path, capsys):
    frontier_spec(tmp_path)  # writes frontier.yaml
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    record = {"family": "bdh", "status": "ok", "budget_flops": 2e10, "train_tokens": 1000}
    records = [  # 3 x 1e6 x 1000 / fit seconds: 3e9 and 1e9 FLOP/s; 1e12 at a smaller budget
        {**record, "flops_per_token": 1e6, "fit_time_s": 1.0},
        {**record, "flops_per_token": 1e6, "fit_time_s": 3.0},
        {**record, "flops_per_token": 1e6, "fit_time_s": 1.5},
        {**record, "budget_flops": 2e9, "flops_per_token": 1e9, "fit_time_s": 1.0},
    ]
    (earlier / "metrics.json").write_text(json.dumps({"records": records}))
    matrix.main(["--config", str(tmp_path / "frontier.yaml"), "--plan_from", str(earlier)])
    lines = capsys.readouterr().out.splitlines()
    # by hand: 3 sweep runs at 2e9; the windows' 3 + 3 + 3 sizes less the sweep's chosen one;
    # the frontier points of all 3 budgets on the second seed
    runs_ = 3 + 8 + 3
    flops = 3 * 2e9 + (2 * 2e9 + 3 * 6e9 + 3 * 2e10) + (2e9 + 6e9 + 2e10)
    hours = flops / 2e9 / 3600  # the median rate at the largest budget, one job
    assert (
        lines[0]
        == f"bdh: {runs_} runs, {flops:.3g} FLOPs, {hours:.1f} h on one core at 2e+09 FLOP/s"
    )
    assert lines[1].startswith(f"total: at least {runs_} runs, {flops:.3g} training FLOPs")
    assert lines[2] == f"expected: {hours:.1f} h of wall time, 1 runs at once"
    assert not (tmp_path / "results").exists()  # nothing ran, nothing written


def b_is_worse(config: dict) -> float:
    """Family b (one head) is worse than a (two heads) by 0.5 at every size and budget."""
    model = config["model"]["init_args"]["config"]
    return 2.0 + abs(model["n_embd"] - 24) / 100 + 0.5 * (model["n_head"] == 1)


@pytest.mark.slow  # a matrix of 9 stand-in runs (~15 s of CPU)
def test_a_family_behind_at_n_budgets_in_a_row_stops_and_says_so(data_dir, tmp_path, monkeypatch):
    """Issue 27 (6): GPT-2 may stop where it has been worse than LLaMA at 3 budgets in a row;
    here b stops once behind a at 1 budget: its second budget is not run, recorded `bound`."""
    stages = FakeStages(loss=b_is_worse)
    monkeypatch.setattr(run_queue, "run_stage", stages)
    monkeypatch.setattr(scaling, "BOOTSTRAP", 10)  # the summaries rewritten after every run
    ladder = [{"name": f"{{}}-{d}", "model_args": {"n_embd": d}} for d in (16, 24, 32)]

    def family(name, heads, **rule):
        sizes = [{**s, "name": s["name"].format(name)} for s in ladder]
        return {"name": name, "config": "bdh", "model_args": {"n_head": heads},
                "sizes": sizes, **rule}  # fmt: skip

    b = family("b", 1, stop_after_behind={"family": "a", "budgets": 1})
    budgets = BUDGETS[:2]
    bench = one_budget_spec(
        tmp_path, models=[family("a", 2), b], budgets=[{"flops": c} for c in budgets], jobs=2,
        lr_sweeps=[{"budget": budgets[1]}],  # b stops before it: its sweep there never runs
    )  # fmt: skip
    records = matrix.run_benchmark(bench, "cmd")
    ran = {(r["family"], r["budget_flops"]) for r in records if r["status"] == "ok"}
    assert ran == {("a", budgets[0]), ("a", budgets[1]), ("b", budgets[0])}
    (stop,) = [r for r in records if r["status"] == "bound"]
    assert (stop["family"], stop["budget_flops"]) == ("b", budgets[1])
    assert stop["bound"].startswith("stopped: b was behind a at 1 budget in a row (flops 2e+09: ")
    assert not [c for _, c in stages.calls if "/b-" in c and "flops6e9" in c]  # never run
    result = json.loads((bench.out_dir / "frontier.json").read_text())
    assert result["families"]["b"]["stopped"] == stop["bound"]
    assert result["status"]["families"]["b"]["budgets"]["flops 6e+09"]["state"] == "stopped"
    assert result["status"]["complete"]  # a stopped budget is done with
    summary = (bench.out_dir / "summary.md").read_text()
    assert "b stopped before flops 6e+09: b was behind a at 1 budget in a row" in summary
    # b's point tested at the budget it ran, none at the other
    points = [r for r in records if r["family"] == "b" and r["frontier_point"]]
    assert [r["budget_flops"] for r in points] == budgets[:1]


def test_a_stop_rule_names_another_family_that_runs_every_budget(tmp_path):
    family = {"name": "b", "config": "bdh", "sizes": [{"name": "b-16"}, {"name": "b-24"},
              {"name": "b-32"}], "stop_after_behind": {"family": "gpt2"}}  # fmt: skip
    with pytest.raises(UserError, match=r"b.stop_after_behind.family 'gpt2': name another"):
        one_budget_spec(tmp_path, models=[family])
    a = {**family, "name": "a", "sizes": [{"name": f"a-{d}"} for d in (16, 24, 32)],
         "stop_after_behind": {"family": "b"}}  # fmt: skip
    with pytest.raises(UserError, match="has a stop rule of its own"):
        one_budget_spec(tmp_path, models=[a, {**family, "stop_after_behind": {"family": "a"}}])


def test_rekey_keeps_finished_runs_whose_configs_text_changed(data_dir, tmp_path, monkeypatch):
    """A change of the config files' text (a new layout) changes every run key: a resumed
    benchmark runs everything again, unless --rekey takes the records by their run's folder."""
    bench = frontier_spec(tmp_path)
    monkeypatch.setattr(run_queue, "run_stage", FakeStages())
    first = matrix.run_benchmark(bench, "cmd")
    old_keys = {r["config_hash"] for r in first}
    key = run_queue.run_key
    monkeypatch.setattr(run_queue, "run_key", lambda *a: "new-" + key(*a))  # the text changed

    again = FakeStages()
    monkeypatch.setattr(run_queue, "run_stage", again)
    rekeyed = matrix.run_benchmark(bench, "cmd", rekey=True)
    assert [s for s, _ in again.calls if s == "fit"] == []  # nothing trained again
    assert {r["config_hash"] for r in rekeyed} == {"new-" + k for k in old_keys}
    assert sorted(_runs(rekeyed)) == sorted(_runs(first))
    best = {_runs([r])[0]: r["best_val_loss"] for r in first}
    assert {_runs([r])[0]: r["best_val_loss"] for r in rekeyed} == best

    monkeypatch.setattr(run_queue, "run_key", lambda *a: "newer-" + key(*a))
    plain = FakeStages()
    monkeypatch.setattr(run_queue, "run_stage", plain)
    matrix.run_benchmark(bench, "cmd")  # without --rekey: every run is new
    assert len([s for s, _ in plain.calls if s == "fit"]) == len(
        [r for r in first if r["train_steps"]]
    )


class StopAtFirstTest(FakeStages):
    """Stops the matrix at its first test: every ladder done, no frontier point marked yet."""

    def __call__(self, stage, config_path, root, extra=(), env=None, echo=True, cwd=None):
        if stage == "test":
            raise KeyboardInterrupt
        return super().__call__(stage, config_path, root, extra, env, echo, cwd)


def test_a_partial_snapshot_has_the_points_of_its_final_one_seed_budgets(
    data_dir, tmp_path, monkeypatch
):
    """Issue 27 (9): partial results land as budgets complete. The matrix marks its frontier
    points only after every budget's ladder; a budget of one seed whose ladder is final is
    complete before that, so the snapshot written then has its point (the repeated largest
    budget waits for its second seed)."""
    monkeypatch.setattr(run_queue, "run_stage", StopAtFirstTest())
    bench = frontier_spec(tmp_path, repeat_largest=1)
    with pytest.raises(KeyboardInterrupt):
        matrix.run_benchmark(bench, "cmd")
    records = json.loads((bench.out_dir / "metrics.json").read_text())["records"]
    assert not any(r["frontier_point"] for r in records)  # not marked yet
    result = json.loads((bench.out_dir / "frontier.json").read_text())
    states = {b: c["state"] for b, c in result["status"]["families"]["bdh"]["budgets"].items()}
    small, middle, large = (budget.budget_text(budget.Budget(flops=b)) for b in BUDGETS)
    assert states == {small: "complete", middle: "complete", large: "in progress"}
    points = result["families"]["bdh"]["frontier"]
    assert [p["budget"] for p in points] == [small, middle]
    assert (bench.out_dir / "PARTIAL.md").is_file()
    from bdh_pl.tools import plot  # the charts of a snapshot: plot --results draws them

    plot.main(["--results", str(bench.out_dir)])
    assert (bench.out_dir / "charts" / "frontier_flops.png").is_file()


def test_a_restart_stopped_before_it_reaches_the_earlier_runs_keeps_their_records(
    data_dir, tmp_path, monkeypatch
):
    """A restart rewrites metrics.json as it goes; stopped before it has reached the earlier
    invocation's finished runs, it must still list them (else a third start, from a copy
    without the checkpoints, would train them again). A finished matrix lists only its own."""
    monkeypatch.setattr(run_queue, "run_stage", FakeStages())
    bench = one_budget_spec(tmp_path)
    first = matrix.run_benchmark(bench, "cmd")
    previous = plan_previous(bench.out_dir)
    assert len(previous) == len(first) and all(r["status"] == "ok" for r in previous)
    restart = matrix.Matrix(bench, "cmd", previous)
    restart.write()  # the restart's first write, before any run is reached
    kept = json.loads((bench.out_dir / "metrics.json").read_text())["records"]
    assert sorted(_runs(kept)) == sorted(_runs(first))
    assert {r["config_hash"]: r["best_val_loss"] for r in kept} == {
        r["config_hash"]: r["best_val_loss"] for r in first
    }
    key = run_queue.run_key  # a restart whose runs are all new (another key): its final
    monkeypatch.setattr(run_queue, "run_key", lambda *a: "new-" + key(*a))  # records are its own
    again = matrix.run_benchmark(bench, "cmd")
    assert len(again) == len(first) and all(r["config_hash"].startswith("new-") for r in again)


def plan_previous(out):
    from bdh_pl.bench.plan import previous_records

    return previous_records(out)
