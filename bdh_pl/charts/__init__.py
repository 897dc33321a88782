"""Every chart of the project, in one house style, with one checker.

    from bdh_pl import charts
    fig = charts.new_figure(2)                      # constrained layout, Agg canvas
    ...draw with charts.finish_axes / log_axis / plot_points / legend_outside / caption...
    assert charts.figure_problems(fig) == []        # what a careful reader would trip on
    charts.save_figure(fig, "results/x/charts/y.png")

style.py      the house style: figure, axis labels with units, model colours, seed line styles,
              log axes whose labels cannot collide, legends and captions outside the data,
              value labels above error bars, hollow points for estimates from few samples
checks.py     figure_problems(fig): unlabelled axes, axes without a unit, overlapping tick
              labels, a legend over data, text outside the figure, a label on a line, markers
              on top of each other, a bare 2-point line, a thin point not drawn hollow
curves.py     a run folder's logged curves and its tokens per optimizer step (bdh_pl/step_tokens.py)
figures.py    the chart kinds: run curves by steps/tokens/epochs/FLOPs/seconds, bars with the
              seeds' range, a value against size, bits per byte by context
benchmark.py  a benchmark's charts from its records (given the benchmark's choices as values)

Tests (tests/{unit,integration}/test_charts.py) draw every kind from small synthetic records and hold it to
`figure_problems`; each check has a figure made to fail it.
"""

from bdh_pl.charts.checks import figure_problems
from bdh_pl.charts.curves import (
    Curve,
    find_log_dir,
    fit_seconds,
    read_metrics,
    run_tokens_per_step,
    steps_done,
    tokens_seen,
)
from bdh_pl.charts.figures import (
    AXES,
    Series,
    bar_figure,
    context_figure,
    curves_figure,
    draw_curve,
    size_figure,
    stream_gain_figure,
    training_curves_figure,
)
from bdh_pl.charts.style import (
    caption,
    declare_samples,
    eng_axis,
    finish_axes,
    legend_outside,
    log_axis,
    model_color,
    new_figure,
    plot_points,
    save_figure,
    seed_style,
    suptitle,
)

__all__ = [
    "AXES", "Curve", "Series", "bar_figure", "caption", "context_figure", "curves_figure",
    "declare_samples", "draw_curve", "eng_axis", "figure_problems", "find_log_dir",
    "finish_axes", "fit_seconds", "legend_outside", "log_axis", "model_color", "new_figure",
    "plot_points", "read_metrics", "run_tokens_per_step", "save_figure", "seed_style",
    "size_figure", "steps_done", "stream_gain_figure", "suptitle", "tokens_seen",
    "training_curves_figure",
]  # fmt: skip
