"""The one verdict rule: every reading, some, none, nothing measured."""

from __future__ import annotations

from bdh_pl.analysis.verdict import FAILS, HOLDS, UNTESTED, WEAK, verdict


def test_the_verdict_is_all_some_or_none_of_the_readings():
    assert verdict([True, True]) == HOLDS == "holds"
    assert verdict([True, False, False]) == WEAK == "holds weakly"
    assert verdict([False, False]) == FAILS == "does not hold"
    assert verdict([]) == UNTESTED
