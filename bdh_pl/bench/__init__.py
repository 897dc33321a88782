"""The benchmark matrix (`python -m bdh_pl benchmark`): spec.py (the typed benchmark config),
resolve.py (each model's Lightning config, sizes and FLOPs), runner.py (a subprocess per
stage), record.py (one model's figures), report.py (results files), matrix.py (the command).
Nothing outside this package imports it: the fit and test subprocesses are plain CLI runs."""
