"""The one exception type that reaches the user as a single line instead of a traceback."""


class UserError(Exception):
    """Bad input or configuration: the message names the file, row or params key and what to do."""
