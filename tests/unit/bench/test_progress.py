"""A frontier's status read mid-way, on a tiny hand-made record set: which budgets are complete,
what is left, the FLOPs done against the plan, sweeps that have chosen nothing yet, and the
PARTIAL.md the benchmark writes until the frontier is complete (and removes after)."""

import json

from bdh_pl.bench import plan, progress, report

PLAN = {  # by hand: two budgets; bdh's first has a 3-rate sweep and 2 more sizes
    "budgets": ["flops 1e+12", "flops 2e+12"],
    "families": {
        "bdh": {
            "budgets": {
                "flops 1e+12": {"runs": 5, "flops": 5e12, "seeds": 1},
                "flops 2e+12": {"runs": 4, "flops": 8e12, "seeds": 2},
            },
            "runs": 9,
            "flops": 13e12,
            "stop_after_behind": None,
        },
    },
    "runs": 9,
    "flops": 13e12,
    "jobs": 2,
    "dataset": ["configs/shakespeare.yaml"],
    "precision": "32-true",
}


def run(model, budget, lr, status="ok", bpb=2.0, **extra) -> dict:
    flops = float(budget.split()[1])
    done = status == "ok"
    return {
        "family": "bdh", "model": model, "budget": budget, "budget_flops": flops,
        "status": status, "learning_rate": lr, "seed": 1, "selected": True, "params": 1000,
        "best_val_bpb": bpb if done else None, "train_tokens": 10 if done else None,
        "best_val_loss": bpb * 0.6931 if done else None,  # nats: what the ladder compares
        "train_flops": flops if done else None, "train_flops_measured": None,
        "flops_per_token": flops / 30, "torch_version": "2", "lightning_version": "2",
        "git_commit": "abc", "git_dirty": False, "sweep": None, **extra,
    }  # fmt: skip


def partial_records() -> list[dict]:
    """The sweep at 1e12 on bdh-b: two rates done (both still `selected`: the record's
    default until the sweep chooses), one running; nothing at 2e12 yet."""
    sweep = {"sweep": "lr@1e12"}
    return [
        run("bdh-b", "flops 1e+12", 1e-3, bpb=2.5, **sweep),
        run("bdh-b", "flops 1e+12", 2e-3, bpb=2.4, **sweep),
        run("bdh-b", "flops 1e+12", 4e-3, status="running", **sweep),
    ]


def test_a_partial_frontier_says_what_is_done_left_and_chosen():
    status = progress.progress(partial_records(), PLAN)
    assert not status["complete"]
    cells = status["families"]["bdh"]["budgets"]
    assert cells["flops 1e+12"] == {
        "state": "in progress", "finished": 2, "in_flight": 1, "planned": 5,
        "flops_done": 2e12, "flops_planned": 5e12,
    }  # fmt: skip
    assert cells["flops 2e+12"]["state"] == "not started"
    assert status["runs"] == {"finished": 2, "in_flight": 1, "bound": 0, "failed": 0,
                              "planned": 9, "left": 9 - 2 - 1}  # fmt: skip
    # the two finished runs; left: 1e12's 5e12 less its 2e12 done, and all of 2e12's 8e12
    assert status["flops"] == {"done": 2e12, "planned": 13e12, "left": 11e12}
    (sweep,) = status["sweeps"]
    assert sweep["complete"] is False and sweep["chosen"] is None
    assert sweep["tried"] == [1e-3, 2e-3] and sweep["in_flight"] == 1


def test_a_budget_a_stop_rule_skipped_plans_no_flops_left():
    records = [
        *partial_records()[:2],
        run("bdh", "flops 2e+12", None, status="bound", bound="stopped: behind llama at 3 budgets"),
    ]
    status = progress.progress(records, PLAN)
    assert status["families"]["bdh"]["budgets"]["flops 2e+12"]["state"] == "stopped"
    assert status["flops"]["left"] == 3e12  # 1e12's rest only, not 2e12's planned 8e12
    text = "\n".join(progress.status_lines({**status, "plan": PLAN}))
    assert "2e+12 training FLOPs done by finished runs (by the rule) of 1.3e+13 planned" in text
    assert "(at least 3e+12 left: budgets a stop rule skipped plan nothing more)" in text


def test_a_sweep_at_its_edge_is_complete_only_once_widening_is_spent():
    sweep = [run("m", "flops 1e+12", lr, bpb=b, sweep="lr@1e12", selected=lr == 4e-3)
             for lr, b in ((1e-3, 2.5), (2e-3, 2.4), (4e-3, 2.3))]  # fmt: skip
    assert progress.sweep_state(sweep)["complete"] is False  # x8 comes next
    sweep[2]["learning_rate_source"] = "sweep@1e12, still at the sweep's edge after 3 widenings"
    state = progress.sweep_state(sweep)
    assert state["complete"] and state["chosen"] == 4e-3 and state["at_sweep_edge"] == "largest"
    sweep[2]["selected"], sweep[1]["selected"] = False, True
    assert progress.sweep_state(sweep)["chosen"] == 2e-3  # interior: complete at once


def complete_records() -> list[dict]:
    """Every planned budget done: at 1e12 the sweep (x2 chosen) and two more sizes, the
    point tested; at 2e12 three sizes, the point tested on both seeds."""
    records = []
    for lr, bpb in ((1e-3, 2.5), (2e-3, 2.4), (4e-3, 2.45)):
        records.append(run("bdh-b", "flops 1e+12", lr, bpb=bpb, sweep="lr@1e12",
                           selected=lr == 2e-3, frontier_point=lr == 2e-3,
                           test_bpb=2.41 if lr == 2e-3 else None))  # fmt: skip
    for model, bpb in (("bdh-a", 2.6), ("bdh-c", 2.5)):
        records.append(run(model, "flops 1e+12", 2e-3, bpb=bpb, frontier_point=False))
    for model, bpb, params in (("bdh-a", 2.4, 500), ("bdh-b", 2.2, 1000), ("bdh-c", 2.3, 2000)):
        records.append(run(model, "flops 2e+12", 2e-3, bpb=bpb, params=params,
                           frontier_point=model == "bdh-b",
                           test_bpb=2.21 if model == "bdh-b" else None))  # fmt: skip
    repeat = run("bdh-b", "flops 2e+12", 2e-3, bpb=2.25, frontier_point=True, test_bpb=2.26)
    records.append({**repeat, "seed": 2})
    for r in records[3:]:
        r["params"] = {"bdh-a": 500, "bdh-b": 1000, "bdh-c": 2000}[r["model"]]
    return records


def test_only_complete_budgets_are_points_and_partial_md_follows_the_status(tmp_path, monkeypatch):
    records = complete_records()
    before_repeat = records[:-1]  # 2e12's point not yet repeated on its second seed
    status = progress.progress(before_repeat, PLAN)
    assert progress.complete_budgets(status) == {("bdh", "flops 1e+12")}
    result = report.frontier.frontier(
        before_repeat, bootstrap_n=0, complete=progress.complete_budgets(status)
    )
    (point,) = result["families"]["bdh"]["frontier"]
    assert (point["budget"], point["model"]) == ("flops 1e+12", "bdh-b")
    assert result["families"]["bdh"]["in_progress"] == ["flops 2e+12"]
    assert result["families"]["bdh"]["learning_rate"]["chosen"] == 2e-3

    monkeypatch.setattr(plan, "read_plan", lambda out: PLAN)  # the spec's, by hand
    report.write_summaries(tmp_path, "f", before_repeat, "cmd")
    partial = (tmp_path / "PARTIAL.md").read_text()
    assert (
        "8 runs finished of at least 9 planned (at least 1 left), 0 queued or running at" in partial
    )
    assert "| bdh | complete | in progress: 3 of 4+ done |" in partial
    summary = (tmp_path / "summary.md").read_text()
    assert "## Status: partial" in summary and "Dataset configs/shakespeare.yaml" in summary
    assert "*in progress*" in summary  # 2e12 has no point yet
    assert json.loads((tmp_path / "frontier.json").read_text())["status"]["complete"] is False

    report.write_summaries(tmp_path, "f", records, "cmd")
    assert not (tmp_path / "PARTIAL.md").exists()  # complete: the partial note goes
    assert "Status: complete (9 runs finished" in (tmp_path / "summary.md").read_text()


def shape_runs(chosen: bool) -> list[dict]:
    """A shape search at 1e12 on bdh-b: l3 done at two rates (x2 best, interior once x4
    finished), l6 (the published shape) one rate done and one running; with `chosen`, the
    ladder's first run in l3 (the search chose it)."""
    out = []
    for lr, bpb in ((1e-3, 2.5), (2e-3, 2.4), (4e-3, 2.45)):
        out.append(run("bdh-b-l3", "flops 1e+12", lr, bpb=bpb, sweep="shape@1e12", shape="l3",
                       selected=lr == 2e-3, train_steps=800))  # fmt: skip
    out.append(run("bdh-b-l6", "flops 1e+12", 1e-3, bpb=3.1, sweep="shape@1e12", shape="l6",
                   train_steps=60))  # fmt: skip
    out.append(run("bdh-b-l6", "flops 1e+12", 2e-3, status="running", sweep="shape@1e12",
                   shape="l6"))  # fmt: skip
    if chosen:
        out.append(run("bdh-a-l3", "flops 1e+12", 2e-3, bpb=2.6, shape="l3"))
    return out


def test_the_shape_search_reports_each_shape_and_the_published_one_beside_the_chosen():
    search = progress.shape_search(shape_runs(chosen=False), "l6", ["l3", "l6", "l12"])
    rows = {r["shape"]: r for r in search["shapes"]}
    assert search["chosen"] is None and search["published"] == "l6"  # nothing chosen yet
    assert rows["l3"]["best_val_bpb"] == 2.4 and rows["l3"]["best_rate"] == 2e-3
    assert rows["l3"]["complete"] and rows["l3"]["rate"] == 2e-3 and not rows["l3"]["chosen"]
    assert rows["l6"]["published"] and not rows["l6"]["complete"] and rows["l6"]["in_flight"] == 1
    assert rows["l6"]["best_val_bpb"] == 3.1 and rows["l6"]["train_steps"] == 60
    assert rows["l12"]["best_val_bpb"] is None  # planned, not started
    search = progress.shape_search(shape_runs(chosen=True), "l6")
    assert search["chosen"] == "l3" and [r["chosen"] for r in search["shapes"]] == [True, False]
    assert progress.shape_search([run("m", "flops 1e+12", 1e-3)]) is None  # no search


def test_the_summary_of_a_shape_search_and_of_a_budget_only_one_family_reached(
    tmp_path, monkeypatch
):
    shapes = {**PLAN["families"]["bdh"], "shapes": ["l3", "l6"], "published_shape": "l6"}
    monkeypatch.setattr(plan, "read_plan", lambda out: {**PLAN, "families": {"bdh": shapes}})
    records = complete_records()[:-1]  # 1e12 complete, 2e12 in progress
    report.write_summaries(tmp_path, "f", [*records, *shape_runs(chosen=False)], "cmd")
    summary = (tmp_path / "summary.md").read_text()
    assert (
        "Shape search of bdh (each shape at the smallest budget, the same FLOPs, its best rate "
        "so far): chosen none yet (the search is in progress); l3: 2.4000 at lr 0.002 after 800 "
        "steps (rate chosen 0.002); l6 (published): 3.1000 at lr 0.001 after 60 steps (its rate "
        "sweep in progress)." in summary
    )
    result = json.loads((tmp_path / "frontier.json").read_text())
    assert result["families"]["bdh"]["shape_search"]["published"] == "l6"
    report.write_summaries(tmp_path, "f", records[:5], "cmd")  # 1e12 complete, 2e12 to come
    summary = (tmp_path / "summary.md").read_text()
    assert "- flops 1e+12: only bdh has a point so far" in summary  # not "bdh lowest"
    assert "Not started yet: bdh at flops 2e+12." in summary  # not "Not run": it will be


def test_a_one_seed_budget_is_complete_once_its_ladder_is_final_before_the_points_are_marked():
    """The matrix marks frontier points only after every budget's ladder: a budget of one
    seed whose sizes are all in (the best interior, or nothing left to add) is complete
    without them, so a partial snapshot has its points; an edge best waits for its next size."""
    sized = {**PLAN["families"]["bdh"], "sizes": ["bdh-a", "bdh-b", "bdh-c", "bdh-d"]}
    with_sizes = {**PLAN, "families": {"bdh": sized}}
    records = [{**r, "frontier_point": None} for r in complete_records()[:5]]  # 1e12 only
    status = progress.progress(records, with_sizes)
    assert status["families"]["bdh"]["budgets"]["flops 1e+12"]["state"] == "complete"
    assert progress.progress(records, PLAN)["families"]["bdh"]["budgets"]["flops 1e+12"][
        "state"
    ] == ("in progress")  # without the ladder in the plan: the marks decide, as before
    edge = [{**r, "best_val_bpb": 2.0, "best_val_loss": 1.0} if r["model"] == "bdh-c" else r
            for r in records]  # fmt: skip
    status = progress.progress(edge, with_sizes)  # bdh-c the largest tried and best: bdh-d next
    assert status["families"]["bdh"]["budgets"]["flops 1e+12"]["state"] == "in progress"
    flying = [*records, run("bdh-d", "flops 1e+12", 2e-3, status="running")]
    status = progress.progress(flying, with_sizes)
    assert status["families"]["bdh"]["budgets"]["flops 1e+12"]["state"] == "in progress"
    # a budget of two seeds still needs its repeat: complete_records' 2e12 without it
    two = [{**r, "frontier_point": None} for r in complete_records()[:-1]]
    status = progress.progress(two, with_sizes)
    assert status["families"]["bdh"]["budgets"]["flops 2e+12"]["state"] == "in progress"


def test_extra_runs_at_one_budget_do_not_count_against_another_budgets_plan():
    """A widened sweep at 1e12 (6 runs finished and 1 running, of 5 planned) leaves the 4
    planned runs of 2e12 still to run: 4 left, not 9 - 7."""
    sweep = {"sweep": "lr@1e12"}
    rates = [0.25e-3, 0.5e-3, 1e-3, 2e-3, 4e-3, 8e-3]
    records = [run("bdh-b", "flops 1e+12", lr, bpb=2.0 + lr, **sweep) for lr in rates]
    records.append(run("bdh-b", "flops 1e+12", 16e-3, status="running", **sweep))
    status = progress.progress(records, PLAN)
    assert status["families"]["bdh"]["budgets"]["flops 1e+12"]["finished"] == 6
    assert status["runs"]["left"] == 4
