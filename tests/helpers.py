"""What many tests share that is not a fixture (importable as `helpers`: pytest puts tests/ on
the path): the CPU smoke configuration, `python -m bdh_pl` as a child process, a tiny GPT-2
folder, a text with digits. Fixtures built on them are in conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FAULT_INJECTION = Path(__file__).resolve().parent / "fault_injection"


def slow_saves(seconds: float) -> dict[str, str]:
    """Environment for a child process whose every checkpoint save pauses `seconds` between its
    temp file and the rename (fault_injection/sitecustomize.py), so a test can kill a real run
    mid-save. Nothing in bdh_pl's save path knows of it."""
    paths = [str(FAULT_INJECTION), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths), "BDH_PL_TEST_SAVE_DELAY": str(seconds)}


# The smallest real run: tiny Shakespeare, the CPU trainer, BDH at CPU size (absolute paths, so
# they work from any folder).
SMOKE = [
    *("--config", str(REPO / "configs/shakespeare.yaml")),
    *("--config", str(REPO / "configs/cpu.yaml")),
    *("--config", str(REPO / "configs/cpu/bdh.yaml")),
]


@dataclass
class DataSized:
    """The config of the test-only LanguageModels: sized by the data alone."""

    vocab_size: int = 256
    block_size: int = 256


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


def in_process_stream(
    cmd: list[str], log_path: Path, env: dict[str, str], echo: bool, cwd: Path
) -> tuple[int, str]:
    """bench/runner.py's `_stream` without the process: `python -m bdh_pl ARGS` run by this
    process's `main`, in `cwd`, under `env` and on the threads its OMP_NUM_THREADS gives; the
    runner's own logic around it (folders, errors) unchanged. For tests where a stage's process
    is not what is tested: each start is ~6 s of CPU importing torch and Lightning."""
    import contextlib
    import io

    import torch

    from bdh_pl.cli import main

    assert cmd[1:3] == ["-m", "bdh_pl"], cmd
    saved_env, saved_cwd, threads = dict(os.environ), os.getcwd(), torch.get_num_threads()
    err = io.StringIO()
    try:
        os.environ.update(env)
        torch.set_num_threads(int(env.get("OMP_NUM_THREADS", threads)))
        os.chdir(cwd)
        with contextlib.redirect_stderr(err):
            try:
                main(cmd[3:])
                code = 0
            except SystemExit as exit_:
                code = exit_.code or 0
    finally:
        os.chdir(saved_cwd)
        torch.set_num_threads(threads)
        os.environ.clear()
        os.environ.update(saved_env)
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(cmd)}\n{err.getvalue()}")
    return code, err.getvalue()[-20_000:]


def tiny_gpt2_folder(folder: Path) -> Path:
    """A 1-layer GPT-2 (random weights, GPT-2's vocabulary) saved as a Hugging Face folder."""
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=64)).save_pretrained(
        folder
    )
    return folder


def digit_text(n: int = 3000, seed: int = 0) -> bytes:
    """Words with numbers among them (a fifth of the words) and some line breaks: text in
    which a digit-detecting neuron has something to find."""
    rng = np.random.default_rng(seed)
    words = [b"the", b"King", b"of", b"year", b"in", b"and", b"sold,", b"Rome."]
    out = b""
    while len(out) < n:
        if rng.random() < 0.2:
            out += str(int(rng.integers(1, 9999))).encode() + b" "
        else:
            out += words[int(rng.integers(len(words)))] + (b"\n" if rng.random() < 0.1 else b" ")
    return out[:n]
