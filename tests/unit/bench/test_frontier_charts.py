"""What a reader of the frontier charts (bdh_pl/charts/frontier.py) must not misread, on
frontier.json dicts built from synthetic records (tests/unit/bench/test_frontier.py): the
crossing is drawn with its band and an open end says so, never a bare or closed mark; a chart
of a frontier still running says it is partial; the IsoFLOP curves leave out the runs of shapes
the ladder did not choose. (That the charts pass the layout checker and are written:
tests/integration/bench/test_frontier.py.)"""

import pytest
from unit.bench.test_frontier import N, curve, records

from bdh_pl.bench import frontier, scaling
from bdh_pl.charts import frontier as charts


@pytest.fixture(autouse=True)
def _few_resamples(monkeypatch):
    monkeypatch.setattr(scaling, "BOOTSTRAP", N)


def crossing_result() -> dict:
    """BDH steeper than LLaMA: their fits cross inside the search range."""
    runs = records("bdh", curve(0.8, 5e4, 0.4), noise=0.002)
    runs += records("llama", curve(1.2, 1e3, 0.3), noise=0.002)
    return frontier.frontier(runs)


def legend(fig) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def caption(fig) -> str:
    """The figure's note: its legend's title, or its own line when it has no legend."""
    from matplotlib.text import Text

    return " ".join(t.get_text() for t in fig.findobj(Text)).replace("\n", " ")


def test_the_crossing_is_drawn_with_its_band_and_an_open_end_says_so():
    result = crossing_result()
    crossing = result["crossing"]
    assert crossing["budget_flops"] and None not in crossing["band"]
    low, high = crossing["band"]
    texts = legend(charts.frontier_figure(result))
    assert f"crossing, 5-95%: {low:.3g} to {high:.3g}" in texts
    assert f"fits cross at {crossing['budget_flops']:.3g} FLOPs" in texts
    # The band's upper end beyond the search (some resamples never cross): open, said so.
    end = crossing["search_range"][1]
    opened = {**result, "crossing": {**crossing, "band": [low, None], "never_share": 0.12}}
    fig = charts.frontier_figure(opened)
    assert f"crossing, 5-95%: {low:.3g} to >{end:.3g}; 12% never cross" in legend(fig)
    notes = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("band open" in n and f"{end:.3g}" in n for n in notes)
    # Most resamples never cross: no span to draw; the line says where its band lies.
    gone = {**result, "crossing": {**crossing, "band": [None, None], "never_share": 0.97}}
    texts = legend(charts.frontier_figure(gone))
    assert not any(t.startswith("crossing, 5-95%") for t in texts)
    assert any(t.endswith(f"(5-95%: >{end:.3g}; 97% never cross)") for t in texts)


def partial(result: dict) -> dict:
    """The result as a frontier in progress: one budget of four in progress per family."""
    budgets = {
        b: {"state": "complete" if j < 3 else "in progress"}
        for j, b in enumerate(p["budget"] for p in result["families"]["bdh"]["frontier"][:4])
    }
    families = {f: {"budgets": dict(budgets)} for f in result["families"]}
    return {**result, "status": {"complete": False, "families": families}}


def test_every_chart_of_a_running_frontier_says_it_is_partial():
    result = crossing_result()
    for name, draw in charts.FIGURES.items():
        assert "PARTIAL" not in caption(draw(result)), name
        text = caption(draw(partial(result)))
        assert "PARTIAL" in text and "bdh 3 of 4, llama 3 of 4 budgets complete" in text, name
        assert "the others are in progress (PARTIAL.md)" in text, name
    stopped = partial(result)
    last = list(stopped["status"]["families"]["llama"]["budgets"])[-1]
    stopped["status"]["families"]["llama"]["budgets"][last] = {"state": "stopped"}
    text = caption(charts.frontier_figure(stopped))
    assert "the others are in progress or stopped (PARTIAL.md)" in text


def test_a_family_without_a_fit_says_why_in_the_caption():
    runs = records("bdh", curve(0.8, 5e4, 0.4))
    runs = [r for r in runs if r["budget_flops"] <= 2.15e12]  # two budgets: no fit
    result = frontier.frontier(runs)
    assert result["families"]["bdh"]["fit"] is None
    assert "No curve: bdh (2 usable points, 3 needed)." in caption(charts.frontier_figure(result))


def test_the_isoflop_curves_leave_out_the_shapes_the_ladder_did_not_choose():
    runs = records("bdh", curve(0.8, 5e4, 0.4))
    for r in runs:
        r["shape"] = "l3m16"
    other = {**runs[0], "model": "bdh-2e5-l6m128", "params": 9e5, "best_val_bpb": 4.5,
             "shape": "l6m128", "sweep": "shape@1e12", "selected": True,
             "frontier_point": False}  # fmt: skip
    result = frontier.frontier([*runs, other])
    rows = {r["label"]: r for r in result["families"]["bdh"]["runs"]}
    assert rows["bdh-2e5-l6m128"]["other_shape"] is True
    assert not any(r["other_shape"] for k, r in rows.items() if k != "bdh-2e5-l6m128")
    fig = charts.isoflop_figure(result)
    drawn = [x for line in fig.axes[0].lines for x in line.get_xdata()]
    assert 9e5 not in drawn and 2e5 in drawn


def test_a_fit_through_three_points_is_drawn_over_them_only():
    runs = records("bdh", curve(0.8, 5e4, 0.4), noise=0.002)
    runs += [r for r in records("gpt2", curve(1.2, 1e3, 0.3)) if r["budget_flops"] < 1e13]
    result = frontier.frontier(runs)
    assert len(result["families"]["gpt2"]["fit"]["budgets_used"]) == 3
    ax = charts.frontier_figure(result).axes[0]
    top = result["families"]["gpt2"]["fit"]["measured_range"][1]
    gpt2_fit = next(t for t in legend(ax.figure) if t.startswith("gpt2 fit"))
    assert "exact through 3 points" in gpt2_fit
    # gpt2's colour draws no line past its largest point; bdh's (5 points) is extended.
    ends: dict[str, float] = {}
    for line in ax.get_lines():
        x = line.get_xdata()
        if len(x) > 1:
            ends[line.get_color()] = max(ends.get(line.get_color(), 0.0), max(x))
    assert ends["C1"] <= top * (1 + 1e-9) and ends["C0"] > 10 * top
