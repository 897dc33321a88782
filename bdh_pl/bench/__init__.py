"""The benchmark matrix (`python -m bdh_pl benchmark`): spec.py (the typed benchmark config),
resolve.py (each model's Lightning config, sizes and FLOPs), runner.py (a subprocess per
stage), record.py (one run's figures), stats.py (choosing the best sweep run, aggregating seeds),
report.py (results files, and the charts drawn by bdh_pl.charts from the records), matrix.py
(the command). Only tools/plot.py imports it (to redraw a benchmark's charts); the fit and
test subprocesses are plain CLI runs."""
