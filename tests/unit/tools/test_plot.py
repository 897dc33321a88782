import csv

import pytest
import yaml

from bdh_pl import charts
from bdh_pl.errors import UserError
from bdh_pl.tools import plot

BATCH, BLOCK = 4, 8  # 32 tokens per step


def write_run(path, steps=40, train_every=5, val_every=10, hparams=True):
    """A metrics.csv laid out as Lightning's CSVLogger writes it: one row per logging call,
    empty cells for the metrics not logged in that call."""
    path.mkdir(parents=True)
    columns = ["epoch", "lr", "step", "train/loss", "val/bpb", "val/loss"]
    rows = []
    for step in range(steps):
        if (step + 1) % train_every == 0:
            rows.append({"lr": 1e-3, "step": step})
            rows.append({"epoch": 0, "step": step, "train/loss": 5 - step / 10})
        if (step + 1) % val_every == 0:
            rows.append({"epoch": 0, "step": step, "val/loss": 4.5 - step / 10, "val/bpb": 6.0})
    with open(path / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    if hparams:
        (path / "hparams.yaml").write_text(
            yaml.safe_dump({"batch_size": BATCH, "block_size": BLOCK})
        )
    return path


def test_training_curves_have_train_and_val_lines_against_steps_and_tokens(tmp_path):
    run = write_run(tmp_path / "version_0")
    curves = charts.read_metrics(run)
    assert len(curves["train/loss"]) == 8 and len(curves["val/loss"]) == 4
    fig = charts.training_curves_figure(curves, charts.run_tokens_per_step(run))
    by_step, by_tokens = fig.axes
    for ax in (by_step, by_tokens):
        assert [line.get_label() for line in ax.get_lines()] == ["train", "validation"]
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    # Lightning logs step s after s + 1 optimizer steps
    assert list(by_step.get_lines()[1].get_xdata()) == [10, 20, 30, 40]
    assert list(by_tokens.get_lines()[1].get_xdata()) == [320, 640, 960, 1280]
    assert list(by_tokens.get_lines()[0].get_ydata()) == [v for _, v in curves["train/loss"]]


def test_plot_subcommand_writes_a_png_from_the_newest_version(tmp_path, capsys):
    write_run(tmp_path / "logs" / "version_0", steps=10)
    write_run(tmp_path / "logs" / "version_1")
    plot.main(["--run", str(tmp_path / "logs"), "--out", str(tmp_path / "charts")])
    png = tmp_path / "charts" / "training_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.strip() == str(png)


def test_without_hparams_only_the_step_axis(tmp_path):
    run = write_run(tmp_path / "run", hparams=False)
    assert charts.run_tokens_per_step(run) is None
    fig = charts.training_curves_figure(charts.read_metrics(run), None)
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 2


def test_a_folder_without_logs_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="metrics.csv"):
        charts.read_metrics(tmp_path)


def truncated_results(tmp_path, monkeypatch):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "metrics.json").write_text('{"experiment": "smoke", "records": [{"mo')
    return ["--results", str(tmp_path / "bench")]


def csv_run(tmp_path, content: bytes):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.csv").write_bytes(content)
    return ["--run", str(tmp_path / "run"), "--out", str(tmp_path / "charts")]


def read_only(tmp_path, monkeypatch):
    import errno
    import os
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # what a read-only mount answers
    return ["--run", str(write_run(tmp_path / "run")), "--out", str(tmp_path / "charts")]


BAD = {
    "non-numeric metrics.csv": (
        lambda t, m: csv_run(t, b"step,train/loss\n0,1.5\n1,lots\n"),
        "is not a metrics CSV written by a run (line 3",
    ),
    "binary metrics.csv": (
        lambda t, m: csv_run(t, bytes(range(256)) * 4),
        "is not a metrics CSV",
    ),
    "truncated metrics.json": (truncated_results, "is not a benchmark's metrics.json"),
    "--out under a file": (
        lambda t, m: [
            "--run",
            str(write_run(t / "run")),
            "--out",
            str(t / "run" / "metrics.csv" / "charts"),
        ],
        "is not a writable folder",
    ),
    "--out on a read-only mount": (read_only, "Read-only file system"),
    "unknown option": (lambda t, m: ["--run", str(t), "--outt", "x"], "unrecognized arguments"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_error_line_and_nothing_written(case, tmp_path, monkeypatch, run_cli):
    make_args, expected = BAD[case]
    code, err = run_cli(["plot", *make_args(tmp_path, monkeypatch)])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0]
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob(".*.tmp"))
