"""The one exception type for bad user input: the CLI prints its message as a single line."""


class UserError(Exception):
    """A problem the user can fix (a missing file, a bad value); the message names the fix."""
