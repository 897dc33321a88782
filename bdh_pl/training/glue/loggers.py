"""The run's loggers: TensorBoard with the HParams table filled and typed, metrics.csv that
never loses a row already written, and a resumed run's curves cut back to its checkpoint."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from bdh_pl.fileio import atomic_write_text


def git(*args: str, cwd: Path | None = None) -> str | None:
    """`git ARGS` in `cwd` (default this process's folder): its output, None without git."""
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=cwd
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _quiet_event_writer_errors(args: threading.ExceptHookArgs) -> None:
    """TensorBoard's event writer thread prints the traceback of a failed write (a full disk)
    and dies; the writer raises the same error in the main thread at the next write, where it
    becomes the one error line. Every other thread's error is printed as before."""
    if type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, OSError):
        return
    _THREAD_HOOK(args)


_THREAD_HOOK = threading.excepthook


# Lightning glue: changes: the HParams table (filled, typed, no fake step-0 point), scalars without counters
class TensorBoard(TensorBoardLogger):
    """TensorBoardLogger that fills the HParams tab: the run's hyperparameters against the
    metrics it logs anyway (Lightning writes that table only with a metric value to log at
    step 0, which would be a fake point on the curve). The table leads with what tells runs
    apart (`LEAD`); internal keys are left out. Scalars leave out Lightning's constant
    `epoch` (training draws windows without epochs) and ThroughputMonitor's running counters
    (`*/batches`, `*/samples`, `*/lengths`, `*/time`), which metrics.csv keeps for the charts.
    A failed write (a full disk) is the OSError it is (Lightning calls it a value it cannot
    log), without the writer thread's traceback."""

    HP_METRICS = ("val/loss", "val/bpb", "test/loss", "test/bpb")
    LEAD = (
        "model", "params", "n_layer", "n_embd", "n_head", "learning_rate", "dropout",
        "weight_decay", "dataset", "tokenizer", "block_size", "batch_size", "seed",
    )  # fmt: skip
    INTERNAL_KEYS = ("_instantiator", "_class_path")
    CONFIG_GROUPS = ("config", "execution", "training")
    COUNTERS = ("batches", "samples", "lengths", "time")

    # a full disk in the writer thread stays the one OSError of the main thread
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._table: dict[str, Any] | None = None
        threading.excepthook = _quiet_event_writer_errors

    # hparams.yaml as Lightning writes it; the table kept for log_graph (needs the model)
    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Any = None, step: int | None = None) -> None:
        super().log_hyperparams(params, metrics, step)  # hparams.yaml
        if metrics is None:
            self._table = dict(params) if isinstance(params, dict) else vars(params)

    # called once with the model: the HParams table written here, without a metric point
    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Lightning calls this with the model right after `log_hyperparams`: the HParams
        table is written here, with the model's class, size and data set."""
        super().log_graph(model, input_array)
        if self._table is None:
            return
        trainer = getattr(model, "_trainer", None)
        counts = getattr(model, "parameter_counts", None)
        known = {
            "model": type(model).__name__,
            "params": counts[0] if counts else None,
            "dataset": getattr(getattr(trainer, "datamodule", None), "dataset_name", None),
            "max_steps": getattr(trainer, "max_steps", None),
            "precision": getattr(trainer, "precision", None),
            "flops_per_token": getattr(model, "flops_per_token", None),
            "git_commit": git("rev-parse", "HEAD", cwd=Path(__file__).parent),
        }
        self._write_table({**known, **self._table})
        self._table = None

    def _write_table(self, params: dict[str, Any]) -> None:
        from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
        from torch.utils.tensorboard.summary import hparams

        params = dict(_convert_params(params))
        for group in self.CONFIG_GROUPS:  # a model's configs: their fields by name (unique)
            if isinstance(params.get(group), dict):
                params |= params.pop(group)
        flat = self._sanitize_params(_flatten_dict(params))
        flat = {k: v for k, v in flat.items() if k not in self.INTERNAL_KEYS}
        ordered = {k: flat.pop(k) for k in self.LEAD if k in flat} | flat
        # the plugin takes numbers, strings and bools; anything else as its text; an unset
        # value (None) is left out rather than shown as the string "None"
        ordered = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v)
            for k, v in ordered.items()
            if v is not None and v != "None"
        }
        writer = self.experiment._get_file_writer()
        for summary in hparams(ordered, dict.fromkeys(self.HP_METRICS, 0.0)):
            writer.add_summary(booleans_as_booleans(summary, ordered))

    # scalars without `epoch` and the throughput counters; a full disk as OSError
    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        shown = {
            k: v
            for k, v in metrics.items()
            if k != "epoch" and k.rsplit("/", 1)[-1] not in self.COUNTERS
        }
        if not shown:
            return
        try:
            super().log_metrics(shown, step)
        except ValueError as err:
            if isinstance(err.__cause__, OSError):
                raise err.__cause__ from None
            raise


def booleans_as_booleans(summary: Any, params: dict[str, Any]) -> Any:
    """torch's `hparams` tests int before bool and stores True as the number 1.0: give each
    bool its bool type and value in the experiment and session-start protos."""
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    flags = {k for k, v in params.items() if isinstance(v, bool)}
    value = summary.value[0]
    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info in data.experiment.hparam_infos:
        if info.name in flags:
            info.type = api_pb2.DataType.Value("DATA_TYPE_BOOL")
    for name in flags & set(data.session_start_info.hparams):
        data.session_start_info.hparams[name].bool_value = params[name]
    value.metadata.plugin_data.content = data.SerializeToString()
    return summary


# Lightning glue: changes: how metrics.csv is written; why: a full disk never costs a row already written
class CSVWriter(ExperimentWriter):
    """Lightning's metrics.csv writer, but a failed write (a full disk) never costs a row
    already written: a new header rewrites the file atomically (Lightning truncates it
    first), and an append that fails is cut back to the rows before it."""

    # atomic rewrite on a new header, whole-row appends
    def save(self) -> None:
        path = Path(self.metrics_file_path)
        if not self.metrics or "://" in str(path):
            super().save()  # nothing to write, or a remote filesystem: Lightning's own way
            return
        new_keys = self._record_new_keys()
        if new_keys or not path.is_file():
            old = []
            if path.is_file():
                with open(path, newline="") as f:
                    old = list(csv.DictReader(f))
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows([*old, *self.metrics])
            atomic_write_text(path, buffer.getvalue())
        else:
            size = path.stat().st_size
            try:
                with open(path, "a", newline="") as f:
                    csv.DictWriter(f, fieldnames=self.metrics_keys).writerows(self.metrics)
            except OSError:
                os.truncate(path, size)  # whole rows only
                raise
        self.metrics = []


# Lightning glue: changes: CSVLogger's writer (CSVWriter)
class CSV(CSVLogger):
    """CSVLogger writing through CSVWriter."""

    # Lightning builds its ExperimentWriter here: CSVWriter instead
    @property
    @rank_zero_experiment
    def experiment(self) -> CSVWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = CSVWriter(log_dir=self.log_dir)
        return self._experiment


def make_loggers(
    root: str | Path, run_dir: Path | None = None, purge_step: int | None = None
) -> list:
    """TensorBoard and CSV side by side in {root}/version_N/, with the checkpoints, so two
    runs with different roots never mix. `purge_step`: a resumed run drops the events the
    killed one logged after its checkpoint (TensorBoard then shows one curve)."""
    version = int(run_dir.name.removeprefix("version_")) if run_dir is not None else None
    extra = {"purge_step": purge_step} if purge_step is not None else {}
    tensorboard = TensorBoard(root, name="", version=version, default_hp_metric=False, **extra)
    metrics = run_dir / "metrics.csv" if run_dir is not None else None
    kept = truncated_csv(metrics, purge_step) if purge_step is not None else None
    csv_logger = CSV(root, name="", version=tensorboard.version)
    if kept is not None:
        writer = csv_logger.experiment  # Lightning's writer deletes metrics.csv: put it back
        atomic_write_text(metrics, kept[1])
        writer.metrics_keys = sorted(kept[0])  # and it appends only under a known header
    return [tensorboard, csv_logger]


def truncated_csv(path: Path, step: int) -> tuple[list[str], str] | None:
    """(columns, text) of metrics.csv without the rows a killed run logged at or after
    `step` (the resumed run logs them again); None when there is no file."""
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        text = f.read()
    text = text[: text.rfind("\n") + 1]  # a row cut short by a kill is not a row
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = list(reader.fieldnames or [])
    rows = [r for r in reader if not r.get("step") or float(r["step"]) < step]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return fields, buffer.getvalue()
