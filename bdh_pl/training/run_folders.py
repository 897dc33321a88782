"""Run folders: the state of the run in progress, which folder a resume continues (its loggers
from loggers.py), `--ckpt_path last|best`, and the pre-emption line."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
from pathlib import Path

from bdh_pl.errors import UserError
from bdh_pl.fileio import (
    claim_version,
    lock_folder,
    remove_stale_temp_files,
)
from bdh_pl.training.glue.checkpoint_io import LAST, saved_step
from bdh_pl.training.glue.loggers import make_loggers
from bdh_pl.training.loading import checkpoint_fields


class RunState:
    """What `main` needs to report a failure of the run in progress: its folder, whether this
    process created it, and the trainer (for the step reached)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.run_dir: Path | None = None
        self.fresh = False
        self.trainer = None
        self.argv: list[str] = []
        self._locks: list[int] = []

    def lock(self, run_dir: Path) -> None:
        """Hold an exclusive lock on the run folder for the life of this process, so a second
        process cannot write into it (a resume of a run that is still going, say)."""
        fd = lock_folder(run_dir)
        if fd is None:
            raise UserError(
                f"run folder {str(run_dir)!r} is in use by another process: wait for it to end, "
                "or give this run another --trainer.default_root_dir"
            )
        self._locks.append(fd)

    def release(self) -> None:
        for fd in self._locks:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.reset()

    def abandon(self) -> None:
        """A run this process started that failed before it finished a batch (bad input, out
        of memory in its first step) leaves nothing. Once it has trained or evaluated, its
        folder stays whatever fails next (a full disk at the first checkpoint, a diverged
        loss): the curves, configs and event files it wrote are the user's, and the error
        line says they are intact."""
        run_dir = self.run_dir
        if self.fresh and run_dir is not None and not self.began():
            shutil.rmtree(run_dir, ignore_errors=True)

    def began(self) -> bool:
        """Whether the run's trainer finished a batch of training, validation or test."""
        trainer = self.trainer
        if trainer is None:
            return False
        loops = (trainer.fit_loop.epoch_loop, trainer.fit_loop.epoch_loop.val_loop)
        loops += (trainer.validate_loop, trainer.test_loop)
        return any(loop.batch_progress.total.completed > 0 for loop in loops)


RUN = RunState()


def continuing_run(root: Path, ckpt_path: Path, checkpoint: dict) -> Path | None:
    """The run folder a resume continues: the checkpoint's own, when it is that run's newest
    state (its last.ckpt) under this root. Resuming from an older checkpoint (a best.ckpt)
    starts a new folder, so the later curves are not cut away."""
    ckpt_path = ckpt_path.resolve()
    run_dir = ckpt_path.parent.parent
    if ckpt_path.parent.name != "checkpoints" or run_dir.parent != root.resolve():
        return None
    if not run_dir.name.removeprefix("version_").isdigit():
        return None
    last = run_dir / "checkpoints" / LAST
    if ckpt_path != last.resolve() and (
        not last.is_file() or saved_step(last) != checkpoint.get("global_step")
    ):
        return None
    return root / run_dir.name


def newest_checkpoint(root: Path) -> Path | None:
    """The newest last.ckpt under root (last.ckpt is rewritten at every validation)."""
    found = sorted(root.glob(f"version_*/checkpoints/{LAST}"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def best_checkpoint(root: Path) -> Path | None:
    """The best*.ckpt under root with the best score its ModelCheckpoint stored (lowest for
    mode min); files without a stored score come after those with one, newest first."""
    candidates = list(root.glob("version_*/checkpoints/best*.ckpt"))
    if not candidates:
        return None

    def rank(path: Path) -> tuple:
        scored = best_score(path)
        if scored is None:
            return (1, -path.stat().st_mtime)
        score, mode = scored
        return (0, score if mode == "min" else -score)

    return min(candidates, key=rank)


def best_score(path: str | Path) -> tuple[float, str] | None:
    """(score, mode) that the monitored ModelCheckpoint stored in a best checkpoint it wrote
    (the weights are not read); None when the file does not say."""
    fields = checkpoint_fields(path) or {}
    for key, state in (fields.get("callbacks") or {}).items():
        if not (isinstance(state, dict) and state.get("monitor")):
            continue
        score = state.get("best_model_score")
        if score is None or Path(str(state.get("best_model_path", ""))).name != Path(path).name:
            continue
        mode = "max" if "'mode': 'max'" in str(key) else "min"
        return float(score), mode
    return None


def resolve_ckpt_alias(ckpt_path: str | None, root: Path, subcommand: str) -> str | None:
    """`--ckpt_path last|best` names such a file of an earlier run under the root (Lightning
    alone would only look in this new run's empty folder): the newest last.ckpt, or the
    best.ckpt with the best stored score."""
    if ckpt_path not in ("last", "best"):
        return ckpt_path
    found = newest_checkpoint(root) if ckpt_path == "last" else best_checkpoint(root)
    if found is not None:
        print(f"{subcommand}: --ckpt_path {ckpt_path} -> {found}", file=sys.stderr)
        return str(found)
    if subcommand == "fit" and ckpt_path == "last":
        # Nothing to resume yet: start fresh, so one command serves first run and restarts.
        print(f"fit: no last.ckpt under {root}: starting from scratch", file=sys.stderr)
        return None
    raise UserError(
        f"--ckpt_path {ckpt_path}: no {ckpt_path}.ckpt under {root}/version_*/checkpoints/"
    )


def preempted_line(argv: list[str], cause: str = "SIGTERM", saved: bool = True) -> str:
    """What a job script needs after SIGTERM or Ctrl-C (`cause`): the step reached and the
    command that resumes. `saved`: last.ckpt was written at this stop (not after a second
    Ctrl-C, which saves nothing: the last validation's last.ckpt is the resume point)."""
    if argv[:1] in (["test"], ["validate"]):  # nothing to resume: an evaluation starts over
        return f"{argv[0]}: stopped by {cause}; run the same command again"
    trainer = RUN.trainer
    step = trainer.global_step if trainer is not None else "?"
    last = RUN.run_dir / "checkpoints" / LAST if RUN.run_dir is not None else None
    if last is None or not last.is_file():
        return f"fit: stopped by {cause} at step {step} before any checkpoint was written"
    args, skip = [], False
    for arg in argv:  # the same command, resuming from this run's last.ckpt
        if skip or arg.startswith("--ckpt_path="):
            skip = False
            continue
        if arg == "--ckpt_path":
            skip = True
            continue
        args.append(arg)
    command = shlex.join(["python", "-m", "bdh_pl", *args, "--ckpt_path", str(last)])
    kept = f"saved {last}" if saved else f"kept {last} (step {saved_step(last)}, saved nothing)"
    return f"fit: stopped by {cause} at step {step}, {kept}; resume with: {command}"


def open_run_folder(
    root: Path, ckpt_path: str | None, checkpoint: dict | None, resuming: bool
) -> list:
    """The run's folder, locked, and its loggers. A resumed run continues its own folder (one
    curve in TensorBoard and metrics.csv); any other run gets a new version_N, claimed
    atomically (mkdir), so two runs started together into one root never share a folder."""
    resume_dir = continuing_run(root, Path(ckpt_path), checkpoint) if resuming else None
    run_dir = resume_dir or claim_version(root)
    RUN.run_dir, RUN.fresh = run_dir, resume_dir is None
    RUN.lock(run_dir)
    if resume_dir is None:
        if resuming:
            print(
                f"fit: resuming {ckpt_path} (step {checkpoint.get('global_step')}) in a new run "
                f"folder {run_dir}",
                file=sys.stderr,
            )
        return make_loggers(root, run_dir)
    purge_step = int(checkpoint.get("global_step", 0))
    remove_stale_temp_files(run_dir / "checkpoints")
    remove_stale_temp_files(run_dir)
    print(f"fit: continuing {run_dir} from step {purge_step}", file=sys.stderr)
    return make_loggers(root, run_dir, purge_step)
