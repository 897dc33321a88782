"""What many tests share that is not a fixture (importable as `helpers`: pytest puts tests/ on
the path): the CPU smoke configuration, `python -m bdh_pl` as a child process, a tiny GPT-2
folder. Fixtures built on them are in conftest.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The smallest real run: tiny Shakespeare, the CPU trainer, BDH at CPU size (absolute paths, so
# they work from any folder).
SMOKE = [
    *("--config", str(REPO / "configs/shakespeare.yaml")),
    *("--config", str(REPO / "configs/cpu.yaml")),
    *("--config", str(REPO / "configs/cpu/bdh.yaml")),
]


def bdh_pl_process(
    *args: str, check: bool = True, timeout: float = 600, **kwargs
) -> subprocess.CompletedProcess:
    """`python -m bdh_pl ARGS` in a child process from the repository root (text output
    captured); with check, a failure shows the end of its stderr. Tests that call it are
    marked slow (conftest.py refuses them otherwise)."""
    result = subprocess.run(
        [sys.executable, "-m", "bdh_pl", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"bdh_pl {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result


def tiny_gpt2_folder(folder: Path) -> Path:
    """A 1-layer GPT-2 (random weights, GPT-2's vocabulary) saved as a Hugging Face folder."""
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=64)).save_pretrained(
        folder
    )
    return folder
