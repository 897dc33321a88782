"""The rule that keeps CI honest: without real data the data tests are skipped with a reason on
a fresh clone, but fail where $BDH_PL_REQUIRE_DATA is set, as `.ci/run` sets it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
A_DATA_TEST = "tests/unit/data/test_tokenizers.py::test_gpt2_tokenizer_from_local_folder"


def pytest_without_data(**env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BDH_PL_")}
    environ.update(HF_HUB_OFFLINE="1", **env)  # no hub either
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", A_DATA_TEST]
    return subprocess.run(command, cwd=REPO, env=environ, capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("required", [False, True])
def test_missing_data_is_a_skip_on_a_clone_and_a_failure_in_ci(required):
    result = pytest_without_data(**({"BDH_PL_REQUIRE_DATA": "1"} if required else {}))
    summary = result.stdout.strip().splitlines()[-1]
    if required:
        assert result.returncode == 1 and "1 error" in summary, result.stdout[-2000:]
        assert "BDH_PL_REQUIRE_DATA is set, so this is a failure" in result.stdout
    else:
        assert result.returncode == 0 and "1 skipped" in summary, result.stdout[-2000:]
        assert "real data not found: $BDH_PL_DATA_DIR is not set" in result.stdout


def test_ci_requires_the_data():
    script = (REPO / ".ci" / "run").read_text()
    assert "export BDH_PL_REQUIRE_DATA=1" in script
    assert "export BDH_PL_DATA_DIR=" in script
