"""A Lightning stage as a subprocess, `python -m bdh_pl fit|test --config <file>`: a crash or an
out-of-memory ends that model only, and each process measures its own memory peak."""

from __future__ import annotations

import codecs
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from bdh_pl.training.checkpoint_io import LAST
from bdh_pl.training.loading import checkpoint_fields


class StageFailed(Exception):
    """A fit or test subprocess ended with an error; the message is its last error line."""


def run_stage(
    stage: str,
    config_path: Path,
    root: Path,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Path:
    """Run `python -m bdh_pl {stage}` with the config, streaming its progress bar, teeing its
    stderr to {root}/{stage}.log. Returns the version_N folder the run logged to."""
    before = set(root.glob("version_*"))
    cmd = [sys.executable, "-m", "bdh_pl", stage, "--config", str(config_path), *extra]
    root.mkdir(parents=True, exist_ok=True)
    code, tail = _stream(cmd, root / f"{stage}.log", {**os.environ, **(env or {})})
    if code:
        raise StageFailed(error_line(tail) or f"exit code {code}")
    new = sorted(set(root.glob("version_*")) - before)
    if len(new) != 1:
        raise StageFailed(f"{stage} wrote {len(new)} log folders under {root}, expected one")
    return new[0]


def _stream(cmd: list[str], log_path: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run cmd; its stderr goes to our stderr (Lightning's progress bar) and to the log file.
    Returns the exit code and the end of its stderr."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail: list[str] = []
    with open(log_path, "w") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env)
        while chunk := proc.stderr.read1(1 << 16):
            text = decoder.decode(chunk)
            log.write(text)
            sys.stderr.write(text)
            sys.stderr.flush()
            tail = (tail + [text])[-64:]
        code = proc.wait()
    return code, "".join(tail)


def error_line(stderr: str) -> str:
    """The one line that says what went wrong: the CLI's `error:` line and what follows it
    (jsonargparse explains on a few lines), else a traceback's last line."""
    lines = [ln.strip() for ln in stderr.replace("\r", "\n").splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith("error:"):
            return " ".join(lines[i : i + 8])[:600]
    for line in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line):
            return line[:600]
    return lines[-1][:600] if lines else ""


def read_checkpoint_state(fit_dir: Path) -> tuple[int | None, Path]:
    """(global step at the end of training, the checkpoint to test): ModelCheckpoint's best
    model when it monitored something, else the last checkpoint."""
    ckpt_dir = fit_dir / "checkpoints"
    last = ckpt_dir / LAST
    candidates = [last] if last.is_file() else sorted(ckpt_dir.glob("*.ckpt"))
    if not candidates:
        raise StageFailed(
            f"fit wrote no checkpoint in {ckpt_dir}: the dataset config needs a ModelCheckpoint "
            "callback and a val_check_interval <= max_steps"
        )
    state = checkpoint_fields(candidates[-1])
    if state is None:
        raise StageFailed(f"cannot read {candidates[-1]}: truncated or not a checkpoint")
    best = next(
        (
            Path(s["best_model_path"])
            for key, s in state.get("callbacks", {}).items()
            if key.startswith("ModelCheckpoint") and s.get("best_model_path")
        ),
        None,
    )
    return state.get("global_step"), best if best and best.is_file() else candidates[-1]
