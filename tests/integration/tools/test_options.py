"""The tools' --help in a fresh process: no torch, no Lightning imported (the unit half:
tests/unit/tools/test_options.py)."""

import subprocess
import sys

import pytest

from helpers import REPO


@pytest.mark.slow
def test_each_tools_help_answers_without_torch_or_lightning():
    """One process asks every tool for --help and then lists what it imported."""
    tools = ["generate", "mauve", "context-curve", "inspect", "merge", "plot", "export"]
    script = f"""
import contextlib, io, sys
from bdh_pl.cli import main
for tool in {tools!r}:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            main([tool, "--help"])
        except SystemExit as exit_:
            assert exit_.code == 0, tool
    assert out.getvalue().startswith(f"usage: python -m bdh_pl {{tool}}"), out.getvalue()[:200]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "lightning"))
print(heavy[:5])
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
