"""The one exception type for bad user input: the CLI prints its message as a single line."""

import argparse
from typing import NoReturn


class UserError(Exception):
    """A problem the user can fix (a missing file, a bad value); the message names the fix."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the tools: no prefix abbreviations (`--temp` is not `--temperature`), and
    a bad value is a UserError (one `error:` line, exit 2) rather than a usage block."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see `{self.prog} --help`)")
