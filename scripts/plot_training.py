"""The original project's script path, kept working: the same as `python -m bdh_pl plot`.

python scripts/plot_training.py --run lightning_logs/version_3 --out results/my-run/charts
"""

from bdh_pl.cli import main

if __name__ == "__main__":
    import sys

    main(["plot", *sys.argv[1:]])
