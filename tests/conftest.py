"""Shared fixtures of both tiers: the real data root (read-only), a per-session token cache, the
CLI in this process, tiny bdh-pl checkpoints of each model kind, and the tiers themselves: every
test under tests/integration/ is marked `slow` (so `-m "not slow"` is the unit tier), and only a
slow test may start a process. tests/unit/conftest.py holds the unit tier's other rules. Plain
helpers (the smoke configs, a child `python -m bdh_pl`) are in helpers.py."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from bdh_pl.models.bdh import BDHConfig
from bdh_pl.models.hf import GPT2Size, LlamaSize
from bdh_pl.training.language_model import LanguageModel
from bdh_pl.training.lit_models import BDHLM, GPT2LM, LlamaLM
from bdh_pl.training.training_config import TrainingConfig

from helpers import REPO, DataSized

TRAINING = TrainingConfig()

DATA_DIR_ENV = "BDH_PL_DATA_DIR"
# Set by .ci/run: a test that would be skipped for want of real data fails instead, so CI can
# never pass by skipping.
REQUIRE_DATA_ENV = "BDH_PL_REQUIRE_DATA"
HUB_HOST = ("huggingface.co", 443)
_CALLER_ENV = dict(os.environ)  # before the fixtures below turn the hub off


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick connect instead of the hub clients' 30 s of retries when there is no network."""
    if _CALLER_ENV.get("HF_HUB_OFFLINE") or _CALLER_ENV.get("HF_DATASETS_OFFLINE"):
        return False
    try:
        socket.create_connection(HUB_HOST, timeout=timeout).close()
    except OSError:
        return False
    return True


def _data_from_hub() -> Path:
    """The hub path users get, as a data root cached under the token cache folder; in a child
    process with the caller's environment (this session sets the hub clients offline)."""
    from bdh_pl.data.cache import default_cache_dir

    root = default_cache_dir(_CALLER_ENV) / "hub-data"
    command = [sys.executable, "-m", "bdh_pl", "download-data", str(root)]
    subprocess.run(command, env=_CALLER_ENV, check=True, capture_output=True, timeout=1800)
    return root


def _find_real_data() -> tuple[Path | None, str]:
    """$BDH_PL_DATA_DIR when set, else the hub (cached), else (None, why)."""
    given = os.environ.get(DATA_DIR_ENV)
    if given:
        root = Path(given).expanduser()
        if not (root / "tinyshakespeare" / "input.txt").is_file():
            pytest.fail(f"${DATA_DIR_ENV}={given} is not a data folder (see README: Offline data)")
        return root, ""
    if not _hub_reachable():
        return None, (
            f"real data not found: ${DATA_DIR_ENV} is not set and the Hugging Face hub cannot "
            "be reached (set it to a data folder, see README: Offline data)"
        )
    try:
        return _data_from_hub(), ""
    except Exception as err:  # any failure of the hub clients means the same thing here
        return None, f"real data not found: the hub download failed ({type(err).__name__})"


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    """The real data root (read-only), also as $BDH_PL_DATA_DIR for the tests that ask for it.
    Without one they are skipped with the reason (or fail, under $BDH_PL_REQUIRE_DATA as in CI)."""
    root, why = _find_real_data()
    if root is None:
        if os.environ.get(REQUIRE_DATA_ENV):
            pytest.fail(f"{why}; ${REQUIRE_DATA_ENV} is set, so this is a failure")
        pytest.skip(why)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(DATA_DIR_ENV, str(root))
        yield root


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("token-cache")


@pytest.fixture(scope="session", autouse=True)
def _offline_env(session_cache) -> Iterator[None]:
    """A private token cache and no hub, for this process and subprocesses."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BDH_PL_CACHE_DIR", str(session_cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        yield


@pytest.fixture(autouse=True)
def _data_only_when_asked(request, monkeypatch) -> None:
    """A test that did not ask for `data_dir` sees no data root, so it runs on a fresh clone."""
    if "data_dir" not in request.fixturenames:
        monkeypatch.delenv(DATA_DIR_ENV, raising=False)


# Arguments that start one of these in a child process make a test slow.
PROCESS_MARKS = ("bdh_pl", "pytest", "pip")
INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.slow)


@contextlib.contextmanager
def _processes_refused(item: pytest.Item) -> Iterator[None]:
    """While a test without the slow mark sets up (its module fixtures too) and runs, starting
    `python -m bdh_pl`, a pytest or pip fails it, naming the command: `make test-fast` (the
    unit tier) is the edit loop."""
    if item.get_closest_marker("slow"):
        yield
        return
    start = subprocess.Popen.__init__

    def refuse(self, args, *rest, **kwargs):
        argv = [str(a) for a in (args if isinstance(args, list | tuple) else [args])]
        if any(Path(a).name in PROCESS_MARKS for a in argv) and "download-data" not in argv:
            raise AssertionError(
                f"{item.nodeid} starts `{' '.join(argv[:4])} ...`: it belongs in tests/integration/"
            )
        start(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = refuse
    try:
        yield
    finally:
        subprocess.Popen.__init__ = start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    with _processes_refused(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    with _processes_refused(item):
        return (yield)


# --- CPU seconds per test (opt in): what a loaded machine cannot distort -----------------------

CPU_REPORT_ENV = "BDH_PL_TEST_CPU_REPORT"
_cpu_spent: list[tuple[float, str]] = []


def _cpu_s() -> float:
    """User + system seconds of this process and of its children that ended and were waited
    for (a test's `python -m bdh_pl` processes, a killed one too, once reaped)."""
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    """With $BDH_PL_TEST_CPU_REPORT=FILE, each test's CPU seconds (setup, its module fixtures
    when it is their first user, call, teardown) are appended to FILE at the end, most first."""
    if not os.environ.get(CPU_REPORT_ENV):
        return (yield)
    start = _cpu_s()
    try:
        return (yield)
    finally:
        _cpu_spent.append((_cpu_s() - start, item.nodeid))


def pytest_sessionfinish(session) -> None:
    report = os.environ.get(CPU_REPORT_ENV)
    if not report or not _cpu_spent:
        return
    lines = [f"{cpu:8.1f}  {nodeid}" for cpu, nodeid in sorted(_cpu_spent, reverse=True)]
    total = sum(cpu for cpu, _ in _cpu_spent)
    lines.append(f"{total:8.1f}  total of {len(_cpu_spent)} tests, load {os.getloadavg()[0]:.1f}")
    with open(report, "a") as f:
        f.write("\n".join(lines) + "\n")


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

    def __init__(self, config: DataSized, training: TrainingConfig = TRAINING) -> None:
        super().__init__(config=config, training=training)

    def build_network(self) -> nn.Module:
        torch.manual_seed(0)
        vocab = self.config.vocab_size
        return nn.Sequential(nn.Embedding(vocab, 8), nn.Linear(8, vocab))


@pytest.fixture
def bigram_lm():
    """bigram_lm(vocab_size, block_size) -> a BigramLM"""
    return lambda vocab_size, block_size: BigramLM(DataSized(vocab_size, block_size))


# --- tiny checkpoints -------------------------------------------------------------------------

TINY = {
    "bdh": (
        BDHLM,
        BDHConfig,
        {"n_layer": 2, "n_embd": 32, "n_head": 2, "mlp_internal_dim_multiplier": 8, "dropout": 0.0},
    ),
    "gpt2": (GPT2LM, GPT2Size, {"n_layer": 2, "n_head": 2, "n_embd": 32, "dropout": 0.0}),
    "llama": (
        LlamaLM,
        LlamaSize,
        {"n_layer": 2, "n_head": 4, "n_embd": 32, "n_query_groups": 2, "intermediate_size": 64},
    ),
}


def _save_checkpoint(
    path: Path, kind: str, tokenizer: str = "byte", vocab_size: int = 256, block_size: int = 32
) -> torch.nn.Module:
    """A bdh-pl checkpoint as Lightning writes it, with randomly initialised weights."""
    cls, config, sizes = TINY[kind]
    torch.manual_seed(0)
    model = cls(config(**sizes, vocab_size=vocab_size, block_size=block_size))
    # Non-trivial values everywhere (some inits are zeros or ones), so the round trip can fail.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    torch.save(
        {
            "pytorch-lightning_version": "2.6.0",
            "global_step": 7,
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "datamodule_hyper_parameters": {
                "_class_path": "bdh_pl.data.TinyShakespeare",
                "tokenizer": tokenizer,
                "batch_size": 4,
                "block_size": block_size,
            },
        },
        path,
    )
    return model.network.eval()


@pytest.fixture
def save_checkpoint():
    """save_checkpoint(path, kind, tokenizer="byte", vocab_size=256, block_size=32) -> network"""
    return _save_checkpoint


@pytest.fixture
def featurizer_dir(tmp_path) -> Path:
    """A random 2-layer GPT-2 over bytes, saved like any Hugging Face causal LM (a tiny local
    MAUVE featurizer)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from bdh_pl.tools.export import byte_tokenizer_hf

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=256, n_positions=512, n_layer=2, n_head=2, n_embd=32, bos_token_id=None
    )
    config.eos_token_id = None
    path = tmp_path / "featurizer"
    GPT2LMHeadModel(config).save_pretrained(path)
    byte_tokenizer_hf(512).save_pretrained(path)
    return path


# --- a real small filesystem (full-disk tests) ----------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """small_disk(size_kb) -> a folder on a real filesystem of that size (a tmpfs, mounted
    here: needs root, else the test is skipped with the reason); small_disk.grow(folder,
    size_kb) frees space. Unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip(
            "a real small filesystem needs root (mount -t tmpfs); the injected-ENOSPC tests "
            "cover the same code"
        )
    mounted: list[Path] = []

    def make(size_kb: int) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        command = ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:  # root without the right to mount (a container, say)
            pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    def grow(folder: Path, size_kb: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size_kb}k", str(folder)], check=True)

    make.grow = grow
    yield make
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=False)
