"""The house rules that need a process: the command line starts at once (the other rules are
checked on the code, in tests/unit/test_architecture.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "bdh_pl"


@pytest.mark.parametrize(
    "args", [["--help"], ["fitt"], ["predict"]], ids=["help", "typo", "predict"]
)
def test_the_command_line_answers_without_torch_or_lightning(args):
    """`--help` and the top-level errors import neither torch nor Lightning (-X importtime
    lists every module a process imported)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bdh_pl", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PACKAGE.parent,
    )
    assert result.returncode == (0 if args == ["--help"] else 2), result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    heavy = {name for name in imported if name.split(".")[0] in ("torch", "lightning")}
    assert not heavy, sorted(heavy)[:5]
    assert "bdh_pl.cli" in imported  # the check can fail: it sees bdh-pl's own modules
