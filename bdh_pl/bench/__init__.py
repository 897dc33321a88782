"""The benchmark matrix (`python -m bdh_pl benchmark`): spec.py (the typed benchmark config)
and budget.py (its budgets and sweep settings), resolve.py (each model's Lightning config,
sizes and FLOPs), runner.py (a subprocess per stage), record.py (one run's figures), run_queue.py
(runs one after another or `jobs` at once, their records, resume), matrix.py (the plans: a
matrix of models, or a compute frontier of families; the command), stats.py (choosing the best
run, aggregating seeds), frontier.py (a frontier's points and fits on one FLOPs rule),
crossing.py (what is measured, the fitted crossing, the compute multiplier), scaling.py (the
Huber fit of L(C) = E + A C^-alpha and its bootstrap), report.py (results files, and the
charts drawn by bdh_pl.charts from the records; frontier_report.py a frontier's summary,
tables.py the Markdown tables). Only
tools/plot.py imports it (to redraw a benchmark's results); the fit and test subprocesses are
plain CLI runs."""
