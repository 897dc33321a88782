"""The one rule that turns a claim's evidence into words, used by every README and doc.

    verdict([True, True, False])   # "holds weakly"

A claim is measured by several readings: the same comparison at each choice an analyst could
have made instead (each nAP threshold, each layer, each degree kind, each mean degree of the
graph). A reading counts for the claim when the trained BDH is ahead of every control on it, by
the claim's stated test (significance where the measure has one). Then the claim

- **holds** when every reading counts for it;
- **holds weakly** when some do and some do not (the claim depends on the choice: say which);
- **does not hold** when none does;
- is **untested** without a reading (no control, nothing measurable).
"""

from __future__ import annotations

from collections.abc import Sequence

HOLDS, WEAK, FAILS, UNTESTED = "holds", "holds weakly", "does not hold", "untested"
VERDICTS = (HOLDS, WEAK, FAILS, UNTESTED)
RULE = (
    "holds: ahead of every control on every reading; holds weakly: on some readings, not all; "
    "does not hold: on none"
)


def verdict(readings: Sequence[bool]) -> str:
    """The verdict of a claim from its readings (True: BDH ahead of every control there)."""
    if not readings:
        return UNTESTED
    if all(readings):
        return HOLDS
    return WEAK if any(readings) else FAILS
