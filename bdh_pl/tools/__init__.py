"""The tools: one subcommand each, a module with `main(argv)` that cli.py dispatches to by name;
models are read through training/loading.py, what several tools share is in common.py."""
