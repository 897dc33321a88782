"""The conftest guard that keeps the unit tier fast: a process started by a test that is not
marked slow is refused (in tests/integration/ every test is marked slow, so it is tested here)."""

import subprocess
import sys

import pytest


def test_a_test_that_starts_a_process_must_be_marked_slow():
    """conftest.py refuses `python -m bdh_pl` (or pytest, pip) in a test without the mark, before
    anything starts: `make test-fast` stays the fast edit loop."""
    with pytest.raises(AssertionError, match="it belongs in tests/integration/"):
        subprocess.run([sys.executable, "-m", "bdh_pl", "--help"], capture_output=True)
    subprocess.run(["true"], check=True)  # other processes (compile workers, git) may start
