"""The benchmark matrix (`python -m bdh_pl benchmark`): spec.py (the typed benchmark config),
resolve.py (each model's Lightning config, sizes and FLOPs), runner.py (a subprocess per
stage), record.py (one run's figures), stats.py (choosing the best sweep run, aggregating seeds),
report.py (results files), matrix.py (the command). Only tools/plot.py's benchmark charts
import it (stats, to draw the chosen runs); the fit and test subprocesses are plain CLI runs."""
