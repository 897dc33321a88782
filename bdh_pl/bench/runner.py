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

from bdh_pl.training.glue.checkpoint_io import LAST
from bdh_pl.training.loading import checkpoint_fields


class StageFailed(Exception):
    """A fit or test subprocess ended with an error; the message is its last error line."""


def run_stage(
    stage: str,
    config_path: Path,
    root: Path,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
    echo: bool = True,
    cwd: Path | None = None,
) -> Path:
    """Run `python -m bdh_pl {stage}` with the config, teeing its stderr (the progress bar) to
    {root}/{stage}.log and, when `echo`, to ours. Returns the version_N folder it logged to."""
    # Relative paths are `cwd`'s (default: this process's now): the stage runs there, whatever
    # folder another thread of this process may have moved to meanwhile.
    base = Path(cwd) if cwd is not None else Path.cwd()
    where = root if root.is_absolute() else base / root
    before = set(where.glob("version_*"))
    cmd = [sys.executable, "-m", "bdh_pl", stage, "--config", str(config_path), *extra]
    where.mkdir(parents=True, exist_ok=True)
    environ = {**os.environ, **(env or {})}
    code, tail = _stream(cmd, where / f"{stage}.log", environ, echo, base)
    if code:
        raise StageFailed(error_line(tail) or f"exit code {code}")
    new = sorted(set(where.glob("version_*")) - before)
    if not new and (continued := _continued_folder(extra, where)) is not None:
        return root / continued.name  # `fit --ckpt_path <its last.ckpt>` continues its folder
    if len(new) != 1:
        raise StageFailed(f"{stage} wrote {len(new)} log folders under {root}, expected one")
    return root / new[0].name


def _continued_folder(extra: Sequence[str], where: Path) -> Path | None:
    """The version folder under `where` whose checkpoint `--ckpt_path` names, if any."""
    args = list(extra)
    if "--ckpt_path" not in args or args.index("--ckpt_path") + 1 >= len(args):
        return None
    folder = Path(args[args.index("--ckpt_path") + 1]).resolve().parent.parent
    return folder if folder.parent == where.resolve() and folder.is_dir() else None


def _stream(
    cmd: list[str], log_path: Path, env: dict[str, str], echo: bool, cwd: Path
) -> tuple[int, str]:
    """Run cmd; its stderr goes to the log file and, when `echo`, to our stderr (Lightning's
    progress bar). Returns the exit code and the end of its stderr."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail: list[str] = []
    with open(log_path, "a") as log:  # a resumed fit's log follows the killed one's
        log.write(f"$ {shlex.join(cmd)}\n")
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env, cwd=cwd)
        while chunk := proc.stderr.read1(1 << 16):
            text = decoder.decode(chunk)
            log.write(text)
            if echo:
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


def read_checkpoint_state(fit_dir: Path, cwd: Path | None = None) -> tuple[int | None, Path]:
    """(global step at the end of training, the checkpoint to test): ModelCheckpoint's best
    model when it monitored something, else the last checkpoint. Relative paths (the fit
    folder, the best path the checkpoint holds) are `cwd`'s."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    ckpt_dir = fit_dir / "checkpoints"
    if not ckpt_dir.is_absolute():
        ckpt_dir = base / ckpt_dir
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
    if best and (best if best.is_absolute() else base / best).is_file():
        return state.get("global_step"), best
    return state.get("global_step"), candidates[-1]


def trained_seconds(ckpt: Path) -> float | None:
    """Seconds the fit had run (training and its validations) when `ckpt` was saved: the state
    of Lightning's Timer, which every fit's checkpoints hold; None for a checkpoint without it
    (saved by an older version: record.logged_seconds_before_resumes stands in)."""
    timer = ((checkpoint_fields(ckpt) or {}).get("callbacks") or {}).get("Timer")
    return float(timer["time_elapsed"]["train"]) if timer else None
