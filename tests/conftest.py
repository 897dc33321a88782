"""Shared fixtures: the real data root (read-only) and a per-session token cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from bdh_pl.training.language_model import LanguageModel

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("BDH_PL_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "tinyshakespeare" / "input.txt").is_file():
        pytest.fail(f"real data not found at {DATA_DIR}: set BDH_PL_DATA_DIR (see README)")
    return DATA_DIR


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("token-cache")


@pytest.fixture(scope="session", autouse=True)
def _offline_env(data_dir, session_cache):
    """Real local data, a private token cache and no hub, for this process and subprocesses."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BDH_PL_DATA_DIR", str(data_dir))
        mp.setenv("BDH_PL_CACHE_DIR", str(session_cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        yield


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """`python -m bdh_pl ARGS` in this process, from the repo root: (exit code, stderr)."""
    from bdh_pl.cli import main

    monkeypatch.chdir(REPO)

    def run(args: list[str]) -> tuple[int, str]:
        try:
            main(args)
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        return code, capsys.readouterr().err

    return run


class BigramLM(LanguageModel):
    """A model that sees only the current token: its NLL over a split does not depend on
    block size or batching, and a hand loop over (previous, next) pairs gives it exactly."""

    def build_network(self) -> nn.Module:
        torch.manual_seed(0)
        vocab = self.hparams.vocab_size
        return nn.Sequential(nn.Embedding(vocab, 8), nn.Linear(8, vocab))


@pytest.fixture
def bigram_lm() -> type[LanguageModel]:
    return BigramLM
