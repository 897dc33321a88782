"""The one exception type for bad user input: the CLI prints its message as a single line."""

import math
from collections.abc import Callable
from typing import Any


class UserError(Exception):
    """A problem the user can fix (a missing file, a bad value); the message names the fix."""


INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports after Ctrl-C


class Preempted(Exception):
    """A run stopped by SIGTERM (exit 143) or Ctrl-C (exit 130); the message says how to
    resume."""

    def __init__(self, message: str, code: int = 143) -> None:
        super().__init__(message)
        self.code = code  # 128 + the signal, what shells and job schedulers expect


# Lines of jsonargparse's nested explanation that never name the problem.
_NOISE = (
    "Does not validate",
    "Subtypes",
    "Errors",
    "Given value",
    "Expected a <class 'NoneType'>",
)


def config_error_line(err: Exception, hint: bool = True) -> str:
    """jsonargparse's nested explanation of a bad option, cut down to the line that matters."""
    lines = [line.strip(" -").rstrip(":") for line in str(err).splitlines()]
    details = [line for line in lines[1:] if line and not line.startswith(_NOISE)]
    where = lines[0].rstrip(":") if lines else "config"
    detail = "; ".join(details) or where
    if not hint:
        return detail
    hint = "check the spelling against `python -m bdh_pl <subcommand> --help` or --print_config"
    return f"{where}: {detail} ({hint})" if details else f"{detail} ({hint})"


# The largest count an option takes (samples, tokens, batch sizes, layers): past it, memory
# or time runs out long before, and torch overflows its 64-bit sizes soon after.
MAX_COUNT = 2**31 - 1


def check_options(checks: list[tuple[str, object, Callable[[Any], bool], str]]) -> None:
    """The first option out of range as one line naming it and its range; each check is
    (flag, value, accepts, what it must be). None is an option left at its default."""
    for flag, value, accepts, must_be in checks:
        if value is not None and not accepts(value):
            raise UserError(f"{flag} {value!r}: must be {must_be}")


def count(low: int = 1) -> Callable[[Any], bool]:
    """A whole number in [low, MAX_COUNT]."""
    return lambda v: isinstance(v, int) and low <= v <= MAX_COUNT


def finite_positive(value: float) -> bool:
    return 0 < value < math.inf  # NaN too


COUNT = f"a whole number in [1, {MAX_COUNT}]"
