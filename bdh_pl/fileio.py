"""Small file helpers: every result file and checkpoint is written atomically (a temp file in
the same folder, fsync, rename), with normal permissions, and a full disk is one clear error."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from bdh_pl.errors import UserError

TEMP_SUFFIX = ".tmp"
# Errors that mean "this folder cannot take the file": a fix for the user, not a bug.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
WRITE_ELSEWHERE = (
    "(--trainer.default_root_dir, $BDH_PL_CACHE_DIR)"  # what a full disk's line offers
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Recording:
    """A binary file that remembers the OSError of a failed write: some writers turn it into
    their own error (torch's zip writer: `RuntimeError: ... unexpected pos`), which would hide
    a full disk."""

    def __init__(self, f: IO[bytes]) -> None:
        self.file, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """Yield a binary file whose content replaces `path` in one step when the block ends:
    readers see the old file or the new one, never half. The temp file lives in the same
    folder (a rename across filesystems is a copy, not atomic) and is removed on any failure;
    a failed write (a full disk) is one UserError, whatever the writer made of it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as err:
        raise disk_error(err, path.parent) from None
    recording = None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            recording = _Recording(f)
            yield recording  # type: ignore[misc]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if not isinstance(err, OSError) and recording is not None:
            err = recording.error or err  # the write error under the writer's own
        if isinstance(err, OSError):
            raise disk_error(err, path.parent) from None
        raise


def os_errno(err: BaseException) -> int | None:
    """The OS error number under `err`: an OSError's own, or the one a library wrapped in its
    own error's message (safetensors: "... (os error 28)")."""
    while err is not None:
        if isinstance(err, OSError) and err.errno is not None:
            return err.errno
        found = re.search(r"os error (\d+)|\[Errno (\d+)\]", str(err))
        if found:
            return int(found.group(1) or found.group(2))
        err = err.__cause__ or err.__context__
    return None


@contextlib.contextmanager
def atomic_folder(out: str | os.PathLike, where: str = WRITE_ELSEWHERE) -> Iterator[Path]:
    """Yield a temp folder beside `out` to fill; it becomes `out` (new, or an empty folder) in
    one rename when the block ends, and is removed on any failure: `out` is whole or absent,
    so a retry finds nothing half-written in its way. A full disk is one UserError."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=TEMP_SUFFIX))
    except OSError as err:
        raise disk_error(err, out.parent, where) from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; results are meant to be shared
        os.replace(tmp, out)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        number = os_errno(err)
        if number in NO_SPACE + NOT_WRITABLE:
            raise disk_error(OSError(number, os.strerror(number)), out.parent, where) from None
        raise


def disk_error(err: OSError, folder: Path, where: str = WRITE_ELSEWHERE) -> OSError | UserError:
    """A full or read-only disk as a one-line UserError naming the folder (and `where`: the
    options that write elsewhere); other OSErrors as is."""
    if err.errno in NO_SPACE:
        return UserError(
            f"no space left on the device of {str(folder)!r} ({os.strerror(err.errno)}); the "
            f"previous files there are intact: free space, or write elsewhere {where}"
        )
    if err.errno in NOT_WRITABLE:
        return UserError(f"cannot write in {str(folder)!r} ({os.strerror(err.errno)})")
    return err


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half."""
    with atomic_write(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Temp files a killed writer left in `folder` (call only while no other writer uses it)."""
    removed = []
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def strict_json(obj: Any, undefined: dict[str, str], where: str = "") -> Any:
    """`obj` with every non-finite float replaced by None (JSON has no NaN or Infinity);
    `undefined` collects where each was and what it was."""
    if isinstance(obj, float) and not math.isfinite(obj):
        undefined[where] = repr(obj)
        return None
    if isinstance(obj, dict):
        return {
            k: strict_json(v, undefined, f"{where}.{k}" if where else str(k))
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [strict_json(v, undefined, f"{where}[{i}]") for i, v in enumerate(obj)]
    return obj


UNDEFINED_NOTE = (
    "these values are null because they are not finite numbers (JSON cannot hold NaN or "
    "Infinity); e.g. word perplexity is infinite on a text with no words"
)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Strict JSON: a non-finite number becomes null, and a dict says which and why."""
    undefined: dict[str, str] = {}
    clean = strict_json(obj, undefined)
    if undefined and isinstance(clean, dict):
        clean["undefined"] = {"note": UNDEFINED_NOTE, "values": undefined}
    text = json.dumps(clean, indent=2, sort_keys=False, default=str, allow_nan=False)
    atomic_write_text(path, text + "\n")


def claim_version(root: Path) -> Path:
    """The next free {root}/version_N, created here: mkdir is atomic, so of two runs started
    together each gets its own."""
    root.mkdir(parents=True, exist_ok=True)
    numbers = [p.name.removeprefix("version_") for p in root.glob("version_*")]
    version = max((int(n) for n in numbers if n.isdigit()), default=-1) + 1
    while True:
        run_dir = root / f"version_{version}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            version += 1


def lock_folder(folder: Path) -> int | None:
    """An exclusive lock on `folder`, held until the returned descriptor is closed (or the
    process ends, however it ends); None when another process holds it."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def check_writable(folder: Path, hint: str) -> None:
    """`folder`, or its nearest existing parent, must be a writable folder; else a UserError
    ending with `hint` (which option to change)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UserError(
            f"cannot write under {str(folder)!r} ({str(existing)!r} is not a writable folder): "
            f"{hint}"
        )


def check_output_file(path: Path, option: str) -> None:
    """A file option (`--out results.json`) that can be written: not a folder, in a writable
    folder; checked before any work, so a typo does not cost the run."""
    if path.is_dir():
        raise UserError(f"{option} {str(path)!r} is a folder: give a file name")
    check_writable(path.parent, f"give {option} a path in a writable folder")
