"""`python -m bdh_pl plot`: the loss curves of one training run, or a benchmark's charts redrawn.

python -m bdh_pl plot --run lightning_logs/version_3 --out results/my-run/charts
python -m bdh_pl plot --results results/smoke        # redraw a benchmark's charts/
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from bdh_pl.errors import UserError
from bdh_pl.fileio import check_writable
from bdh_pl.tools.options import parse


def plot_run(run: str | Path, out: str | Path) -> Path:
    from bdh_pl.charts import (
        find_log_dir,
        read_metrics,
        run_tokens_per_step,
        save_figure,
        training_curves_figure,
    )

    log_dir = find_log_dir(run)
    fig = training_curves_figure(read_metrics(log_dir), run_tokens_per_step(log_dir), str(log_dir))
    return save_figure(fig, Path(out) / "training_curves.png")


@dataclasses.dataclass(kw_only=True)
class Plot:
    """What is drawn

    Args:
        run: log folder (e.g. lightning_logs/version_3)
        results: benchmark folder with metrics.json (results/smoke)
        out: output folder (default: {run or results}/charts)
    """

    run: str | None = None
    results: str | None = None
    out: str | None = None

    def __post_init__(self) -> None:
        if (self.run is None) == (self.results is None):
            raise UserError(
                "give either --run (a run's curves) or --results (a benchmark's charts)"
            )


def plot(args: Plot) -> None:
    """Loss curves of one run (--run), or redraw a benchmark's charts and summaries (--results)."""
    from bdh_pl.bench.report import write_charts, write_summaries
    from bdh_pl.charts import find_log_dir

    if args.run:
        out = Path(args.out or find_log_dir(args.run) / "charts")
        check_writable(out, "give --out a writable folder")
        print(plot_run(args.run, out))
        return
    path = Path(args.results) / "metrics.json"
    if not path.is_file():
        raise UserError(f"{path} not found: give the folder a benchmark wrote")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        records, experiment = results["records"], results["experiment"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"{path} is not a benchmark's metrics.json ({type(err).__name__}: {err}); "
            "rerun the benchmark to rewrite it"
        ) from None
    out = Path(args.out or Path(args.results) / "charts")
    check_writable(out, "give --out a writable folder")
    for chart in write_charts(Path(args.results), experiment, records, charts_dir=out):
        print(chart)
    if not args.out:  # the benchmark's own folder: its summaries follow the same records
        write_summaries(Path(args.results), experiment, records, results.get("command", ""))
        print(Path(args.results) / "summary.md")


def main(argv: list[str]) -> None:
    plot(**parse(plot, argv, "plot"))
