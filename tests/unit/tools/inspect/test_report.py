"""inspect's README and charts: a report written before the paper's graph protocol (one density
per head, no sweep of beta) keeps its graph tables and degree chart on `--replot`; models of
unequal neuron populations are said to be so."""

from __future__ import annotations

import matplotlib.pyplot as plt

from bdh_pl.charts import figure_problems
from bdh_pl.tools.inspect.measures import rescored
from bdh_pl.tools.inspect.report import figures, readme
from bdh_pl.tools.inspect.tables import population_note


def old_fit(alpha: float, R: float) -> dict:
    """A degree fit as inspect stored it then: no 'preferred' distribution."""
    return {
        "mean": 3.5, "max": 9, "isolated": 0, "alpha": alpha, "k_min": 2, "n_tail": 7, "n": 8,
        "ks_distance": 0.1,
        "alternatives": {
            "exponential": {"loglik_ratio": R, "p_value": 0.04, "power_law_wins": R > 0,
                            "lambda": 0.5},
            "lognormal": {"loglik_ratio": -0.25, "p_value": 0.5, "mu": 1.0, "sigma": 0.5},
        },
    }  # fmt: skip


def old_report() -> dict:
    """The layout of results/interpretability/bdh/inspect.json's graph section at 7faa785."""
    counts = [[1, 2], [2, 3], [4, 2], [9, 1]]
    pooled = {
        name: {
            "modularity_mean": q,
            "fits": {kind: old_fit(alpha, R) for kind in ("out", "in", "total")},
            "degree_counts": {kind: counts for kind in ("out", "in", "total")},
        }
        for name, q, alpha, R in (("trained", 0.234, 1.61, 6.5), ("shuffled", 0.155, 9.72, -8.4))
    }
    by_density = {
        "0.005": {"trained": {k: {"alpha": 1.45, "k_min": 1, "beats_exponential": True,
                                  "beats_lognormal": False} for k in ("out", "in", "total")},
                  "shuffled": {k: {"alpha": None, "k_min": None, "beats_exponential": False,
                                   "beats_lognormal": False} for k in ("out", "in", "total")}},
    }  # fmt: skip
    claim = {
        "claim": "heavy-tailed (power-law) degree distribution of the neuron graph",
        "evidence": "as measured then; at other densities, degrees where it holds: 0.5% in",
        "readings": {"out-degree": False, "in-degree": True},
        "test": "each degree: ...",
    }
    return {
        "checkpoint": "bdh.ckpt", "label": "bdh", "model": "BDHLM", "parameters": 100,
        "hyperparameters": {"n_layer": 1},
        "text": {"source": "held-out.txt", "tokens": 256, "block_size": 64},
        "measures": ["graph"],
        "graph": {"density": 0.02, "heads": [{}, {}], "pooled": pooled, "by_density": by_density},
        "claims": [claim],
    }  # fmt: skip


def test_an_old_format_graph_report_keeps_its_tables_and_degree_chart():
    report = rescored(old_report())  # what --replot does before drawing
    assert [c["verdict"] for c in report["claims"]] == ["holds weakly"]  # judged by the rule
    evidence = report["claims"][0]["evidence"]  # a sub-test there, not a verdict
    assert "where it holds" not in evidence and "beats the exponential and no control" in evidence
    text = readme(report, [])
    assert "no text was read" in text and "held-out" not in text  # the graph alone: weights
    assert "its top 2% of entries as edges" in text
    assert "| trained | 0.234 | in | 3.5 | 9 | 1.61 | 2 | 7 | 6.5 (0.04) | -0.2 (0.5) |" in text
    assert "| shuffled | 0.155 | out | 3.5 | 9 | 9.72 | 2 | 7 | -8.4 (0.04) | -0.2 (0.5) |" in text
    assert "| density | variant | out | in | total |" in text
    assert "| 0.5% | trained | 1.45* | 1.45* | 1.45* |" in text
    assert "| 0.5% | shuffled | - | - | - |" in text
    drawn = figures(report)
    try:
        assert set(drawn) == {"degrees"}  # no sweep of beta: no modularity-by-beta chart
        assert "top 2% of entries" in drawn["degrees"]._suptitle.get_text()
        assert figure_problems(drawn["degrees"]) == []  # the house style, on the rendering
    finally:
        for fig in drawn.values():
            plt.close(fig)


def test_unequal_populations_are_said_wherever_the_models_differ_in_size():
    bdh = {"neurons": 12_288, "weight_vectors": 3_072}
    sel = {"models": {"bdh": bdh, "llama": {"neurons": 2_048, "weight_vectors": None}}}
    (note, _) = population_note(sel)
    assert "Unequal populations" in note and "bdh 12,288 (3,072 vectors), llama 2,048" in note
    assert "no comparison at equal size" in note  # an older report: its max is the larger's
    sel["equal_size"] = 2_048
    assert "compared among 2,048 neurons below" in population_note(sel)[0]
    twins = {"models": {"bdh": bdh, "bdh (init)": dict(bdh)}}
    assert population_note(twins) == []  # a model and its untrained twin: nothing to say
