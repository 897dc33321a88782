"""The unit tier's rules (`make test-fast`, under a minute): no process (tests/conftest.py
refuses one), no torch.compile, no tmpfs, no `slow` mark, and no test past a few seconds of
CPU. A test that needs any of these belongs in tests/integration/, at the same relative path."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest
import torch
from threadpoolctl import threadpool_limits

# CPU seconds (this process and its threads) one unit test may spend in setup, or in its call:
# the tier's ~600 tests share about 40 s, so a test near this limit is a fit or a compile that
# belongs in the integration tier. CPU time, not wall time, so a loaded machine does not trip it.
CPU_LIMIT_S = 4.0

# One thread for torch and for numpy's BLAS: with more, threads spin while they wait for a core,
# and on a loaded machine that spinning counts as CPU time (a 0.1 s scipy fit took 6 s of CPU at
# load 9). With one the CPU time is the work the test does. In this process only: the processes
# that integration tests start keep their threads.
torch.set_num_threads(1)
threadpool_limits(1)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _move(item: pytest.Item, why: str) -> str:
    return f"{item.nodeid} {why}: it belongs in tests/integration/ (see tests/unit/conftest.py)"


@pytest.fixture(autouse=True)
def _no_compile(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("torch.compile in a unit test: it belongs in tests/integration/")

    monkeypatch.setattr(torch, "compile", refuse)


@pytest.fixture
def small_disk(request):
    pytest.fail(_move(request.node, "mounts a tmpfs (small_disk)"), pytrace=False)


def _within_budget(item: pytest.Item, phase: str) -> Iterator[None]:
    start = _cpu_s()
    result = yield
    spent = _cpu_s() - start
    if spent > CPU_LIMIT_S:
        raise AssertionError(_move(item, f"spent {spent:.1f} s of CPU in {phase}"))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    return (yield from _within_budget(item, "its call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    """Its fixtures too: a module fixture that fits a model is counted in its first test."""
    if item.get_closest_marker("slow"):
        pytest.fail(_move(item, "is marked slow"), pytrace=False)
    return (yield from _within_budget(item, "setup"))
