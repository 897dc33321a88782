"""Issue 27's interior-optimum and epoch-cap rules on hand-written records, in the unit tier
(the matrix's own runs of them, with a stand-in for the fits, are in
tests/integration/bench/test_frontier_matrix.py): an edge optimum asks for the next size of the
ladder, an interior one for none; a run that would read more than the cap is marked bound and
never usable; a best size whose neighbour is bound says so."""

from types import SimpleNamespace

import pytest

from bdh_pl.bench.budget import LrSweep, Sweep
from bdh_pl.bench.ladder import budget_groups, edge_reason, next_size, rate_between
from bdh_pl.bench.record import Record
from bdh_pl.bench.run_queue import RunQueue

NAMES = ["d16", "d24", "d32", "d48", "d64"]


def ran(**losses: float) -> dict[int, dict]:
    """{ladder index: record} of finished runs, by size name (d24=2.1, ...)."""
    return {NAMES.index(k): {"status": "ok", "best_val_loss": v} for k, v in losses.items()}


@pytest.mark.parametrize(
    ("tried", "wanted"),
    [
        ({"d24": 2.0, "d32": 2.1, "d48": 2.2}, "d16"),  # best the smallest: one smaller
        ({"d24": 2.2, "d32": 2.1, "d48": 2.0}, "d64"),  # best the largest: one larger
        ({"d24": 2.2, "d32": 2.0, "d48": 2.1}, None),  # interior: nothing to add
        ({"d16": 2.0, "d24": 2.1, "d32": 2.2}, None),  # smallest of the ladder: nowhere to go
        ({"d32": 2.2, "d48": 2.1, "d64": 2.0}, None),  # largest of the ladder
    ],
)
def test_an_edge_optimum_asks_for_the_next_size_and_an_interior_one_for_none(tried, wanted):
    got = next_size(ran(**tried), len(NAMES))
    assert (NAMES[got] if got is not None else None) == wanted


def test_a_failed_or_bound_size_is_no_usable_edge():
    """The edge is the smallest or largest *usable* size: a failed largest run leaves the
    best (d48) at the usable edge, whose next size (d64) was tried: nothing more to add."""
    cell = ran(d24=2.2, d32=2.1, d48=2.0)
    cell[NAMES.index("d64")] = {"status": "failed", "best_val_loss": None}
    assert next_size(cell, len(NAMES)) is None
    assert edge_reason(cell, NAMES) == "the next larger size d64 has no result"


def test_the_edge_reason_names_the_ladders_end_or_the_bound_neighbour():
    assert edge_reason(ran(d24=2.2, d32=2.0, d48=2.1), NAMES) is None
    assert edge_reason(ran(d32=2.2, d48=2.1, d64=2.0), NAMES) == (
        "the ladder has no larger size than d64"
    )
    cell = ran(d24=2.0, d32=2.1, d48=2.2)
    cell[0] = {"status": "bound", "bound": "needs 5.12 epochs of the training split, more than "
               "max_epochs_of_data 4: not run", "best_val_loss": None}  # fmt: skip
    assert next_size(cell, len(NAMES)) is None  # tried (bound): not asked for again
    assert edge_reason(cell, NAMES) == f"the next smaller size d16 {cell[0]['bound']}"


def capped(steps: int, cap: float, frontier: bool = True) -> Record:
    """RunQueue.cap_epochs on one run of 1,000 tokens per step over a 10,000-token split."""
    record = Record(model="d16", train_split_tokens=10_000, tokens_per_step=1_000)
    queue = SimpleNamespace(bench=SimpleNamespace(max_epochs_of_data=cap, frontier=frontier))
    RunQueue.cap_epochs(queue, SimpleNamespace(record=record), steps)
    return record


def test_the_epoch_cap_marks_a_run_bound_with_its_reason():
    inside = capped(steps=40, cap=4)  # 40,000 tokens: 4 epochs, at the cap
    assert inside.epochs == 4.0 and inside.bound is None and inside.status == "running"
    over = capped(steps=41, cap=4)  # 4.1 epochs
    assert over.epochs == pytest.approx(4.1) and over.status == "bound"
    assert over.bound == (
        "needs 4.10 epochs of the training split, more than max_epochs_of_data 4: not run"
    )
    plain = capped(steps=41, cap=4, frontier=False)  # a plain matrix has no cap
    assert plain.epochs == pytest.approx(4.1) and plain.bound is None


def test_a_rate_follows_the_two_sweeps_around_its_budget_and_their_line_beyond():
    """Three sweeps (x8 at 1e9, x2 at 1e10, x2 at 1e11): between the first two the line
    through them, between the last two the line through those (not the first two's line
    carried on), beyond either end the line of the nearest two; a sweep's own at its budget."""
    scales = {1e9: 8.0, 1e10: 2.0, 1e11: 2.0}
    middle = 10**9.5  # halfway in log budget: sqrt(8 * 2)
    assert rate_between(scales, middle) == (
        pytest.approx(4.0),
        "interpolated log-linear in log budget between sweeps at 1e9 and 1e10",
    )
    assert rate_between(scales, 10**10.5)[0] == pytest.approx(2.0)  # not 1.0 (8 -> 2 -> ...)
    assert rate_between(scales, 1e12) == (
        pytest.approx(2.0),
        "extrapolated log-linear in log budget beyond sweeps at 1e10 and 1e11",
    )
    assert rate_between(scales, 1e8)[0] == pytest.approx(32.0)  # the first two's line, below
    assert rate_between(scales, 1e10) == (2.0, "sweep@1e10")
    assert rate_between({1e9: 8.0}, 1e11) == (8.0, "sweep@1e9")  # one sweep: its rate


def test_a_later_sweep_starts_from_its_own_rates_or_from_the_choice_before_it():
    family = Sweep(lr=[2, 4, 8], dropout=[0.0])
    assert LrSweep(budget=1e10).grid(family, 0.5) == family  # no rates: the family's
    assert LrSweep(budget=1e10, lr=[0.25, 1]).grid(family, 0.5).lr == [0.25, 1.0]
    relative = LrSweep(budget=1e10, lr=[0.25, 0.5, 1], relative=True).grid(family, 0.5)
    assert relative.lr == [0.125, 0.25, 0.5] and relative.dropout == [0.0]  # the rest kept


def test_budgets_run_in_groups_up_to_each_later_sweep_or_one_by_one():
    assert budget_groups(7, [3, 6]) == [[0, 1, 2, 3], [4, 5, 6]]  # sweeps at 1.6e13, 1.28e14
    assert budget_groups(5, [2]) == [[0, 1, 2], [3, 4]]  # budgets beyond the last sweep
    assert budget_groups(3, []) == [[0, 1, 2]]
    assert budget_groups(3, [2], one_by_one=True) == [[0], [1], [2]]  # a stop rule
