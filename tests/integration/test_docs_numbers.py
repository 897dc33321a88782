"""The numbers a reader trusts: every results table in README.md and docs/ equals what its
result files give, cell by cell, and every other measured number is in a result file or is
arithmetic on ones that are (scripts/check_docs_numbers.py)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from bdh_pl.bench import report, stats
from bdh_pl.bench.tables import cell as table_cell

REPO = Path(__file__).resolve().parents[2]
PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))]


def load_checker():
    spec = importlib.util.spec_from_file_location(
        "check_docs_numbers", REPO / "scripts" / "check_docs_numbers.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tables() -> list[tuple[str, list[str], list[list[str]]]]:
    """(page, header cells, rows of cells) of every Markdown table, bold marks removed."""
    found = []
    for page in PAGES:
        lines = (REPO / page).read_text().splitlines()
        for i, line in enumerate(lines[:-1]):
            if line.startswith("|") and re.match(r"^\|[\s:\-|]+\|$", lines[i + 1]):
                rows = []
                for row in lines[i + 2 :]:
                    if not row.startswith("|"):
                        break
                    rows.append(cells(row))
                found.append((page, cells(line), rows))
    return found


def cells(line: str) -> list[str]:
    return [c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]


def records(experiment: str) -> list[dict]:
    return json.loads((REPO / "results" / experiment / "metrics.json").read_text())["records"]


def by_model(experiment: str) -> dict[str, dict]:
    return {r["model"]: r for r in stats.aggregate(records(experiment))}


def millions(value: float, places: int) -> str:
    return f"{value / 1e6:.{places}f}M"


def tables_with(first_header: str, second_header: str) -> list:
    return [t for t in tables() if t[1][:2] == [first_header, second_header]]


def test_the_equal_compute_table_is_the_fair_matrix():
    found = tables_with("model", "best lr (of x1, x2, x4 of 2e-3)")
    assert found, "the fair matrix's table is gone from README.md and docs/"
    rows = by_model("shakespeare-fair")
    for page, _, body in found:
        for model, lr, tokens, bpb, spread, word, tok_s, flops in body:
            r = rows[model]
            assert lr.split(" ")[0] == f"{r['learning_rate']:.0e}".replace("e-0", "e-"), page
            assert tokens == millions(r["train_tokens"], 2), page
            assert bpb == f"{r['test_bpb']:.3f}", page
            assert spread == f"{r['test_bpb_min']:.3f}-{r['test_bpb_max']:.3f}", page
            assert word == f"{r['test_word_ppl']:,.0f}", page
            assert tok_s == f"{r['train_tokens_per_sec']:,.0f}", page
            assert flops == millions(r["flops_per_token"], 1), page
        assert [row[3] for row in body] == sorted(row[3] for row in body)  # ranked


FRONTIER = "budget (FLOPs, as run)"


def frontier_point(data: dict, family: str, budget: str) -> dict:
    """frontier.json's point of `family` at a budget written as in the tables (2e12, 4.3e12)."""
    key = f"flops {float(budget):g}"
    (point,) = [p for p in data["families"][family]["frontier"] if p["budget"] == key]
    return point


def test_the_frontier_table_is_frontier_json():
    """The first frontier: each family's best validation bpb per budget (mean of the seeds, their
    range, the size, whether it is the ladder's edge), LLaMA's measured lead over BDH against
    the seed spread, and BDH's compute multiplier marked inside its runs or extrapolated, as
    frontier.json has them."""
    found = [t for t in tables_with(FRONTIER, "bdh") if len(t[1]) == 6]
    assert found, "the first frontier's table is gone from docs/results.md"
    data = json.loads((REPO / "results/wikitext2-frontier/frontier.json").read_text())
    families = {"bdh": "bdh", "gpt2-scratch": "gpt2", "llama-tiny": "llama"}
    measured = {r["budget"]: r for r in data["measured"]["at_budgets"]}
    multipliers = {m["budget"]: m for m in data["compute_multiplier"]["at_budgets"]}
    for page, header, body in found:
        assert [f"flops {float(row[0]):g}" for row in body] == list(measured), page
        for budget, *points, lead, multiplier in body:
            for name, cell in zip(header[1:4], points, strict=True):
                family = families[name]
                p = frontier_point(data, family, budget)
                low, high = min(p["val_bpb_seeds"]), max(p["val_bpb_seeds"])
                size = p["model"].removeprefix(f"{family}-")
                edge = ", edge" if p["edge"] else ""
                assert cell == f"{p['val_bpb']:.3f} ({low:.3f}-{high:.3f}), {size}{edge}", page
            row = measured[f"flops {float(budget):g}"]
            assert row["against"] == "llama" and row["leader"] == "llama", page
            spread = "beyond" if row["beyond_seed_spread"] else "within"
            assert lead == f"{-row['gap']:.3f}, {spread} the seed spread", page
            m = multipliers[f"flops {float(budget):g}"]
            low, high = m["multiplier_band"]
            where = "extrapolated" if m["extrapolated"] else "inside its runs"
            assert multiplier == f"{m['multiplier']:.2f}x ({low:.2f}-{high:.2f}), {where}", page


CROSSING = "budget (training FLOPs)"


def test_the_crossing_table_is_frontier_json():
    """The headline (README) and docs/results.md: the crossing matrix's complete budgets, each
    family's best validation bpb there (its seeds' range where it has two), the size, or
    `stopped` or `in progress`; LLaMA's measured lead (against the seed spread, or one seed;
    `–` while only one family is complete there); BDH's compute multiplier, inside its runs or
    extrapolated; as results/wikitext2-crossing/frontier.json has them (a snapshot rewritten
    mid-run changes them: the tables must follow)."""
    found = tables_with(CROSSING, "bdh")
    assert {page for page, *_ in found} == {"README.md", "docs/results.md"}, found
    data = json.loads((REPO / "results/wikitext2-crossing/frontier.json").read_text())
    measured = {r["budget"]: r for r in data["measured"]["at_budgets"]}
    multipliers = {m["budget"]: m for m in data["compute_multiplier"]["at_budgets"]}
    for page, header, body in found:
        assert header[1:4] == ["bdh", "llama", "gpt2"], page
        budgets = [f"flops {float(row[0]):g}" for row in body]
        assert budgets == list(measured), page  # every complete budget, no other
        for budget, row in zip(budgets, body, strict=True):
            for family, cell in zip(header[1:4], row[1:4], strict=True):
                points = [p for p in data["families"][family]["frontier"] if p["budget"] == budget]
                if not points and budget in data["families"][family].get("in_progress", []):
                    assert cell == "in progress", page
                    continue
                if not points:
                    assert cell == "stopped" and data["families"][family]["stopped"], page
                    continue
                (p,) = points
                seeds = p["val_bpb_seeds"]
                spread = f" ({min(seeds):.3f}-{max(seeds):.3f})" if len(seeds) > 1 else ""
                size = p["model"].removeprefix(f"{family}-")
                edge = ", edge" if p["edge"] else ""
                assert cell == f"{p['val_bpb']:.3f}{spread}, {size}{edge}", page
            m = measured[budget]
            if "against" not in m:  # one family has a point there so far: nothing to compare
                assert row[4:6] == ["–", "–"] and budget not in multipliers, page
                continue
            assert m["against"] == "llama" and m["leader"] == "llama", page
            compared = {True: "beyond the seed spread", False: "within the seed spread"}
            said = compared[m["beyond_seed_spread"]] if m["seeds_compared"] else "one seed"
            assert row[4] == f"{-m['gap']:.3f}, {said}", page
            c = multipliers[budget]
            low, high = c["multiplier_band"]
            where = "extrapolated" if c["extrapolated"] else "inside its runs"
            assert row[5] == f"{c['multiplier']:.2f}x ({low:.2f}-{high:.2f}), {where}", page


def test_the_frontier_test_table_is_frontier_json():
    """docs/results.md: the frontier points' test bpb (mean, range), params and tokens."""
    (found,) = [t for t in tables_with(FRONTIER, "bdh") if len(t[1]) == 4]
    data = json.loads((REPO / "results/wikitext2-frontier/frontier.json").read_text())
    for budget, *cells in found[2]:
        for family, cell in zip(["bdh", "gpt2", "llama"], cells, strict=True):
            p = frontier_point(data, family, budget)
            low, high = min(p["test_bpb_seeds"]), max(p["test_bpb_seeds"])
            shown = f"{p['test_bpb']:.3f} ({low:.3f}-{high:.3f})"
            parts = [c.removesuffix(" params").removesuffix(" tokens") for c in cell.split(", ")]
            assert parts == [shown, f"{p['params']:,}", millions(p["train_tokens"], 2)]


def test_the_equal_tokens_table_is_the_cpu_matrix():
    found = tables_with("model", "params")
    found = [t for t in found if t[1][3] == "test loss (nats/byte)"]
    assert found
    rows = by_model("shakespeare-cpu")
    for page, _, body in found:
        for model, params, non_emb, loss, bpb, word, train, evaluate, flops, peak in body:
            r = rows[model]
            assert (params, non_emb) == (
                millions(r["params"], 1),
                millions(r["non_embedding_params"], 1),
            )
            assert (loss, bpb) == (f"{r['test_loss']:.3f}", f"{r['test_bpb']:.3f}"), page
            assert word == f"{r['test_word_ppl']:,.0f}"
            assert train == f"{r['train_tokens_per_sec']:,.0f}"
            assert evaluate == f"{r['eval_tokens_per_sec']:,.0f}"
            assert (flops, peak) == (
                millions(r["flops_per_token"], 1),
                f"{r['peak_memory_mb']:,.0f}",
            )


def test_the_overfitting_table_is_the_sweep():
    (found,) = tables_with("dropout", "weight decay")
    runs = {(r["dropout"], r["weight_decay"]): r for r in records("shakespeare-overfit")}
    for dropout, decay, loss, bpb, best, stopped in found[2]:
        r = runs[float(dropout), float(decay)]
        epoch = r["best_step"] * r["tokens_per_step"] / r["train_split_tokens"]
        assert (loss, bpb) == (f"{r['best_val_loss']:.4f}", f"{r['best_val_bpb']:.3f}")
        assert best == f"{r['best_step']} ({epoch:.1f})" and stopped == str(r["train_steps"])


def test_the_long_context_table_is_the_context_curve():
    (found,) = tables_with("model, trained on", "test bpb, windows of 256")
    runs = json.loads((REPO / "results/long-context/context_curve.json").read_text())["runs"]
    label = {"BDH, random windows": "BDH trained on random windows",
             "BDH, carried state, never reset": "BDH trained with carried state",
             "BDH, carried state reset every 2,048": "BDH trained with carried state reset every 2K",
             "LLaMA, random windows": "LLaMA trained on random windows"}  # fmt: skip
    for model, windows, stream, *buckets in found[2]:
        name = label[model.split(" (")[0]]
        mine = {r["mode"]: r for r in runs if r["label"] == name}
        first = mine.get("windows") or mine["sliding"]
        assert windows.split(" ")[0] == f"{first['bpb']:.3f}"
        curve = mine.get("stream") or mine["sliding"]
        assert stream == (f"{curve['bpb']:.3f}" if "stream" in mine else "–")
        shown = [f"{b['bpb']:.2f}" if b["bpb"] is not None else "–" for b in curve["buckets"]]
        assert buckets == shown


def test_the_speed_table_is_speed_json():
    (found,) = tables_with("config", "plain fp32")
    train = json.loads((REPO / "results/bdh-speed/speed.json").read_text())["train"]
    variants = ["plain fp32", "plain bf16", "plain bf16+compile", "ours bf16", "ours bf16+kernels"]
    for row, config in zip(found[2], ["seed-25M", "small-1.6M"], strict=True):
        speeds = train[config]
        assert [c.split(" ")[0] for c in row[1:]] == [
            f"{speeds[v]['tokens_per_s']:,.0f}" for v in variants
        ]
        ratio = speeds["ours bf16+kernels"]["tokens_per_s"] / speeds["plain fp32"]["tokens_per_s"]
        assert f"{ratio:.2f}x" in row[-1]


def test_summary_tables_copied_into_the_docs_equal_the_records():
    """docs/benchmark.md quotes whole summary tables: each cell as report.py formats it, from
    the records of one of the experiments."""
    columns = {header: (key, fmt) for header, key, fmt in report.SUMMARY_COLUMNS}
    experiments = {e: by_model(e) for e in ("smoke", "shakespeare-cpu", "shakespeare-fair")}
    checked = 0
    for page, header, body in tables():
        if header[0] != "model" or not set(header) <= set(columns) or len(header) < 8:
            continue
        expected = [
            [[table_cell(rows[row[0]], *columns[h]) for h in header] for row in body]
            for rows in experiments.values()
            if all(row[0] in rows for row in body)
        ]
        assert body in expected, page
        checked += 1
    assert checked >= 2


def test_every_other_number_is_a_result_or_arithmetic_on_results():
    checker = load_checker()
    assert checker.unaccounted() == []
    assert checker.wrong_arithmetic() == []


def test_a_number_is_tied_to_the_result_files_its_sentence_names():
    """1,035 MiB is in results/bdh-speed, not in results/smoke: a sentence that cites smoke for
    it fails even though some result file holds it; one that cites nothing may use any file."""
    checker = load_checker()
    some = checker.result_numbers(checker.result_files(REPO / "results" / "bdh-speed"))
    cited = "The fast step peaks at 1,035 MiB (`results/bdh-speed/summary.md`)."
    elsewhere = "The fast step peaks at 1,035 MiB (`results/smoke/`). More text."
    assert checker.page_problems("x.md", cited, some) == []
    assert checker.page_problems("x.md", elsewhere, some) == [
        "x.md: 1,035 (not in the files its text names)"
    ]
    assert checker.page_problems("x.md", "It peaks at 1,035 MiB.", some) == []
    # the paragraph's and section's files count where the sentence cites none
    paragraph = "# Speed\n\nIt peaks at 1,035 MiB. See `results/bdh-speed/`.\n"
    assert checker.page_problems("x.md", paragraph, []) == []
