"""Result files: atomic, strict JSON, normal permissions; a full disk is one clear error."""

import errno
import json
import os
import stat

import pytest

from bdh_pl.errors import UserError
from bdh_pl.fileio import atomic_write, atomic_write_bytes, write_json


def strict_load(text: str):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_are_null_and_the_file_says_why(tmp_path):
    path = tmp_path / "test_metrics.json"
    write_json(
        path, {"metrics": {"test/word_ppl": float("inf"), "test/bpb": 3.5}, "x": [float("nan")]}
    )
    record = strict_load(path.read_text())  # what Python's default (lenient) reader would hide
    assert record["metrics"] == {"test/word_ppl": None, "test/bpb": 3.5}
    assert record["x"] == [None]
    assert record["undefined"]["values"] == {"metrics.test/word_ppl": "inf", "x[0]": "nan"}
    assert "not finite" in record["undefined"]["note"]


def test_result_files_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644  # not mkstemp's 0600


def test_a_full_disk_keeps_the_old_file_removes_the_temp_and_names_the_folder(tmp_path):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"previous")
    full = pytest.raises(UserError, match=f"no space left on the device of '{tmp_path}'")
    with full, atomic_write(path) as f:
        f.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
