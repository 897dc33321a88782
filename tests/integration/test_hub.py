"""Offline is fast: every path to the Hugging Face hub ends in one line within seconds when the
hub cannot be reached, instead of the clients' retries (about 30 s and 12-15 lines)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bdh_pl.errors import UserError
from bdh_pl.hub import hub_unreachable, require_hub

REPO = Path(__file__).resolve().parents[2]
NOWHERE = "http://127.0.0.1:9"  # the discard port: refused at once, no network needed
OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
PROXIES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture
def no_hub(monkeypatch, tmp_path) -> dict[str, str]:
    """An environment whose hub is unreachable and not declared offline, with an empty cache."""
    for name in (*OFFLINE, *PROXIES, "BDH_PL_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", NOWHERE)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return dict(os.environ)


def test_an_unreachable_hub_is_one_line_naming_the_fix(no_hub):
    assert "127.0.0.1:9" in hub_unreachable()
    with pytest.raises(UserError, match=r"^the thing needs the Hugging Face hub, .*: do this \("):
        require_hub("the thing", "do this")


def test_declared_offline_is_left_to_the_caches(no_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_unreachable() is None  # the clients read their caches, quickly


def test_the_probe_goes_to_the_proxy_when_there_is_one(no_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://huggingface.co")
    monkeypatch.setenv("HTTPS_PROXY", NOWHERE)  # the proxy refuses: so would every request
    assert "127.0.0.1:9" in hub_unreachable()
    monkeypatch.setenv("NO_PROXY", "huggingface.co")
    from bdh_pl.hub import _address

    assert _address() == ("huggingface.co", 443)


@pytest.mark.slow
def test_commands_that_need_the_hub_fail_in_one_line(no_hub, tmp_path):
    """download-data, a fit without a data folder, mauve's default featurizer and a
    pretrained GPT-2 by hub name; and download-data into a path under a regular file names the
    path, not the network."""
    (tmp_path / "file").write_text("x")
    commands = {
        "download": ["download-data", str(tmp_path / "data")],
        "under a file": ["download-data", str(tmp_path / "file" / "data")],
        "fit": [
            "fit",
            *("--config", "configs/shakespeare.yaml", "--config", "configs/cpu.yaml"),
            *("--config", "configs/cpu/bdh.yaml"),
            *("--trainer.default_root_dir", str(tmp_path / "runs")),
        ],
        "mauve": ["mauve", "--ckpt_path", "tests/fixtures/bdh-tiny-v0.1.0.ckpt"],
        "pretrained": [
            "test",
            *("--config", "configs/wikitext2.yaml", "--config", "configs/model/gpt2.yaml"),
            *("--data", "bdh_pl.data.TextFile", "--data.init_args.test", str(tmp_path / "file")),
            *("--data.init_args.tokenizer", "gpt2"),
            *("--trainer.default_root_dir", str(tmp_path / "runs")),
        ],
    }
    if not _has("mauve"):
        del commands["mauve"]
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "bdh_pl", *args],
            cwd=REPO,
            env=no_hub,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in commands.items()
    }
    errs = {name: proc.communicate(timeout=300)[1] for name, proc in procs.items()}
    for name, err in errs.items():
        lines = [line for line in err.splitlines() if not line.startswith("Seed set to")]
        assert procs[name].returncode == 2, (name, err[-2000:])
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err[-2000:])
        errs[name] = lines[0]
    for name in ("download", "fit", "mauve", "pretrained"):
        if name in errs:
            assert "Hugging Face hub, which cannot be reached (127.0.0.1:9" in errs[name]
    assert "is not a writable folder" in errs["under a file"]
    assert not (tmp_path / "data").exists() and not list(tmp_path.glob("runs/version_*"))


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
