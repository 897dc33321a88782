"""`python -m bdh_pl inspect`: what a BDH learned, measured against controls. command.py is the
command (its options and the measuring), measures.py the sparsity and graph reports and the
verdicts, selectivity.py the selective neurons, report.py the README and charts it writes."""
