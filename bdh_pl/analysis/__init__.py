"""Measures of what a trained network learned (`python -m bdh_pl inspect`): its neurons on a
text (activations.py), their sparsity, their selectivity for simple classes, and BDH's neuron
graph with its degree distribution (graph.py, powerlaw.py). Plain torch/numpy/scipy/networkx
and the models: no Lightning, no file formats."""
